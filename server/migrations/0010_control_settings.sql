-- The dashboard's control settings in force (delays, load simulation, playback speed):
-- one row, written at each change with the change's stamp, and read by every process
-- at start and every few seconds, so a process that starts after a change, or missed
-- it on the bus, acts on it too. The newest stamp wins, as on the bus.
CREATE TABLE control_settings (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    -- The change's stamp: when, and which process made it.
    at_ms BIGINT NOT NULL,
    process TEXT NOT NULL,
    -- wire::ControlSettings as JSON.
    settings TEXT NOT NULL
);

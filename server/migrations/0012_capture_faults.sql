-- The capture SMTP server's injected faults (PUT /api/faults), kept so that every
-- capture server of a cluster applies them and a dashboard in another process can show
-- and change them; and when a capture server last said it runs (every second, on a
-- database several processes share), so such a dashboard knows there is one.
CREATE TABLE capture_faults (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    -- wire::Faults as JSON.
    faults TEXT NOT NULL,
    seen_at_ms BIGINT NOT NULL
);

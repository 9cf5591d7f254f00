-- Every process of the cluster (`--role`): registered at start, heartbeating while it
-- runs. One that stops heartbeating is shown as down, and the leases its workers held
-- are released by the workers that are left.
CREATE TABLE processes (
    -- UUIDv7, made at start: a restarted process is a new row.
    id TEXT PRIMARY KEY,
    -- all | lb | app | worker | dashboard
    role TEXT NOT NULL,
    -- Where it serves (empty for a worker).
    address TEXT NOT NULL,
    version TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    heartbeat_at_ms BIGINT NOT NULL,
    -- When it stopped cleanly, or when another process found it dead and released
    -- its leases.
    stopped_at_ms BIGINT
);

CREATE INDEX processes_by_heartbeat ON processes (heartbeat_at_ms);

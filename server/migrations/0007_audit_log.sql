-- Every control action taken on the dashboard: who, what and when (GET /api/audit).
CREATE TABLE audit_log (
    -- UUIDv7: in the order they were taken.
    id TEXT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    path TEXT NOT NULL,
    body TEXT NOT NULL,
    status INTEGER NOT NULL
);

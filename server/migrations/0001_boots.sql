-- One row per start of the process on this database: the first write every start makes,
-- so a database that cannot be written fails the start, not the first user request.
-- Portable SQL only (SQLite now, PostgreSQL later).
CREATE TABLE boots (
    started_at_ms BIGINT NOT NULL,
    version TEXT NOT NULL
);

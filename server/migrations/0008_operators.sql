-- The dashboard's operators (`liveview operators add`) and their signed-in sessions.
CREATE TABLE operators (
    name TEXT PRIMARY KEY,
    -- viewer | operator | admin
    role TEXT NOT NULL,
    -- argon2id, PHC string.
    password_hash TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE operator_sessions (
    -- SHA-256 of the cookie's token: a database leak gives no usable session.
    token_digest TEXT PRIMARY KEY,
    operator TEXT NOT NULL REFERENCES operators (name) ON DELETE CASCADE,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

CREATE INDEX operator_sessions_by_operator ON operator_sessions (operator);

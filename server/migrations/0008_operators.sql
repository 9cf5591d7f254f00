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

-- Failed sign-ins, newest kept a quarter of an hour: too many for one name in that
-- time and that name's sign-ins are refused until they age out.
CREATE TABLE operator_sign_in_failures (
    name TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);

CREATE INDEX operator_sign_in_failures_by_name ON operator_sign_in_failures (name, at_ms);

-- The notification system's data: accounts, the business rows, the notifications they
-- produce (in-app and email), and the durable queue of delivery jobs. Times are Unix
-- milliseconds (BIGINT) and ids are UUIDv7 text, so the SQL stays portable.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,              -- stored lowercased
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,             -- argon2id PHC string
    next_notification_seq BIGINT NOT NULL DEFAULT 1,
    created_at_ms BIGINT NOT NULL
);

-- A session token is "<user id>.<secret>"; only a SHA-256 of the secret is kept.
CREATE TABLE sessions (
    secret_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

-- Single-use, expiring password reset tokens; only a SHA-256 is kept.
CREATE TABLE password_resets (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    used_at_ms BIGINT
);

CREATE TABLE purchases (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    item TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    currency TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE friend_requests (
    id TEXT PRIMARY KEY,
    from_user_id TEXT NOT NULL REFERENCES users(id),
    to_user_id TEXT NOT NULL REFERENCES users(id),
    status TEXT NOT NULL,                    -- pending | accepted
    created_at_ms BIGINT NOT NULL,
    accepted_at_ms BIGINT
);

-- In-app notifications: the user's notification center. `seq` orders one user's
-- notifications; `id` is the idempotency key of its delivery.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    request_id TEXT,
    created_at_ms BIGINT NOT NULL,
    delivered_at_ms BIGINT,
    read_at_ms BIGINT,
    UNIQUE (user_id, seq)
);

-- Outgoing emails; `id` is the idempotency key (and the Message-ID) of its delivery.
CREATE TABLE emails (
    id TEXT PRIMARY KEY,
    user_id TEXT REFERENCES users(id),
    kind TEXT NOT NULL,
    to_address TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    request_id TEXT,
    created_at_ms BIGINT NOT NULL,
    sent_at_ms BIGINT,
    smtp_reply TEXT
);

-- Delivery jobs. A job lives in one queue at a time (mail, mail-retry-1, mail-retry-2,
-- mail-dlq, inapp, inapp-retry, inapp-dlq) and in one state: waiting, delayed (due at
-- run_at_ms), active (leased until lease_until_ms), completed or failed.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    channel TEXT NOT NULL,                   -- email | in-app
    target_id TEXT NOT NULL,                 -- emails.id or notifications.id
    request_id TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_at_ms BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until_ms BIGINT,
    last_error TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX jobs_ready ON jobs (queue, state, run_at_ms);
CREATE INDEX jobs_target ON jobs (target_id);

CREATE TABLE queue_controls (
    queue TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0
);

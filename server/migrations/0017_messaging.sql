-- Messaging between friends (issue 17, README "Messaging"). A conversation counts its
-- messages without gaps (`last_seq`, taken with the message in one transaction); each
-- member has two horizons, the highest seq a device of theirs acked (delivered) and the
-- highest they read, from which every message's state follows for every member.
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    title TEXT,
    created_by TEXT NOT NULL REFERENCES users(id),
    created_at_ms BIGINT NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    last_message_at_ms BIGINT NOT NULL
);

CREATE TABLE conversation_members (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    joined_at_ms BIGINT NOT NULL,
    -- They see the messages after this seq (0 for the founders; later joiners see what
    -- comes after they joined).
    joined_after_seq BIGINT NOT NULL,
    left_at_ms BIGINT,
    -- Set when they leave: they keep what came up to it.
    left_after_seq BIGINT,
    delivered_seq BIGINT NOT NULL DEFAULT 0,
    read_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_by_user ON conversation_members (user_id, conversation_id);

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq BIGINT NOT NULL,
    sender_id TEXT NOT NULL REFERENCES users(id),
    -- The sender's device's own id: a resend finds the stored message by it.
    client_id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    edited_at_ms BIGINT,
    deleted_at_ms BIGINT,
    UNIQUE (conversation_id, seq),
    UNIQUE (sender_id, client_id)
);

-- An email that goes only if this message is still unread by its recipient when its
-- (delayed) job runs: messaging's reminder. Skipped with `skipped = 'read'` otherwise.
ALTER TABLE emails ADD COLUMN unless_read TEXT;

-- What a notification is about (a message's notification: that message), so reading the
-- message reads its notification too.
ALTER TABLE notifications ADD COLUMN subject_id TEXT;
CREATE INDEX notifications_subject ON notifications (user_id, subject_id);

-- The notification center (issue 17): every notification and email has a category, the
-- notification its states besides read (seen, archived, snoozed), and each user the
-- categories they muted per channel. A muted delivery is skipped by its worker, which
-- says why in `skipped`.
ALTER TABLE notifications ADD COLUMN category TEXT NOT NULL DEFAULT 'system';
ALTER TABLE notifications ADD COLUMN seen_at_ms BIGINT;
ALTER TABLE notifications ADD COLUMN archived_at_ms BIGINT;
ALTER TABLE notifications ADD COLUMN snoozed_until_ms BIGINT;
ALTER TABLE notifications ADD COLUMN skipped TEXT;
ALTER TABLE emails ADD COLUMN category TEXT NOT NULL DEFAULT 'system';
ALTER TABLE emails ADD COLUMN skipped TEXT;

UPDATE notifications SET category = CASE kind
    WHEN 'purchase' THEN 'purchases'
    WHEN 'friend-request' THEN 'social'
    WHEN 'friend-accept' THEN 'social'
    ELSE 'account' END;
UPDATE emails SET category = CASE kind
    WHEN 'purchase' THEN 'purchases'
    WHEN 'friend-request' THEN 'social'
    WHEN 'friend-accept' THEN 'social'
    ELSE 'account' END;

-- The unread count's version: one more at every change of a notification's state, so a
-- client holding several counts keeps the newest.
ALTER TABLE users ADD COLUMN inbox_version BIGINT NOT NULL DEFAULT 0;

-- A row says the user does not want `category` on `channel` ('email' or 'in-app');
-- no row, they do.
CREATE TABLE notification_mutes (
    user_id TEXT NOT NULL REFERENCES users(id),
    category TEXT NOT NULL,
    channel TEXT NOT NULL,
    PRIMARY KEY (user_id, category, channel)
);

CREATE INDEX notifications_unread ON notifications (user_id, read_at_ms, archived_at_ms);

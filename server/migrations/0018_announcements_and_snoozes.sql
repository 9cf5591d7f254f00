-- Operators' announcements to the end users (issue 17): stored, so a user who was away
-- reads them later, and sent live to every socket (the room `system`).
CREATE TABLE announcements (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX announcements_by_time ON announcements (created_at_ms);

-- Snoozed notifications are brought back when their time comes: found by this index,
-- which holds only the snoozed ones.
CREATE INDEX notifications_snoozed ON notifications (snoozed_until_ms) WHERE snoozed_until_ms IS NOT NULL;

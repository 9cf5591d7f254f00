-- A notification's seq is now taken as MAX(seq) + 1 in the writing transaction, in the
-- same statement as its insert; the per-user counter column is no longer used.
ALTER TABLE users DROP COLUMN next_notification_seq;

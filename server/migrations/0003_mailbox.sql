-- Messages accepted by the embedded capture SMTP server. A message is stored before the
-- server answers 250, so "accepted" survives a crash, as it must for a real MTA.
CREATE TABLE mailbox (
    id TEXT PRIMARY KEY,
    message_id TEXT,                         -- the Message-ID header, if any
    mail_from TEXT NOT NULL,
    rcpt_to TEXT NOT NULL,                   -- comma-separated
    subject TEXT,
    raw TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
CREATE INDEX mailbox_received ON mailbox (received_at_ms);

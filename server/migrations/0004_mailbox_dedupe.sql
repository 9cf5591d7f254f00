-- A Message-ID is a delivery's idempotency key: the capture server stores each once.
-- (NULLs stay distinct, so messages without one are all kept.)
CREATE UNIQUE INDEX mailbox_message_id ON mailbox (message_id);

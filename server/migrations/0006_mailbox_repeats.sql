-- How many times a stored message's Message-ID arrived again (a sender's retry after a
-- lost 250): counted in the row, so the figure survives restarts.
ALTER TABLE mailbox ADD COLUMN repeats BIGINT NOT NULL DEFAULT 0;

-- The autoscaler's count of app servers to run, so that a dashboard that takes the
-- autoscale lease over (or this one, restarted) goes on from it rather than from MIN.
CREATE TABLE autoscale (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    servers BIGINT NOT NULL,
    decided_at_ms BIGINT NOT NULL
);

-- Business monitoring: what the figures of GET /api/v1/analytics/realtime-metrics are
-- computed from (the README defines each). Seed 001's tables, in this schema's
-- portable form: Unix milliseconds for times, text ids, JSON as text.

-- A user's segment and where they came from, given at signup.
ALTER TABLE users ADD COLUMN user_type TEXT NOT NULL DEFAULT 'customer';
ALTER TABLE users ADD COLUMN signup_source TEXT NOT NULL DEFAULT 'direct';

-- The catalogue (GET /api/items): fixed, so that views and purchases of it are real.
CREATE TABLE items (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    price_cents BIGINT NOT NULL,
    currency TEXT NOT NULL
);
INSERT INTO items (id, name, description, price_cents, currency) VALUES
    ('lamp', 'Desk lamp', 'A warm light that bends where you need it.', 3900, 'EUR'),
    ('mug', 'Enamel mug', 'Survives camping trips and Monday mornings.', 1450, 'EUR'),
    ('notebook', 'Dotted notebook', '192 pages of 100 g paper, lies flat.', 1800, 'EUR'),
    ('headphones', 'Closed headphones', 'Quiet enough for an open office.', 12900, 'EUR'),
    ('backpack', 'Daypack', 'Twenty litres, a laptop sleeve, a bottle pocket.', 7900, 'EUR'),
    ('plant', 'Potted fern', 'Forgives a missed watering.', 2400, 'EUR'),
    ('keyboard', 'Mechanical keyboard', 'Tactile switches, a detachable cable.', 11900, 'USD'),
    ('poster', 'Map poster', 'The night sky over your city, 50 × 70 cm.', 2900, 'GBP');

-- A purchase may name a catalogue item (it still carries its own name and amount).
ALTER TABLE purchases ADD COLUMN item_id TEXT REFERENCES items(id);
CREATE INDEX purchases_created ON purchases (created_at_ms);

-- Every GET /api/items/{id} answered 200.
CREATE TABLE item_views (
    id TEXT PRIMARY KEY,
    item_id TEXT NOT NULL REFERENCES items(id),
    user_id TEXT REFERENCES users(id),
    created_at_ms BIGINT NOT NULL
);

-- The business row a delivery job is about (a purchase, for its receipts), so that a
-- purchase is pending, completed or failed by how far its receipts got.
ALTER TABLE jobs ADD COLUMN subject_id TEXT;
CREATE INDEX jobs_subject ON jobs (subject_id);

-- The live activity feed: signups, payments, invitations, logins, password resets,
-- written in the transaction of what they record. `metadata` is a JSON object of
-- strings; email addresses in it are masked.
CREATE TABLE activity_stream (
    id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    user_id TEXT REFERENCES users(id),
    user_name TEXT NOT NULL,
    description TEXT NOT NULL,
    value DOUBLE PRECISION,
    metadata TEXT NOT NULL,
    request_id TEXT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX activity_stream_recent ON activity_stream (created_at_ms);
CREATE INDEX activity_stream_type ON activity_stream (event_type, created_at_ms);

-- End users' sessions as they are used: one row per session token, touched by its
-- authenticated requests and while its in-app socket is open; removed a day after
-- its last activity.
CREATE TABLE active_sessions (
    session_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    started_at_ms BIGINT NOT NULL,
    last_activity_ms BIGINT NOT NULL,
    page_views BIGINT NOT NULL DEFAULT 0,
    events_count BIGINT NOT NULL DEFAULT 0,
    ip_address TEXT,
    user_agent TEXT,
    country TEXT,
    city TEXT
);
CREATE INDEX active_sessions_activity ON active_sessions (last_activity_ms);

-- The figures over time: one value per metric and bucket (minute, hour, day), the
-- still-filling bucket rewritten until it closes.
CREATE TABLE realtime_metrics (
    metric_name TEXT NOT NULL,
    step TEXT NOT NULL,
    bucket_ms BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (metric_name, step, bucket_ms)
);

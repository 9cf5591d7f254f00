-- Alerts (server/src/alerts): the rules, as operators last saved them; every alert from
-- the moment its condition held (pending) to when it resolved; silences; and the lease
-- that makes one dashboard process of a cluster the one that evaluates.

-- wire::AlertRules as JSON: one row, replaced as a whole by PUT /api/v1/alert-rules.
-- No row: the built-in rules.
CREATE TABLE alert_rules (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    rules TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    rule_id TEXT NOT NULL,
    -- info | warning | error | critical: one level of the rule.
    severity TEXT NOT NULL,
    -- pending | firing | recovering | resolved
    state TEXT NOT NULL,
    signal TEXT NOT NULL,
    message TEXT NOT NULL,
    threshold DOUBLE PRECISION NOT NULL,
    -- The value when it fired (or became pending), and the latest.
    value DOUBLE PRECISION NOT NULL,
    latest_value DOUBLE PRECISION NOT NULL,
    affected_users BIGINT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    fired_at_ms BIGINT,
    -- When the value last came back past `recover` (recovering), and when it resolved.
    recovering_since_ms BIGINT,
    ended_at_ms BIGINT,
    last_notified_at_ms BIGINT,
    acknowledged_by TEXT,
    acknowledged_at_ms BIGINT,
    muted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX alerts_open ON alerts (state, rule_id);
CREATE INDEX alerts_started ON alerts (started_at_ms);

CREATE TABLE alert_silences (
    id TEXT PRIMARY KEY,
    -- NULL: every rule.
    rule_id TEXT,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    until_ms BIGINT NOT NULL
);

-- A named duty one process holds at a time, for as long as it renews it.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);

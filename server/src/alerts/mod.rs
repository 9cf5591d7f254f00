//! Alerts that do not flap: rules over the system's and the business's figures
//! ([`rules`]), evaluated every few seconds by one dashboard process of the cluster (the
//! holder of the `alerts` lease), each level of each rule moved through the state
//! machine of [`machine`], every alert kept in `alerts` from pending to resolved, and
//! people told on transitions only — firing, resolved, and a reminder every
//! `repeatMinutes` while it fires unacknowledged.
//!
//! Told means: `system_alert` on the live stream (and `performance:alert` for the
//! performance signals), the dashboards' toasts; an email through the system's own mail
//! queue to `--alert-email` for `error` and `critical`; and a POST of Slack-compatible
//! JSON to `--alert-webhook` when there is one. A silence tells nobody about the rules
//! it covers, and a firing `critical` level mutes the other levels of its rule; neither
//! stops an alert from firing and resolving, which the list shows.

pub mod machine;
pub mod rules;

use std::{collections::HashMap, sync::Arc, time::Duration};

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use wire::{
    AlertMode, AlertRule, AlertSeverity, AlertSignal, AlertSilence, AlertState, ComponentMetrics, LiveEvent,
    RealtimeAlert, RuleStatus,
};

use machine::{Phase, Step, Timing};

use crate::{
    accounts::new_id,
    now_ms,
    queue::{QueueName, Queues},
    storage::{Database, WriteBatch},
    telemetry::{Telemetry, sampler::Sampler},
};

/// How long one evaluation's lease lasts: three evaluations at the default interval, so
/// a dashboard that dies hands alerting on within 15 s.
const LEASE_FOR: Duration = Duration::from_secs(15);
const LEASE: &str = "alerts";
/// The dead-letter signal's window.
const DEAD_LETTER_WINDOW_MS: i64 = 5 * 60_000;
/// Resolved alerts `GET /api/v1/alerts` lists after the open ones, at most.
pub const MAX_LISTED: u32 = 200;
/// Resolved alerts are kept this long.
const KEEP_RESOLVED_MS: i64 = 30 * 24 * 3_600_000;

/// Where alerts are told, besides the live stream.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    /// `--alert-email`: who gets `error` and `critical` alerts by email.
    pub emails: Vec<String>,
    /// `--alert-webhook`: where every notification is POSTed.
    pub webhook: Option<String>,
}

/// The alert evaluator of a dashboard process.
pub struct Alerting {
    db: Database,
    telemetry: Telemetry,
    sampler: Arc<Sampler>,
    /// This process, as the lease's holder.
    holder: String,
    destinations: Destinations,
    http: reqwest::Client,
    /// Each rule's state as of this process's last evaluation (empty while another
    /// process holds the lease).
    status: std::sync::Mutex<Vec<RuleStatus>>,
}

/// A signal's value at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    Value(f64),
    NoData,
    Failed(String),
}

/// An open alert as `alerts` has it.
#[derive(Debug, Clone)]
struct Open {
    id: String,
    phase: Phase,
    last_notified_ms: Option<i64>,
    acknowledged: bool,
    muted: bool,
}

/// What to tell about an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum News {
    Fired,
    Resolved,
    Reminder,
}

impl Alerting {
    pub fn new(
        db: Database,
        telemetry: Telemetry,
        sampler: Arc<Sampler>,
        holder: String,
        destinations: Destinations,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            telemetry,
            sampler,
            holder,
            destinations,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            status: std::sync::Mutex::default(),
        })
    }

    /// Evaluates every `every` while this process holds the lease, until shutdown.
    pub async fn run(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let lease = tokio::sync::Mutex::new(crate::cluster::lease::Lease::new(
            LEASE,
            self.holder.clone(),
            LEASE_FOR.max(every * 3),
        ));
        crate::every(every, shutdown, || async {
            let held = lease.lock().await.held(&self.db).await;
            match held {
                Ok(true) => {
                    if let Err(error) = self.evaluate(now_ms()).await {
                        tracing::warn!(%error, "alerts could not be evaluated");
                    }
                }
                Ok(false) => self.status.lock().unwrap_or_else(|p| p.into_inner()).clear(),
                Err(error) => tracing::warn!(%error, "the alerts lease could not be read"),
            }
        })
        .await;
        let _ = lease.into_inner().release(&self.db).await;
    }

    /// Each rule's state as of this process's last evaluation.
    pub fn status(&self) -> Vec<RuleStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// One evaluation of every rule at `now_ms`.
    pub async fn evaluate(&self, now_ms: i64) -> Result<(), sqlx::Error> {
        let rules = rules::load(&self.db).await?;
        let readings = self.read(&rules, now_ms).await;
        let affected = match readings.get(&AlertSignal::ActiveUsers) {
            Some(Reading::Value(users)) => *users as u64,
            _ => 0,
        };
        let mut open = open_by_level(&self.db).await?;
        let silences = silences(&self.db, now_ms).await?;
        let mut batch = WriteBatch::default();
        let mut news: Vec<(String, News)> = Vec::new();
        let mut status = Vec::new();
        let evaluated_at = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
        for rule in rules.iter().filter(|rule| rule.enabled) {
            let reading = self.reading(rule, &readings, now_ms).await;
            let value = match &reading {
                Reading::Value(value) => Some(*value),
                _ => None,
            };
            let timing = Timing {
                for_ms: i64::from(rule.for_seconds) * 1_000,
                keep_firing_ms: i64::from(rule.keep_firing_seconds) * 1_000,
            };
            let mut rule_state = match reading {
                Reading::Value(_) => AlertState::Normal,
                Reading::NoData => AlertState::NoData,
                Reading::Failed(_) => AlertState::Error,
            };
            // The critical level first: whether it fires decides whether the others are muted.
            let mut levels = rule.levels.clone();
            levels.sort_by_key(|level| std::cmp::Reverse(level.severity));
            let mut critical_fires = false;
            for level in &levels {
                let key = (rule.id.clone(), level.severity);
                let current = open.remove(&key);
                let muted = critical_fires && level.severity != AlertSeverity::Critical;
                let step = machine::step(
                    current.as_ref().map(|open| open.phase),
                    value,
                    rule.comparison,
                    level,
                    timing,
                    now_ms,
                );
                let shown = value.unwrap_or(0.0);
                if level.severity == AlertSeverity::Critical {
                    critical_fires = matches!(
                        step,
                        Step::Fires(_) | Step::Moves(Phase::Firing { .. } | Phase::Recovering { .. })
                    );
                }
                // An alert of this level opening now, pending or already firing.
                let insert = |batch: &mut WriteBatch, started_ms: i64, fired_ms: Option<i64>| {
                    let opened = Opened {
                        rule,
                        level,
                        value: shown,
                        affected,
                        muted,
                    };
                    opened.insert(batch, started_ms, fired_ms)
                };
                match step {
                    Step::Quiet => {}
                    Step::Opens(Phase::Pending { since_ms }) => {
                        rule_state = worse(rule_state, AlertState::Pending);
                        insert(&mut batch, since_ms, None);
                    }
                    Step::Opens(_) => {}
                    Step::Fires(Phase::Firing { fired_ms }) => {
                        rule_state = worse(rule_state, AlertState::Firing);
                        let id = match &current {
                            Some(open) => {
                                batch
                                    .statement("UPDATE alerts SET state = 'firing', fired_at_ms = ?, value = ?, latest_value = ?, affected_users = ?, muted = ? WHERE id = ?")
                                    .bind(fired_ms)
                                    .bind(shown)
                                    .bind(shown)
                                    .bind(affected as i64)
                                    .bind(i64::from(muted))
                                    .bind(open.id.clone());
                                open.id.clone()
                            }
                            None => insert(&mut batch, fired_ms, Some(fired_ms)),
                        };
                        if !muted && !silenced(&silences, &rule.id) {
                            news.push((id, News::Fired));
                        }
                    }
                    Step::Fires(_) => {}
                    Step::Moves(phase) => {
                        let Some(current) = current else { continue };
                        let (state, recovering_since) = match phase {
                            Phase::Pending { .. } => ("pending", None),
                            Phase::Firing { .. } => ("firing", None),
                            Phase::Recovering { since_ms, .. } => ("recovering", Some(since_ms)),
                        };
                        rule_state = worse(
                            rule_state,
                            match phase {
                                Phase::Pending { .. } => AlertState::Pending,
                                Phase::Firing { .. } => AlertState::Firing,
                                Phase::Recovering { .. } => AlertState::Recovering,
                            },
                        );
                        batch
                            .statement("UPDATE alerts SET state = ?, recovering_since_ms = ?, latest_value = COALESCE(?, latest_value), muted = ? WHERE id = ?")
                            .bind(state)
                            .bind(recovering_since)
                            .bind(value)
                            .bind(i64::from(muted))
                            .bind(current.id.clone());
                        let reminder_due = rule.repeat_minutes > 0
                            && matches!(phase, Phase::Firing { .. })
                            && !current.acknowledged
                            && !muted
                            && current
                                .last_notified_ms
                                .is_some_and(|at| now_ms - at >= i64::from(rule.repeat_minutes) * 60_000);
                        if reminder_due && !silenced(&silences, &rule.id) {
                            news.push((current.id.clone(), News::Reminder));
                        }
                        if current.muted
                            && !muted
                            && matches!(phase, Phase::Firing { .. })
                            && current.last_notified_ms.is_none()
                        {
                            // Unmuted by the critical level resolving: tell of it now.
                            if !silenced(&silences, &rule.id) {
                                news.push((current.id.clone(), News::Fired));
                            }
                        }
                    }
                    Step::Dropped => {
                        if let Some(current) = current {
                            batch.statement("DELETE FROM alerts WHERE id = ?").bind(current.id);
                        }
                    }
                    Step::Resolves => {
                        if let Some(current) = current {
                            batch
                                .statement("UPDATE alerts SET state = 'resolved', ended_at_ms = ?, latest_value = ? WHERE id = ?")
                                .bind(now_ms)
                                .bind(shown)
                                .bind(current.id.clone());
                            if current.last_notified_ms.is_some() && !silenced(&silences, &rule.id) {
                                news.push((current.id, News::Resolved));
                            }
                        }
                    }
                }
            }
            status.push(RuleStatus {
                rule_id: rule.id.clone(),
                state: rule_state,
                value,
                evaluated_at,
            });
        }
        // What is left open belongs to rules removed or disabled: what fired resolves
        // quietly, what never fired is dropped.
        for (_, gone) in open {
            if matches!(gone.phase, Phase::Pending { .. }) {
                batch.statement("DELETE FROM alerts WHERE id = ?").bind(gone.id);
            } else {
                batch
                    .statement("UPDATE alerts SET state = 'resolved', ended_at_ms = ? WHERE id = ?")
                    .bind(now_ms)
                    .bind(gone.id);
            }
        }
        for (id, _) in &news {
            batch
                .statement("UPDATE alerts SET last_notified_at_ms = ? WHERE id = ?")
                .bind(now_ms)
                .bind(id.clone());
        }
        // Most evaluations change nothing: no write transaction for them.
        if batch.statements() > 0 {
            self.db.commit(batch).await?;
        }
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = status;
        for (id, what) in news {
            if let Some(alert) = one(&self.db, &id).await? {
                self.tell(alert, what).await;
            }
        }
        Ok(())
    }

    /// Every signal's value now.
    async fn read(&self, rules: &[AlertRule], now_ms: i64) -> HashMap<AlertSignal, Reading> {
        let sample = self.sampler.current().await;
        let metrics = &sample.metrics;
        let traffic = metrics.requests_per_second > 0.0;
        let mut readings = HashMap::new();
        readings.insert(
            AlertSignal::ErrorRate,
            if traffic {
                Reading::Value(metrics.error_rate * 100.0)
            } else {
                Reading::NoData
            },
        );
        let p99 = sample
            .components
            .iter()
            .filter_map(|component| match component {
                ComponentMetrics::Server(server) if server.requests_per_second > 0.0 => Some(server.latency_p99),
                _ => None,
            })
            .fold(None, |max: Option<f64>, p99| Some(max.map_or(p99, |max| max.max(p99))));
        readings.insert(AlertSignal::P99Latency, p99.map_or(Reading::NoData, Reading::Value));
        readings.insert(
            AlertSignal::RequestsPerSecond,
            Reading::Value(metrics.requests_per_second),
        );
        let smtp = sample.components.iter().find_map(|component| match component {
            ComponentMetrics::Smtp(smtp) => Some(smtp.failure_rate),
            _ => None,
        });
        readings.insert(
            AlertSignal::SmtpFailures,
            match smtp.flatten() {
                Some(rate) => Reading::Value(rate * 100.0),
                None => Reading::NoData,
            },
        );
        let from_db = |result: Result<u64, sqlx::Error>| match result {
            Ok(n) => Reading::Value(n as f64),
            Err(error) => Reading::Failed(error.to_string()),
        };
        let wanted = |signal| rules.iter().any(|rule| rule.enabled && rule.signal == signal);
        if wanted(AlertSignal::QueueDepth) {
            readings.insert(
                AlertSignal::QueueDepth,
                from_db(crate::analytics::figures::queue_depth(&self.db).await),
            );
        }
        if wanted(AlertSignal::DeadLetters) {
            readings.insert(AlertSignal::DeadLetters, from_db(dead_letters(&self.db, now_ms).await));
        }
        readings.insert(
            AlertSignal::ActiveUsers,
            from_db(crate::analytics::figures::active_now(&self.db, now_ms).await),
        );
        readings
    }

    /// `rule`'s value: its signal's, or for an anomaly rule that as a percentage of the
    /// baseline.
    async fn reading(&self, rule: &AlertRule, readings: &HashMap<AlertSignal, Reading>, now_ms: i64) -> Reading {
        let reading = readings.get(&rule.signal).cloned().unwrap_or(Reading::NoData);
        match (rule.mode, reading) {
            (AlertMode::Threshold, reading) => reading,
            (AlertMode::Anomaly, Reading::Value(value)) => match usual_active_users(&self.db, now_ms).await {
                Ok(Some(baseline)) if baseline > 0.0 => Reading::Value(value / baseline * 100.0),
                Ok(_) => Reading::NoData,
                Err(error) => Reading::Failed(error.to_string()),
            },
            (AlertMode::Anomaly, other) => other,
        }
    }

    /// Tells of `alert`: the live stream always, email and webhook as configured.
    async fn tell(&self, alert: RealtimeAlert, what: News) {
        let performance = alert.signal.is_performance();
        let line = match what {
            News::Fired => format!("[{}] {}", alert.severity.name().to_uppercase(), alert.message),
            News::Reminder => format!(
                "[{}] still firing: {}",
                alert.severity.name().to_uppercase(),
                alert.message
            ),
            News::Resolved => format!("[RESOLVED] {}", alert.message),
        };
        tracing::info!(alert = %alert.id, rule = %alert.rule_id, "{line}");
        if matches!(alert.severity, AlertSeverity::Error | AlertSeverity::Critical)
            && !self.destinations.emails.is_empty()
            && let Err(error) = self.email(&alert, &line).await
        {
            tracing::warn!(%error, "the alert email could not be queued");
        }
        if let Some(url) = self.destinations.webhook.clone() {
            let body = serde_json::json!({ "text": format!("Live View: {line}"), "alert": &alert });
            let http = self.http.clone();
            tokio::spawn(async move {
                match http.post(&url).json(&body).send().await {
                    Ok(response) if response.status().is_success() => {}
                    Ok(response) => tracing::warn!(status = %response.status(), "the alert webhook refused the alert"),
                    Err(error) => tracing::warn!(%error, "the alert webhook could not be reached"),
                }
            });
        }
        self.telemetry.event(LiveEvent::SystemAlert(Box::new(alert.clone())));
        if performance {
            self.telemetry.event(LiveEvent::PerformanceAlert(Box::new(alert)));
        }
    }

    /// One email per `--alert-email` address, queued like every other email.
    async fn email(&self, alert: &RealtimeAlert, line: &str) -> Result<(), sqlx::Error> {
        let mut batch = WriteBatch::default();
        let body = format!(
            "{line}\n\nRule: {}\nSeverity: {}\nState: {:?}\nValue: {}\nThreshold: {}\nStarted: {}\nComponent: {}\nActive users: {}\n",
            alert.rule_id,
            alert.severity.name(),
            alert.state,
            alert.signal.format(alert.value),
            alert.signal.format(alert.threshold),
            alert.started_at.to_rfc3339(),
            alert.component,
            alert.affected_users,
        );
        for to in &self.destinations.emails {
            let id = new_id();
            batch
                .statement(
                    "INSERT INTO emails (id, user_id, kind, to_address, subject, body, request_id, created_at_ms) VALUES (?, NULL, 'alert', ?, ?, ?, NULL, ?)",
                )
                .bind(id.clone())
                .bind(to.clone())
                .bind(format!("Live View alert: {line}"))
                .bind(body.clone())
                .bind(now_ms());
            Queues::enqueue(&mut batch, QueueName::Mail, &id, None, None, Duration::ZERO);
        }
        self.db.commit(batch).await
    }
}

/// The more alarming of two rule states (a rule shows its most advanced level).
fn worse(a: AlertState, b: AlertState) -> AlertState {
    let rank = |state: AlertState| match state {
        AlertState::Normal | AlertState::Resolved => 0,
        AlertState::NoData | AlertState::Error => 1,
        AlertState::Pending => 2,
        AlertState::Recovering => 3,
        AlertState::Firing => 4,
    };
    if rank(b) > rank(a) { b } else { a }
}

fn message(rule: &AlertRule, threshold: f64, value: f64) -> String {
    let compared = match rule.comparison {
        wire::AlertComparison::Above => "above",
        wire::AlertComparison::Below => "below",
    };
    match rule.mode {
        AlertMode::Threshold => format!(
            "{}: {} {compared} {}",
            rule.name,
            rule.signal.format(value),
            rule.signal.format(threshold)
        ),
        AlertMode::Anomaly => format!(
            "{}: {value:.0} % of the usual for this hour, {compared} {threshold:.0} %",
            rule.name
        ),
    }
}

/// An alert about to be written.
struct Opened<'a> {
    rule: &'a AlertRule,
    level: &'a wire::AlertLevel,
    value: f64,
    affected: u64,
    muted: bool,
}

impl Opened<'_> {
    /// Adds its row to `batch` (firing when `fired_ms` is given, else pending); its id.
    fn insert(&self, batch: &mut WriteBatch, started_ms: i64, fired_ms: Option<i64>) -> String {
        let id = new_id();
        let state = if fired_ms.is_some() { "firing" } else { "pending" };
        batch
            .statement(
                "INSERT INTO alerts (id, rule_id, severity, state, signal, message, threshold, value, latest_value, affected_users, started_at_ms, fired_at_ms, muted) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id.clone())
            .bind(self.rule.id.clone())
            .bind(self.level.severity.name())
            .bind(state)
            .bind(signal_name(self.rule.signal))
            .bind(message(self.rule, self.level.threshold, self.value))
            .bind(self.level.threshold)
            .bind(self.value)
            .bind(self.value)
            .bind(self.affected as i64)
            .bind(started_ms)
            .bind(fired_ms)
            .bind(i64::from(self.muted));
        id
    }
}

fn signal_name(signal: AlertSignal) -> String {
    serde_json::to_value(signal)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn parse<T: DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
}

fn silenced(silences: &[AlertSilence], rule_id: &str) -> bool {
    silences
        .iter()
        .any(|silence| silence.rule_id.as_deref().is_none_or(|id| id == rule_id))
}

/// Jobs dead-lettered in the last [`DEAD_LETTER_WINDOW_MS`].
async fn dead_letters(db: &Database, now_ms: i64) -> Result<u64, sqlx::Error> {
    let n: i64 = crate::with_connection!(&mut db.read().await?, |c| {
        sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE queue IN ('mail-dlq', 'inapp-dlq') AND state = 'failed' AND updated_at_ms >= $1"
    )
    .bind(now_ms - DEAD_LETTER_WINDOW_MS)
    .fetch_one(c)
    .await
    })?;
    Ok(n.max(0) as u64)
}

/// The usual active users of the hour `at_ms` is in: the mean of the hourly peaks of the
/// same weekday and hour in the four weeks before (those there are); also the
/// autoscaler's prediction.
pub async fn usual_active_users(db: &Database, at_ms: i64) -> Result<Option<f64>, sqlx::Error> {
    let hour = at_ms - at_ms.rem_euclid(3_600_000);
    let week = 7 * 24 * 3_600_000;
    let mean: Option<f64> = crate::with_connection!(&mut db.read().await?, |c| {
        sqlx::query_scalar(
        "SELECT AVG(value) FROM realtime_metrics WHERE metric_name = $1 AND step = 'hour' AND bucket_ms IN ($2, $3, $4, $5)"
    )
    .bind(crate::analytics::figures::ACTIVE_USERS_METRIC)
    .bind(hour - week)
    .bind(hour - 2 * week)
    .bind(hour - 3 * week)
    .bind(hour - 4 * week)
    .fetch_one(c)
    .await
    })?;
    Ok(mean)
}

type AlertRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    f64,
    f64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    i64,
);

const ALERT_COLUMNS: &str = "SELECT id, rule_id, severity, state, signal, message, threshold, latest_value, affected_users, \
     started_at_ms, fired_at_ms, ended_at_ms, acknowledged_by, muted FROM alerts";

fn alert_of(row: AlertRow) -> Option<RealtimeAlert> {
    let (
        id,
        rule_id,
        severity,
        state,
        signal,
        message,
        threshold,
        value,
        affected,
        started,
        fired,
        ended,
        acked,
        muted,
    ) = row;
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    let signal: AlertSignal = parse(&signal)?;
    Some(RealtimeAlert {
        id,
        rule_id,
        severity: parse(&severity)?,
        message,
        affected_users: affected.max(0) as u64,
        auto_resolve: true,
        timestamp: at(fired.unwrap_or(started)),
        state: parse(&state)?,
        started_at: at(started),
        ended_at: ended.map(at),
        signal,
        value,
        threshold,
        component: signal.component().to_string(),
        acknowledged_by: acked,
        muted: muted != 0,
    })
}

fn most_severe_first(alerts: &mut [RealtimeAlert]) {
    alerts.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| b.started_at.cmp(&a.started_at))
    });
}

/// The alerts firing or recovering now, most severe first (the snapshot's `alerts`).
pub async fn open(db: &Database) -> Result<Vec<RealtimeAlert>, sqlx::Error> {
    let rows: Vec<AlertRow> = crate::with_connection!(&mut db.read().await?, |c| sqlx::query_as(sqlx::AssertSqlSafe(
        format!("{ALERT_COLUMNS} WHERE state IN ('firing', 'recovering')")
    ))
    .fetch_all(c)
    .await)?;
    let mut alerts: Vec<_> = rows.into_iter().filter_map(alert_of).collect();
    most_severe_first(&mut alerts);
    Ok(alerts)
}

/// Open alerts (pending included), most severe first, then up to `limit` resolved ones,
/// newest first.
pub async fn list(db: &Database, limit: u32) -> Result<Vec<RealtimeAlert>, sqlx::Error> {
    let (open_rows, resolved): (Vec<AlertRow>, Vec<AlertRow>) = crate::with_connection!(&mut db.read().await?, |c| {
        let open: Vec<AlertRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{ALERT_COLUMNS} WHERE state <> 'resolved'"
        )))
        .fetch_all(&mut *c)
        .await?;
        let resolved: Vec<AlertRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{ALERT_COLUMNS} WHERE state = 'resolved' ORDER BY ended_at_ms DESC LIMIT $1"
        )))
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?;
        Ok::<_, sqlx::Error>((open, resolved))
    })?;
    let mut alerts: Vec<_> = open_rows.into_iter().filter_map(alert_of).collect();
    most_severe_first(&mut alerts);
    alerts.extend(resolved.into_iter().filter_map(alert_of));
    Ok(alerts)
}

async fn one(db: &Database, id: &str) -> Result<Option<RealtimeAlert>, sqlx::Error> {
    let row: Option<AlertRow> = crate::with_connection!(&mut db.read().await?, |c| sqlx::query_as(
        sqlx::AssertSqlSafe(format!("{ALERT_COLUMNS} WHERE id = $1"))
    )
    .bind(id)
    .fetch_optional(c)
    .await)?;
    Ok(row.and_then(alert_of))
}

/// The open alerts by rule and level.
async fn open_by_level(db: &Database) -> Result<HashMap<(String, AlertSeverity), Open>, sqlx::Error> {
    type Row = (
        String,
        String,
        String,
        String,
        i64,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
        i64,
    );
    let rows: Vec<Row> = crate::with_connection!(&mut db.read().await?, |c| {
        sqlx::query_as(
        "SELECT id, rule_id, severity, state, started_at_ms, fired_at_ms, recovering_since_ms, last_notified_at_ms, \
         acknowledged_by, muted FROM alerts WHERE state <> 'resolved'"
    )
    .fetch_all(c)
    .await
    })?;
    let mut open = HashMap::new();
    for (id, rule_id, severity, state, started, fired, recovering, notified, acked, muted) in rows {
        let Some(severity) = parse::<AlertSeverity>(&severity) else {
            continue;
        };
        let fired_ms = fired.unwrap_or(started);
        let phase = match state.as_str() {
            "pending" => Phase::Pending { since_ms: started },
            "firing" => Phase::Firing { fired_ms },
            "recovering" => Phase::Recovering {
                fired_ms,
                since_ms: recovering.unwrap_or(fired_ms),
            },
            _ => continue,
        };
        open.insert(
            (rule_id, severity),
            Open {
                id,
                phase,
                last_notified_ms: notified,
                acknowledged: acked.is_some(),
                muted: muted != 0,
            },
        );
    }
    Ok(open)
}

/// What acknowledging found.
#[derive(Debug, PartialEq, Eq)]
pub enum Acknowledged {
    Now,
    NoSuchAlert,
    AlreadyResolved,
}

/// Acknowledges an open alert as `by`: no reminders from now on; it resolves as any
/// other.
pub async fn acknowledge(db: &Database, id: &str, by: &str) -> Result<Acknowledged, sqlx::Error> {
    let done = crate::with_connection!(&mut db.writing().await?, |c| sqlx::query(
        "UPDATE alerts SET acknowledged_by = $1, acknowledged_at_ms = $2 WHERE id = $3 AND state <> 'resolved'"
    )
    .bind(by)
    .bind(now_ms())
    .bind(id)
    .execute(c)
    .await
    .map(|done| done.rows_affected()))?;
    if done == 1 {
        return Ok(Acknowledged::Now);
    }
    Ok(match one(db, id).await? {
        Some(_) => Acknowledged::AlreadyResolved,
        None => Acknowledged::NoSuchAlert,
    })
}

/// Removes alerts resolved more than [`KEEP_RESOLVED_MS`] ago (with the other old rows,
/// [`crate::analytics::figures::keep_clean`]); how many.
pub async fn clean_up(db: &Database, now_ms: i64) -> Result<u64, sqlx::Error> {
    crate::with_connection!(&mut db.writing().await?, |c| sqlx::query(
        "DELETE FROM alerts WHERE state = 'resolved' AND ended_at_ms < $1"
    )
    .bind(now_ms - KEEP_RESOLVED_MS)
    .execute(c)
    .await
    .map(|done| done.rows_affected()))
}

/// The silences in force at `now_ms`.
pub async fn silences(db: &Database, now_ms: i64) -> Result<Vec<AlertSilence>, sqlx::Error> {
    let rows: Vec<(String, Option<String>, String, String, i64)> =
        crate::with_connection!(&mut db.read().await?, |c| sqlx::query_as(
            "SELECT id, rule_id, reason, created_by, until_ms FROM alert_silences WHERE until_ms > $1 ORDER BY until_ms"
        )
        .bind(now_ms)
        .fetch_all(c)
        .await)?;
    Ok(rows
        .into_iter()
        .map(|(id, rule_id, reason, created_by, until)| AlertSilence {
            id,
            rule_id,
            reason,
            created_by,
            until: chrono::DateTime::from_timestamp_millis(until).unwrap_or_default(),
        })
        .collect())
}

/// Adds a silence; answers it.
pub async fn silence(
    db: &Database,
    rule_id: Option<String>,
    minutes: u32,
    reason: String,
    by: &str,
) -> Result<AlertSilence, sqlx::Error> {
    let now = now_ms();
    let silence = AlertSilence {
        id: new_id(),
        rule_id,
        reason,
        created_by: by.to_string(),
        until: chrono::DateTime::from_timestamp_millis(now + i64::from(minutes) * 60_000).unwrap_or_default(),
    };
    crate::with_connection!(&mut db.writing().await?, |c| {
        sqlx::query(
        "INSERT INTO alert_silences (id, rule_id, reason, created_by, created_at_ms, until_ms) VALUES ($1, $2, $3, $4, $5, $6)"
    )
    .bind(&silence.id)
    .bind(&silence.rule_id)
    .bind(&silence.reason)
    .bind(&silence.created_by)
    .bind(now)
    .bind(silence.until.timestamp_millis())
    .execute(c)
    .await
    .map(drop)
    })?;
    Ok(silence)
}

/// Ends a silence now; whether there was one in force.
pub async fn end_silence(db: &Database, id: &str) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    crate::with_connection!(&mut db.writing().await?, |c| sqlx::query(
        "UPDATE alert_silences SET until_ms = $1 WHERE id = $2 AND until_ms > $1"
    )
    .bind(now)
    .bind(id)
    .execute(c)
    .await
    .map(|done| done.rows_affected() == 1))
}

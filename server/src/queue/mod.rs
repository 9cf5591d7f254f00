//! Durable queues in the database. A job lives in one queue at a time and moves between
//! them: `mail` → `mail-retry-1` (5 min) → `mail-retry-2` (30 min) → `mail-dlq`, and
//! `inapp` → `inapp-retry` (1 min) → `inapp-dlq`. Workers claim jobs with a lease; a job
//! whose worker died is claimed again when its lease runs out (at-least-once), and the
//! deliveries themselves are idempotent, keyed by the notification id.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use serde::Serialize;
use sqlx::{Sqlite, Transaction};
use tokio::sync::Notify;

use wire::{LiveEvent, QueueJobFailed, QueueJobRetry, SystemStage};

use crate::{
    accounts::new_id,
    now_ms,
    storage::{Database, RETENTION_EVERY, WriteBatch},
    telemetry::Telemetry,
};

/// The delivery channel a job belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    Email,
    InApp,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::InApp => "in-app",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum QueueName {
    #[serde(rename = "mail")]
    Mail,
    #[serde(rename = "mail-retry-1")]
    MailRetry1,
    #[serde(rename = "mail-retry-2")]
    MailRetry2,
    #[serde(rename = "mail-dlq")]
    MailDlq,
    #[serde(rename = "inapp")]
    Inapp,
    #[serde(rename = "inapp-retry")]
    InappRetry,
    #[serde(rename = "inapp-dlq")]
    InappDlq,
}

impl QueueName {
    pub const ALL: [Self; 7] = [
        Self::Mail,
        Self::MailRetry1,
        Self::MailRetry2,
        Self::MailDlq,
        Self::Inapp,
        Self::InappRetry,
        Self::InappDlq,
    ];
    /// The queues a mail worker takes jobs from.
    pub const MAIL_WORK: [Self; 3] = [Self::Mail, Self::MailRetry1, Self::MailRetry2];
    /// The queues an in-app worker takes jobs from.
    pub const INAPP_WORK: [Self; 2] = [Self::Inapp, Self::InappRetry];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mail => "mail",
            Self::MailRetry1 => "mail-retry-1",
            Self::MailRetry2 => "mail-retry-2",
            Self::MailDlq => "mail-dlq",
            Self::Inapp => "inapp",
            Self::InappRetry => "inapp-retry",
            Self::InappDlq => "inapp-dlq",
        }
    }

    pub fn channel(self) -> Channel {
        match self {
            Self::Mail | Self::MailRetry1 | Self::MailRetry2 | Self::MailDlq => Channel::Email,
            Self::Inapp | Self::InappRetry | Self::InappDlq => Channel::InApp,
        }
    }

    /// Where a job goes after a failure that may pass, and how long it waits there
    /// (before `--time-scale`); `None` when the tiers are exhausted.
    pub fn next_tier(self) -> Option<(Self, Duration)> {
        match self {
            Self::Mail => Some((Self::MailRetry1, Duration::from_secs(5 * 60))),
            Self::MailRetry1 => Some((Self::MailRetry2, Duration::from_secs(30 * 60))),
            Self::Inapp => Some((Self::InappRetry, Duration::from_secs(60))),
            Self::MailRetry2 | Self::MailDlq | Self::InappRetry | Self::InappDlq => None,
        }
    }

    pub fn dead_letter(self) -> Self {
        match self.channel() {
            Channel::Email => Self::MailDlq,
            Channel::InApp => Self::InappDlq,
        }
    }

    /// Where a job requeued from a dead-letter queue starts again.
    pub fn first(self) -> Self {
        match self.channel() {
            Channel::Email => Self::Mail,
            Channel::InApp => Self::Inapp,
        }
    }

    pub fn is_dead_letter(self) -> bool {
        matches!(self, Self::MailDlq | Self::InappDlq)
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QueueName {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|queue| queue.as_str() == name)
            .ok_or_else(|| format!("no queue named {name:?}"))
    }
}

/// Stored as its name; a row naming no queue is an error when read, never taken for
/// another queue.
impl<DB: sqlx::Database> sqlx::Type<DB> for QueueName
where
    str: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <str as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <str as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for QueueName
where
    &'r str: sqlx::Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let name = <&'r str as sqlx::Decode<'r, DB>>::decode(value)?;
        Ok(name.parse::<Self>()?)
    }
}

/// One claimed job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: String,
    pub queue: QueueName,
    pub target_id: String,
    pub request_id: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// When the job became due: how long it waited is pickup time minus this.
    pub run_at_ms: i64,
    pub created_at_ms: i64,
}

impl Job {
    /// Since when this pickup has been waiting for a worker: a first attempt since the
    /// job was added (an injected queueing hold included, so it shows in the pickup
    /// stage's duration), a retry or a requeued job since it became due (a retry tier's
    /// wait is its own stage, `retry-scheduled`). A first attempt due more than the
    /// longest injectable hold after its creation was requeued: since it became due.
    pub fn waiting_since_ms(&self) -> i64 {
        let held = self.run_at_ms - self.created_at_ms;
        if self.attempts <= 1 && (0..=crate::controls::MAX_DELAY_MS as i64).contains(&held) {
            self.created_at_ms
        } else {
            self.run_at_ms
        }
    }
}

/// A job as the queue endpoints list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub id: String,
    pub queue: String,
    pub state: String,
    /// The notification or email id: the delivery's idempotency key.
    pub target_id: String,
    pub request_id: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub run_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What happened to a job that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Retried { queue: QueueName, due_at_ms: i64 },
    DeadLettered { queue: QueueName },
}

/// Counts for one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueCounts {
    pub name: String,
    pub waiting: u64,
    pub active: u64,
    pub completed: u64,
    pub failed: u64,
    pub delayed: u64,
    pub paused: bool,
}

/// The queues, with wake-ups so idle workers start at once when work arrives.
pub struct Queues {
    db: Database,
    time_scale: f64,
    wake_mail: Notify,
    wake_inapp: Notify,
    telemetry: Telemetry,
}

impl Queues {
    pub fn new(db: Database, time_scale: f64) -> Arc<Self> {
        Self::with_telemetry(db, time_scale, Telemetry::disabled())
    }

    /// Queues whose workers, retries and dead letters are recorded in `telemetry`.
    pub fn with_telemetry(db: Database, time_scale: f64, telemetry: Telemetry) -> Arc<Self> {
        Arc::new(Self {
            db,
            telemetry,
            time_scale,
            wake_mail: Notify::new(),
            wake_inapp: Notify::new(),
        })
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Scales a real delay by `--time-scale` (0.01 turns 5 minutes into 3 seconds).
    pub fn scaled(&self, delay: Duration) -> Duration {
        delay.mul_f64(self.time_scale)
    }

    /// Adds a job to the caller's batch, which commits with the business rows (the
    /// outbox): the job exists exactly when they do. Returns the job's id.
    /// `hold` keeps the job waiting that long before it is due (the live view's
    /// injected queueing delay; zero otherwise).
    pub fn enqueue(
        batch: &mut WriteBatch,
        queue: QueueName,
        target_id: &str,
        request_id: Option<&str>,
        hold: Duration,
    ) -> String {
        let id = new_id();
        let now = now_ms();
        let due = now + hold.as_millis() as i64;
        batch
            .statement(
                "INSERT INTO jobs (id, queue, channel, target_id, request_id, state, attempts, run_at_ms, created_at_ms, updated_at_ms) \
                 VALUES (?, ?, ?, ?, ?, 'waiting', 0, ?, ?, ?)",
            )
            .bind(id.clone())
            .bind(queue.as_str())
            .bind(queue.channel().as_str())
            .bind(target_id.to_string())
            .bind(request_id.map(str::to_string))
            .bind(due)
            .bind(now)
            .bind(now);
        id
    }

    /// Wakes one idle worker of a channel after a commit added work for it (or, if none
    /// is idle, the next one to look). Waking them all made every idle worker run a
    /// claim for the same few jobs, and all but one claimed nothing: at 1,000
    /// purchases/s most claims were empty. A worker that claims a full batch wakes the
    /// next one itself ([`crate::workers::next_jobs`]), so a backlog still spreads.
    pub fn wake(&self, channel: Channel) {
        match channel {
            Channel::Email => self.wake_mail.notify_one(),
            Channel::InApp => self.wake_inapp.notify_one(),
        }
    }

    /// Resolves when work may have arrived for a channel.
    pub async fn woken(&self, channel: Channel) {
        match channel {
            Channel::Email => self.wake_mail.notified().await,
            Channel::InApp => self.wake_inapp.notified().await,
        }
    }

    /// Leases the next due job from `queues` (skipping paused ones) to `worker` for
    /// `lease`. A job whose lease ran out counts as due: its worker died.
    pub async fn claim(&self, queues: &[QueueName], worker: &str, lease: Duration) -> Result<Option<Job>, sqlx::Error> {
        Ok(self.claim_batch(queues, worker, lease, 1).await?.pop())
    }

    /// Leases up to `limit` due jobs at once, oldest first: one statement instead of one
    /// per job.
    pub async fn claim_batch(
        &self,
        queues: &[QueueName],
        worker: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Job>, sqlx::Error> {
        let now = now_ms();
        let names: Vec<&str> = queues.iter().map(|queue| queue.as_str()).collect();
        // Two index range scans on (queue, state, run_at_ms): due waiting or delayed
        // jobs, and expired leases. One condition with OR would make SQLite walk every
        // job of the queue, completed ones included (tens of thousands under load), on
        // every claim.
        let pending = format!(
            "SELECT id, run_at_ms FROM jobs WHERE queue IN ({names}) AND state IN ('waiting', 'delayed') AND run_at_ms <= ? \
                AND queue NOT IN (SELECT queue FROM queue_controls WHERE paused = 1) \
             UNION ALL \
             SELECT id, run_at_ms FROM jobs WHERE queue IN ({names}) AND state = 'active' AND lease_until_ms < ? \
                AND queue NOT IN (SELECT queue FROM queue_controls WHERE paused = 1)",
            names = placeholders(names.len())
        );
        // The limit is written into the text, not bound: SQLite (3.51) plans with a
        // bound LIMIT's value, so rebinding it expires the statement and every claim
        // would be compiled again.
        let sql = format!(
            "UPDATE jobs SET state = 'active', lease_owner = ?, lease_until_ms = ?, attempts = attempts + 1, updated_at_ms = ? \
             WHERE id IN (SELECT id FROM ({pending}) ORDER BY run_at_ms LIMIT {limit}) \
             RETURNING id, queue, target_id, request_id, attempts, last_error, run_at_ms, created_at_ms"
        );
        // Only `?` placeholders and the integer limit are formatted in; every value is bound.
        let mut query = sqlx::query_as::<_, Job>(sqlx::AssertSqlSafe(sql))
            .bind(worker)
            .bind(now + lease.as_millis() as i64)
            .bind(now);
        for name in &names {
            query = query.bind(*name);
        }
        query = query.bind(now);
        for name in &names {
            query = query.bind(*name);
        }
        let mut jobs = query.bind(now).fetch_all(&mut *self.db.writing().await?).await?;
        // RETURNING gives no order; deliver oldest first (ids are time-ordered UUIDv7).
        jobs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(jobs)
    }

    /// Deletes completed jobs last touched more than `keep` ago; answers how many. Their
    /// notifications and emails stay: only the finished bookkeeping goes.
    pub async fn prune_completed(&self, keep: Duration) -> Result<u64, sqlx::Error> {
        let before = now_ms() - keep.as_millis() as i64;
        // The table is in insertion order, so the oldest completed jobs are found first.
        self.db
            .delete_in_chunks(|| {
                sqlx::query(
                    "DELETE FROM jobs WHERE id IN \
                     (SELECT id FROM jobs WHERE state = 'completed' AND updated_at_ms < ? LIMIT 1000)",
                )
                .bind(before)
            })
            .await
    }

    /// Prunes completed jobs every [`RETENTION_EVERY`] until shutdown, so the job table holds the
    /// work in progress and the last `keep` of history, not every job ever run.
    pub async fn run_retention(self: Arc<Self>, keep: Duration, shutdown: tokio_util::sync::CancellationToken) {
        crate::every(RETENTION_EVERY, shutdown, || async {
            match self.prune_completed(keep).await {
                Ok(0) => {}
                Ok(pruned) => tracing::debug!(pruned, "completed jobs pruned"),
                Err(error) => tracing::warn!(%error, "could not prune completed jobs"),
            }
        })
        .await;
    }

    /// Releases every lease at start. With SQLite one process owns the database, so a
    /// job still `active` belonged to a worker of a previous run that died: it is due
    /// now, not when its lease would have run out. Returns how many were released.
    pub async fn release_abandoned(&self) -> Result<u64, sqlx::Error> {
        sqlx::query("UPDATE jobs SET state = 'waiting', lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = ? WHERE state = 'active'")
            .bind(now_ms())
            .execute(&mut *self.db.writing().await?)
            .await
            .map(|done| done.rows_affected())
    }

    /// Marks a job done, inside the transaction that records the delivery, so "sent"
    /// and "completed" can never disagree.
    pub async fn complete(tx: &mut Transaction<'_, Sqlite>, job_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE jobs SET state = 'completed', lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = ? WHERE id = ?")
            .bind(now_ms())
            .bind(job_id)
            .execute(&mut **tx)
            .await
            .map(drop)
    }

    /// Marks several jobs done in one statement, inside the caller's transaction.
    pub fn complete_all(batch: &mut WriteBatch, job_ids: &[&str]) {
        if job_ids.is_empty() {
            return;
        }
        let sql = format!(
            "UPDATE jobs SET state = 'completed', lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = ? WHERE id IN ({})",
            placeholders(job_ids.len())
        );
        batch.statement_owned(sql).bind(now_ms());
        for id in job_ids {
            batch.bind(*id);
        }
    }

    /// A failure that may pass: the job moves to the next retry tier, or to the
    /// dead-letter queue when none is left.
    pub async fn retry_later(&self, job: &Job, reason: &str) -> Result<Failure, sqlx::Error> {
        match job.queue.next_tier() {
            Some((queue, delay)) => {
                let due_at_ms = now_ms() + self.scaled(delay).as_millis() as i64;
                self.move_job(job, queue, "delayed", due_at_ms, reason).await?;
                self.record_failure(job, reason, queue, Some(due_at_ms));
                Ok(Failure::Retried { queue, due_at_ms })
            }
            None => self.dead_letter(job, reason).await,
        }
    }

    /// A failure that will not pass: the job moves to its dead-letter queue.
    pub async fn dead_letter(&self, job: &Job, reason: &str) -> Result<Failure, sqlx::Error> {
        let queue = job.queue.dead_letter();
        self.move_job(job, queue, "failed", now_ms(), reason).await?;
        self.record_failure(job, reason, queue, None);
        Ok(Failure::DeadLettered { queue })
    }

    /// The journey's retry or dead-letter stage and the queue event for the live view.
    fn record_failure(&self, job: &Job, reason: &str, moved_to: QueueName, due_at_ms: Option<i64>) {
        let request_id = job.request_id.clone().unwrap_or_default();
        let attempt = u32::try_from(job.attempts).unwrap_or(u32::MAX);
        let due_at = due_at_ms.and_then(chrono::DateTime::from_timestamp_millis);
        let stage = match due_at {
            Some(due_at) => self
                .telemetry
                .stage(&request_id, SystemStage::RetryScheduled, "queue-manager")
                .meta("tier", moved_to.as_str())
                .meta("dueAt", due_at.to_rfc3339()),
            None => self
                .telemetry
                .stage(&request_id, SystemStage::DeadLetter, "queue-manager")
                .meta("queue", moved_to.as_str()),
        };
        stage
            .meta("jobId", job.id.as_str())
            .meta("attempt", attempt)
            .meta("reason", reason)
            .done();
        let request_id = job.request_id.clone();
        self.telemetry.event(match due_at {
            Some(due_at) => LiveEvent::QueueJobRetry(QueueJobRetry {
                queue: job.queue.to_string(),
                next_queue: moved_to.as_str().to_string(),
                job_id: job.id.clone(),
                request_id,
                attempt,
                due_at,
                reason: reason.to_string(),
            }),
            None => LiveEvent::QueueJobFailed(QueueJobFailed {
                queue: job.queue.to_string(),
                job_id: job.id.clone(),
                request_id,
                attempt,
                error: reason.to_string(),
                dead_lettered: true,
            }),
        });
    }

    async fn move_job(
        &self,
        job: &Job,
        queue: QueueName,
        state: &str,
        run_at_ms: i64,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE jobs SET queue = ?, state = ?, run_at_ms = ?, last_error = ?, lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = ? \
             WHERE id = ?",
        )
        .bind(queue.as_str())
        .bind(state)
        .bind(run_at_ms)
        .bind(reason)
        .bind(now_ms())
        .bind(&job.id)
        .execute(&mut *self.db.writing().await?)
        .await
        .map(drop)
    }

    pub async fn set_paused(&self, queue: QueueName, paused: bool) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO queue_controls (queue, paused) VALUES (?, ?) ON CONFLICT (queue) DO UPDATE SET paused = excluded.paused",
        )
        .bind(queue.as_str())
        .bind(i64::from(paused))
        .execute(&mut *self.db.writing().await?)
        .await?;
        if !paused {
            self.wake(queue.channel());
        }
        Ok(())
    }

    /// Moves dead-lettered jobs back to the start of their channel: one job by id, or
    /// every job whose last error contains `error_contains`. Answers how many moved.
    pub async fn requeue(
        &self,
        dlq: QueueName,
        job_id: Option<&str>,
        error_contains: Option<&str>,
    ) -> Result<u64, sqlx::Error> {
        let pattern = like_pattern(error_contains);
        let moved = sqlx::query(
            "UPDATE jobs SET queue = ?, state = 'waiting', attempts = 0, run_at_ms = ?, updated_at_ms = ? \
             WHERE queue = ? AND state = 'failed' AND (? IS NULL OR id = ?) AND (? IS NULL OR last_error LIKE ? ESCAPE '\\')",
        )
        .bind(dlq.first().as_str())
        .bind(now_ms())
        .bind(now_ms())
        .bind(dlq.as_str())
        .bind(job_id)
        .bind(job_id)
        .bind(&pattern)
        .bind(&pattern)
        .execute(&mut *self.db.writing().await?)
        .await?
        .rows_affected();
        if moved > 0 {
            self.wake(dlq.channel());
        }
        Ok(moved)
    }

    /// The newest jobs of a queue whose last error contains `error_contains` (all when
    /// `None`), and how many match in all: the preview of what a requeue would move.
    pub async fn list(
        &self,
        queue: QueueName,
        error_contains: Option<&str>,
        limit: u32,
    ) -> Result<(i64, Vec<JobView>), sqlx::Error> {
        let pattern = like_pattern(error_contains);
        let filter = "WHERE queue = ? AND (? IS NULL OR last_error LIKE ? ESCAPE '\\')";
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM jobs {filter}")))
            .bind(queue.as_str())
            .bind(&pattern)
            .bind(&pattern)
            .fetch_one(self.db.reads())
            .await?;
        let jobs = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, queue, state, target_id, request_id, attempts, last_error, run_at_ms, updated_at_ms FROM jobs {filter} \
             ORDER BY updated_at_ms DESC, id DESC LIMIT ?"
        )))
        .bind(queue.as_str())
        .bind(&pattern)
        .bind(&pattern)
        .bind(i64::from(limit))
        .fetch_all(self.db.reads())
        .await?;
        Ok((total, jobs))
    }

    /// Counts per queue and state, every queue listed even when empty.
    pub async fn counts(&self) -> Result<Vec<QueueCounts>, sqlx::Error> {
        let now = now_ms();
        let rows: Vec<(String, String, bool, i64)> = sqlx::query_as(
            "SELECT queue, state, (state = 'delayed' AND run_at_ms > ?) AS not_due, COUNT(*) FROM jobs GROUP BY queue, state, not_due",
        )
        .bind(now)
        .fetch_all(self.db.reads())
        .await?;
        let paused: Vec<(String,)> = sqlx::query_as("SELECT queue FROM queue_controls WHERE paused = 1")
            .fetch_all(self.db.reads())
            .await?;
        let mut counts: Vec<QueueCounts> = QueueName::ALL
            .iter()
            .map(|queue| QueueCounts {
                name: queue.as_str().to_string(),
                paused: paused.iter().any(|(name,)| name == queue.as_str()),
                ..QueueCounts::default()
            })
            .collect();
        for (queue, state, not_due, count) in rows {
            let Some(entry) = counts.iter_mut().find(|entry| entry.name == queue) else {
                continue;
            };
            let count = count as u64;
            match (state.as_str(), not_due) {
                ("delayed", true) => entry.delayed += count,
                ("waiting" | "delayed", _) => entry.waiting += count,
                ("active", _) => entry.active += count,
                ("completed", _) => entry.completed += count,
                ("failed", _) => entry.failed += count,
                _ => {}
            }
        }
        Ok(counts)
    }
}

/// A `LIKE` pattern matching text that contains `needle` literally.
fn like_pattern(needle: Option<&str>) -> Option<String> {
    needle.map(|text| {
        format!(
            "%{}%",
            text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
        )
    })
}

/// `?, ?, ?` for an `IN (...)` list of `count` bound values.
pub fn placeholders(count: usize) -> String {
    vec!["?"; count].join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn queues() -> (tempfile::TempDir, Database, Arc<Queues>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = crate::storage::resolve_url(dir.path(), None).expect("url");
        let db = Database::open(&url).await.expect("opens");
        let queues = Queues::new(db.clone(), 0.001);
        (dir, db, queues)
    }

    async fn add(db: &Database, queue: QueueName, target: &str) -> String {
        let mut batch = WriteBatch::default();
        let id = Queues::enqueue(&mut batch, queue, target, Some("req-1"), Duration::ZERO);
        let mut tx = db.begin_write().await.expect("tx");
        batch.execute(&mut tx).await.expect("enqueued");
        tx.commit().await.expect("commit");
        id
    }

    const LEASE: Duration = Duration::from_secs(30);

    #[test]
    fn tiers_follow_the_design() {
        assert_eq!(
            QueueName::Mail.next_tier(),
            Some((QueueName::MailRetry1, Duration::from_secs(300)))
        );
        assert_eq!(
            QueueName::MailRetry1.next_tier(),
            Some((QueueName::MailRetry2, Duration::from_secs(1800)))
        );
        assert_eq!(QueueName::MailRetry2.next_tier(), None);
        assert_eq!(
            QueueName::Inapp.next_tier(),
            Some((QueueName::InappRetry, Duration::from_secs(60)))
        );
        assert_eq!(QueueName::InappRetry.next_tier(), None);
        for queue in QueueName::ALL {
            assert_eq!(queue.as_str().parse::<QueueName>(), Ok(queue));
        }
    }

    #[tokio::test]
    async fn a_claimed_job_is_not_claimed_twice_until_its_lease_runs_out() {
        let (_dir, db, queues) = queues().await;
        let id = add(&db, QueueName::Mail, "email-1").await;
        let job = queues
            .claim(&QueueName::MAIL_WORK, "w1", LEASE)
            .await
            .expect("claims")
            .expect("a job");
        assert_eq!((job.id.as_str(), job.attempts), (id.as_str(), 1));
        assert!(
            queues
                .claim(&QueueName::MAIL_WORK, "w2", LEASE)
                .await
                .expect("claims")
                .is_none()
        );

        // w1 dies: with a lease that has already run out, w2 gets the job again.
        let again = queues.claim(&QueueName::INAPP_WORK, "w2", LEASE).await.expect("claims");
        assert!(again.is_none(), "other channels' workers never see it");
        sqlx::query("UPDATE jobs SET lease_until_ms = 0")
            .execute(&db.pool)
            .await
            .expect("expire");
        let reclaimed = queues
            .claim(&QueueName::MAIL_WORK, "w2", LEASE)
            .await
            .expect("claims")
            .expect("reclaimed");
        assert_eq!((reclaimed.id, reclaimed.attempts), (id, 2));
    }

    #[tokio::test]
    async fn failures_walk_the_tiers_then_dead_letter() {
        let (_dir, db, queues) = queues().await;
        add(&db, QueueName::Mail, "email-1").await;
        let mut path = Vec::new();
        loop {
            let job = loop {
                // Delays are scaled by 0.001: 5 minutes is 300 ms.
                if let Some(job) = queues.claim(&QueueName::MAIL_WORK, "w", LEASE).await.expect("claims") {
                    break job;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            match queues.retry_later(&job, "451 try later").await.expect("moves") {
                Failure::Retried { queue, .. } => path.push(queue),
                Failure::DeadLettered { queue } => {
                    path.push(queue);
                    break;
                }
            }
        }
        assert_eq!(path, [QueueName::MailRetry1, QueueName::MailRetry2, QueueName::MailDlq]);
        let counts = queues.counts().await.expect("counts");
        assert_eq!(counts.iter().find(|c| c.name == "mail-dlq").expect("dlq").failed, 1);
    }

    #[tokio::test]
    async fn only_completed_jobs_older_than_the_window_are_pruned() {
        let (_dir, db, queues) = queues().await;
        for target in ["done-long-ago", "done-just-now", "still-waiting"] {
            add(&db, QueueName::Mail, target).await;
        }
        sqlx::query("UPDATE jobs SET state = 'completed', updated_at_ms = 0 WHERE target_id = 'done-long-ago'")
            .execute(&db.pool)
            .await
            .expect("age one");
        sqlx::query("UPDATE jobs SET state = 'completed' WHERE target_id = 'done-just-now'")
            .execute(&db.pool)
            .await
            .expect("complete one");
        assert_eq!(
            queues.prune_completed(Duration::from_secs(3600)).await.expect("prunes"),
            1
        );
        let left: Vec<(String,)> = sqlx::query_as("SELECT target_id FROM jobs ORDER BY target_id")
            .fetch_all(&db.pool)
            .await
            .expect("rows");
        assert_eq!(left, [("done-just-now".to_string(),), ("still-waiting".to_string(),)]);
    }

    #[tokio::test]
    async fn paused_queues_give_no_work_and_requeue_moves_matching_jobs() {
        let (_dir, db, queues) = queues().await;
        for target in ["a", "b", "c"] {
            add(&db, QueueName::Inapp, target).await;
        }
        queues.set_paused(QueueName::Inapp, true).await.expect("pauses");
        assert!(
            queues
                .claim(&QueueName::INAPP_WORK, "w", LEASE)
                .await
                .expect("claims")
                .is_none()
        );
        assert!(queues.counts().await.expect("counts")[4].paused);
        queues.set_paused(QueueName::Inapp, false).await.expect("resumes");

        for reason in ["no ack", "no ack", "user gone"] {
            let job = queues
                .claim(&QueueName::INAPP_WORK, "w", LEASE)
                .await
                .expect("claims")
                .expect("job");
            queues.dead_letter(&job, reason).await.expect("dead-letters");
        }
        assert_eq!(
            queues
                .requeue(QueueName::InappDlq, None, Some("no ack"))
                .await
                .expect("requeues"),
            2
        );
        assert_eq!(
            queues
                .requeue(QueueName::InappDlq, Some("nope"), None)
                .await
                .expect("requeues"),
            0
        );
        let counts = queues.counts().await.expect("counts");
        assert_eq!((counts[4].waiting, counts[6].failed), (2, 1));
    }
}

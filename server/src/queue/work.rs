//! What workers do with jobs: claim them under a lease, complete them with the
//! delivery they record, and move them to the next retry tier or the dead-letter queue.

use std::time::Duration;

use wire::{LiveEvent, QueueJobFailed, QueueJobRetry, SystemStage};

use super::{Failure, Job, QueueName, Queues, placeholders};
use crate::{
    now_ms,
    storage::{Connection, WriteBatch},
};

/// What a claim answers with: a [`Job`]'s columns.
const JOB_COLUMNS: &str = "id, queue, target_id, request_id, attempts, last_error, run_at_ms, created_at_ms";

/// `?4, ?5, …`: `count` numbered placeholders from `first` (SQLite reads `?N` as
/// parameter N, so one bound value can be used at several places).
fn numbered_from(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("?{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Queues {
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
        let lease_until = now + lease.as_millis() as i64;
        let owner = crate::cluster::registry::lease_owner(&self.process, worker);
        let names: Vec<&str> = queues.iter().map(|queue| queue.as_str()).collect();
        let mut writing = self.db.writing().await?;
        let mut jobs: Vec<Job> = match crate::storage::Connect::connection(&mut writing) {
            Connection::Sqlite(c) => {
                // Two index range scans on (queue, state, run_at_ms): due waiting or
                // delayed jobs, and expired leases. One condition with OR would make
                // SQLite walk every job of the queue, completed ones included (tens of
                // thousands under load), on every claim. SQLite's one writer makes the
                // claim atomic.
                let pending = format!(
                    "SELECT id, run_at_ms FROM jobs WHERE queue IN ({names}) AND state IN ('waiting', 'delayed') AND run_at_ms <= ?3 \
                        AND queue NOT IN (SELECT queue FROM queue_controls WHERE paused = 1) \
                     UNION ALL \
                     SELECT id, run_at_ms FROM jobs WHERE queue IN ({names}) AND state = 'active' AND lease_until_ms < ?3 \
                        AND queue NOT IN (SELECT queue FROM queue_controls WHERE paused = 1)",
                    names = numbered_from(4, names.len())
                );
                // The limit is written into the text, not bound: SQLite (3.51) plans with
                // a bound LIMIT's value, so rebinding it expires the statement and every
                // claim would be compiled again.
                let sql = format!(
                    "UPDATE jobs SET state = 'active', lease_owner = ?1, lease_until_ms = ?2, attempts = attempts + 1, updated_at_ms = ?3 \
                     WHERE id IN (SELECT id FROM ({pending}) ORDER BY run_at_ms LIMIT {limit}) \
                     RETURNING {JOB_COLUMNS}"
                );
                // Only placeholders and the integer limit are formatted in; every value is bound.
                let mut query = sqlx::query_as::<_, Job>(sqlx::AssertSqlSafe(sql))
                    .bind(&owner)
                    .bind(lease_until)
                    .bind(now);
                for name in &names {
                    query = query.bind(*name);
                }
                query.fetch_all(c).await?
            }
            Connection::Postgres(c) => {
                // Several worker processes claim at once: each locks the due rows it
                // takes and skips those another claim holds, so no job goes to two
                // workers and none waits behind another's claim.
                let sql = format!(
                    "UPDATE jobs SET state = 'active', lease_owner = $1, lease_until_ms = $2, attempts = attempts + 1, updated_at_ms = $3 \
                     WHERE id IN ( \
                        SELECT id FROM jobs WHERE queue = ANY($4) \
                          AND ((state IN ('waiting', 'delayed') AND run_at_ms <= $3) OR (state = 'active' AND lease_until_ms < $3)) \
                          AND queue NOT IN (SELECT queue FROM queue_controls WHERE paused = 1) \
                        ORDER BY run_at_ms LIMIT {limit} FOR UPDATE SKIP LOCKED) \
                     RETURNING {JOB_COLUMNS}"
                );
                sqlx::query_as::<_, Job>(sqlx::AssertSqlSafe(sql))
                    .bind(&owner)
                    .bind(lease_until)
                    .bind(now)
                    .bind(&names)
                    .fetch_all(c)
                    .await?
            }
        };
        // RETURNING gives no order; deliver oldest first (ids are time-ordered UUIDv7).
        jobs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(jobs)
    }

    /// Releases every lease at start, on SQLite. There one process owns the database,
    /// so a job still `active` belonged to a worker of a previous run that died: it is
    /// due now, not when its lease would have run out. On PostgreSQL other processes'
    /// workers hold leases that are alive, so nothing is released: a dead worker's jobs
    /// are due when their leases run out. Returns how many were released.
    pub async fn release_abandoned(&self) -> Result<u64, sqlx::Error> {
        if self.db.engine().is_shared() {
            return Ok(0);
        }
        crate::with_connection!(&mut self.db.writing().await?, |c| {
            sqlx::query(
                "UPDATE jobs SET state = 'waiting', lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = $1 WHERE state = 'active'",
            )
            .bind(now_ms())
            .execute(c)
            .await
            .map(|done| done.rows_affected())
        })
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

    /// A job claimed and not attempted (the SMTP circuit is open): back where it was, due
    /// as before, its claim not counted as an attempt.
    pub async fn put_back(&self, job: &Job) -> Result<(), sqlx::Error> {
        crate::with_connection!(&mut self.db.writing().await?, |c| sqlx::query(
            "UPDATE jobs SET state = 'waiting', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
             lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = $1 WHERE id = $2 AND state = 'active'",
        )
        .bind(now_ms())
        .bind(&job.id)
        .execute(c)
        .await
        .map(drop))
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
        crate::with_connection!(&mut self.db.writing().await?, |c| sqlx::query(
            "UPDATE jobs SET queue = $1, state = $2, run_at_ms = $3, last_error = $4, lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = $5 \
             WHERE id = $6",
        )
        .bind(queue.as_str())
        .bind(state)
        .bind(run_at_ms)
        .bind(reason)
        .bind(now_ms())
        .bind(&job.id)
        .execute(c)
        .await.map(|done| done.rows_affected()))
        .map(drop)
    }
}

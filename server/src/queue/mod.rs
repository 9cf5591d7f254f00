//! Durable queues in the database. A job lives in one queue at a time and moves between
//! them: `mail` → `mail-retry-1` (5 min) → `mail-retry-2` (30 min) → `mail-dlq`, and
//! `inapp` → `inapp-retry` (1 min) → `inapp-dlq`. Workers claim jobs with a lease; a job
//! whose worker died is claimed again when its lease runs out (at-least-once), and the
//! deliveries themselves are idempotent, keyed by the notification id.

mod names;
mod operations;
mod work;

use std::{sync::Arc, time::Duration};

use serde::Serialize;
use tokio::sync::Notify;

use crate::bus::ProcessId;

pub use names::{Channel, QueueName};

use crate::{
    accounts::new_id,
    now_ms,
    storage::{Database, WriteBatch},
    telemetry::Telemetry,
};

/// One claimed job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: String,
    pub queue: QueueName,
    pub target_id: String,
    pub request_id: Option<String>,
    pub attempts: i32,
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

/// What happened to a job that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Retried { queue: QueueName, due_at_ms: i64 },
    DeadLettered { queue: QueueName },
}

pub use wire::{JobView, QueueCounts};

/// The queues, with wake-ups so idle workers start at once when work arrives.
pub struct Queues {
    db: Database,
    time_scale: f64,
    wake_mail: Notify,
    wake_inapp: Notify,
    telemetry: Telemetry,
    /// The process whose workers claim here: every lease names it
    /// ([`crate::cluster::registry::lease_owner`]).
    process: ProcessId,
}

impl Queues {
    pub fn new(db: Database, time_scale: f64) -> Arc<Self> {
        Self::with_telemetry(db, time_scale, Telemetry::disabled(), ProcessId::new())
    }

    /// Queues whose workers (of `process`), retries and dead letters are recorded in
    /// `telemetry`.
    pub fn with_telemetry(db: Database, time_scale: f64, telemetry: Telemetry, process: ProcessId) -> Arc<Self> {
        Arc::new(Self {
            db,
            telemetry,
            time_scale,
            wake_mail: Notify::new(),
            wake_inapp: Notify::new(),
            process,
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
        subject_id: Option<&str>,
        hold: Duration,
    ) -> String {
        let id = new_id();
        let now = now_ms();
        let due = now + hold.as_millis() as i64;
        batch
            .statement(
                "INSERT INTO jobs (id, queue, channel, target_id, request_id, subject_id, state, attempts, run_at_ms, created_at_ms, updated_at_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, 'waiting', 0, ?, ?, ?)",
            )
            .bind(id.clone())
            .bind(queue.as_str())
            .bind(queue.channel().as_str())
            .bind(target_id.to_string())
            .bind(request_id.map(str::to_string))
            .bind(subject_id.map(str::to_string))
            .bind(due)
            .bind(now)
            .bind(now);
        id
    }

    /// Wakes one idle worker of a channel after a commit added work for it (or, if none
    /// is idle, the next one to look). Waking them all would have every idle worker run
    /// a claim for the same few jobs, and all but one claim nothing. A worker that
    /// claims a full batch wakes the
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
        let id = Queues::enqueue(&mut batch, queue, target, Some("req-1"), None, Duration::ZERO);
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
        crate::with_connection!(&mut db.writing().await.expect("db"), |c| sqlx::query(
            "UPDATE jobs SET lease_until_ms = 0"
        )
        .execute(c)
        .await
        .map(|done| done.rows_affected()))
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
        crate::with_connection!(&mut db.writing().await.expect("db"), |c| sqlx::query(
            "UPDATE jobs SET state = 'completed', updated_at_ms = 0 WHERE target_id = 'done-long-ago'"
        )
        .execute(c)
        .await
        .map(|done| done.rows_affected()))
        .expect("age one");
        crate::with_connection!(&mut db.writing().await.expect("db"), |c| sqlx::query(
            "UPDATE jobs SET state = 'completed' WHERE target_id = 'done-just-now'"
        )
        .execute(c)
        .await
        .map(|done| done.rows_affected()))
        .expect("complete one");
        assert_eq!(
            queues.prune_completed(Duration::from_secs(3600)).await.expect("prunes"),
            1
        );
        let left: Vec<(String,)> = crate::with_connection!(&mut db.writing().await.expect("db"), |c| sqlx::query_as(
            "SELECT target_id FROM jobs ORDER BY target_id"
        )
        .fetch_all(c)
        .await)
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

//! In-app workers: claim an in-app job and hand its notification to the user's socket
//! through the registry, then wait for the client's ack. Acked: the job completes.
//! No ack in time: the next tier (`inapp-retry`, then `inapp-dlq`). The user offline:
//! the notification stays stored and goes out, in order, when their socket connects,
//! so the job's work — getting it to the store-and-forward point — is done.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    now_ms,
    queue::{Channel, Job, QueueName, Queues, placeholders},
    storage::{Database, WriteBatch},
    websocket::{Frame, PushError, Registry},
};

/// How long a pushed notification may wait for the client's ack (before `--time-scale`,
/// and never under [`MIN_ACK_TIMEOUT`], which a healthy client on loopback always meets).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_ACK_TIMEOUT: Duration = Duration::from_millis(200);

pub fn spawn_pool(
    count: u16,
    db: Database,
    queues: Arc<Queues>,
    registry: Arc<Registry>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    for number in 1..=count {
        let worker = InAppWorker {
            id: format!("inapp-worker-{number}"),
            db: db.clone(),
            queues: queues.clone(),
            registry: registry.clone(),
        };
        tasks.spawn(worker.run(shutdown.clone()));
    }
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    user_id: String,
    delivered_at_ms: Option<i64>,
    #[sqlx(flatten)]
    frame: Frame,
}

struct InAppWorker {
    id: String,
    db: Database,
    queues: Arc<Queues>,
    registry: Arc<Registry>,
}

impl InAppWorker {
    async fn run(self, shutdown: CancellationToken) {
        while let Some(jobs) = super::next_jobs(
            &self.queues,
            &QueueName::INAPP_WORK,
            Channel::InApp,
            &self.id,
            &shutdown,
        )
        .await
        {
            let outcome = tokio::select! {
                // Shutting down mid-wait: the leases run out and the jobs are retried.
                () = shutdown.cancelled() => return,
                outcome = self.process(&jobs) => outcome,
            };
            if let Err(error) = outcome {
                tracing::warn!(worker = %self.id, jobs = jobs.len(), %error, "could not record in-app jobs' outcome");
            }
        }
    }

    /// Hands a batch to the users' connections (each pushes in seq order), waits for the
    /// acks together, and completes every acked or stored job in one transaction.
    async fn process(&self, jobs: &[Job]) -> Result<(), sqlx::Error> {
        let mut rows = self.load(jobs).await?;
        let mut completed: Vec<&str> = Vec::new();
        let mut waiting = Vec::new();
        for job in jobs {
            let Some((user_id, frame, delivered)) = rows.remove(&job.target_id) else {
                self.queues.dead_letter(job, "the notification row is missing").await?;
                continue;
            };
            if delivered.is_some() {
                completed.push(&job.id);
                continue;
            }
            match self.registry.push(&user_id, frame) {
                Ok((acked, _server)) => waiting.push((job, acked)),
                // Stored: it goes out, in order, when the user's socket connects.
                Err(PushError::Offline) => completed.push(&job.id),
                Err(PushError::Busy) => self.retry(job, "the user's socket is backed up").await?,
            }
        }
        let timeout = self.ack_timeout();
        let acks = futures_util::future::join_all(
            waiting
                .into_iter()
                .map(|(job, acked)| async move { (job, tokio::time::timeout(timeout, acked).await) }),
        )
        .await;
        let mut delivered: Vec<&str> = Vec::new();
        for (job, ack) in acks {
            match ack {
                Ok(Ok(())) => {
                    completed.push(&job.id);
                    delivered.push(&job.target_id);
                }
                Ok(Err(_)) => self.retry(job, "the socket closed before the ack").await?,
                Err(_) => {
                    self.retry(job, &format!("no ack within {} ms", timeout.as_millis()))
                        .await?
                }
            }
        }
        if completed.is_empty() {
            return Ok(());
        }
        // The acked notifications are delivered and their jobs done: one commit.
        let mut batch = WriteBatch::default();
        if !delivered.is_empty() {
            let sql = format!(
                "UPDATE notifications SET delivered_at_ms = ? WHERE delivered_at_ms IS NULL AND id IN ({})",
                placeholders(delivered.len())
            );
            batch.statement_owned(sql).bind(now_ms());
            for id in delivered {
                batch.bind(id.to_string());
            }
        }
        Queues::complete_all(&mut batch, &completed);
        self.db.commit(batch).await
    }

    /// Each job's notification: its user, the frame to push, and whether it was
    /// delivered already.
    async fn load(&self, jobs: &[Job]) -> Result<HashMap<String, (String, Frame, Option<i64>)>, sqlx::Error> {
        let sql = format!(
            "SELECT user_id, delivered_at_ms, id, seq, kind, title, body, created_at_ms FROM notifications WHERE id IN ({})",
            placeholders(jobs.len())
        );
        let mut query = sqlx::query_as::<_, NotificationRow>(sqlx::AssertSqlSafe(sql));
        for job in jobs {
            query = query.bind(&job.target_id);
        }
        let rows = query.fetch_all(&self.db.pool).await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.frame.id.clone(), (row.user_id, row.frame, row.delivered_at_ms)))
            .collect())
    }

    fn ack_timeout(&self) -> Duration {
        self.queues.scaled(ACK_TIMEOUT).max(MIN_ACK_TIMEOUT)
    }

    async fn retry(&self, job: &Job, reason: &str) -> Result<(), sqlx::Error> {
        let outcome = self.queues.retry_later(job, reason).await?;
        tracing::info!(worker = %self.id, job = %job.id, reason, ?outcome, "in-app delivery not acked");
        Ok(())
    }
}

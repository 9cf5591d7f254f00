//! In-app workers: claim an in-app job and hand its notification to the user's socket
//! through the registry, then wait for the client's ack. Acked: the job completes.
//! No ack in time: the next tier (`inapp-retry`, then `inapp-dlq`). The user offline:
//! the notification stays stored and goes out, in order, when their socket connects,
//! so the job's work — getting it to the store-and-forward point — is done.

use std::{sync::Arc, time::Duration};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    queue::{Channel, Job, QueueName, Queues},
    storage::Database,
    websocket::{PushError, Registry},
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

struct InAppWorker {
    id: String,
    db: Database,
    queues: Arc<Queues>,
    registry: Arc<Registry>,
}

impl InAppWorker {
    async fn run(self, shutdown: CancellationToken) {
        while let Some(job) = super::next_job(
            &self.queues,
            &QueueName::INAPP_WORK,
            Channel::InApp,
            &self.id,
            &shutdown,
        )
        .await
        {
            let outcome = tokio::select! {
                // Shutting down mid-wait: the lease runs out and the job is retried.
                () = shutdown.cancelled() => return,
                outcome = self.process(&job) => outcome,
            };
            if let Err(error) = outcome {
                tracing::warn!(worker = %self.id, job = %job.id, %error, "could not record an in-app job's outcome");
            }
        }
    }

    async fn process(&self, job: &Job) -> Result<(), sqlx::Error> {
        let row: Option<(String, i64, Option<i64>)> =
            sqlx::query_as("SELECT user_id, seq, delivered_at_ms FROM notifications WHERE id = ?")
                .bind(&job.target_id)
                .fetch_optional(&self.db.pool)
                .await?;
        let Some((user_id, seq, delivered)) = row else {
            self.queues.dead_letter(job, "the notification row is missing").await?;
            return Ok(());
        };
        if delivered.is_some() {
            return self.complete(job).await;
        }
        match self.registry.push(&user_id, &job.target_id, seq) {
            Ok((acked, server)) => match tokio::time::timeout(self.ack_timeout(), acked).await {
                Ok(Ok(())) => {
                    tracing::debug!(worker = %self.id, job = %job.id, %server, "in-app notification acked");
                    self.complete(job).await
                }
                Ok(Err(_)) => self.retry(job, "the socket closed before the ack").await,
                Err(_) => {
                    self.retry(job, &format!("no ack within {} ms", self.ack_timeout().as_millis()))
                        .await
                }
            },
            Err(PushError::Offline) => self.complete(job).await,
            Err(PushError::Busy) => self.retry(job, "the user's socket is backed up").await,
        }
    }

    fn ack_timeout(&self) -> Duration {
        self.queues.scaled(ACK_TIMEOUT).max(MIN_ACK_TIMEOUT)
    }

    async fn complete(&self, job: &Job) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        Queues::complete(&mut tx, &job.id).await?;
        tx.commit().await
    }

    async fn retry(&self, job: &Job, reason: &str) -> Result<(), sqlx::Error> {
        let outcome = self.queues.retry_later(job, reason).await?;
        tracing::info!(worker = %self.id, job = %job.id, reason, ?outcome, "in-app delivery not acked");
        Ok(())
    }
}

//! In-app workers: claim an in-app job and hand its notification to the user's socket
//! through the [`Pusher`] (to a socket in this process or, over the bus, in another),
//! then wait for the client's ack. Acked: the job completes.
//! No ack in time: the next tier (`inapp-retry`, then `inapp-dlq`). The user offline:
//! the notification stays stored and goes out, in order, when their socket connects,
//! so the job's work — getting it to the store-and-forward point — is done.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio_util::{sync::CancellationToken, task::TaskTracker};
use wire::{Flow, InAppDelivered, LiveEvent, QueueJobCompleted, SystemStage, WorkerKind};

use crate::{
    controls::Controls,
    controls::DelayPoint,
    now_ms,
    queue::{Channel, Job, QueueName, Queues, placeholders},
    storage::{Database, WriteBatch},
    websocket::{Frame, PushError, relay::Pusher},
};

/// How long a pushed notification may wait for the client's ack (before `--time-scale`,
/// and never under [`MIN_ACK_TIMEOUT`], which a healthy client on loopback always meets).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_ACK_TIMEOUT: Duration = Duration::from_millis(200);

pub fn spawn_pool(
    count: u16,
    db: Database,
    queues: Arc<Queues>,
    pusher: Pusher,
    controls: Arc<Controls>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    for number in 1..=count {
        let worker = InAppWorker {
            id: format!("inapp-worker-{number}"),
            db: db.clone(),
            queues: queues.clone(),
            pusher: pusher.clone(),
            tasks: tasks.clone(),
            controls: controls.clone(),
        };
        tasks.spawn(worker.run(shutdown.clone()));
    }
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    user_id: String,
    delivered_at_ms: Option<i64>,
    /// Its user switched its category off in the app (and it is not critical).
    muted: bool,
    #[sqlx(flatten)]
    frame: Frame,
}

/// A job's notification, as [`InAppWorker::load`] reads it.
struct Loaded {
    user_id: String,
    frame: Frame,
    delivered_at_ms: Option<i64>,
    muted: bool,
}

#[derive(Clone)]
struct InAppWorker {
    id: String,
    db: Database,
    queues: Arc<Queues>,
    pusher: Pusher,
    /// Where stepped requests' jobs are delivered apart ([`super::split_stepped`]).
    tasks: TaskTracker,
    /// Injected delays and step boundaries.
    controls: Arc<Controls>,
}

impl InAppWorker {
    async fn run(self, shutdown: CancellationToken) {
        let mut busy = false;
        while let Some(jobs) = super::next_jobs(
            &self.queues,
            &QueueName::INAPP_WORK,
            Channel::InApp,
            &self.id,
            &shutdown,
            &mut busy,
        )
        .await
        {
            let jobs = super::split_stepped(jobs, &self.controls, &self.tasks, &shutdown, |job| {
                let worker = self.clone();
                async move { worker.process_logged(&[job]).await }
            });
            if jobs.is_empty() {
                continue;
            }
            let _busy = super::Busy::new(&self.queues.telemetry().meters().inapp_busy);
            tokio::select! {
                // Shutting down mid-wait: the leases run out and the jobs are retried.
                () = shutdown.cancelled() => return,
                () = self.process_logged(&jobs) => {}
            };
        }
    }

    async fn process_logged(&self, jobs: &[Job]) {
        if let Err(error) = self.process(jobs).await {
            tracing::warn!(worker = %self.id, jobs = jobs.len(), %error, "could not record in-app jobs' outcome");
        }
    }

    /// Hands a batch to the users' connections (each pushes in seq order), waits for the
    /// acks together, and completes every acked or stored job in one transaction.
    async fn process(&self, jobs: &[Job]) -> Result<(), sqlx::Error> {
        let started = std::time::Instant::now();
        let mut rows = self.load(jobs).await?;
        let telemetry = self.queues.telemetry();
        let mut completed: Vec<&str> = Vec::new();
        let mut waiting = Vec::new();
        let mut skipped: Vec<&str> = Vec::new();
        self.controls.inject(DelayPoint::WorkerProcessing).await;
        super::record_pickups(telemetry, &self.controls, jobs, &self.id, WorkerKind::Inapp, started).await;
        let pushing = std::time::Instant::now();
        // Inside the push stage, so the injected delay shows in its duration.
        self.controls.inject(DelayPoint::WebSocketDelivery).await;
        for job in jobs {
            let Some(Loaded {
                user_id,
                frame,
                delivered_at_ms,
                muted,
            }) = rows.remove(&job.target_id)
            else {
                self.queues.dead_letter(job, "the notification row is missing").await?;
                continue;
            };
            if delivered_at_ms.is_some() {
                completed.push(&job.id);
                continue;
            }
            let request_id = job.request_id.as_deref().unwrap_or_default();
            if muted {
                telemetry
                    .stage_since(request_id, SystemStage::Skipped, &self.id, pushing)
                    .meta("channel", Flow::InApp.name())
                    .meta("reason", "preference")
                    .done();
                completed.push(&job.id);
                skipped.push(&job.target_id);
                continue;
            }
            // In step mode the push is a step of its own, after the pickup's.
            self.controls.worker_boundary(request_id).await;
            let push = telemetry
                .stage_since(request_id, SystemStage::InappPush, &self.id, pushing)
                .meta("seq", frame.seq);
            match self.pusher.push(&user_id, frame).await {
                Ok((acked, server)) => {
                    push.meta("server", server.as_str()).done();
                    telemetry.meters().inapp_pushes.inc();
                    let ack = telemetry
                        .stage(request_id, SystemStage::ClientAck, &server)
                        .meta("notificationId", job.target_id.as_str());
                    waiting.push((job, acked, ack, server, user_id));
                }
                // Stored: it goes out, in order, when the user's socket connects.
                Err(PushError::Offline) => {
                    push.meta("stored", "the user is offline; sent when their socket connects")
                        .done();
                    completed.push(&job.id);
                }
                Err(PushError::Busy) => {
                    push.failed("the user's socket is backed up");
                    self.retry(job, "the user's socket is backed up").await?;
                }
            }
        }
        let timeout = self.ack_timeout();
        let acks = futures_util::future::join_all(waiting.into_iter().map(
            |(job, acked, stage, server, user_id)| async move {
                let ack = tokio::time::timeout(timeout, acked).await;
                (job, ack, chrono::Utc::now(), stage, server, user_id)
            },
        ))
        .await;
        let mut delivered: Vec<&str> = Vec::new();
        for (job, ack, acked_at, stage, server, user_id) in acks {
            match ack {
                Ok(Ok(())) => {
                    // In step mode the ack is a step of its own, after the push's; it is
                    // recorded with the time it came.
                    self.controls
                        .worker_boundary(job.request_id.as_deref().unwrap_or_default())
                        .await;
                    stage.done_at(acked_at);
                    telemetry.event(LiveEvent::InAppDelivered(InAppDelivered {
                        notification_id: job.target_id.clone(),
                        request_id: job.request_id.clone(),
                        user_id,
                        server,
                    }));
                    telemetry.event(LiveEvent::QueueJobCompleted(QueueJobCompleted {
                        queue: job.queue.to_string(),
                        job_id: job.id.clone(),
                        request_id: job.request_id.clone(),
                        duration: started.elapsed().as_secs_f64() * 1_000.0,
                    }));
                    completed.push(&job.id);
                    delivered.push(&job.target_id);
                }
                Ok(Err(_)) => {
                    stage.failed("the socket closed before the ack");
                    self.retry(job, "the socket closed before the ack").await?;
                }
                Err(_) => {
                    let reason = format!("no ack within {} ms", timeout.as_millis());
                    stage.failed(reason.clone());
                    self.retry(job, &reason).await?;
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
        if !skipped.is_empty() {
            let sql = format!(
                "UPDATE notifications SET skipped = 'preference' WHERE delivered_at_ms IS NULL AND id IN ({})",
                placeholders(skipped.len())
            );
            batch.statement_owned(sql);
            for id in skipped {
                batch.bind(id.to_string());
            }
        }
        Queues::complete_all(&mut batch, &completed);
        self.db.commit(batch).await
    }

    /// Each job's notification: its user, the frame to push, and whether it was
    /// delivered already.
    async fn load(&self, jobs: &[Job]) -> Result<HashMap<String, Loaded>, sqlx::Error> {
        let sql = format!(
            "SELECT user_id, delivered_at_ms, {} AS muted, id, seq, kind, title, body, created_at_ms FROM notifications WHERE id IN ({})",
            crate::notify::muted_sql("notifications", Flow::InApp),
            placeholders(jobs.len())
        );
        let sql = crate::storage::numbered(&sql);
        let rows: Vec<NotificationRow> = crate::with_connection!(&mut self.db.read().await?, |c| {
            let mut query = sqlx::query_as::<_, NotificationRow>(sqlx::AssertSqlSafe(sql.as_str()));
            for job in jobs {
                query = query.bind(&job.target_id);
            }
            query.fetch_all(c).await
        })?;
        Ok(rows
            .into_iter()
            .map(|row| {
                (
                    row.frame.id.clone(),
                    Loaded {
                        user_id: row.user_id,
                        frame: row.frame,
                        delivered_at_ms: row.delivered_at_ms,
                        muted: row.muted,
                    },
                )
            })
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

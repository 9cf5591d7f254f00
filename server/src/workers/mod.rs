//! The workers that deliver notifications: mail workers speak SMTP, in-app workers push
//! to the user's socket. Each worker claims a batch of jobs with a lease, so a worker
//! that dies leaves nothing stuck: its job is claimed again when the lease runs out.

pub mod breaker;
pub mod inapp;
pub mod ledger;
pub mod mail;

use std::{
    sync::atomic::{AtomicI64, Ordering},
    time::{Duration, Instant},
};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use wire::{LiveEvent, QueueJobProcessing, SystemStage, WorkerIdle, WorkerKind, WorkerProcessing};

use crate::{
    controls::Controls,
    queue::{Channel, Job, QueueName, Queues},
    telemetry::Telemetry,
};

/// Counts a worker as busy for as long as it lives.
pub(crate) struct Busy<'a>(&'a AtomicI64);

impl<'a> Busy<'a> {
    pub(crate) fn new(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Records that `worker` picked up `jobs`: each stage runs from when its job began to
/// wait for a worker ([`Job::waiting_since_ms`]: the queue's wait, an injected queueing
/// hold included) through the claim and load from `started` (plus any injected
/// worker-processing delay). A stepped request waits at the boundary first, so its
/// pickup appears only when the person steps to it; the time spent waiting there is not
/// counted in the stage.
pub(crate) async fn record_pickups(
    telemetry: &Telemetry,
    controls: &Controls,
    jobs: &[Job],
    worker: &str,
    kind: WorkerKind,
    started: Instant,
) {
    let (now, now_ms) = (Instant::now(), crate::now_ms());
    // The worker is busy from its batch's first job on; each job is being processed.
    if let Some(first) = jobs.first() {
        telemetry.event(LiveEvent::WorkerProcessing(WorkerProcessing {
            worker_id: worker.to_string(),
            kind,
            queue: first.queue.to_string(),
            job_id: first.id.clone(),
            request_id: first.request_id.clone(),
        }));
    }
    for job in jobs {
        telemetry
            .meters()
            .picked(job.queue.as_str(), (now_ms - job.run_at_ms) as f64);
        telemetry.event(LiveEvent::QueueJobProcessing(QueueJobProcessing {
            queue: job.queue.to_string(),
            job_id: job.id.clone(),
            request_id: job.request_id.clone(),
            worker_id: worker.to_string(),
            attempt: u32::try_from(job.attempts).unwrap_or(u32::MAX),
        }));
    }
    let mut stepping = Duration::ZERO;
    for job in jobs {
        let request_id = job.request_id.as_deref().unwrap_or_default();
        let waiting = Instant::now();
        controls.worker_boundary(request_id).await;
        stepping += waiting.elapsed();
        let queued_ms = (now_ms - job.waiting_since_ms()).max(0);
        let queued_since = now
            .checked_sub(Duration::from_millis(queued_ms as u64))
            .map_or(started, |since| since.min(started));
        telemetry
            .stage_since(request_id, SystemStage::WorkerPickup, worker, queued_since + stepping)
            .meta("queue", job.queue.as_str())
            .meta("jobId", job.id.as_str())
            .meta("attempt", job.attempts)
            .meta("batch", jobs.len())
            .meta("queuedMs", queued_ms)
            .done();
    }
}

/// Takes the jobs of requests in step mode out of a claimed batch. Each is delivered on a
/// task of its own (`deliver`, given a batch of one), so a job waiting for its steps
/// never holds up another user's delivery in the same batch, nor the worker. The task
/// ends at shutdown like the worker; its lease brings the job back then.
pub(crate) fn split_stepped<F, Fut>(
    jobs: Vec<Job>,
    controls: &Controls,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
    deliver: F,
) -> Vec<Job>
where
    F: Fn(Job) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let steps = controls.steps();
    if steps.is_empty() {
        return jobs;
    }
    let (stepped, rest): (Vec<Job>, Vec<Job>) = jobs
        .into_iter()
        .partition(|job| steps.is_stepping(job.request_id.as_deref().unwrap_or_default()));
    for job in stepped {
        let delivery = deliver(job);
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = delivery => {}
            }
        });
    }
    rest
}

/// How long a claimed job is a worker's alone. Longer than any single delivery attempt
/// (which has its own timeout), so a live worker never loses its job to another.
pub const LEASE: Duration = Duration::from_secs(60);
/// How often an idle worker looks for due work (retry tiers, expired leases) when
/// nothing woke it.
pub const POLL: Duration = Duration::from_millis(250);

/// Why a delivery attempt failed, which decides the job's fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryError {
    /// May pass: a 4xx reply, a timeout, a refused connection. Next retry tier.
    Transient(String),
    /// Will not pass: a 5xx reply, an address that cannot be used. Dead-letter queue.
    Permanent(String),
}

/// Most jobs a worker claims at once: one claim statement and one completing commit
/// serve them all.
pub const BATCH: u32 = 32;

/// Waits for the next jobs a worker of `channel` may take from `queues`: claims at once
/// when some are due, else sleeps until woken by a commit or [`POLL`] passes. `None` on
/// shutdown.
pub async fn next_jobs(
    queues: &Queues,
    from: &[QueueName],
    channel: Channel,
    worker: &str,
    shutdown: &CancellationToken,
    busy: &mut bool,
) -> Option<Vec<Job>> {
    loop {
        if shutdown.is_cancelled() {
            return None;
        }
        match queues.claim_batch(from, worker, LEASE, BATCH).await {
            Ok(jobs) if !jobs.is_empty() => {
                if jobs.len() == BATCH as usize {
                    // There may be more: let another idle worker take the next batch.
                    queues.wake(channel);
                }
                *busy = true;
                return Some(jobs);
            }
            Ok(_) if *busy => {
                // Out of work: `worker:idle`, once until the next batch.
                *busy = false;
                queues.telemetry().event(LiveEvent::WorkerIdle(WorkerIdle {
                    worker_id: worker.to_string(),
                    kind: match channel {
                        Channel::Email => WorkerKind::Mail,
                        Channel::InApp => WorkerKind::Inapp,
                    },
                }));
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(worker, %error, "could not claim a job"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = queues.woken(channel) => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

//! Telemetry: every stage a request passes, observed as it happens and turned into
//! journeys and live events without ever slowing the pipeline.
//!
//! Components call [`Telemetry::stage`] (or [`Telemetry::event`]); that is a `try_send`
//! of a small record on a bounded channel: it never waits, never allocates without bound,
//! and a record that finds the channel full is counted in [`Telemetry::dropped`] instead
//! of being kept. One aggregator task ([`aggregate`]) folds the records into journeys
//! ([`journeys`]) and hands the resulting live events to the hub in batches: at once
//! when traffic is light (but at most every [`MIN_GAP`]), at most every [`FLUSH_EVERY`]
//! under load.
//!
//! Telemetry only observes. What acts on the pipeline (injected delays, step mode) is
//! [`crate::controls`], which the pipeline calls itself; the aggregator only tells it
//! when a stepped request's journey has ended, so its step gates can be let go.

pub mod journeys;
pub mod load;
pub mod meters;
pub mod reports;
pub mod sampler;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wire::{LiveEvent, NotificationType, StageMetadata, StageStatus, SystemStage, Timestamp};

use crate::controls::Controls;
pub use journeys::Journeys;
pub use meters::Meters;

use crate::live::LiveHub;

/// Records the channel holds before new ones are dropped (and counted).
pub const CHANNEL_CAPACITY: usize = 65_536;
/// The longest the aggregator holds events back to batch them. Half of the live
/// stream's latency budget (p99 < 100 ms from a stage's end to a viewer): a 100 ms
/// window alone took the whole budget under steady load (BENCHMARKS.md, "With live
/// viewers").
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// A batch this small goes out at once: traffic is light, batching would only add delay.
const LIGHT_BATCH: usize = 32;
/// The aggregator rests this long after each publish, so at most about 100 batches a
/// second go out. Without the rest, moderate traffic is the costliest: every few records
/// find the aggregator idle, wake it and go out as a batch of their own — each a frame
/// for every viewer and a history write — while heavier traffic arrives faster than it
/// is folded and batches itself. A record that arrives during the rest waits at most
/// this long.
const MIN_GAP: Duration = Duration::from_millis(10);

/// One stage of one request, as a component saw it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StageRecord {
    pub request_id: String,
    /// Set by whoever knows what the request is for (the balancer from the route, the
    /// controller for certain).
    pub kind: Option<NotificationType>,
    pub stage: SystemStage,
    pub component: String,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    pub status: StageStatus,
    pub metadata: StageMetadata,
}

/// What components send to the aggregator (in this process, or over the bus from
/// another: [`forward`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum Observation {
    Stage(StageRecord),
    Event(LiveEvent),
}

/// The handle every component holds; cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    /// False when the live window is switched off ([`Telemetry::off`]): no stage records
    /// or events are made at all.
    recording: bool,
    sender: mpsc::Sender<Observation>,
    dropped: AtomicU64,
    meters: Meters,
}

impl Telemetry {
    /// A handle and the receiving end for [`aggregate`].
    pub fn new() -> (Self, mpsc::Receiver<Observation>) {
        Self::with_capacity(CHANNEL_CAPACITY)
    }

    pub fn with_capacity(capacity: usize) -> (Self, mpsc::Receiver<Observation>) {
        Self::build(capacity, true)
    }

    fn build(capacity: usize, recording: bool) -> (Self, mpsc::Receiver<Observation>) {
        let (sender, receiver) = mpsc::channel(capacity);
        let inner = Inner {
            recording,
            sender,
            dropped: AtomicU64::new(0),
            meters: Meters::new(),
        };
        (Self { inner: Arc::new(inner) }, receiver)
    }

    /// A handle that makes no stage records or events (component meters still count),
    /// and a receiver that never gets any: the system without its live window, to
    /// measure what the window costs (`liveview bench pipeline --without-live-telemetry`).
    pub fn off() -> (Self, mpsc::Receiver<Observation>) {
        Self::build(1, false)
    }

    /// A handle whose records go nowhere, for code paths (and unit tests) that run
    /// without a live view.
    pub fn disabled() -> Self {
        let (telemetry, receiver) = Self::with_capacity(1);
        drop(receiver);
        telemetry
    }

    pub fn meters(&self) -> &Meters {
        &self.inner.meters
    }

    /// Records that could not be kept because the aggregator was behind.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Sends an observation without waiting; counts it as dropped if the channel is full.
    pub fn observe(&self, observation: Observation) {
        match self.inner.sender.try_send(observation) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // No aggregator (shutting down, or telemetry disabled): nothing to count.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    pub fn event(&self, event: LiveEvent) {
        if self.inner.recording {
            self.observe(Observation::Event(event));
        }
    }

    /// Starts timing a stage of `request_id` at `component`; finish it with
    /// [`StageTimer::done`] or [`StageTimer::failed`]. A request without an id (work
    /// from before ids existed) is not traced.
    pub fn stage(&self, request_id: &str, stage: SystemStage, component: &str) -> StageTimer {
        let traced = self.inner.recording && !request_id.is_empty();
        StageTimer {
            telemetry: traced.then(|| self.clone()),
            record: StageRecord {
                // An untraced stage is never recorded: no copies, no clock read.
                request_id: if traced { request_id.to_string() } else { String::new() },
                kind: None,
                stage,
                component: if traced { component.to_string() } else { String::new() },
                start: if traced {
                    chrono::Utc::now()
                } else {
                    Timestamp::UNIX_EPOCH
                },
                end: None,
                status: StageStatus::Processing,
                metadata: StageMetadata::new(),
            },
        }
    }

    /// A stage that began at `started` (measured by the caller) and ends now.
    pub fn stage_since(&self, request_id: &str, stage: SystemStage, component: &str, started: Instant) -> StageTimer {
        let mut timer = self.stage(request_id, stage, component);
        let elapsed = chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
        timer.record.start -= elapsed;
        timer
    }
}

/// A stage being timed. Dropping it unfinished records nothing.
#[must_use = "a stage is recorded only when finished"]
pub struct StageTimer {
    telemetry: Option<Telemetry>,
    record: StageRecord,
}

impl StageTimer {
    pub fn kind(mut self, kind: NotificationType) -> Self {
        self.record.kind = Some(kind);
        self
    }

    pub fn meta(mut self, key: &'static str, value: impl Into<serde_json::Value>) -> Self {
        if self.telemetry.is_some() {
            self.record.metadata.insert(key, value);
        }
        self
    }

    /// Records the stage as completed, ending now.
    pub fn done(self) {
        self.finish(StageStatus::Completed);
    }

    /// Records the stage as completed, ending at `end`: for a stage recorded later than
    /// it ended (held back at a step boundary).
    pub fn done_at(self, end: Timestamp) {
        self.finish_at(StageStatus::Completed, end);
    }

    /// Records the stage as failed, ending now, with a reason for people.
    pub fn failed(self, error: impl Into<String>) {
        let error: String = error.into();
        self.meta("error", error).finish(StageStatus::Failed);
    }

    /// Records that the stage has begun and is still going (a long wait the viewer should
    /// see); `done` or `failed` later records its end.
    pub fn announce(&self) {
        if let Some(telemetry) = &self.telemetry {
            telemetry.observe(Observation::Stage(self.record.clone()));
        }
    }

    fn finish(self, status: StageStatus) {
        // An untraced stage reads no clock.
        if self.telemetry.is_some() {
            self.finish_at(status, chrono::Utc::now());
        }
    }

    fn finish_at(mut self, status: StageStatus, end: Timestamp) {
        let Some(telemetry) = self.telemetry.take() else {
            return;
        };
        self.record.end = Some(end);
        self.record.status = status;
        telemetry.observe(Observation::Stage(self.record));
    }
}

/// `a***@example.com`: enough to recognise an address, not enough to harvest it.
pub fn mask_email(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// Folds observations into journeys and publishes the live events in batches until
/// shutdown (or until every [`Telemetry`] handle is gone).
pub async fn aggregate(
    mut receiver: mpsc::Receiver<Observation>,
    journeys: Arc<Journeys>,
    hub: Arc<LiveHub>,
    controls: Arc<Controls>,
    shutdown: CancellationToken,
) {
    let mut received = Vec::with_capacity(1024);
    let mut pending: Vec<LiveEvent> = Vec::new();
    let mut last_flush = tokio::time::Instant::now();
    loop {
        let deadline = last_flush + FLUSH_EVERY;
        tokio::select! {
            () = shutdown.cancelled() => break,
            count = receiver.recv_many(&mut received, 1024) => {
                if count == 0 {
                    break;
                }
                for observation in received.drain(..) {
                    let before = pending.len();
                    journeys.observe(observation, &mut pending);
                    release_finished(&controls, &pending[before..]);
                }
            }
            () = tokio::time::sleep_until(deadline), if !pending.is_empty() => {}
        }
        let light = pending.len() <= LIGHT_BATCH && receiver.is_empty();
        if !pending.is_empty() && (light || tokio::time::Instant::now() >= deadline) {
            // The next window is likely the size of this one: start it at that capacity
            // rather than growing it by doubling from nothing.
            let capacity = pending.len();
            hub.publish_batch(std::mem::replace(&mut pending, Vec::with_capacity(capacity)));
            last_flush = tokio::time::Instant::now();
            // Let the next records gather instead of waking for each (see MIN_GAP).
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(MIN_GAP) => {}
            }
        }
    }
    if !pending.is_empty() {
        hub.publish_batch(pending);
    }
}

/// Most observations in one bus message.
const FORWARD_BATCH: usize = 1_024;

/// On a cluster's bus: sends this process's observations to the dashboards, in batches
/// (a batch gathers for at most [`MIN_GAP`]), until shutdown. Telemetry is a
/// [resumable](crate::bus::Channel::resumable) channel, so a dashboard that loses Redis
/// for a moment reads on where it was; what is sent while Redis itself is down is lost,
/// and the journeys show the gap (nothing durable depends on it).
pub async fn forward(mut receiver: mpsc::Receiver<Observation>, bus: crate::bus::Bus, shutdown: CancellationToken) {
    let mut batch = Vec::with_capacity(FORWARD_BATCH);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            count = receiver.recv_many(&mut batch, FORWARD_BATCH) => {
                if count == 0 {
                    break;
                }
            }
        }
        // Let the next records gather instead of a message for each.
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(MIN_GAP) => {}
        }
        while batch.len() < FORWARD_BATCH
            && let Ok(observation) = receiver.try_recv()
        {
            batch.push(observation);
        }
        if let Err(error) = bus.publish(crate::bus::Channel::Telemetry, &batch).await {
            tracing::debug!(%error, records = batch.len(), "telemetry not forwarded");
        }
        batch.clear();
    }
}

/// In a process with a dashboard on a cluster's bus: the observations of every process
/// of the cluster, this one's own included (it [`forward`]s them like any other, so
/// every dashboard sees them), handed to this dashboard's aggregator through `fold`. One
/// that finds `fold` full is counted in `telemetry`'s [`Telemetry::dropped`].
pub async fn gather(
    bus: crate::bus::Bus,
    fold: mpsc::Sender<Observation>,
    telemetry: Telemetry,
    shutdown: CancellationToken,
) {
    bus.from_everyone(
        crate::bus::Channel::Telemetry,
        "the cluster's telemetry",
        shutdown,
        |observations: Vec<Observation>| {
            for observation in observations {
                if let Err(mpsc::error::TrySendError::Full(_)) = fold.try_send(observation) {
                    telemetry.inner.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            std::future::ready(())
        },
    )
    .await;
}

/// A journey that ended leaves step mode, so nothing waits for steps that will never come.
fn release_finished(controls: &Controls, events: &[LiveEvent]) {
    for event in events {
        match event {
            LiveEvent::RequestComplete(done) => controls.steps().stop(&done.request_id),
            LiveEvent::RequestFailed(failed) => controls.steps().stop(&failed.request_id),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_masked() {
        assert_eq!(mask_email("ada@example.com"), "a***@example.com");
        assert_eq!(mask_email("not-an-address"), "***");
    }

    #[tokio::test]
    async fn a_full_channel_drops_and_counts_instead_of_waiting() {
        let (telemetry, _receiver) = Telemetry::with_capacity(2);
        for _ in 0..5 {
            telemetry.stage("r1", SystemStage::LbReceived, "load-balancer").done();
        }
        assert_eq!(telemetry.dropped(), 3);
    }

    #[tokio::test]
    async fn requests_without_an_id_are_not_traced() {
        let (telemetry, mut receiver) = Telemetry::with_capacity(4);
        telemetry.stage("", SystemStage::WorkerPickup, "mail-worker-1").done();
        telemetry.stage("r1", SystemStage::WorkerPickup, "mail-worker-1").done();
        let Some(Observation::Stage(record)) = receiver.recv().await else {
            panic!("one record");
        };
        assert_eq!(record.request_id, "r1");
        assert!(receiver.is_empty());
    }
}

//! The business figures as they change, for every viewer of this dashboard process:
//! once a second the system's load (`system_metrics` on the live stream), every 5 s the
//! whole snapshot (`analytics:update`, and `metrics` on `/ws/metrics`; its active users
//! are also the sample kept in `realtime_metrics`), every 10 s the
//! active users (`active_users`), and each new item of the activity feed as it is
//! committed (`activity` on `/ws/metrics`).
//!
//! An item reaches the feed the moment its announcement reaches this dashboard's live
//! hub (from any process: announcements cross on the bus); every second the feed also
//! looks in `activity_stream` for what it did not hear of (an announcement lost to a
//! Redis outage, or skipped by a feed that lagged), so nothing committed is missed and
//! nothing is sent twice.
//!
//! One task per dashboard process computes them for all its viewers. Each dashboard
//! process of a cluster computes its own from the shared database, so nothing about
//! them needs the bus.

use std::{sync::Arc, time::Duration};

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use wire::{ActivityEvent, BusinessMetrics, LiveEvent, SystemLoad};

use super::{Reporting, activity, figures, series};
use crate::{
    live::{LiveHub, Published},
    recent::RecentIds,
    storage::Database,
    telemetry::sampler::Sampler,
};

/// How often the load is published (and new activity looked for).
pub const TICK: Duration = Duration::from_secs(1);
/// How often the snapshot is computed and sent (seed 004: every 5 s).
pub const SNAPSHOT_EVERY_TICKS: u64 = 5;
/// How often `active_users` is published (seed 001: every 10 s).
pub const ACTIVE_USERS_EVERY_TICKS: u64 = 10;
/// How far back each look for new activity reaches: a row stamped before its commit
/// became visible is still found.
const ACTIVITY_LOOKBACK_MS: i64 = 10_000;

/// The latest figures and the activity as it comes, for this process's viewers.
pub struct MetricsFeed {
    latest: watch::Sender<Option<Arc<BusinessMetrics>>>,
    activity: broadcast::Sender<Arc<ActivityEvent>>,
}

impl MetricsFeed {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            latest: watch::channel(None).0,
            activity: broadcast::channel(256).0,
        })
    }

    /// The latest snapshot (none before the first), and each one after it.
    pub fn snapshots(&self) -> watch::Receiver<Option<Arc<BusinessMetrics>>> {
        self.latest.subscribe()
    }

    /// Each new item of the activity feed from now on.
    pub fn activity(&self) -> broadcast::Receiver<Arc<ActivityEvent>> {
        self.activity.subscribe()
    }

    /// Computes and publishes until shutdown.
    pub async fn run(
        self: Arc<Self>,
        db: Database,
        reporting: Reporting,
        sampler: Arc<Sampler>,
        hub: Arc<LiveHub>,
        shutdown: CancellationToken,
    ) {
        let mut state = Cursor {
            tick: 0,
            seen: RecentIds::new(10_000),
            since_ms: crate::now_ms(),
            sampling: None,
        };
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut announced = hub.subscribe();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
                published = announced.recv() => {
                    match published {
                        Ok(published) => self.forward(&published, &mut state.seen),
                        // The next look at the database finds what was skipped.
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                    continue;
                }
            }
            state.tick += 1;
            tokio::select! {
                () = shutdown.cancelled() => return,
                published = self.publish(&db, &reporting, &sampler, &hub, &mut state) => {
                    if let Err(error) = published {
                        tracing::warn!(%error, "the business figures could not be computed");
                    }
                }
            }
        }
    }

    async fn publish(
        &self,
        db: &Database,
        reporting: &Reporting,
        sampler: &Sampler,
        hub: &LiveHub,
        Cursor {
            tick,
            seen,
            since_ms,
            sampling,
        }: &mut Cursor,
    ) -> Result<(), sqlx::Error> {
        let tick = *tick;
        let now = chrono::Utc::now();
        let load = system_load(sampler).await;
        if tick.is_multiple_of(SNAPSHOT_EVERY_TICKS) {
            let snapshot = Arc::new(figures::snapshot(db, reporting, load, now).await?);
            // The sample behind peak24h, trend and the active-users series: several
            // dashboards may take it at once, and each bucket keeps the highest. It is a
            // write, so it waits behind the other writers: in its own task, so that a
            // slow database delays the sample and not the figures; while one is still
            // waiting the next is skipped (a bucket keeps its highest sample anyway).
            if sampling.as_ref().is_none_or(tokio::task::JoinHandle::is_finished) {
                let (db, current, tz) = (db.clone(), snapshot.active_users.current, reporting.timezone);
                *sampling = Some(tokio::spawn(async move {
                    if let Err(error) = series::record_active_users(&db, current, now.timestamp_millis(), tz).await {
                        tracing::warn!(%error, "the active-users sample could not be recorded");
                    }
                }));
            }
            hub.publish(LiveEvent::SystemLoad(snapshot.system_load));
            hub.publish(LiveEvent::AnalyticsUpdate(Box::new((*snapshot).clone())));
            if tick.is_multiple_of(ACTIVE_USERS_EVERY_TICKS) {
                hub.publish(LiveEvent::ActiveUsers(snapshot.active_users.clone()));
            }
            self.latest.send_replace(Some(snapshot));
        } else {
            hub.publish(LiveEvent::SystemLoad(SystemLoad {
                queue_depth: figures::queue_depth(db).await?,
                ..load
            }));
        }
        let look_from = *since_ms - ACTIVITY_LOOKBACK_MS;
        let fresh = activity::recent_since(db, look_from).await?;
        for event in fresh {
            *since_ms = (*since_ms).max(event.timestamp.timestamp_millis());
            if seen.insert(&event.id) {
                // Nobody listening is no reason to stop.
                let _ = self.activity.send(Arc::new(event));
            }
        }
        Ok(())
    }
}

impl MetricsFeed {
    /// Sends the activity items among events just published on the live hub.
    fn forward(&self, published: &Published, seen: &mut RecentIds) {
        for encoded in &published.events {
            if !matches!(encoded.tags.topic, "new_signup" | "payment_success" | "activity:new") {
                continue;
            }
            let Ok(envelopes) = wire::parse_frame(encoded.json()) else {
                continue;
            };
            for envelope in envelopes {
                if let LiveEvent::NewSignup(event) | LiveEvent::PaymentSuccess(event) | LiveEvent::ActivityNew(event) =
                    envelope.event
                    && seen.insert(&event.id)
                {
                    let _ = self.activity.send(Arc::new(event));
                }
            }
        }
    }
}

/// Where the feed is: its tick, and the activity it has sent.
struct Cursor {
    tick: u64,
    /// Activity ids already sent, kept well beyond the lookback's reach.
    seen: RecentIds,
    /// The newest activity's stamp sent so far.
    since_ms: i64,
    /// The active-users sample being written, if any.
    sampling: Option<tokio::task::JoinHandle<()>>,
}

/// The last second's traffic from the telemetry's sample, as seed 001's `systemLoad`
/// (without the queue depth, which is the database's).
pub async fn system_load(sampler: &Sampler) -> SystemLoad {
    let metrics = sampler.current().await.metrics;
    SystemLoad {
        requests_per_second: metrics.requests_per_second,
        avg_response_time: metrics.average_latency,
        error_rate: (metrics.error_rate * 10_000.0).round() / 100.0,
        queue_depth: 0,
    }
}

//! The sampler: once a second it reads every component's meters and state and publishes
//! `component:metrics` for each and `system:metrics` for the header; the last sample is
//! kept for the REST endpoints.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, RwLock, atomic::Ordering},
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;
use wire::{
    ComponentMetrics, DatabaseMetrics, LiveEvent, OverallHealth, QueueMetrics, ServerMetrics, SmtpMetrics,
    SystemMetrics, WebSocketMetrics, WorkerCounts, format_uptime,
};

use super::{Journeys, Telemetry, meters::quantile, reports::Reports};
use crate::{
    balancer::Balancer,
    health::HealthProbe,
    live::LiveHub,
    queue::{QueueName, Queues},
    servers::ServerPool,
    websocket::Registry,
};

pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Samples kept in memory for sparklines: ten minutes at one a second.
pub const SERIES_LENGTH: usize = 600;

pub use wire::Sample;

/// What the sampler reads.
pub struct Sources {
    pub telemetry: Telemetry,
    pub journeys: Arc<Journeys>,
    /// This process's balancer, when it runs one.
    pub balancer: Option<Balancer>,
    pub pool: ServerPool,
    pub queues: Arc<Queues>,
    pub registry: Arc<Registry>,
    pub hub: Arc<LiveHub>,
    /// The status probe, in a process with a dashboard.
    pub probe: Option<Arc<HealthProbe>>,
    /// The other processes' figures, in a dashboard on a cluster's bus.
    pub reports: Option<Arc<Reports>>,
    pub mail_workers: u16,
    pub inapp_workers: u16,
}

pub struct Sampler {
    sources: Sources,
    started: Instant,
    /// The last [`SERIES_LENGTH`] samples, oldest first (a ring buffer).
    series: RwLock<VecDeque<Sample>>,
    previous: RwLock<Previous>,
    /// Woken when a sample is added.
    sampled: tokio::sync::Notify,
}

/// Totals at the last sample, for per-second rates.
#[derive(Default)]
struct Previous {
    at: Option<Instant>,
    requests_by_server: HashMap<String, u64>,
    errors_by_server: HashMap<String, u64>,
    smtp_sent: u64,
    smtp_failed: u64,
    inapp_pushed: u64,
    db_reads: u64,
    db_writes: u64,
    dropped: u64,
    resyncs: u64,
    too_slow: u64,
    load: super::load::LoadMeter,
}

impl Sampler {
    pub fn new(sources: Sources) -> Arc<Self> {
        Arc::new(Self {
            sources,
            started: Instant::now(),
            series: RwLock::new(VecDeque::with_capacity(SERIES_LENGTH)),
            previous: RwLock::new(Previous::default()),
            sampled: tokio::sync::Notify::new(),
        })
    }

    pub fn latest(&self) -> Option<Sample> {
        self.series
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .back()
            .cloned()
    }

    /// The latest sample; in the first instant after start, the first one once taken.
    /// It is never taken here: a sample consumes the meters' windows, so one taken
    /// outside [`run`](Self::run) would steal the figures of the tick it raced.
    pub async fn current(&self) -> Sample {
        loop {
            // Registered before the check, so a sample added in between still wakes it.
            let sampled = self.sampled.notified();
            if let Some(sample) = self.latest() {
                return sample;
            }
            sampled.await;
        }
    }

    /// The samples of the last `seconds`, oldest first.
    pub fn series(&self, seconds: usize) -> Vec<Sample> {
        let series = self.series.read().unwrap_or_else(|poison| poison.into_inner());
        series
            .iter()
            .skip(series.len().saturating_sub(seconds))
            .cloned()
            .collect()
    }

    /// Samples every [`SAMPLE_EVERY`] until shutdown.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        crate::every(SAMPLE_EVERY, shutdown, || async {
            let mut sample = self.sample().await;
            if let Some(reports) = &self.sources.reports {
                sample = reports.merge(sample);
            }
            let telemetry = &self.sources.telemetry;
            for component in &sample.components {
                telemetry.event(LiveEvent::ComponentMetrics(component.clone()));
            }
            telemetry.event(LiveEvent::SystemMetrics(sample.metrics.clone()));
            let mut series = self.series.write().unwrap_or_else(|poison| poison.into_inner());
            if series.len() == SERIES_LENGTH {
                series.pop_front();
            }
            series.push_back(sample);
            drop(series);
            self.sampled.notify_waiters();
        })
        .await;
    }

    /// Reads this process's components now, taking the meters' windows since the last
    /// sample.
    pub(crate) async fn sample(&self) -> Sample {
        let sources = &self.sources;
        let meters = sources.telemetry.meters();
        let now = Instant::now();
        let mut previous = self
            .previous
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        let seconds = previous
            .at
            .map_or(1.0, |at| now.duration_since(at).as_secs_f64())
            .max(0.001);

        let balancer = sources.balancer.as_ref().map(Balancer::metrics);
        for server in balancer.iter().flat_map(|balancer| &balancer.servers) {
            let labels = [server.id.as_str()];
            meters
                .balancer_active
                .with_label_values(&labels)
                .set(server.active_connections as i64);
            meters
                .server_healthy
                .with_label_values(&labels)
                .set(i64::from(server.healthy));
        }
        let mut windows = meters.take_windows();
        let mut components: Vec<ComponentMetrics> = balancer.into_iter().map(ComponentMetrics::LoadBalancer).collect();
        let (mut total_requests, mut total_errors, mut all_latencies) = (0u64, 0u64, Vec::new());
        let mut total_in_flight = 0;
        for info in sources.pool.list() {
            let window = windows.remove(&info.id).unwrap_or_default();
            let handled = previous.requests_by_server.entry(info.id.clone()).or_default();
            *handled += window.requests;
            let errors = previous.errors_by_server.entry(info.id.clone()).or_default();
            *errors += window.errors;
            total_requests += window.requests;
            total_errors += window.errors;
            let mut latencies = window.latencies_ms;
            let in_flight = meters
                .http_in_flight
                .with_label_values(&[info.id.as_str()])
                .get()
                .max(0) as u64;
            total_in_flight += in_flight;
            components.push(ComponentMetrics::Server(ServerMetrics {
                id: info.id.clone(),
                url: format!("{}://{}", self.sources.pool.scheme(), info.addr),
                running: info.running,
                requests_per_second: window.requests as f64 / seconds,
                in_flight,
                latency_p50: quantile(&mut latencies, 0.5),
                latency_p99: quantile(&mut latencies, 0.99),
                errors: *errors,
                requests_handled: *handled,
            }));
            all_latencies.extend(latencies);
        }

        let queue_windows = meters.take_queue_windows();
        if let Ok(counts) = sources.queues.counts().await {
            for count in counts {
                for (state, value) in [
                    ("waiting", count.waiting),
                    ("active", count.active),
                    ("completed", count.completed),
                    ("failed", count.failed),
                    ("delayed", count.delayed),
                ] {
                    meters
                        .queue_jobs
                        .with_label_values(&[count.name.as_str(), state])
                        .set(value as i64);
                }
                let window = queue_windows.get(&count.name).copied().unwrap_or_default();
                let (pool, busy) = match count.name.parse::<QueueName>().map(|queue| queue.channel()) {
                    Ok(crate::queue::Channel::Email) => (sources.mail_workers, &meters.mail_busy),
                    _ => (sources.inapp_workers, &meters.inapp_busy),
                };
                let active_workers = (busy.load(Ordering::Relaxed).max(0) as u64).min(u64::from(pool));
                components.push(ComponentMetrics::Queue(QueueMetrics {
                    counts: count,
                    processing_rate: window.picked as f64 / seconds,
                    average_wait_time: if window.picked == 0 {
                        0.0
                    } else {
                        window.waited_ms / window.picked as f64
                    },
                    workers: WorkerCounts {
                        active: active_workers,
                        idle: u64::from(pool) - active_workers,
                    },
                }));
            }
        }

        let (users, sockets) = sources.registry.counts();
        meters.inapp_sockets.set(sockets as i64);
        let pushed = meters.inapp_pushes.get();
        components.push(ComponentMetrics::Websocket(WebSocketMetrics {
            total_connections: sockets as u64,
            authenticated_users: users as u64,
            messages_per_second: pushed.saturating_sub(previous.inapp_pushed) as f64 / seconds,
            rooms: sources.registry.rooms(),
            recent_events: sources.registry.recent_events(),
        }));
        previous.inapp_pushed = pushed;

        let stats = &sources.queues.database().stats;
        let (reads, writes) = (
            stats.reads.load(Ordering::Relaxed),
            stats.writes.load(Ordering::Relaxed),
        );
        let mut commit_ms = stats.take_latencies();
        for ms in &commit_ms {
            meters.db_commit_duration.observe(ms / 1000.0);
        }
        let system_status = match &sources.probe {
            Some(probe) => probe.current().await.status,
            // Judged by the dashboard that shows it.
            None => OverallHealth::Healthy,
        };
        components.push(ComponentMetrics::Database(DatabaseMetrics {
            backend: sources.queues.database().engine().as_str().into(),
            reads_per_second: reads.saturating_sub(previous.db_reads) as f64 / seconds,
            writes_per_second: writes.saturating_sub(previous.db_writes) as f64 / seconds,
            commit_latency_p50: quantile(&mut commit_ms, 0.5),
            commit_latency_p99: quantile(&mut commit_ms, 0.99),
        }));
        previous.db_reads = reads;
        previous.db_writes = writes;

        let (sent, failed) = meters.smtp_totals();
        let (sent_now, failed_now) = (sent - previous.smtp_sent, failed - previous.smtp_failed);
        let attempts = sent_now + failed_now;
        let share = |count: u64| (attempts > 0).then(|| count as f64 / attempts as f64);
        components.push(ComponentMetrics::Smtp(SmtpMetrics {
            sent_per_second: sent_now as f64 / seconds,
            success_rate: share(sent_now),
            failure_rate: share(failed_now),
            sent,
            failed,
            last_reply: meters.last_reply(),
            circuit: meters.smtp_circuit(),
        }));
        previous.smtp_sent = sent;
        previous.smtp_failed = failed;

        let dropped = sources.telemetry.dropped();
        meters
            .telemetry_dropped
            .inc_by(dropped.saturating_sub(previous.dropped));
        previous.dropped = dropped;
        let live = sources.hub.stats();
        meters.live_viewers.set(live.viewers as i64);
        meters
            .live_resyncs
            .inc_by(live.resyncs.saturating_sub(previous.resyncs));
        meters
            .live_too_slow
            .inc_by(live.too_slow.saturating_sub(previous.too_slow));
        meters
            .live_last_seq
            .set(i64::try_from(live.last_seq).unwrap_or(i64::MAX));
        previous.resyncs = live.resyncs;
        previous.too_slow = live.too_slow;
        let in_progress = sources.journeys.in_progress();
        meters.journeys_in_progress.set(in_progress as i64);

        let average_latency = if all_latencies.is_empty() {
            0.0
        } else {
            all_latencies.iter().sum::<f64>() / all_latencies.len() as f64
        };
        let metrics = SystemMetrics {
            system_status,
            // Requests, not connections: the balancer's connection counts include every
            // open in-app socket (the header said 6 "active" with nothing running).
            active_requests: total_in_flight,
            requests_per_second: total_requests as f64 / seconds,
            average_latency,
            error_rate: if total_requests == 0 {
                0.0
            } else {
                total_errors as f64 / total_requests as f64
            },
            uptime: format_uptime(
                sources
                    .probe
                    .as_ref()
                    .map_or(self.started, |probe| probe.started)
                    .elapsed()
                    .as_secs(),
            ),
            timestamp: chrono::Utc::now(),
        };
        previous.at = Some(now);
        let load = previous.load.read();
        *self.previous.write().unwrap_or_else(|poison| poison.into_inner()) = previous;
        Sample {
            metrics,
            components,
            load,
        }
    }
}

impl Previous {
    fn take(&mut self) -> Self {
        std::mem::take(self)
    }
}

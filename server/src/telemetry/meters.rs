//! Meters: what the components count as they work, read once a second by the sampler
//! ([`super::sampler`]) for `component:metrics` and `system:metrics`, and by Prometheus
//! at `GET /metrics` (through `prometheus-client`, which owns the text format).
//!
//! Counting is an atomic add or a short mutex push; nothing here waits on I/O.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
};

use app::wire::{SmtpReply, Timestamp};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

/// Latencies kept per server per second for p50/p99; beyond this they are sampled.
const WINDOW_SAMPLES: usize = 8_192;
/// Histogram buckets for request latency, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub server: String,
    /// `2xx`, `4xx`, `5xx`, ...
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueStateLabels {
    pub queue: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `sent`, `transient` or `permanent`.
    pub outcome: String,
}

/// One server's requests in the current second.
#[derive(Default)]
pub struct Window {
    pub requests: u64,
    pub errors: u64,
    pub latencies_ms: Vec<f64>,
}

/// Per-queue figures the sampler turns into rates.
#[derive(Default, Clone, Copy)]
pub struct QueueWindow {
    pub picked: u64,
    pub waited_ms: f64,
}

pub struct Meters {
    registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_duration: Family<ServerLabels, Histogram>,
    pub http_in_flight: Family<ServerLabels, Gauge>,
    pub smtp_attempts: Family<OutcomeLabels, Counter>,
    pub queue_jobs: Family<QueueStateLabels, Gauge>,
    pub queue_picked: Family<QueueLabels, Counter>,
    pub workers_busy: Family<QueueLabels, Gauge>,
    pub telemetry_dropped: Counter,
    pub live_viewers: Gauge,
    pub inapp_sockets: Gauge,
    pub journeys_in_progress: Gauge,
    pub balancer_active: Family<ServerLabels, Gauge>,
    pub server_healthy: Family<ServerLabels, Gauge>,
    pub db_commit_duration: Histogram,
    windows: Mutex<HashMap<String, Window>>,
    queue_windows: Mutex<HashMap<String, QueueWindow>>,
    pub smtp_sent: AtomicU64,
    pub smtp_failed: AtomicU64,
    last_reply: Mutex<Option<SmtpReply>>,
    pub inapp_pushed: AtomicU64,
    /// Busy mail / in-app workers right now.
    pub mail_busy: AtomicI64,
    pub inapp_busy: AtomicI64,
}

impl Default for Meters {
    fn default() -> Self {
        Self::new()
    }
}

impl Meters {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("liveview");
        let http_requests = Family::<RequestLabels, Counter>::default();
        let http_duration =
            Family::<ServerLabels, Histogram>::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS.iter().copied()));
        let http_in_flight = Family::<ServerLabels, Gauge>::default();
        let smtp_attempts = Family::<OutcomeLabels, Counter>::default();
        let queue_jobs = Family::<QueueStateLabels, Gauge>::default();
        let queue_picked = Family::<QueueLabels, Counter>::default();
        let workers_busy = Family::<QueueLabels, Gauge>::default();
        let telemetry_dropped = Counter::default();
        let live_viewers = Gauge::default();
        let inapp_sockets = Gauge::default();
        let journeys_in_progress = Gauge::default();
        let balancer_active = Family::<ServerLabels, Gauge>::default();
        let server_healthy = Family::<ServerLabels, Gauge>::default();
        let db_commit_duration = Histogram::new(LATENCY_BUCKETS.iter().copied());
        registry.register(
            "http_requests",
            "Requests answered by the app servers",
            http_requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time an app server took to answer",
            Unit::Seconds,
            http_duration.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "Requests an app server is working on",
            http_in_flight.clone(),
        );
        registry.register(
            "smtp_attempts",
            "SMTP delivery attempts by outcome",
            smtp_attempts.clone(),
        );
        registry.register("queue_jobs", "Jobs in each queue by state", queue_jobs.clone());
        registry.register("queue_jobs_picked", "Jobs picked up by workers", queue_picked.clone());
        registry.register("workers_busy", "Workers busy with a batch", workers_busy.clone());
        registry.register(
            "telemetry_dropped",
            "Telemetry records dropped because the aggregator was behind",
            telemetry_dropped.clone(),
        );
        registry.register("live_viewers", "Open live-view streams", live_viewers.clone());
        registry.register("inapp_sockets", "Open end-user in-app sockets", inapp_sockets.clone());
        registry.register(
            "journeys_in_progress",
            "Traced requests whose deliveries have not all ended",
            journeys_in_progress.clone(),
        );
        registry.register(
            "balancer_active_connections",
            "Connections the balancer holds open to each server",
            balancer_active.clone(),
        );
        registry.register(
            "server_healthy",
            "1 when the balancer counts the server healthy",
            server_healthy.clone(),
        );
        registry.register_with_unit(
            "db_commit_duration",
            "Time a request's commit took, injected delay included",
            Unit::Seconds,
            db_commit_duration.clone(),
        );
        Self {
            registry,
            http_requests,
            http_duration,
            http_in_flight,
            smtp_attempts,
            queue_jobs,
            queue_picked,
            workers_busy,
            telemetry_dropped,
            live_viewers,
            inapp_sockets,
            journeys_in_progress,
            balancer_active,
            server_healthy,
            db_commit_duration,
            windows: Mutex::new(HashMap::new()),
            queue_windows: Mutex::new(HashMap::new()),
            smtp_sent: AtomicU64::new(0),
            smtp_failed: AtomicU64::new(0),
            last_reply: Mutex::new(None),
            inapp_pushed: AtomicU64::new(0),
            mail_busy: AtomicI64::new(0),
            inapp_busy: AtomicI64::new(0),
        }
    }

    /// An app server answered a request.
    pub fn request_done(&self, server: &str, status: u16, seconds: f64) {
        let labels = ServerLabels { server: server.into() };
        self.http_requests
            .get_or_create(&RequestLabels {
                server: server.into(),
                status: format!("{}xx", status / 100),
            })
            .inc();
        self.http_duration.get_or_create(&labels).observe(seconds);
        let mut windows = self.windows.lock().unwrap_or_else(|poison| poison.into_inner());
        let window = windows.entry(labels.server).or_default();
        window.requests += 1;
        if status >= 500 {
            window.errors += 1;
        }
        if window.latencies_ms.len() < WINDOW_SAMPLES {
            window.latencies_ms.push(seconds * 1000.0);
        }
    }

    /// Takes every server's window of the last second, leaving empty ones.
    pub fn take_windows(&self) -> HashMap<String, Window> {
        std::mem::take(&mut *self.windows.lock().unwrap_or_else(|poison| poison.into_inner()))
    }

    /// A worker picked a job of `queue` that had been due for `waited_ms`.
    pub fn picked(&self, queue: &str, waited_ms: f64) {
        self.queue_picked
            .get_or_create(&QueueLabels { queue: queue.into() })
            .inc();
        let mut windows = self.queue_windows.lock().unwrap_or_else(|poison| poison.into_inner());
        let window = windows.entry(queue.to_string()).or_default();
        window.picked += 1;
        window.waited_ms += waited_ms.max(0.0);
    }

    pub fn take_queue_windows(&self) -> HashMap<String, QueueWindow> {
        std::mem::take(&mut *self.queue_windows.lock().unwrap_or_else(|poison| poison.into_inner()))
    }

    /// An SMTP attempt ended with `code` (0 when there was no reply at all).
    pub fn smtp_reply(&self, code: u16, message: &str, at: Timestamp) {
        let outcome = match code {
            200..=299 => "sent",
            500..=599 => "permanent",
            _ => "transient",
        };
        self.smtp_attempts
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
        if outcome == "sent" {
            self.smtp_sent.fetch_add(1, Ordering::Relaxed);
        } else {
            self.smtp_failed.fetch_add(1, Ordering::Relaxed);
        }
        if code > 0 {
            *self.last_reply.lock().unwrap_or_else(|poison| poison.into_inner()) = Some(SmtpReply {
                code,
                message: message.chars().take(200).collect(),
                at,
            });
        }
    }

    pub fn last_reply(&self) -> Option<SmtpReply> {
        self.last_reply
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// The Prometheus text exposition of every meter.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The `q`-quantile (0.0 to 1.0) of `values` by nearest rank; 0 when empty.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut values, 0.5), 50.0);
        assert_eq!(quantile(&mut values, 0.99), 99.0);
        assert_eq!(quantile(&mut [], 0.5), 0.0);
    }

    #[test]
    fn the_text_format_has_conventional_names_and_units() {
        let meters = Meters::new();
        meters.request_done("server-1", 201, 0.003);
        meters.smtp_reply(250, "2.0.0 Ok", chrono::Utc::now());
        let text = meters.encode();
        assert!(
            text.contains("liveview_http_requests_total{server=\"server-1\",status=\"2xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE liveview_http_request_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("liveview_smtp_attempts_total{outcome=\"sent\"} 1"),
            "{text}"
        );
        let windows = meters.take_windows();
        assert_eq!(windows["server-1"].requests, 1);
        assert!(meters.take_windows().is_empty(), "taken windows start again");
    }
}

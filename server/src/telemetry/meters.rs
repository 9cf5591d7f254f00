//! Meters: what the components count as they work, read once a second by the sampler
//! ([`super::sampler`]) for `component:metrics` and `system:metrics`, and by Prometheus
//! at `GET /metrics` (through the `prometheus` crate, which owns the text format 0.0.4
//! that Prometheus and its parsers read).
//!
//! Counting is an atomic add or a short mutex push; nothing here waits on I/O.

use std::{
    collections::HashMap,
    sync::{Mutex, atomic::AtomicI64},
};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use wire::{SmtpReply, Timestamp};

/// Latencies kept per server per second for p50/p99; beyond this they are sampled.
const WINDOW_SAMPLES: usize = 8_192;
/// Histogram buckets for request latency, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];

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
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_in_flight: IntGaugeVec,
    pub smtp_attempts: IntCounterVec,
    pub queue_jobs: IntGaugeVec,
    pub queue_picked: IntCounterVec,
    pub telemetry_dropped: IntCounter,
    /// Live-stream viewers that fell behind and were sent a gap and a snapshot.
    pub live_resyncs: IntCounter,
    /// Live-stream viewers closed because they could not keep up.
    pub live_too_slow: IntCounter,
    /// The live stream's latest sequence number.
    pub live_last_seq: IntGauge,
    pub live_viewers: IntGauge,
    pub inapp_sockets: IntGauge,
    pub journeys_in_progress: IntGauge,
    pub balancer_active: IntGaugeVec,
    pub server_healthy: IntGaugeVec,
    pub db_commit_duration: Histogram,
    windows: Mutex<HashMap<String, Window>>,
    queue_windows: Mutex<HashMap<String, QueueWindow>>,
    last_reply: Mutex<Option<SmtpReply>>,
    /// The mail workers' circuit breaker, as they last saw it.
    smtp_circuit: Mutex<wire::CircuitState>,
    /// In-app frames pushed to a user's socket.
    pub inapp_pushes: IntCounter,
    /// Busy mail / in-app workers right now.
    pub mail_busy: AtomicI64,
    pub inapp_busy: AtomicI64,
}

impl Default for Meters {
    fn default() -> Self {
        Self::new()
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("liveview")
}

fn latency(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help)
        .namespace("liveview")
        .buckets(LATENCY_BUCKETS.to_vec())
}

impl Meters {
    pub fn new() -> Self {
        // Names and label sets are fixed here, so building them cannot fail.
        let http_requests = IntCounterVec::new(
            opts("http_requests_total", "Requests answered by the app servers"),
            &["server", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            latency("http_request_duration_seconds", "Time an app server took to answer"),
            &["server"],
        )
        .expect("valid metric");
        let http_in_flight = IntGaugeVec::new(
            opts("http_requests_in_flight", "Requests an app server is working on"),
            &["server"],
        )
        .expect("valid metric");
        let smtp_attempts = IntCounterVec::new(
            opts("smtp_attempts_total", "SMTP delivery attempts by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let queue_jobs = IntGaugeVec::new(opts("queue_jobs", "Jobs in each queue by state"), &["queue", "state"])
            .expect("valid metric");
        let queue_picked = IntCounterVec::new(opts("queue_jobs_picked_total", "Jobs picked up by workers"), &["queue"])
            .expect("valid metric");
        let telemetry_dropped = IntCounter::with_opts(opts(
            "telemetry_dropped_total",
            "Telemetry records dropped because the aggregator was behind",
        ))
        .expect("valid metric");
        let live_viewers = IntGauge::with_opts(opts("live_viewers", "Open live-view streams")).expect("valid metric");
        let live_resyncs = IntCounter::with_opts(opts(
            "live_resyncs_total",
            "Live-stream viewers that fell behind and were sent a gap and a snapshot",
        ))
        .expect("valid metric");
        let live_too_slow = IntCounter::with_opts(opts(
            "live_too_slow_total",
            "Live-stream viewers closed because they could not keep up",
        ))
        .expect("valid metric");
        let live_last_seq = IntGauge::with_opts(opts("live_last_seq", "The live stream's latest sequence number"))
            .expect("valid metric");
        let inapp_sockets =
            IntGauge::with_opts(opts("inapp_sockets", "Open end-user in-app sockets")).expect("valid metric");
        let journeys_in_progress = IntGauge::with_opts(opts(
            "journeys_in_progress",
            "Traced requests whose deliveries have not all ended",
        ))
        .expect("valid metric");
        let balancer_active = IntGaugeVec::new(
            opts(
                "balancer_active_connections",
                "Connections the balancer holds open to each server",
            ),
            &["server"],
        )
        .expect("valid metric");
        let server_healthy = IntGaugeVec::new(
            opts("server_healthy", "1 when the balancer counts the server healthy"),
            &["server"],
        )
        .expect("valid metric");
        let db_commit_duration = Histogram::with_opts(latency(
            "db_commit_duration_seconds",
            "Time a commit took, injected delay included",
        ))
        .expect("valid metric");
        let inapp_pushes = IntCounter::with_opts(opts("inapp_pushes_total", "In-app frames pushed to a user's socket"))
            .expect("valid metric");
        let registry = Registry::new();
        let collectors: [Box<dyn prometheus::core::Collector>; 17] = [
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(http_in_flight.clone()),
            Box::new(smtp_attempts.clone()),
            Box::new(queue_jobs.clone()),
            Box::new(queue_picked.clone()),
            Box::new(telemetry_dropped.clone()),
            Box::new(live_viewers.clone()),
            Box::new(live_resyncs.clone()),
            Box::new(live_too_slow.clone()),
            Box::new(live_last_seq.clone()),
            Box::new(inapp_sockets.clone()),
            Box::new(journeys_in_progress.clone()),
            Box::new(balancer_active.clone()),
            Box::new(server_healthy.clone()),
            Box::new(db_commit_duration.clone()),
            Box::new(inapp_pushes.clone()),
        ];
        for collector in collectors {
            registry.register(collector).expect("each metric is registered once");
        }
        Self {
            registry,
            http_requests,
            http_duration,
            http_in_flight,
            smtp_attempts,
            queue_jobs,
            queue_picked,
            telemetry_dropped,
            live_resyncs,
            live_too_slow,
            live_last_seq,
            live_viewers,
            inapp_sockets,
            journeys_in_progress,
            balancer_active,
            server_healthy,
            db_commit_duration,
            windows: Mutex::new(HashMap::new()),
            queue_windows: Mutex::new(HashMap::new()),
            last_reply: Mutex::new(None),
            smtp_circuit: Mutex::default(),
            inapp_pushes,
            mail_busy: AtomicI64::new(0),
            inapp_busy: AtomicI64::new(0),
        }
    }

    /// An app server answered a request.
    pub fn request_done(&self, server: &str, status: u16, seconds: f64) {
        let class = match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        self.http_requests.with_label_values(&[server, class]).inc();
        self.http_duration.with_label_values(&[server]).observe(seconds);
        let mut windows = self.windows.lock().unwrap_or_else(|poison| poison.into_inner());
        if !windows.contains_key(server) {
            windows.insert(server.to_string(), Window::default());
        }
        let Some(window) = windows.get_mut(server) else {
            return;
        };
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
        self.queue_picked.with_label_values(&[queue]).inc();
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
        self.smtp_attempts.with_label_values(&[outcome]).inc();
        if code > 0 {
            *self.last_reply.lock().unwrap_or_else(|poison| poison.into_inner()) = Some(SmtpReply {
                code,
                message: message.chars().take(200).collect(),
                at,
            });
        }
    }

    /// SMTP attempts so far: accepted, and refused or failed (the `smtp_attempts_total`
    /// counters the sampler turns into rates).
    pub fn smtp_totals(&self) -> (u64, u64) {
        let count = |outcome: &str| self.smtp_attempts.with_label_values(&[outcome]).get();
        (count("sent"), count("transient") + count("permanent"))
    }

    pub fn set_smtp_circuit(&self, state: wire::CircuitState) {
        *self.smtp_circuit.lock().unwrap_or_else(|poison| poison.into_inner()) = state;
    }

    pub fn smtp_circuit(&self) -> wire::CircuitState {
        *self.smtp_circuit.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn last_reply(&self) -> Option<SmtpReply> {
        self.last_reply
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// The Prometheus text exposition (format 0.0.4) of every meter.
    pub fn encode(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|error| format!("# encoding failed: {error}\n"))
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
        assert!(text.contains("# TYPE liveview_http_requests_total counter"), "{text}");
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

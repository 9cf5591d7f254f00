//! Live-stream viewers for the benchmarks, in a process of their own: `liveview bench
//! viewers` (hidden) holds N WebSocket clients of `/api/live-view/ws` (or, with
//! `--socket metrics`, of the business socket `/ws/metrics`), counts what they receive
//! and times it. Its own process so that the server's memory per viewer is
//! measured alone and both ends of 10,000 sockets fit the descriptor limit (20,000 here).
//! [`ViewerProcess`] starts it and drives it over stdin and stdout, one line each way.
//!
//! Latency is from an event's creation to a viewer having received and parsed the frame
//! that carries it, with the host's wall clock at both ends (one machine, one clock):
//! - probes: `worker:idle` events whose `workerId` is [`PROBE_PREFIX`] + the Unix time in
//!   nanoseconds at which the benchmark created them, just before handing them to the
//!   telemetry channel, so the aggregator's batching and the hub are included;
//! - pipeline events: `request:progress` whose stage has ended; the stage's `endTime` is
//!   the instant the component recorded it, again before the aggregator.
//!
//! On `/ws/metrics` the probes are activity items whose description is
//! [`PROBE_PREFIX`] followed by their creation time, committed to `activity_stream` as the controllers commit
//! theirs; the snapshots (`metrics`, every 5 s) are timed from their `timestamp`, the
//! instant the feed computed them (milliseconds).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::live::CLOSE_TOO_SLOW;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout},
    sync::{Semaphore, mpsc},
};
use tokio_tungstenite::tungstenite::Message;
use wire::{LiveEvent, MetricsMessage, WorkerIdle, WorkerKind, parse_frame};

use super::{Latencies, cpu_seconds, rss_kib};

/// `workerId` of a probe event: this, then the creation time in Unix nanoseconds.
pub const PROBE_PREFIX: &str = "bench-probe@";
/// Handshakes in flight at once: more only overflow the listener's backlog.
const CONNECTING: usize = 64;
/// How long opening all the viewers may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(180);
/// The live socket's close code for a viewer that could not keep up (`live/socket.rs`).
/// Latency samples are kept in this many locked vectors, so viewers rarely meet on one.
const SHARDS: usize = 64;

#[derive(Debug, Clone, clap::Args)]
pub struct ViewersArgs {
    /// The live stream's WebSocket URL (`ws://host:port/api/live-view/ws`).
    #[arg(long)]
    pub url: String,
    /// How many viewers to open.
    #[arg(long)]
    pub count: usize,
    /// One viewer in this many records the latency of every pipeline event; every
    /// viewer records every probe.
    #[arg(long, default_value_t = 10)]
    pub sample_every: usize,
    /// Which socket `--url` is.
    #[arg(long, value_enum, default_value_t = Socket::Live)]
    pub socket: Socket,
}

/// The sockets the viewers can watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Socket {
    /// `/api/live-view/ws`: the Live View's event stream.
    Live,
    /// `/ws/metrics`: the business figures and the activity feed.
    Metrics,
}

impl Socket {
    pub fn path(self) -> &'static str {
        match self {
            Socket::Live => "/api/live-view/ws",
            Socket::Metrics => "/ws/metrics",
        }
    }
}

/// The child's first line: its viewers are open and each has its snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    pub connected: usize,
    pub failed: usize,
    pub seconds: f64,
    /// The child's resident memory before opening any socket, and after.
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

/// What the viewers saw between `start` and `stop`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub seconds: f64,
    /// WebSocket messages received.
    pub frames: u64,
    /// Published events received (envelopes; `stream:*` messages not counted).
    pub deliveries: u64,
    /// Events each viewer should have received: for each, the span of seqs from the
    /// first it got while counting to the last. `deliveries / expected` is what arrived
    /// of what was due, free of the window's edges.
    pub expected: u64,
    pub probes: Latencies,
    pub pipeline: Latencies,
    pub gaps: u64,
    pub snapshots: u64,
    /// Viewers whose socket has closed since they opened, and of them with 4008 (too slow).
    pub closed: u64,
    pub closed_too_slow: u64,
    pub parse_errors: u64,
    pub rss_kib: u64,
}

/// A probe event created now.
pub fn probe() -> LiveEvent {
    LiveEvent::WorkerIdle(WorkerIdle {
        worker_id: probe_label(),
        kind: WorkerKind::Mail,
    })
}

/// A probe's label: [`PROBE_PREFIX`] and the time now.
pub fn probe_label() -> String {
    format!("{PROBE_PREFIX}{}", unix_nanos())
}

/// When a probe was created (Unix nanoseconds), from its label (a `workerId`, or an
/// activity's description); `None` for real workers and real activity.
fn probe_created(label: &str) -> Option<i64> {
    label.strip_prefix(PROBE_PREFIX)?.parse().ok()
}

fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
}

#[derive(Default)]
struct Samples {
    probes: Vec<u32>,
    pipeline: Vec<u32>,
}

struct Counters {
    measuring: AtomicBool,
    /// Bumped by every `start`, so each viewer begins its seq span afresh.
    epoch: AtomicU64,
    frames: AtomicU64,
    deliveries: AtomicU64,
    expected: AtomicU64,
    gaps: AtomicU64,
    snapshots: AtomicU64,
    closed: AtomicU64,
    closed_too_slow: AtomicU64,
    parse_errors: AtomicU64,
    samples: [Mutex<Samples>; SHARDS],
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            measuring: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            closed_too_slow: AtomicU64::new(0),
            parse_errors: AtomicU64::new(0),
            samples: std::array::from_fn(|_| Mutex::default()),
        }
    }
}

impl Counters {
    fn reset(&self) {
        for counter in [
            &self.frames,
            &self.deliveries,
            &self.expected,
            &self.gaps,
            &self.snapshots,
            &self.parse_errors,
        ] {
            counter.store(0, Relaxed);
        }
        for shard in &self.samples {
            *lock(shard) = Samples::default();
        }
    }

    fn report(&self, seconds: f64) -> Report {
        let mut probes = Vec::new();
        let mut pipeline = Vec::new();
        for shard in &self.samples {
            let mut shard = lock(shard);
            probes.append(&mut shard.probes);
            pipeline.append(&mut shard.pipeline);
        }
        Report {
            seconds,
            frames: self.frames.load(Relaxed),
            deliveries: self.deliveries.load(Relaxed),
            expected: self.expected.load(Relaxed),
            probes: Latencies::of(probes),
            pipeline: Latencies::of(pipeline),
            gaps: self.gaps.load(Relaxed),
            snapshots: self.snapshots.load(Relaxed),
            closed: self.closed.load(Relaxed),
            closed_too_slow: self.closed_too_slow.load(Relaxed),
            parse_errors: self.parse_errors.load(Relaxed),
            rss_kib: rss_kib(),
        }
    }
}

fn lock(shard: &Mutex<Samples>) -> std::sync::MutexGuard<'_, Samples> {
    shard.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// The hidden subcommand: opens the viewers, prints [`Ready`], then answers `start` with
/// nothing and `stop` with a [`Report`], until its stdin closes.
pub async fn viewers(args: ViewersArgs) -> anyhow::Result<()> {
    let rss_before_kib = rss_kib();
    let counters = Arc::new(Counters::default());
    let connecting = Arc::new(Semaphore::new(CONNECTING));
    let (ready_tx, mut ready_rx) = mpsc::channel(args.count.max(1));
    let opened = Instant::now();
    for index in 0..args.count {
        let sample_pipeline = index % args.sample_every.max(1) == 0;
        tokio::spawn(viewer(
            args.url.clone(),
            args.socket,
            sample_pipeline,
            counters.clone(),
            connecting.clone(),
            ready_tx.clone(),
        ));
    }
    drop(ready_tx);
    let (mut connected, mut failed) = (0, 0);
    let deadline = tokio::time::Instant::now() + OPEN_TIMEOUT;
    while connected + failed < args.count {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(true)) => connected += 1,
            Ok(Some(false)) => failed += 1,
            Ok(None) | Err(_) => break,
        }
    }
    failed = args.count - connected;
    let ready = Ready {
        connected,
        failed,
        seconds: opened.elapsed().as_secs_f64(),
        rss_before_kib,
        rss_after_kib: rss_kib(),
    };
    say(&ready)?;

    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    let mut started = Instant::now();
    while let Some(command) = commands.next_line().await? {
        match command.trim() {
            "start" => {
                counters.measuring.store(false, Relaxed);
                counters.reset();
                counters.epoch.fetch_add(1, Relaxed);
                started = Instant::now();
                counters.measuring.store(true, Relaxed);
            }
            "stop" => {
                counters.measuring.store(false, Relaxed);
                say(&counters.report(started.elapsed().as_secs_f64()))?;
            }
            other => anyhow::bail!("unknown command {other:?}"),
        }
    }
    Ok(())
}

/// One line of JSON on stdout, flushed: the parent waits for it.
fn say(value: &impl Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, value)?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}

/// One viewer: connects, reports ready on its first message (the snapshot), then counts
/// and times everything until the socket closes.
async fn viewer(
    url: String,
    kind: Socket,
    sample_pipeline: bool,
    counters: Arc<Counters>,
    connecting: Arc<Semaphore>,
    ready: mpsc::Sender<bool>,
) {
    // Client messages are tiny and the server's frames come in 4 KiB fragments.
    let config = crate::websocket::client_config();
    let permit = connecting.acquire_owned().await;
    let mut socket = match tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true).await {
        Ok((socket, _)) => socket,
        Err(error) => {
            tracing::warn!(%error, "viewer could not connect");
            let _ = ready.send(false).await;
            return;
        }
    };
    let mut ready = Some((ready, permit));
    let shard = &counters.samples[next_shard()];
    if kind == Socket::Metrics {
        return watch_metrics(socket, &counters, shard, ready).await;
    }
    // The counting window this viewer last saw, and the last seq it got in it.
    let mut epoch = 0;
    let mut last_seq: Option<u64> = None;
    while let Some(message) = socket.next().await {
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(frame)) => {
                if frame.is_some_and(|frame| u16::from(frame.code) == CLOSE_TOO_SLOW) {
                    counters.closed_too_slow.fetch_add(1, Relaxed);
                }
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        };
        let parsed = parse_frame(&text);
        let at = unix_nanos();
        if let Some((ready, _permit)) = ready.take() {
            let _ = ready.send(true).await;
        }
        let Ok(envelopes) = parsed else {
            counters.parse_errors.fetch_add(1, Relaxed);
            continue;
        };
        if !counters.measuring.load(Relaxed) {
            continue;
        }
        counters.frames.fetch_add(1, Relaxed);
        let now = counters.epoch.load(Relaxed);
        if now != epoch {
            (epoch, last_seq) = (now, None);
        }
        let mut delivered = 0;
        let mut due = 0;
        let mut probes = Vec::new();
        let mut pipeline = Vec::new();
        for envelope in &envelopes {
            match &envelope.event {
                LiveEvent::Snapshot(_) => {
                    counters.snapshots.fetch_add(1, Relaxed);
                    continue;
                }
                LiveEvent::Gap(_) => {
                    counters.gaps.fetch_add(1, Relaxed);
                    continue;
                }
                LiveEvent::StreamError(_) => continue,
                LiveEvent::WorkerIdle(idle) => {
                    if let Some(created) = probe_created(&idle.worker_id) {
                        probes.push(micros(at - created));
                    }
                }
                LiveEvent::RequestProgress(progress) if sample_pipeline => {
                    if let Some(ended) = progress.stage.end_time.and_then(|end| end.timestamp_nanos_opt()) {
                        pipeline.push(micros(at - ended));
                    }
                }
                _ => {}
            }
            delivered += 1;
            due += last_seq.map_or(1, |last| envelope.seq.saturating_sub(last));
            last_seq = Some(envelope.seq);
        }
        counters.deliveries.fetch_add(delivered, Relaxed);
        counters.expected.fetch_add(due, Relaxed);
        if !probes.is_empty() || !pipeline.is_empty() {
            let mut samples = lock(shard);
            samples.probes.append(&mut probes);
            samples.pipeline.append(&mut pipeline);
        }
    }
    if let Some((ready, _permit)) = ready.take() {
        let _ = ready.send(false).await;
    }
    counters.closed.fetch_add(1, Relaxed);
}

type ClientSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A viewer of `/ws/metrics`: subscribes to the snapshots and the activity, then counts
/// both, timing the probes and the snapshots, until the socket closes.
async fn watch_metrics(
    mut socket: ClientSocket,
    counters: &Counters,
    shard: &Mutex<Samples>,
    mut ready: Option<(
        mpsc::Sender<bool>,
        Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>,
    )>,
) {
    use futures_util::SinkExt;
    let subscribe = r#"{"type":"subscribe","channels":["metrics","activity"]}"#;
    if socket.send(Message::Text(subscribe.into())).await.is_err() {
        if let Some((ready, _permit)) = ready.take() {
            let _ = ready.send(false).await;
        }
        return;
    }
    while let Some(message) = socket.next().await {
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let at = unix_nanos();
        let parsed = serde_json::from_str::<MetricsMessage>(&text);
        // Ready once subscribed (the snapshot sent on connect came before).
        if matches!(parsed, Ok(MetricsMessage::Subscribed { .. }))
            && let Some((ready, _permit)) = ready.take()
        {
            let _ = ready.send(true).await;
        }
        let Ok(message) = parsed else {
            counters.parse_errors.fetch_add(1, Relaxed);
            continue;
        };
        if !counters.measuring.load(Relaxed) {
            continue;
        }
        counters.frames.fetch_add(1, Relaxed);
        match message {
            MetricsMessage::Activity { data } => {
                counters.deliveries.fetch_add(1, Relaxed);
                if let Some(created) = probe_created(&data.description) {
                    counters.expected.fetch_add(1, Relaxed);
                    lock(shard).probes.push(micros(at - created));
                }
            }
            MetricsMessage::Metrics { data } => {
                counters.deliveries.fetch_add(1, Relaxed);
                counters.snapshots.fetch_add(1, Relaxed);
                let computed = data.timestamp.timestamp_nanos_opt().unwrap_or(at);
                lock(shard).pipeline.push(micros(at - computed));
            }
            _ => {}
        }
    }
    if let Some((ready, _permit)) = ready.take() {
        let _ = ready.send(false).await;
    }
    counters.closed.fetch_add(1, Relaxed);
}

fn micros(nanos: i64) -> u32 {
    u32::try_from(nanos.max(0) / 1000).unwrap_or(u32::MAX)
}

/// Spreads viewers over the shards without a shared counter.
fn next_shard() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    (NEXT.fetch_add(1, Relaxed) as usize) % SHARDS
}

/// A running `liveview bench viewers` child: open viewers, ready to measure.
pub struct ViewerProcess {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    pub ready: Ready,
}

impl ViewerProcess {
    /// Starts the child with `count` viewers of `socket` of the dashboard at
    /// `dashboard` and waits until they are open.
    pub async fn spawn(
        dashboard: std::net::SocketAddr,
        socket: Socket,
        count: usize,
        sample_every: usize,
    ) -> anyhow::Result<Self> {
        let kind = match socket {
            Socket::Live => "live",
            Socket::Metrics => "metrics",
        };
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args([
                "bench".to_string(),
                "viewers".into(),
                format!("--url=ws://{dashboard}{}", socket.path()),
                format!("--socket={kind}"),
                format!("--count={count}"),
                format!("--sample-every={sample_every}"),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow::anyhow!("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = read(&mut lines).await?;
        Ok(Self {
            child,
            stdin,
            lines,
            ready,
        })
    }

    /// The child's CPU time so far.
    pub fn cpu_seconds(&self) -> f64 {
        self.child.id().map_or(0.0, cpu_seconds)
    }

    /// Starts counting (and forgets what was counted before).
    pub async fn start(&mut self) -> anyhow::Result<()> {
        self.stdin.write_all(b"start\n").await?;
        Ok(self.stdin.flush().await?)
    }

    /// What the viewers saw since [`Self::start`].
    pub async fn stop(&mut self) -> anyhow::Result<Report> {
        self.stdin.write_all(b"stop\n").await?;
        self.stdin.flush().await?;
        read(&mut self.lines).await
    }

    /// Closes every viewer: the child exits when its stdin closes.
    pub async fn close(mut self) {
        drop(self.stdin);
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

async fn read<T: serde::de::DeserializeOwned>(lines: &mut Lines<BufReader<ChildStdout>>) -> anyhow::Result<T> {
    let line = lines
        .next_line()
        .await?
        .ok_or_else(|| anyhow::anyhow!("the viewer process ended early"))?;
    Ok(serde_json::from_str(&line)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_carries_its_creation_time_and_real_workers_are_not_probes() {
        let before = unix_nanos();
        let LiveEvent::WorkerIdle(idle) = probe() else {
            panic!("a worker:idle event")
        };
        let created = probe_created(&idle.worker_id).expect("a probe");
        assert!((before..=unix_nanos()).contains(&created));
        assert_eq!(probe_created("mail-worker-3"), None);
    }

    #[test]
    fn a_report_round_trips_through_its_line() {
        let report = Counters::default().report(1.5);
        let line = serde_json::to_string(&report).expect("serializes");
        let back: Report = serde_json::from_str(&line).expect("parses");
        assert_eq!((back.seconds, back.deliveries, back.probes.count), (1.5, 0, 0));
    }
}

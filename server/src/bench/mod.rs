//! `liveview bench pipeline`: starts the whole system in this process on ephemeral
//! ports, signs up users who hold real in-app sockets (acking every frame), then sends
//! requests through the balancer at rising fixed rates (open loop) and measures, per
//! rate: what was accepted, POST → email accepted by the SMTP server (the embedded
//! capture server's accept time), and POST → in-app frame received by the client.
//! A rate is sustained when at least 95% of its requests were accepted, at no less
//! than 95% of the rate, every notification of the accepted ones arrived within the
//! grace period, and both channels' p99 stayed under `--max-p99-ms` (1 s by default).
//! With `--viewers N`, N live-stream viewers (in a child process, see [`viewers`]) watch
//! the whole run, so the pipeline's throughput with and without them can be compared.
//!
//! `liveview bench fanout` ([`fanout`]) measures the live stream itself, `liveview
//! bench telemetry` ([`telemetry`]) the telemetry's own work per request, and `liveview
//! bench hops` ([`hops`]) what a purchase's network hops cost without the work behind them,
//! and `liveview bench messages` ([`messages`]) messaging's delivery and receipts.

mod fanout;
mod hops;
mod messages;
mod telemetry;
mod viewers;

pub use fanout::{FanoutArgs, fanout};
pub use hops::{HopsArgs, hops};
pub use messages::{MessagesArgs, messages};
pub use telemetry::{TelemetryArgs, telemetry};
pub use viewers::{ViewersArgs, viewers};

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::{Running, config::Config, now_ms, storage::Database};

/// `liveview bench …`: each prints a table of numbers (recorded in BENCHMARKS.md).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Bench {
    /// Drives requests through the balancer at rising rates and measures both delivery
    /// channels end to end.
    Pipeline(PipelineArgs),
    /// Opens N live-stream viewers and measures deliveries, event-to-client latency and
    /// memory per idle viewer.
    Fanout(FanoutArgs),
    /// Folds and publishes the telemetry of N synthetic purchases and measures its cost
    /// per purchase, without the pipeline around it.
    Telemetry(TelemetryArgs),
    /// Sends a purchase's network hops (HTTP through the balancer, an SMTP conversation,
    /// an in-app frame and its ack) without the work behind them, and measures their CPU.
    Hops(HopsArgs),
    /// Sends messages between pairs of friends at rising rates and measures delivery to
    /// the recipient and the delivered receipt back to the sender.
    Messages(MessagesArgs),
    /// Holds N live-stream viewers for `fanout` and `pipeline --viewers` (their child process).
    #[command(hide = true)]
    Viewers(ViewersArgs),
}

impl Bench {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Pipeline(args) => pipeline(args).await,
            Self::Fanout(args) => fanout(args).await,
            Self::Telemetry(args) => telemetry(args).await,
            Self::Hops(args) => hops(args).await,
            Self::Messages(args) => messages(args).await,
            Self::Viewers(args) => viewers(args).await,
        }
    }
}
use viewers::ViewerProcess;

#[derive(Debug, Clone, clap::Args)]
pub struct PipelineArgs {
    /// What each request is: `purchase` (one email + one in-app to a connected user) or
    /// `signup` (argon2 hashing on every request; one email, the in-app one stored for
    /// the user's first connect).
    #[arg(long, default_value = "purchase")]
    pub kind: String,
    /// Request rates to try, per second, in order; stops after the first one not sustained.
    #[arg(long, value_delimiter = ',', default_value = "50,100,200,400,800,1600,3200,6400")]
    pub rates: Vec<u32>,
    /// Seconds at each rate.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Seconds the notifications of a step may take to arrive after the step ends.
    #[arg(long, default_value_t = 5)]
    pub grace: u64,
    /// Users (each with an open in-app socket) that purchases are spread over.
    #[arg(long, default_value_t = 40)]
    pub users: usize,
    /// A rate whose email or in-app p99 exceeds this is not sustained: the system is
    /// falling behind even if it catches up within the grace period.
    #[arg(long, default_value_t = 1000)]
    pub max_p99_ms: i64,
    #[arg(long, default_value_t = 16)]
    pub mail_workers: u16,
    #[arg(long, default_value_t = 8)]
    pub inapp_workers: u16,
    /// Live-stream viewers (WebSocket clients of the dashboard, in a child process) that
    /// watch the whole run; 0 for none. Telemetry itself is on unless switched off below.
    #[arg(long, default_value_t = 0)]
    pub viewers: usize,
    /// Runs the system without the live window's telemetry (no journeys, no live
    /// stream, no history), to measure what telemetry costs the pipeline.
    #[arg(long, conflicts_with = "viewers")]
    pub without_live_telemetry: bool,
    /// Runs the system as a cluster on this PostgreSQL (with --bus-url and
    /// --cluster-secret): the balancer in this process, and --app-processes app and
    /// --worker-processes worker processes of this binary beside it. `tools/cluster.sh
    /// bench` starts the PostgreSQL and Redis.
    #[arg(long, requires_all = ["bus_url", "cluster_secret"], conflicts_with = "viewers")]
    pub database_url: Option<String>,
    #[arg(long)]
    pub bus_url: Option<String>,
    #[arg(long)]
    pub cluster_secret: Option<String>,
    #[arg(long, default_value_t = 2)]
    pub app_processes: u16,
    #[arg(long, default_value_t = 2)]
    pub worker_processes: u16,
}

/// When each notification's frame reached its client (wall-clock ms), by notification id.
type Arrivals = Arc<Mutex<HashMap<String, i64>>>;
/// When each accepted request was sent (wall-clock ms), by request id.
type Sent = Arc<Mutex<HashMap<String, i64>>>;

/// One rate's outcome.
struct Step {
    rate: u32,
    accepted: usize,
    accepted_per_second: f64,
    email: Vec<i64>,
    inapp: Vec<i64>,
    sustained: bool,
}

pub async fn pipeline(args: PipelineArgs) -> anyhow::Result<()> {
    let signup = match args.kind.as_str() {
        "purchase" => false,
        "signup" => true,
        other => anyhow::bail!("unknown --kind {other:?}: use purchase or signup"),
    };
    let telemetry = if args.without_live_telemetry { "off" } else { "on" };
    let (running, dir, cluster) = match &args.database_url {
        None => {
            let (running, dir) =
                start_system(args.mail_workers, args.inapp_workers, args.without_live_telemetry).await?;
            (running, dir, Cluster::default())
        }
        Some(_) => start_cluster(&args).await?,
    };
    let lb = running.lb().to_string();
    let http = client()?;
    println!(
        "liveview bench pipeline: kind={} users={} mail-workers={} inapp-workers={} telemetry={telemetry} viewers={} cores={} {}",
        args.kind,
        args.users,
        args.mail_workers,
        args.inapp_workers,
        args.viewers,
        cores(),
        cluster.describe(&running),
    );

    let arrivals: Arrivals = Arc::default();
    let tokens: Vec<String> = if signup {
        Vec::new()
    } else {
        let users = sign_up_users(&http, &lb, args.users, &arrivals).await?;
        users.into_iter().map(|user| user.token).collect()
    };
    let mut watching = None;
    if args.viewers > 0 {
        // About ten of them time every pipeline event they get.
        let viewers = ViewerProcess::spawn(
            running.dash(),
            viewers::Socket::Live,
            args.viewers,
            (args.viewers / 10).max(1),
        )
        .await?;
        println!(
            "{} live viewers open ({} failed) in {:.1} s",
            viewers.ready.connected, viewers.ready.failed, viewers.ready.seconds
        );
        watching = Some(viewers);
    }

    print!(
        "{:>7} {:>9} {:>8} {:>10} {:>10} {:>10} {:>10} {:>9} {:>8}",
        "rate/s", "accepted", "acc/s", "email p50", "email p99", "inapp p50", "inapp p99", "sustained", "cpu/req"
    );
    if watching.is_some() {
        print!(
            " {:>9} {:>9} {:>6} {:>9} {:>9} {:>7} {:>8}",
            "live ev/s", "deliv/s", "got", "live p50", "live p99", "resyncs", "view cpu"
        );
    }
    println!();
    let mut best = None;
    let mut serial = 0usize;
    for &rate in &args.rates {
        let cpu_before = cpu_seconds(std::process::id()) + cluster.cpu_seconds();
        let stats_before = running.hub.stats();
        let viewer_cpu_before = watching.as_ref().map_or(0.0, ViewerProcess::cpu_seconds);
        if let Some(viewers) = watching.as_mut() {
            viewers.start().await?;
        }
        let step = run_step(
            &args,
            rate,
            signup,
            &mut serial,
            &http,
            &lb,
            &tokens,
            &running.database,
            &arrivals,
        )
        .await?;
        let inapp = |q| {
            if signup {
                "stored".to_string()
            } else {
                percentile(&step.inapp, q)
            }
        };
        let cpu = cpu_seconds(std::process::id()) + cluster.cpu_seconds() - cpu_before;
        print!(
            "{:>7} {:>9} {:>8.0} {:>10} {:>10} {:>10} {:>10} {:>9} {:>5} µs",
            step.rate,
            step.accepted,
            step.accepted_per_second,
            percentile(&step.email, 0.50),
            percentile(&step.email, 0.99),
            inapp(0.50),
            inapp(0.99),
            if step.sustained { "yes" } else { "no" },
            (cpu * 1e6 / step.accepted.max(1) as f64).round(),
        );
        if let Some(viewers) = watching.as_mut() {
            let report = viewers.stop().await?;
            let stats = running.hub.stats();
            let seconds = report.seconds.max(1e-3);
            print!(
                " {:>9.0} {:>9.0} {:>5.1}% {:>9} {:>9} {:>7} {:>7.0}%",
                (stats.last_seq - stats_before.last_seq) as f64 / seconds,
                report.deliveries as f64 / seconds,
                100.0 * report.deliveries as f64 / report.expected.max(1) as f64,
                report.pipeline.p50(),
                report.pipeline.p99(),
                resyncs_and_closes(&stats, &stats_before),
                (viewers.cpu_seconds() - viewer_cpu_before) * 100.0 / seconds,
            );
        }
        println!();
        if !step.sustained {
            break;
        }
        best = Some(rate);
    }
    match best {
        Some(rate) => println!(
            "highest sustained rate: {rate} {}s/s with every notification delivered",
            args.kind
        ),
        None => println!("no rate was sustained"),
    }
    if let Some(viewers) = watching {
        viewers.close().await;
    }
    running.shutdown().await;
    cluster.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The other processes of a benchmarked cluster (none for the single process).
#[derive(Default)]
struct Cluster {
    children: Vec<std::process::Child>,
    apps: u16,
    workers: u16,
}

impl Cluster {
    fn describe(&self, running: &Running) -> String {
        if self.children.is_empty() {
            return format!("one process on {}", running.database.engine().as_str());
        }
        format!(
            "cluster: lb here + {} app + {} worker processes on {} + redis",
            self.apps,
            self.workers,
            running.database.engine().as_str()
        )
    }

    /// CPU the other processes have used (PostgreSQL's and Redis's not included).
    fn cpu_seconds(&self) -> f64 {
        self.children.iter().map(|child| cpu_seconds(child.id())).sum()
    }

    fn stop(mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The balancer in this process (its figures and its sockets beside the load, as in the
/// single-process run) and the app and worker processes as children of this binary, on
/// the PostgreSQL and Redis of the flags. The first worker runs the capture SMTP server
/// that every worker sends to.
async fn start_cluster(args: &PipelineArgs) -> anyhow::Result<(Running, std::path::PathBuf, Cluster)> {
    let dir = std::env::temp_dir().join(format!("liveview-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let binary = std::env::current_exe()?;
    let free =
        || -> anyhow::Result<std::net::SocketAddr> { Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?) };
    let lb = free()?;
    let smtp = free()?;
    let (database_url, bus_url, secret) = (
        args.database_url.clone().unwrap_or_default(),
        args.bus_url.clone().unwrap_or_default(),
        args.cluster_secret.clone().unwrap_or_default(),
    );
    let mut cluster = Cluster {
        apps: args.app_processes,
        workers: args.worker_processes,
        ..Cluster::default()
    };
    let spawn = |name: String, role_args: Vec<String>| -> anyhow::Result<std::process::Child> {
        let data = dir.join(name);
        Ok(std::process::Command::new(&binary)
            .args(role_args)
            .arg("--data")
            .arg(&data)
            .env("LIVEVIEW_DATABASE_URL", &database_url)
            .env("LIVEVIEW_BUS_URL", &bus_url)
            .env("LIVEVIEW_CLUSTER_SECRET", &secret)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()?)
    };
    let mut backends = Vec::new();
    for n in 1..=args.app_processes {
        let listen = free()?;
        backends.push(listen);
        cluster.children.push(spawn(
            format!("app-{n}"),
            [
                "--role",
                "app",
                "--listen",
                &listen.to_string(),
                "--lb",
                &lb.to_string(),
            ]
            .map(String::from)
            .to_vec(),
        )?);
    }
    for n in 1..=args.worker_processes {
        let mut role_args: Vec<String> = [
            "--role",
            "worker",
            "--mail-workers",
            &args.mail_workers.to_string(),
            "--inapp-workers",
            &args.inapp_workers.to_string(),
            "--mailbox-keep",
            "1000000000",
        ]
        .map(String::from)
        .to_vec();
        match n {
            1 => role_args.extend(["--smtp-sink".into(), smtp.to_string()]),
            _ => role_args.extend(["--smtp-url".into(), format!("smtp://{smtp}")]),
        }
        cluster.children.push(spawn(format!("worker-{n}"), role_args)?);
    }
    // Every app answers its health check before the balancer starts.
    let http = client()?;
    for backend in &backends {
        let started = Instant::now();
        while http.get(format!("http://{backend}/healthz")).send().await.is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "app process {backend} did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let config = Config {
        role: wire::ProcessRole::Lb,
        lb,
        backends,
        database_url: args.database_url.clone(),
        bus_url: args.bus_url.clone(),
        cluster_secret: args.cluster_secret.clone(),
        smtp_sink: None,
        ..Config::ephemeral(&dir.join("lb"))
    };
    let running = crate::start(&config).await?;
    Ok((running, dir, cluster))
}

/// Requests the generator leaves unanswered at once. Open-loop load against a system
/// that has stalled would otherwise open sockets until this process (which is also the
/// system) runs out of descriptors; a request over the limit is not sent and counts
/// against the step, which is then not sustained.
const MAX_IN_FLIGHT: usize = 4096;

#[allow(clippy::too_many_arguments)]
async fn run_step(
    args: &PipelineArgs,
    rate: u32,
    signup: bool,
    serial: &mut usize,
    http: &reqwest::Client,
    lb: &str,
    tokens: &[String],
    db: &Database,
    arrivals: &Arrivals,
) -> anyhow::Result<Step> {
    let sent: Sent = Arc::default();
    let started = Instant::now();
    let total = (u64::from(rate) * args.seconds) as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = Vec::with_capacity(total);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut not_sent = 0usize;
    for _ in 0..total {
        ticker.tick().await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            not_sent += 1;
            continue;
        };
        *serial += 1;
        let (path, token, body) = if signup {
            let email = format!("new{serial}@example.com");
            (
                "/api/auth/signup",
                None,
                body(&wire::Signup {
                    email,
                    name: "New".into(),
                    password: "bench-password".into(),
                    user_type: None,
                    source: None,
                }),
            )
        } else {
            purchase(tokens, *serial)
        };
        let (http, lb, sent) = (http.clone(), lb.to_string(), sent.clone());
        requests.push(tokio::spawn(async move {
            let _permit = permit;
            let at = now_ms();
            if let Ok(request_id) = post_accepted(&http, &lb, path, token.as_deref(), body).await {
                sent.lock()
                    .unwrap_or_else(|poison| poison.into_inner())
                    .insert(request_id, at);
            }
        }));
    }
    for request in requests {
        let _ = request.await;
    }
    if not_sent > 0 {
        tracing::warn!(
            not_sent,
            "requests not sent: {MAX_IN_FLIGHT} were already waiting for an answer"
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = sent.lock().unwrap_or_else(|poison| poison.into_inner()).clone();
    let accepted = sent.len();

    let deadline = Instant::now() + Duration::from_secs(args.grace);
    loop {
        let (email, inapp) = latencies(db, &sent, arrivals, signup).await?;
        let complete = email.len() == accepted && (signup || inapp.len() == accepted);
        if complete || Instant::now() > deadline {
            // Every request answered 2xx, at (nearly) the rate it was sent, every
            // notification arrived, and neither channel fell behind.
            let sustained = complete
                && accepted as f64 >= 0.95 * total as f64
                && accepted as f64 / elapsed >= 0.95 * f64::from(rate)
                && p99(&email) <= args.max_p99_ms
                && (signup || p99(&inapp) <= args.max_p99_ms);
            return Ok(Step {
                rate,
                accepted,
                accepted_per_second: accepted as f64 / elapsed,
                email,
                inapp,
                sustained,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the whole system in this process on ephemeral ports, with its data in a fresh
/// temporary directory (returned, for removal).
async fn start_system(
    mail_workers: u16,
    inapp_workers: u16,
    without_live_telemetry: bool,
) -> anyhow::Result<(Running, std::path::PathBuf)> {
    let dir = std::env::temp_dir().join(format!("liveview-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = Config {
        mail_workers,
        inapp_workers,
        // Emails are matched to their requests in the capture server's mailbox, so it
        // keeps every message of the run (its pruning is not in the figures).
        mailbox_keep: 1_000_000_000,
        without_live_telemetry,
        ..Config::ephemeral(&dir)
    };
    Ok((crate::start(&config).await?, dir))
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()?)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, usize::from)
}

/// A signed-up user holding an in-app socket.
struct BenchUser {
    token: String,
    id: String,
}

/// Signs up and logs in `users` users, each holding an in-app socket that acks every
/// frame; returns them once their own notifications have drained.
async fn sign_up_users(
    http: &reqwest::Client,
    lb: &str,
    users: usize,
    arrivals: &Arrivals,
) -> anyhow::Result<Vec<BenchUser>> {
    let mut signed_up = Vec::with_capacity(users);
    for user in 0..users {
        let email = format!("bench{user}@example.com");
        let signup = body(&wire::Signup {
            email: email.clone(),
            name: "Bench".into(),
            password: "bench-password".into(),
            user_type: None,
            source: None,
        });
        post(http, lb, "/api/auth/signup", None, signup).await?;
        let login = body(&wire::Login {
            email,
            password: "bench-password".into(),
        });
        let session: wire::Session = serde_json::from_value(post(http, lb, "/api/auth/login", None, login).await?)?;
        let (token, id) = (session.token, session.user.id);
        tokio::spawn(socket_client(lb.to_string(), token.clone(), arrivals.clone()));
        signed_up.push(BenchUser { token, id });
    }
    // Let the signup and login notifications drain before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(signed_up)
}

/// A purchase by one of `tokens`, the `serial`th.
fn purchase(tokens: &[String], serial: usize) -> (&'static str, Option<String>, Value) {
    let token = tokens[serial % tokens.len()].clone();
    let purchase = body(&wire::NewPurchase {
        item: format!("item {serial}"),
        amount_cents: 999,
        currency: "EUR".into(),
        item_id: None,
    });
    ("/api/purchases", Some(token), purchase)
}

/// A request body of the wire's, as the JSON the benchmark's requests carry.
fn body(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

async fn post(http: &reqwest::Client, lb: &str, path: &str, token: Option<&str>, body: Value) -> anyhow::Result<Value> {
    let mut request = http.post(format!("http://{lb}{path}")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "{path} answered {status}: {value}");
    Ok(value)
}

/// Sends one request; returns its request id when it was accepted (2xx).
async fn post_accepted(
    http: &reqwest::Client,
    lb: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<String> {
    let mut request = http.post(format!("http://{lb}{path}")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    anyhow::ensure!(response.status().is_success(), "answered {}", response.status());
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    Ok(request_id.to_string())
}

/// A client that acks every frame and notes when each arrived.
async fn socket_client(lb: String, token: String, arrivals: Arrivals) {
    let url = format!("ws://{lb}/api/notifications/ws?token={token}");
    let config = Some(crate::websocket::client_config());
    let Ok((mut socket, _)) = tokio_tungstenite::connect_async_with_config(url, config, true).await else {
        return;
    };
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else { continue };
        let at = now_ms();
        let Ok(frame) = serde_json::from_str::<wire::InAppFrame>(&text) else {
            continue;
        };
        let id = frame.id;
        arrivals
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(id.clone(), at);
        if socket
            .send(Message::text(
                serde_json::to_string(&wire::Ack { ack: id }).unwrap_or_default(),
            ))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// POST → email accepted and POST → frame received, in ms, for the requests in `sent`.
async fn latencies(
    db: &Database,
    sent: &HashMap<String, i64>,
    arrivals: &Arrivals,
    signup: bool,
) -> anyhow::Result<(Vec<i64>, Vec<i64>)> {
    let emails: Vec<(Option<String>, i64)> = crate::with_connection!(&mut db.read().await?, |c| {
        sqlx::query_as(
        "SELECT e.request_id, m.received_at_ms FROM emails e JOIN mailbox m ON m.message_id = '<' || e.id || '@liveview.local>'",
    )
    .fetch_all(c)
    .await
    })?;
    let email = emails
        .iter()
        .filter_map(|(request, received)| Some(received - sent.get(request.as_ref()?)?))
        .collect();
    if signup {
        return Ok((email, Vec::new()));
    }
    let notifications: Vec<(String, Option<String>)> =
        crate::with_connection!(&mut db.read().await?, |c| sqlx::query_as(
            "SELECT id, request_id FROM notifications WHERE kind = 'purchase'"
        )
        .fetch_all(c)
        .await)?;
    let arrivals = arrivals.lock().unwrap_or_else(|poison| poison.into_inner());
    let inapp = notifications
        .iter()
        .filter_map(|(id, request)| Some(arrivals.get(id)? - sent.get(request.as_ref()?)?))
        .collect();
    Ok((email, inapp))
}

fn p99(values: &[i64]) -> i64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted
        .get(((sorted.len() as f64 - 1.0) * 0.99).round() as usize)
        .copied()
        .unwrap_or(0)
}

fn percentile(values: &[i64], q: f64) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    format!("{} ms", sorted[index])
}

/// Latencies in microseconds, summarized.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Latencies {
    pub count: u64,
    pub p50_us: u32,
    pub p99_us: u32,
    pub max_us: u32,
}

impl Latencies {
    pub fn of(mut samples: Vec<u32>) -> Self {
        samples.sort_unstable();
        let at = |q: f64| {
            samples
                .get(((samples.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        Self {
            count: samples.len() as u64,
            p50_us: at(0.50),
            p99_us: at(0.99),
            max_us: samples.last().copied().unwrap_or(0),
        }
    }

    pub fn p50(&self) -> String {
        self.show(self.p50_us)
    }

    pub fn p99(&self) -> String {
        self.show(self.p99_us)
    }

    pub fn max(&self) -> String {
        self.show(self.max_us)
    }

    /// Milliseconds, with one decimal below 10 ms; `-` without samples.
    fn show(&self, micros: u32) -> String {
        match (self.count, f64::from(micros) / 1000.0) {
            (0, _) => "-".into(),
            (_, ms) if ms < 10.0 => format!("{ms:.1} ms"),
            (_, ms) => format!("{ms:.0} ms"),
        }
    }
}

/// This process's resident memory (VmRSS), in KiB.
pub fn rss_kib() -> u64 {
    proc_kib("/proc/self/status", "VmRSS:")
}

/// The `Key: N kB` line of a `/proc` file, in KiB; 0 when absent.
fn proc_kib(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of process `pid` so far, in seconds (all its threads).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): state is the first, utime
    // and stime the 12th and 13th, in clock ticks (USER_HZ, 100 on Linux).
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The kernel's unreclaimable slab memory (`SUnreclaim` in `/proc/meminfo`: socket
/// objects among others), system-wide, in KiB.
pub fn kernel_kib() -> u64 {
    proc_kib("/proc/meminfo", "SUnreclaim:")
}

/// The kernel's memory for all TCP sockets (`/proc/net/sockstat`, `TCP: ... mem`), in KiB.
pub fn tcp_kernel_kib() -> u64 {
    std::fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|sockstat| {
            let tcp = sockstat.lines().find(|line| line.starts_with("TCP:"))?;
            let mut words = tcp.split_whitespace();
            words.find(|word| *word == "mem")?;
            words.next()?.parse::<u64>().ok()
        })
        .map_or(0, |pages| pages * 4)
}

/// The `resync/slow` column: viewers resynced and viewers closed as too slow since `before`.
fn resyncs_and_closes(now: &crate::live::LiveStats, before: &crate::live::LiveStats) -> String {
    format!("{}/{}", now.resyncs - before.resyncs, now.too_slow - before.too_slow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_nearest_rank_percentiles_in_milliseconds() {
        let summary = Latencies::of((1..=1000).rev().map(|ms| ms * 1000).collect());
        assert_eq!(
            (summary.count, summary.p50_us, summary.p99_us, summary.max_us),
            (1000, 501_000, 990_000, 1_000_000)
        );
        assert_eq!(
            (summary.p50(), summary.max()),
            ("501 ms".to_string(), "1000 ms".to_string())
        );
        assert_eq!(Latencies::of(vec![2_345]).p99(), "2.3 ms");
        assert_eq!(Latencies::of(Vec::new()).p50(), "-");
    }

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        assert!(rss_kib() > 0);
        // Busy until the kernel has counted a tick (10 ms) for this process.
        let spin = std::time::Instant::now();
        while cpu_seconds(std::process::id()) == 0.0 && spin.elapsed() < Duration::from_secs(10) {}
        assert!(cpu_seconds(std::process::id()) > 0.0);
    }
}

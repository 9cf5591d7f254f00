//! `liveview bench pipeline`: starts the whole system in this process on ephemeral
//! ports, signs up users who hold real in-app sockets (acking every frame), then sends
//! requests through the balancer at rising fixed rates (open loop) and measures, per
//! rate: what was accepted, POST → email accepted by the SMTP server (the embedded
//! capture server's accept time), and POST → in-app frame received by the client.
//! A rate is sustained when at least 95% of its requests were accepted, at no less
//! than 95% of the rate, every notification of the accepted ones arrived within the
//! grace period, and both channels' p99 stayed under `--max-p99-ms` (1 s by default).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{config::Config, now_ms, storage::Database};

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
    let dir = std::env::temp_dir().join(format!("liveview-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = Config::try_parse_from([
        "liveview".to_string(),
        "--dashboard=127.0.0.1:0".into(),
        "--lb=127.0.0.1:0".into(),
        "--server-port-base=0".into(),
        "--smtp-sink=127.0.0.1:0".into(),
        format!("--mail-workers={}", args.mail_workers),
        format!("--inapp-workers={}", args.inapp_workers),
        format!("--data={}", dir.join("data").display()),
        format!("--site={}", dir.join("no-site").display()),
    ])?;
    let running = crate::start(&config).await?;
    let lb = running.balancer.to_string();
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()?;
    println!(
        "liveview bench pipeline: kind={} users={} mail-workers={} inapp-workers={} cores={}",
        args.kind,
        args.users,
        args.mail_workers,
        args.inapp_workers,
        std::thread::available_parallelism().map_or(0, usize::from)
    );

    let arrivals: Arrivals = Arc::default();
    let mut tokens = Vec::new();
    if !signup {
        for user in 0..args.users {
            let email = format!("bench{user}@example.com");
            let signup = json!({ "email": email, "name": "Bench", "password": "bench-password" });
            post(&http, &lb, "/api/auth/signup", None, signup).await?;
            let login = post(
                &http,
                &lb,
                "/api/auth/login",
                None,
                json!({ "email": email, "password": "bench-password" }),
            )
            .await?;
            let token = login["token"].as_str().unwrap_or_default().to_string();
            tokio::spawn(socket_client(lb.clone(), token.clone(), arrivals.clone()));
            tokens.push(token);
        }
        // Let the signup and login notifications drain before measuring.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    println!(
        "{:>7} {:>9} {:>8} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "rate/s", "accepted", "acc/s", "email p50", "email p99", "inapp p50", "inapp p99", "sustained"
    );
    let mut best = None;
    let mut serial = 0usize;
    for &rate in &args.rates {
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
        println!(
            "{:>7} {:>9} {:>8.0} {:>10} {:>10} {:>10} {:>10} {:>9}",
            step.rate,
            step.accepted,
            step.accepted_per_second,
            percentile(&step.email, 0.50),
            percentile(&step.email, 0.99),
            inapp(0.50),
            inapp(0.99),
            if step.sustained { "yes" } else { "no" },
        );
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
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

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
    for _ in 0..total {
        ticker.tick().await;
        *serial += 1;
        let (path, token, body) = if signup {
            let email = format!("new{serial}@example.com");
            (
                "/api/auth/signup",
                None,
                json!({ "email": email, "name": "New", "password": "bench-password" }),
            )
        } else {
            let token = tokens[*serial % tokens.len()].clone();
            let body = json!({ "item": format!("item {serial}"), "amountCents": 999, "currency": "EUR" });
            ("/api/purchases", Some(token), body)
        };
        let (http, lb, sent) = (http.clone(), lb.to_string(), sent.clone());
        requests.push(tokio::spawn(async move {
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
    let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url).await else {
        return;
    };
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else { continue };
        let at = now_ms();
        let Ok(frame) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let id = frame["id"].as_str().unwrap_or_default().to_string();
        arrivals
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(id.clone(), at);
        if socket
            .send(Message::text(json!({ "ack": id }).to_string()))
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
    let emails: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT e.request_id, m.received_at_ms FROM emails e JOIN mailbox m ON m.message_id = '<' || e.id || '@liveview.local>'",
    )
    .fetch_all(&db.pool)
    .await?;
    let email = emails
        .iter()
        .filter_map(|(request, received)| Some(received - sent.get(request.as_ref()?)?))
        .collect();
    if signup {
        return Ok((email, Vec::new()));
    }
    let notifications: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT id, request_id FROM notifications WHERE kind = 'purchase'")
            .fetch_all(&db.pool)
            .await?;
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

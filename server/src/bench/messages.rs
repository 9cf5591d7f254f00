//! `liveview bench messages`: messaging end to end. Starts the system in this process,
//! makes `--pairs` pairs of friends with a conversation each, opens a socket for every
//! one of them (timing the connects), then sends messages through the balancer at
//! rising fixed rates (open loop, spread over the pairs) and measures, per rate:
//! what was accepted; POST → the recipient's `message:new` (delivery); and the
//! recipient's `message:ack` → the sender's `conversation.state_update` saying
//! delivered (the receipt's round trip back). The clients run in this process too, so
//! `cpu/msg` is the system's and the clients' together.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{client, cores, cpu_seconds, p99, percentile, post, start_system};
use crate::now_ms;

#[derive(Debug, Clone, clap::Args)]
pub struct MessagesArgs {
    /// Pairs of friends, each with its conversation and both sockets open.
    #[arg(long, default_value_t = 200)]
    pub pairs: usize,
    /// Message rates to try, per second, in order; stops after the first not sustained.
    #[arg(long, value_delimiter = ',', default_value = "100,200,400,800,1600")]
    pub rates: Vec<u32>,
    /// Seconds at each rate.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Seconds the deliveries of a step may take after it ends. A rate is sustained when
    /// at least 95 % of its messages were accepted at no less than 95 % of the rate, every
    /// accepted one reached its recipient, and the delivery p99 stayed under a second.
    #[arg(long, default_value_t = 5)]
    pub grace: u64,
}

/// What the clients saw, in wall-clock ms: a message's arrival at its recipient (by
/// clientId), the recipient's ack and the sender's receipt (by conversation and seq).
#[derive(Default)]
struct Seen {
    delivered: HashMap<String, i64>,
    acked: HashMap<(String, i64), i64>,
    receipts: HashMap<(String, i64), i64>,
}

type Shared = Arc<Mutex<Seen>>;

struct Pair {
    sender: String,
    conversation: String,
}

pub async fn messages(args: MessagesArgs) -> anyhow::Result<()> {
    let (running, dir) = start_system(4, 4, false).await?;
    let lb = running.lb().to_string();
    let http = client()?;
    println!(
        "liveview bench messages: pairs={} seconds={} cores={}",
        args.pairs,
        args.seconds,
        cores()
    );
    let seen: Shared = Arc::default();
    let mut pairs = Vec::with_capacity(args.pairs);
    let mut connects = Vec::with_capacity(args.pairs * 2);
    for n in 0..args.pairs {
        let (sender, sender_id) = user(&http, &lb, &format!("s{n}")).await?;
        let (recipient, recipient_id) = user(&http, &lb, &format!("r{n}")).await?;
        let request = post(
            &http,
            &lb,
            "/api/friend-requests",
            Some(&sender),
            json!({ "toEmail": format!("r{n}@bench.example") }),
        )
        .await?;
        let accept = format!(
            "/api/friend-requests/{}/accept",
            request["id"].as_str().unwrap_or_default()
        );
        post(&http, &lb, &accept, Some(&recipient), Value::Null).await?;
        let conversation = post(
            &http,
            &lb,
            "/api/conversations",
            Some(&sender),
            json!({ "participants": [recipient_id] }),
        )
        .await?;
        let conversation = conversation["id"].as_str().unwrap_or_default().to_string();
        for (token, role) in [(&recipient, Role::Recipient), (&sender, Role::Sender)] {
            let started = Instant::now();
            let url = format!("ws://{lb}/api/notifications/ws?token={token}");
            let (socket, _) = tokio_tungstenite::connect_async(url).await?;
            connects.push(started.elapsed().as_micros() as i64);
            tokio::spawn(listen(socket, role, seen.clone()));
        }
        let _ = sender_id;
        pairs.push(Pair { sender, conversation });
    }
    connects.sort_unstable();
    let at = |q: f64| connects[((connects.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0;
    println!(
        "{} sockets connected through the balancer: connect p50 {:.1} ms, p99 {:.1} ms",
        connects.len(),
        at(0.5),
        at(0.99)
    );
    // The setup's own notifications drain first.
    tokio::time::sleep(Duration::from_secs(2)).await;

    println!(
        "{:>7} {:>9} {:>8} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9}",
        "rate/s",
        "accepted",
        "acc/s",
        "deliver p50",
        "deliver p99",
        "receipt p50",
        "receipt p99",
        "sustained",
        "cpu/msg"
    );
    let pid = std::process::id();
    let mut serial = 0usize;
    for rate in &args.rates {
        let cpu_before = cpu_seconds(pid);
        let started = Instant::now();
        let total = (*rate as u64 * args.seconds) as usize;
        let sent: Arc<Mutex<HashMap<String, (i64, String)>>> = Arc::default();
        let mut tasks = Vec::with_capacity(total);
        for i in 0..total {
            let due = started + Duration::from_secs_f64(i as f64 / f64::from(*rate));
            tokio::time::sleep_until(due.into()).await;
            serial += 1;
            let pair = &pairs[serial % pairs.len()];
            let client_id = format!("bench-{serial}");
            let (http, lb, sent) = (http.clone(), lb.clone(), sent.clone());
            let (token, conversation) = (pair.sender.clone(), pair.conversation.clone());
            tasks.push(tokio::spawn(async move {
                let at = now_ms();
                let path = format!("/api/conversations/{conversation}/messages");
                let body = json!({ "clientId": client_id, "body": "a benchmark message" });
                if post(&http, &lb, &path, Some(&token), body).await.is_ok() {
                    sent.lock()
                        .unwrap_or_else(|poison| poison.into_inner())
                        .insert(client_id, (at, conversation));
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        let sending = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(args.grace)).await;
        let cpu = cpu_seconds(pid) - cpu_before;
        let sent = std::mem::take(&mut *sent.lock().unwrap_or_else(|poison| poison.into_inner()));
        let seen = seen.lock().unwrap_or_else(|poison| poison.into_inner());
        let mut deliver = Vec::new();
        for (client_id, (at, _)) in &sent {
            if let Some(arrived) = seen.delivered.get(client_id) {
                deliver.push(arrived - at);
            }
        }
        let receipts: Vec<i64> = seen
            .acked
            .iter()
            .filter_map(|(key, acked)| seen.receipts.get(key).map(|heard| heard - acked))
            .collect();
        let accepted = sent.len();
        // As `bench pipeline` judges a rate: nearly all accepted, nearly at the rate,
        // every one delivered, and the delivery p99 under a second.
        let p99 = p99(&deliver);
        let sustained = accepted * 100 >= total * 95
            && accepted as f64 / sending >= 0.95 * f64::from(*rate)
            && deliver.len() == accepted
            && p99 < 1000;
        println!(
            "{:>7} {:>9} {:>8.0} {:>12} {:>12} {:>12} {:>12} {:>9} {:>6.0} µs",
            rate,
            accepted,
            accepted as f64 / sending,
            percentile(&deliver, 0.5),
            percentile(&deliver, 0.99),
            percentile(&receipts, 0.5),
            percentile(&receipts, 0.99),
            if sustained { "yes" } else { "no" },
            cpu / accepted.max(1) as f64 * 1e6,
        );
        drop(seen);
        if !sustained {
            break;
        }
    }
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

#[derive(Clone, Copy)]
enum Role {
    Recipient,
    Sender,
}

/// A signed-up, signed-in user: their token and id.
async fn user(http: &reqwest::Client, lb: &str, name: &str) -> anyhow::Result<(String, String)> {
    let email = format!("{name}@bench.example");
    let password = "bench-password";
    post(
        http,
        lb,
        "/api/auth/signup",
        None,
        json!({ "email": email, "name": name, "password": password }),
    )
    .await?;
    let session = post(
        http,
        lb,
        "/api/auth/login",
        None,
        json!({ "email": email, "password": password }),
    )
    .await?;
    let token = session["token"].as_str().unwrap_or_default().to_string();
    let id = session["user"]["id"].as_str().unwrap_or_default().to_string();
    Ok((token, id))
}

/// One client: acks notifications; a recipient records arrivals and acks messages, a
/// sender records receipts.
async fn listen(
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    role: Role,
    seen: Shared,
) {
    let (mut write, mut read) = socket.split();
    while let Some(Ok(message)) = read.next().await {
        let Message::Text(text) = message else { continue };
        let Ok(frame) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let now = now_ms();
        let reply = match (frame["type"].as_str(), role) {
            (Some("notification:new"), _) => Some(json!({ "ack": frame["id"] })),
            (Some("message:new"), Role::Recipient) => {
                let conversation = frame["conversationId"].as_str().unwrap_or_default().to_string();
                let seq = frame["seq"].as_i64().unwrap_or_default();
                let mut seen = seen.lock().unwrap_or_else(|poison| poison.into_inner());
                seen.delivered
                    .insert(frame["clientId"].as_str().unwrap_or_default().to_string(), now);
                seen.acked.insert((conversation.clone(), seq), now_ms());
                Some(json!({ "type": "message:ack", "conversationId": conversation, "upToSeq": seq }))
            }
            (Some("conversation.state_update"), Role::Sender) => {
                let conversation = frame["conversationId"].as_str().unwrap_or_default().to_string();
                let seq = frame["deliveredSeq"].as_i64().unwrap_or_default();
                seen.lock()
                    .unwrap_or_else(|poison| poison.into_inner())
                    .receipts
                    .entry((conversation, seq))
                    .or_insert(now);
                None
            }
            _ => None,
        };
        if let Some(reply) = reply
            && write.send(Message::text(reply.to_string())).await.is_err()
        {
            return;
        }
    }
}

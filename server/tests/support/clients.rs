//! End users under load, for the crash tests: socket clients that ack every frame and
//! come back with `lastSeq` after a lost connection, and a purchase load that counts
//! what was accepted.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// An in-app socket as the tests hold it.
pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Acks every frame on `socket`, as a real client does, until it closes (or the task is
/// aborted).
pub fn ack_every_frame(mut socket: Socket) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(text) = message {
                let frame: Value = serde_json::from_str(&text).expect("frame");
                let ack = json!({ "ack": frame["id"] }).to_string();
                if socket.send(Message::text(ack)).await.is_err() {
                    return;
                }
            }
        }
    })
}

/// What each user's socket client saw: frames per notification id.
pub type Frames = Arc<Mutex<HashMap<String, u32>>>;

/// A real end-user client: connects through the balancer, acks every frame, and on a
/// lost connection comes back with `lastSeq` as the protocol asks.
pub async fn socket_client(lb: String, token: String, frames: Frames, stop: CancellationToken) {
    let mut last_seq = 0i64;
    while !stop.is_cancelled() {
        let url = format!("ws://{lb}/api/notifications/ws?token={token}&lastSeq={last_seq}");
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return,
                message = socket.next() => message,
            };
            let Some(Ok(message)) = message else { break };
            let Message::Text(text) = message else { continue };
            let frame: Value = serde_json::from_str(&text).expect("JSON frame");
            let id = frame["id"].as_str().expect("id").to_string();
            last_seq = last_seq.max(frame["seq"].as_i64().expect("seq"));
            *frames.lock().expect("lock").entry(id.clone()).or_default() += 1;
            if socket
                .send(Message::text(json!({ "ack": id }).to_string()))
                .await
                .is_err()
            {
                break;
            }
        }
    }
}

/// Sends purchases until stopped; returns the request ids that were accepted (201).
pub async fn load(lb: String, tokens: Vec<String>, stop: Arc<AtomicBool>) -> Vec<String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut accepted = Vec::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let token = &tokens[n % tokens.len()];
        let sent = http
            .post(format!("http://{lb}/api/purchases"))
            .bearer_auth(token)
            .json(&json!({ "item": format!("item {n}"), "amountCents": 100 + n, "currency": "EUR" }))
            .send()
            .await;
        match sent {
            Ok(response) if response.status() == 201 => {
                accepted.push(response.headers()["x-request-id"].to_str().expect("ascii").to_string());
            }
            // Refused or cut off by a kill: not accepted, so nothing is owed.
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    accepted
}

/// `count` users signed up and logged in through the balancer at `lb`; their tokens.
pub async fn signed_in_users(lb: &str, count: usize) -> Vec<String> {
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let mut tokens = Vec::new();
    for user in 0..count {
        let email = format!("user{user}@example.com");
        let signup = json!({ "email": email, "name": format!("User {user}"), "password": "long-enough" });
        let response = http
            .post(format!("http://{lb}/api/auth/signup"))
            .json(&signup)
            .send()
            .await
            .expect("signup");
        assert_eq!(response.status(), 201);
        let login: Value = http
            .post(format!("http://{lb}/api/auth/login"))
            .json(&json!({ "email": email, "password": "long-enough" }))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        tokens.push(login["token"].as_str().expect("token").to_string());
    }
    tokens
}

/// A [`socket_client`] per token, until `stop`.
pub fn spawn_clients(
    lb: &str,
    tokens: &[String],
    frames: &Frames,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    tokens
        .iter()
        .map(|token| {
            tokio::spawn(socket_client(
                lb.to_string(),
                token.clone(),
                frames.clone(),
                stop.clone(),
            ))
        })
        .collect()
}

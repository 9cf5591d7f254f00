//! The load balancer as a client sees it: real HTTP through the proxy to real app
//! servers, failover when a server stops, algorithm switching, and sticky WebSocket
//! tunnels.

use std::{net::SocketAddr, time::Duration};

use axum::{
    Router,
    extract::{State, WebSocketUpgrade, ws::Message as AxumMessage},
    routing::get,
};
use futures_util::{SinkExt, StreamExt};
use liveview::balancer::{Balancer, HealthPolicy};
use support::TestSystem;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

mod support;

async fn served_by(http: &reqwest::Client, url: &str) -> (u16, String) {
    let response = http.get(url).send().await.expect("answers");
    let server = response
        .headers()
        .get("x-served-by")
        .map(|v| v.to_str().expect("ascii").to_string());
    (response.status().as_u16(), server.unwrap_or_default())
}

#[tokio::test]
async fn round_robin_spreads_requests_and_marks_each_response() {
    let servers: u16 = 3;
    let system = TestSystem::start(|config| config.servers = servers).await;
    let running = &system.running;
    let http = system.http.clone();
    let servers = usize::from(servers);
    // No app route exists yet but the servers' own JSON 404: what matters is who answered.
    let url = format!("http://{}/api/where", running.lb());
    let mut seen = Vec::new();
    for _ in 0..2 * servers {
        let (status, server) = served_by(&http, &url).await;
        assert_eq!(status, 404);
        seen.push(server);
    }
    assert_eq!(seen[..servers], seen[servers..], "the same rotation repeats: {seen:?}");
    let mut distinct = seen[..servers].to_vec();
    distinct.sort();
    let every_server: Vec<String> = (1..=servers).map(|i| format!("server-{i}")).collect();
    assert_eq!(distinct, every_server);

    let response = http
        .get(&url)
        .header("x-request-id", "trace-me-1")
        .send()
        .await
        .expect("answers");
    assert_eq!(
        response.headers()["x-request-id"],
        "trace-me-1",
        "a caller's id is kept"
    );
    let response = http.get(&url).send().await.expect("answers");
    assert!(
        !response.headers()["x-request-id"].is_empty(),
        "an id is minted when absent"
    );

    let metrics = system.dashboard_json("/api/balancer").await;
    let handled: u64 = metrics["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| s["requestsHandled"].as_u64().expect("count"))
        .sum();
    // The rotation twice, then the two requests about ids.
    assert_eq!(handled, 2 * servers as u64 + 2);
    system.stop().await;
}

#[tokio::test]
async fn a_stopped_server_gets_no_traffic_and_nobody_sees_an_error() {
    let system = TestSystem::start(|config| config.servers = 2).await;
    let running = &system.running;
    let http = system.http.clone();
    let url = format!("http://{}/api/where", running.lb());
    let dashboard = format!("http://{}", running.dash());
    let stop = http
        .post(format!("{dashboard}/api/servers/1/stop"))
        .send()
        .await
        .expect("answers");
    assert_eq!(stop.status(), 200);

    for _ in 0..10 {
        assert_eq!(served_by(&http, &url).await, (404, "server-2".to_string()));
    }
    let metrics: serde_json::Value = http
        .get(format!("{dashboard}/api/balancer"))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(metrics["servers"][0]["healthy"], false);

    let again = http
        .post(format!("{dashboard}/api/servers/1/stop"))
        .send()
        .await
        .expect("answers");
    assert_eq!(again.status(), 409);
    let unknown = http
        .post(format!("{dashboard}/api/servers/9/start"))
        .send()
        .await
        .expect("answers");
    assert_eq!(unknown.status(), 404);

    http.post(format!("{dashboard}/api/servers/1/start"))
        .send()
        .await
        .expect("answers");
    // Health checks (every second, two passes to recover) put it back.
    support::eventually(
        "server-1 takes traffic again after recovering",
        Duration::from_secs(6),
        || async { (served_by(&http, &url).await.1 == "server-1").then_some(()) },
    )
    .await;
    system.stop().await;
}

#[tokio::test]
async fn the_algorithm_switches_at_runtime_and_bad_values_are_refused() {
    let system = TestSystem::start(|config| config.servers = 2).await;
    let running = &system.running;
    let http = system.http.clone();
    let url = format!("http://{}/api/balancer", running.dash());
    let response = http
        .put(&url)
        .json(&serde_json::json!({ "algorithm": "least-connections" }))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    let metrics: serde_json::Value = response.json().await.expect("json");
    assert_eq!(metrics["algorithm"], "least-connections");

    let response = http
        .put(&url)
        .json(&serde_json::json!({ "algorithm": "random" }))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 400);
    let error: serde_json::Value = response.json().await.expect("json");
    assert!(
        error["fields"]["algorithm"]
            .as_str()
            .expect("message")
            .contains("least-connections")
    );

    let response = http
        .put(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 400);
    assert!(response.json::<serde_json::Value>().await.expect("json error")["error"].is_string());
    let metrics: serde_json::Value = http
        .get(&url)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(
        metrics["algorithm"], "least-connections",
        "refused updates change nothing"
    );

    let response = http
        .get(format!("http://{}/api/nope", running.dash()))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 404);
    assert!(response.json::<serde_json::Value>().await.expect("json error")["error"].is_string());
    system.stop().await;
}

/// A backend that answers WebSocket messages with its own name.
async fn echo_backend(name: &'static str) -> (SocketAddr, CancellationToken) {
    async fn socket(State(name): State<&'static str>, upgrade: WebSocketUpgrade) -> axum::response::Response {
        upgrade.on_upgrade(move |mut socket| async move {
            while let Some(Ok(AxumMessage::Text(text))) = socket.recv().await {
                let reply = format!("{name}:{}", text.as_str());
                if socket.send(AxumMessage::Text(reply.into())).await.is_err() {
                    return;
                }
            }
        })
    }
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/ws", get(socket))
        .with_state(name);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await
    });
    (addr, stop)
}

async fn ask(url: &str) -> Option<String> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.ok()?;
    socket.send(Message::text("hi")).await.ok()?;
    let reply = tokio::time::timeout(Duration::from_secs(3), socket.next())
        .await
        .ok()??
        .ok()?;
    reply.into_text().ok().map(|text| text.to_string())
}

#[tokio::test]
async fn websocket_users_stick_to_one_server_and_move_when_it_goes_down() {
    let (a, stop_a) = echo_backend("server-1").await;
    let (b, stop_b) = echo_backend("server-2").await;
    let shutdown = CancellationToken::new();
    let policy = HealthPolicy {
        interval: Duration::from_millis(100),
        ..HealthPolicy::default()
    };
    let balancer = Balancer::new(
        "127.0.0.1:0".parse().expect("addr"),
        &[("server-1".into(), a), ("server-2".into(), b)],
        policy,
        None,
        shutdown.clone(),
        TaskTracker::new(),
        liveview::telemetry::Telemetry::disabled(),
        Default::default(),
        std::sync::Arc::new(liveview::access::TrustedProxies::new(Vec::new())),
    );
    tokio::spawn(balancer.clone().run_health_checks(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let lb = listener.local_addr().expect("addr");
    let routed = balancer.clone();
    tokio::spawn(async move { axum::serve(listener, routed.router(std::path::Path::new("no-site"))).await });

    // Plain traffic alternates, but one user's sockets always land on the same server.
    let user = format!("ws://{lb}/api/ws?token=u1.secret");
    let first = ask(&user).await.expect("tunnel works");
    let home = first.split(':').next().expect("server name").to_string();
    assert_eq!(first, format!("{home}:hi"));
    for _ in 0..5 {
        assert_eq!(ask(&user).await.expect("tunnel works"), first, "sticky");
    }
    let mut homes = std::collections::BTreeSet::new();
    for other in 2..6 {
        let reply = ask(&format!("ws://{lb}/api/ws?token=u{other}.secret"))
            .await
            .expect("tunnel works");
        homes.insert(reply.split(':').next().expect("server name").to_string());
    }
    assert_eq!(homes.len(), 2, "other users are spread over both servers: {homes:?}");

    // The sticky server goes away: the user lands on the healthy one when reconnecting.
    let gone = usize::from(home != "server-1");
    if gone == 0 {
        stop_a.cancel();
    } else {
        stop_b.cancel();
    }
    support::eventually(
        &format!("the balancer sees {home} unhealthy"),
        Duration::from_secs(5),
        || async { (!balancer.metrics().servers[gone].healthy).then_some(()) },
    )
    .await;
    let moved = ask(&user).await.expect("reconnects");
    assert_ne!(moved, first);
    assert_eq!(
        ask(&user).await.expect("reconnects"),
        moved,
        "and sticks to the new server"
    );
    shutdown.cancel();
}

// Regression: the sticky map was keyed by the unchecked user part of a token and filled
// before the app server had looked at the token, so bogus tokens grew it without end.
#[tokio::test]
async fn a_flood_of_bogus_tokens_leaves_no_sticky_sessions() {
    let system = TestSystem::start(|config| config.servers = 2).await;
    let lb = system.running.lb();
    for wave in 0..20 {
        let attempts = (0..50).map(|n| {
            let url = format!("ws://{lb}/api/notifications/ws?token=bogus{wave}x{n}.secret");
            async move { tokio_tungstenite::connect_async(url).await }
        });
        for attempt in futures_util::future::join_all(attempts).await {
            let refused = attempt.expect_err("an unknown token is refused");
            let tokio_tungstenite::tungstenite::Error::Http(response) = refused else {
                panic!("refused with an HTTP answer: {refused}");
            };
            assert_eq!(response.status(), 401);
        }
    }
    let sticky = system.dashboard_json("/api/balancer").await["stickySessions"]["total"].clone();
    assert_eq!(sticky, 0, "1,000 bogus tokens remembered nothing");
    system.stop().await;
}

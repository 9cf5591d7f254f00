//! The control plane lets no one in: `--dashboard-auth login`, operator accounts and
//! their roles, sessions, the metrics bearer token, and the refusal to run a dashboard
//! beyond loopback without sign-in. Every refusal is checked to have changed nothing.

use std::{net::SocketAddr, time::Duration};

use futures_util::StreamExt;
use liveview::{config::Config, operators::Operators};
use serde_json::json;
use support::TestSystem;
use wire::{AuthMode, Role};

mod support;

const METRICS_TOKEN: &str = "scrape-with-this-token";

async fn start_with_login() -> TestSystem {
    let system = TestSystem::start(|config| {
        config.dashboard_auth = Some(AuthMode::Login);
        config.metrics_token = Some(METRICS_TOKEN.into());
    })
    .await;
    let operators = Operators::new(system.running.database.clone());
    for (name, role) in [("ada", Role::Admin), ("olga", Role::Operator), ("vic", Role::Viewer)] {
        operators
            .add(name, role, &format!("{name}'s long password"))
            .await
            .expect("operator added");
    }
    system
}

async fn sign_in(system: &TestSystem, name: &str, password: &str) -> reqwest::Response {
    system
        .http
        .post(system.dashboard("/api/session"))
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .expect("answers")
}

/// The `name=value` of a response's session cookie.
fn cookie_of(response: &reqwest::Response) -> String {
    let set = response.headers()["set-cookie"].to_str().expect("ascii");
    set.split(';').next().expect("a pair").to_string()
}

/// A client that sends this cookie with every request.
fn client_with(cookie: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("cookie", cookie.parse().expect("header"));
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .expect("client")
}

/// Signs in and makes the system's client carry the cookie.
async fn signed_in_as(mut system: TestSystem, name: &str) -> TestSystem {
    system.http = signed_in_client(&system, name).await;
    system
}

async fn status_of(client: &reqwest::Client, url: String) -> u16 {
    client.get(url).send().await.expect("answers").status().as_u16()
}

#[tokio::test]
async fn a_dashboard_beyond_loopback_refuses_to_start_without_login() {
    let dir = tempfile::tempdir().expect("temp dir");
    for auth in [None, Some(AuthMode::Anonymous)] {
        let mut config = Config::ephemeral(dir.path());
        config.dashboard = SocketAddr::from(([0, 0, 0, 0], 0));
        config.dashboard_auth = auth;
        let error = liveview::start(&config).await.err().expect("refused").to_string();
        assert!(error.contains("--dashboard-auth login"), "{auth:?}: {error}");
        assert!(
            !dir.path().join("data").exists(),
            "refused before anything was opened ({auth:?})"
        );
    }
    let mut config = Config::ephemeral(dir.path());
    config.dashboard = SocketAddr::from(([0, 0, 0, 0], 0));
    config.dashboard_auth = Some(AuthMode::Login);
    let running = liveview::start(&config).await.expect("with login it starts");
    running.shutdown().await;
}

#[tokio::test]
async fn without_a_session_only_sign_in_is_open() {
    let system = start_with_login().await;
    let anyone = client_with("liveview_session=not-a-session");
    for path in ["/healthz", "/api/openapi.json", "/"] {
        assert_ne!(status_of(&anyone, system.dashboard(path)).await, 401, "{path} is open");
    }
    for path in [
        "/api/servers",
        "/api/queues",
        "/api/audit",
        "/api/live-view/status",
        "/api/live-view/requests",
        "/api/live-view/sse",
        "/api/session",
        "/metrics",
    ] {
        assert_eq!(status_of(&anyone, system.dashboard(path)).await, 401, "{path}");
    }
    // The status page sends a browser to the sign-in page; JSON callers get 401.
    let page = anyone.get(system.dashboard("/status")).send().await.expect("answers");
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/");
    let json = anyone
        .get(system.dashboard("/status"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("answers");
    assert_eq!(json.status(), 401);
    // The live stream's upgrade is refused too.
    let url = format!("ws://{}/api/live-view/ws", system.running.dash());
    let refused = tokio_tungstenite::connect_async(url).await.expect_err("refused");
    assert!(refused.to_string().contains("401"), "{refused}");
    // And no control works.
    let mut system = system;
    let anyone = system.http.clone();
    system.http = signed_in_client(&system, "ada").await;
    let before = support::observable_state(&system).await;
    for (method, path, body) in support::STATE_CHANGING {
        let response = support::send_text_as(&anyone, &system, method, path, body, &[]).await;
        assert_eq!(response.status(), 401, "{method} {path}");
        let error: serde_json::Value = response.json().await.expect("json");
        assert_eq!(error["error"], "sign in first (POST /api/session)");
    }
    assert_eq!(support::observable_state(&system).await, before, "nothing changed");
    system.stop().await;
}

/// A client carrying `name`'s session cookie.
async fn signed_in_client(system: &TestSystem, name: &str) -> reqwest::Client {
    let response = sign_in(system, name, &format!("{name}'s long password")).await;
    assert_eq!(response.status(), 200, "{name} signs in");
    client_with(&cookie_of(&response))
}

#[tokio::test]
async fn sign_in_takes_only_the_right_password_and_sets_a_strict_http_only_cookie() {
    let system = start_with_login().await;
    for (name, password) in [
        ("ada", "wrong password!"),
        ("nobody", "ada's long password"),
        ("ada", ""),
    ] {
        let response = sign_in(&system, name, password).await;
        assert_eq!(response.status(), 401, "{name}/{password}");
        assert!(response.headers().get("set-cookie").is_none());
    }
    let refused = system
        .http
        .post(system.dashboard("/api/session"))
        .json(&json!({"name": "ada", "password": "ada's long password", "role": "admin"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), 400, "unknown fields are refused");

    let response = sign_in(&system, "olga", "olga's long password").await;
    assert_eq!(response.status(), 200);
    let set = response.headers()["set-cookie"].to_str().expect("ascii").to_string();
    for part in [
        "liveview_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(set.contains(part), "{part} in {set}");
    }
    let cookie = cookie_of(&response);
    let answered: serde_json::Value = response.json().await.expect("json");
    assert_eq!(answered["name"], "olga");
    assert_eq!(answered["role"], "operator");
    assert_eq!(answered["auth"], "login");
    let client = client_with(&cookie);
    let me: serde_json::Value = client
        .get(system.dashboard("/api/session"))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(me, answered, "the session says who is signed in");
    // The cookie is a token, kept only as its digest.
    let token = cookie.trim_start_matches("liveview_session=");
    let stored: i64 = liveview::with_connection!(&mut system.running.database.writing().await.expect("db"), |c| {
        sqlx::query_scalar("SELECT COUNT(*) FROM operator_sessions WHERE token_digest = $1")
            .bind(token)
            .fetch_one(c)
            .await
    })
    .expect("count");
    assert_eq!(stored, 0, "the token itself is not stored");
    system.stop().await;
}

#[tokio::test]
async fn an_expired_or_signed_out_session_lets_no_one_in() {
    let system = start_with_login().await;
    let operators = Operators::new(system.running.database.clone());
    let (expired, _) = operators.start_session("olga", -1).await.expect("session");
    let stale = client_with(&format!("liveview_session={expired}"));
    assert_eq!(status_of(&stale, system.dashboard("/api/servers")).await, 401);
    let paused = support::send_text_as(&stale, &system, "POST", "/api/queues/mail/pause", "", &[]).await;
    assert_eq!(paused.status(), 401);

    let response = sign_in(&system, "olga", "olga's long password").await;
    let client = client_with(&cookie_of(&response));
    assert_eq!(status_of(&client, system.dashboard("/api/servers")).await, 200);
    let out = client
        .delete(system.dashboard("/api/session"))
        .send()
        .await
        .expect("answers");
    assert_eq!(out.status(), 204);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .expect("ascii")
            .contains("Max-Age=0")
    );
    assert_eq!(
        status_of(&client, system.dashboard("/api/servers")).await,
        401,
        "the old cookie no longer works"
    );
    let mut system = system;
    system.http = signed_in_client(&system, "ada").await;
    let paused = system.dashboard_json("/api/queues").await;
    assert_eq!(
        paused["queues"]
            .as_array()
            .expect("queues")
            .iter()
            .filter(|q| q["paused"] == true)
            .count(),
        0,
        "the expired session paused nothing: {paused}"
    );
    system.stop().await;
}

#[tokio::test]
async fn a_signed_in_viewer_reads_everything_and_changes_nothing() {
    let system = signed_in_as(start_with_login().await, "vic").await;
    for path in ["/api/servers", "/api/audit", "/api/live-view/status", "/metrics"] {
        assert_eq!(status_of(&system.http, system.dashboard(path)).await, 200, "{path}");
    }
    let status = system
        .http
        .get(system.dashboard("/status"))
        .send()
        .await
        .expect("answers");
    assert_eq!(status.status(), 200);
    let before = support::observable_state(&system).await;
    for (method, path, body) in support::STATE_CHANGING {
        let response = support::send_text(&system, method, path, body, &[]).await;
        assert_eq!(response.status(), 403, "{method} {path}");
        let error: serde_json::Value = response.json().await.expect("json");
        assert_eq!(error["error"], "this needs the operator role; vic is a viewer");
    }
    assert_eq!(status_of(&system.http, system.dashboard("/api/operators")).await, 403);
    assert_eq!(support::observable_state(&system).await, before, "nothing changed");
    system.stop().await;
}

#[tokio::test]
async fn an_operator_acts_and_the_audit_log_names_them_without_their_password() {
    let system = signed_in_as(start_with_login().await, "olga").await;
    let paused = system.dashboard_post("/api/queues/mail/pause", &json!({})).await;
    assert_eq!(paused.status(), 200);
    // An operator does not manage operators.
    let added = system
        .dashboard_post("/api/operators", &json!({"name": "eve", "role": "admin"}))
        .await;
    assert_eq!(added.status(), 403);
    let entries = system.dashboard_json("/api/audit").await["entries"].clone();
    let entries = entries.as_array().expect("entries");
    let actions: Vec<(String, String, u64)> = entries
        .iter()
        .map(|entry| {
            (
                entry["actor"].as_str().expect("actor").to_string(),
                entry["path"].as_str().expect("path").to_string(),
                entry["status"].as_u64().expect("status"),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("olga".to_string(), "/api/queues/mail/pause".to_string(), 200),
            ("olga".to_string(), "/api/session".to_string(), 200),
        ],
        "the refused request never reached a handler; the sign-in and the pause are olga's"
    );
    let text = serde_json::to_string(entries).expect("json");
    assert!(!text.contains("olga's long password"), "no password in the log: {text}");
    system.stop().await;
}

#[tokio::test]
async fn an_admin_manages_operators() {
    let system = signed_in_as(start_with_login().await, "ada").await;
    let created = system
        .dashboard_post("/api/operators", &json!({"name": "nina", "role": "viewer"}))
        .await;
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.expect("json");
    assert_eq!(created["operator"]["role"], "viewer");
    let password = created["generatedPassword"]
        .as_str()
        .expect("a generated password")
        .to_string();
    let nina = sign_in(&system, "nina", &password).await;
    assert_eq!(nina.status(), 200, "the generated password works");
    let nina = client_with(&cookie_of(&nina));

    for (body, status) in [
        (
            json!({"name": "nina", "role": "admin", "password": "another long one"}),
            409,
        ),
        (json!({"name": "bad name", "role": "viewer"}), 400),
        (json!({"name": "short", "role": "viewer", "password": "short"}), 400),
        (json!({"name": "root", "role": "root"}), 400),
    ] {
        let response = system.dashboard_post("/api/operators", &body).await;
        assert_eq!(response.status(), status, "{body}");
    }
    let names: Vec<String> = system.dashboard_json("/api/operators").await["operators"]
        .as_array()
        .expect("operators")
        .iter()
        .map(|operator| operator["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(names, ["ada", "nina", "olga", "vic"]);

    let removed = system
        .http
        .delete(system.dashboard("/api/operators/nina"))
        .send()
        .await
        .expect("answers");
    assert_eq!(removed.status(), 204);
    assert_eq!(
        status_of(&nina, system.dashboard("/api/servers")).await,
        401,
        "a removed operator's session ends"
    );
    let last = system
        .http
        .delete(system.dashboard("/api/operators/ada"))
        .send()
        .await
        .expect("answers");
    assert_eq!(last.status(), 409, "the last admin stays");
    system.stop().await;
}

#[tokio::test]
async fn prometheus_reads_metrics_with_the_bearer_token_only() {
    let system = start_with_login().await;
    let scrape = |token: &'static str| system.http.get(system.dashboard("/metrics")).bearer_auth(token).send();
    let ok = scrape(METRICS_TOKEN).await.expect("answers");
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.expect("text").contains("liveview_"));
    assert_eq!(scrape("a-wrong-token").await.expect("answers").status(), 401);
    // The token opens /metrics and nothing else.
    let other = system
        .http
        .get(system.dashboard("/api/servers"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("answers");
    assert_eq!(other.status(), 401);
    system.stop().await;
}

#[tokio::test]
async fn without_sign_in_everyone_on_loopback_is_an_operator_but_no_admin() {
    let system = TestSystem::start(|_| {}).await;
    let me = system.dashboard_json("/api/session").await;
    assert_eq!(
        me,
        json!({"name": "anonymous", "role": "operator", "auth": "anonymous"})
    );
    let sign_in = sign_in(&system, "ada", "ada's long password").await;
    assert_eq!(sign_in.status(), 409);
    assert_eq!(status_of(&system.http, system.dashboard("/api/operators")).await, 403);
    system.stop().await;
}

type LiveSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The live stream, opened with `cookie`; its first frame read.
async fn live_socket(system: &TestSystem, cookie: &str) -> LiveSocket {
    let url = format!("ws://{}/api/live-view/ws", system.running.dash());
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).expect("request");
    request.headers_mut().insert("cookie", cookie.parse().expect("header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("a viewer may watch");
    let first = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("a frame in time")
        .expect("open")
        .expect("a frame");
    assert!(first.is_text(), "{first:?}");
    socket
}

/// Reads until the server closes; the close code.
async fn closed_with(socket: &mut LiveSocket, within: Duration) -> u16 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("closed in time");
        match message {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(frame)))) => return frame.code.into(),
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_live_stream_opened_with_a_session_streams() {
    let system = start_with_login().await;
    let response = sign_in(&system, "vic", "vic's long password").await;
    drop(live_socket(&system, &cookie_of(&response)).await);
    system.stop().await;
}

// The live stream ends with its session: signed out (seen at the next check, within
// 5 s), its operator removed, or expired; each closes with 4001, and a stream of
// another session goes on.
#[tokio::test]
async fn a_live_stream_ends_when_its_session_does() {
    let system = start_with_login().await;
    let recheck = liveview::access::auth::SESSION_RECHECK + Duration::from_secs(3);
    let vic = cookie_of(&sign_in(&system, "vic", "vic's long password").await);
    let olga = cookie_of(&sign_in(&system, "olga", "olga's long password").await);
    let mut signing_out = live_socket(&system, &vic).await;
    let mut staying = live_socket(&system, &olga).await;
    let out = client_with(&vic)
        .delete(system.dashboard("/api/session"))
        .send()
        .await
        .expect("answers");
    assert_eq!(out.status(), 204);
    assert_eq!(closed_with(&mut signing_out, recheck).await, 4001, "signed out");

    // Removed by an admin.
    let operators = Operators::new(system.running.database.clone());
    operators.remove("olga").await.expect("removed");
    assert_eq!(closed_with(&mut staying, recheck).await, 4001, "removed");

    // Expired: a session that ends in a second closes at its end, no check needed.
    let (short, _) = operators.start_session("ada", 1_000).await.expect("session");
    let mut expiring = live_socket(&system, &format!("liveview_session={short}")).await;
    let started = std::time::Instant::now();
    assert_eq!(
        closed_with(&mut expiring, Duration::from_secs(4)).await,
        4001,
        "expired"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "at its end: {:?}",
        started.elapsed()
    );
    system.stop().await;
}

// The SSE stream likewise: a `stream:error` saying so, then the end.
#[tokio::test]
async fn a_live_sse_stream_ends_when_its_session_does() {
    let system = start_with_login().await;
    let operators = Operators::new(system.running.database.clone());
    let (short, _) = operators.start_session("vic", 1_500).await.expect("session");
    let client = client_with(&format!("liveview_session={short}"));
    let response = client
        .get(system.dashboard("/api/live-view/sse"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(6), response.text())
        .await
        .expect("the stream ends in time")
        .expect("a body");
    assert!(body.contains("event: stream:error"), "{body}");
    assert!(body.contains("session ended"), "{body}");
    system.stop().await;
}

// Failed sign-ins are throttled per address: ten wrong guesses from 127.0.0.2 get that
// address a 429, and Ada, signing in from 127.0.0.1, is not locked out.
#[tokio::test]
async fn someone_guessing_from_another_address_does_not_lock_an_operator_out() {
    let system = start_with_login().await;
    let guesser = reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let guess = || {
        guesser
            .post(system.dashboard("/api/session"))
            .json(&json!({"name": "ada", "password": "a wrong guess"}))
            .send()
    };
    for _ in 0..liveview::operators::MAX_FAILURES {
        assert_eq!(guess().await.expect("answers").status(), 401);
    }
    let refused = guess().await.expect("answers");
    assert_eq!(refused.status(), 429, "the guesser's address is throttled");
    let own = sign_in(&system, "ada", "ada's long password").await;
    assert_eq!(own.status(), 200, "Ada's own address is not");
    system.stop().await;
}

//! The whole system started in-process on ephemeral ports, driven with real HTTP and
//! WebSocket clients.

use std::{path::Path, time::Duration};

use futures_util::StreamExt;
use serde_json::json;
use support::TestSystem;
use tokio_tungstenite::tungstenite::Message;
use wire::{ComponentHealth, LiveEvent, OverallHealth, SystemStatus};

mod support;

/// How many app servers [`start`] runs.
const SERVERS: u16 = 2;

/// [`SERVERS`] app servers; the SPA from `site` when given.
async fn start(site: Option<&Path>) -> TestSystem {
    TestSystem::start(|config| {
        config.servers = SERVERS;
        if let Some(site) = site {
            config.site = site.to_path_buf();
        }
    })
    .await
}

/// `GET /status` as JSON.
async fn system_status(system: &TestSystem) -> SystemStatus {
    system
        .http
        .get(system.dashboard("/status"))
        .header("Accept", "application/json")
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("a SystemStatus")
}

#[tokio::test]
async fn every_listener_answers_healthz_with_json() {
    let system = start(None).await;
    let running = &system.running;
    let http = system.http.clone();
    let mut targets = vec![("dashboard", running.dash()), ("load-balancer", running.lb())];
    targets.extend(running.servers.iter().map(|(_, addr)| ("server", *addr)));
    for (component, addr) in targets {
        let response = http
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 200, "{component} at {addr}");
        let body: serde_json::Value = response.json().await.expect("JSON body");
        assert_eq!(body["status"], "ok");
        assert_eq!(body["component"], component);
    }
    system.stop().await;
}

#[tokio::test]
async fn status_json_reports_every_component_healthy() {
    let system = start(None).await;
    let running = &system.running;
    let status = system_status(&system).await;
    let ids: Vec<&str> = status.components.iter().map(|c| c.id.as_str()).collect();
    let servers: Vec<String> = (1..=SERVERS).map(|i| format!("server-{i}")).collect();
    let expected: Vec<&str> = ["dashboard", "load-balancer"]
        .into_iter()
        .chain(servers.iter().map(String::as_str))
        .chain(["database", "smtp"])
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(status.status, OverallHealth::Healthy);
    assert!(
        status.components.iter().all(|c| c.health == ComponentHealth::Healthy),
        "{status:?}"
    );
    assert_eq!(status.components[2].address, running.servers[0].1.to_string());
    system.stop().await;
}

#[tokio::test]
async fn status_html_is_server_rendered_without_scripts() {
    let system = start(None).await;
    let running = &system.running;
    let response = system
        .http
        .clone()
        .get(format!("http://{}/status", running.dash()))
        .header("Accept", "text/html")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let html = response.text().await.expect("body");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html:.200}");
    assert!(html.contains("<title>Live View status: healthy</title>"));
    for (id, addr) in &running.servers {
        assert!(
            html.contains(&format!(r#"data-testid="component-{id}""#)),
            "{id} listed"
        );
        assert!(html.contains(&addr.to_string()), "{id}'s address shown");
    }
    // Complete as sent: no script to fetch (leptos_axum only inlines its resource bootstrap).
    assert!(!html.contains("<script src"), "the status page loads no JavaScript");
    system.stop().await;
}

#[tokio::test]
async fn a_stopped_server_makes_the_system_degraded_and_a_restart_heals_it() {
    let system = start(None).await;
    let running = &system.running;
    let http = system.http.clone();
    let stop = http
        .post(format!("http://{}/api/servers/2/stop", running.dash()))
        .send()
        .await
        .expect("answers");
    assert_eq!(stop.status(), 200);
    // A check already in flight when the stop landed may report it unhealthy first;
    // the next one knows it was stopped. Status is sampled once a second.
    let status = support::eventually("server-2 reported stopped", Duration::from_secs(5), || async {
        let status = system_status(&system).await;
        let server = status
            .components
            .iter()
            .find(|c| c.id == "server-2")
            .expect("server-2 listed");
        (server.health == ComponentHealth::Stopped).then_some(status)
    })
    .await;
    assert_eq!(status.status, OverallHealth::Degraded);

    let start = http
        .post(format!("http://{}/api/servers/2/start", running.dash()))
        .send()
        .await
        .expect("answers");
    assert_eq!(start.status(), 200);
    support::eventually("the system healthy again", Duration::from_secs(5), || async {
        (system_status(&system).await.status == OverallHealth::Healthy).then_some(())
    })
    .await;
    system.stop().await;
}

#[tokio::test]
async fn live_socket_sends_system_status_every_second_with_increasing_seq() {
    let system = start(None).await;
    let running = &system.running;
    let url = format!("ws://{}/api/live-view/ws", running.dash());
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("upgrade");
    let mut seqs = Vec::new();
    let mut gathered = Vec::new();
    let mut snapshot_seq = None;
    while seqs.len() < 4 {
        let message = tokio::time::timeout(Duration::from_secs(3), socket.next())
            .await
            .expect("a message within 3 s")
            .expect("stream open")
            .expect("frame");
        let Message::Text(text) = message else {
            continue;
        };
        // Other topics (metrics) share the stream, and a frame may carry a batch; this
        // test follows system:status.
        for envelope in wire::parse_frame(&text).expect("envelopes") {
            if snapshot_seq.is_none() {
                assert!(
                    matches!(envelope.event, LiveEvent::Snapshot(_)),
                    "a snapshot first: {text}"
                );
                snapshot_seq = Some(envelope.seq);
                continue;
            }
            let LiveEvent::SystemStatus(status) = envelope.event else {
                continue;
            };
            assert!(status.components.iter().any(|c| c.id == "database"));
            seqs.push(envelope.seq);
            gathered.push(status.timestamp);
        }
    }
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "seq increases: {seqs:?}");
    assert!(snapshot_seq < Some(seqs[0]), "deltas follow the snapshot");
    // Every second: each status was gathered about a second after the one before, the
    // first one too (regression: the sampler's first tick gathered one of its own a few
    // milliseconds after the probe's).
    for pair in gathered.windows(2) {
        let apart = (pair[1] - pair[0]).num_milliseconds();
        assert!(
            (500..=2_000).contains(&apart),
            "statuses {apart} ms apart: {gathered:?}"
        );
    }
    system.stop().await;
}

#[tokio::test]
async fn shutdown_closes_live_sockets_with_going_away_and_frees_the_ports() {
    let system = start(None).await;
    let running = &system.running;
    let dashboard = running.dash();
    let url = format!("ws://{dashboard}/api/live-view/ws");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("upgrade");
    // The viewer reads while the server stops, as a browser does: the server's close
    // waits for the viewer's answer (regression: reading only after `stop` returned made
    // the close wait its full timeout, and a slow machine ran out of the 5 s below).
    let viewer = tokio::spawn(async move {
        while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
            if let Message::Close(frame) = message {
                return frame.map(|frame| u16::from(frame.code));
            }
        }
        None
    });
    tokio::time::timeout(Duration::from_secs(5), system.stop())
        .await
        .expect("shutdown does not wait on an open viewer");
    let close_code = viewer.await.expect("the viewer task");
    assert_eq!(close_code, Some(1001));
    std::net::TcpListener::bind(dashboard).expect("the dashboard port is free again");
}

#[tokio::test]
async fn spa_files_are_served_with_types_and_cache_headers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).expect("site dir");
    std::fs::write(site.join("index.html"), "<!DOCTYPE html><title>spa</title>").expect("index");
    std::fs::write(site.join("frontend-0123456789abcdef_bg.wasm"), b"\0asm\x01\0\0\0").expect("wasm");
    let system = start(Some(&site)).await;
    let running = &system.running;
    let http = system.http.clone();
    let base = format!("http://{}", running.dash());

    let index = http.get(format!("{base}/")).send().await.expect("index");
    assert_eq!(index.headers()["content-type"], "text/html");
    assert_eq!(index.headers()["cache-control"], "no-cache");

    let wasm = http
        .get(format!("{base}/frontend-0123456789abcdef_bg.wasm"))
        .send()
        .await
        .expect("wasm");
    assert_eq!(wasm.headers()["content-type"], "application/wasm");
    assert_eq!(wasm.headers()["cache-control"], "public, max-age=31536000, immutable");

    // A client-side route falls back to the SPA's index.
    let deep = http
        .get(format!("{base}/requests/abc"))
        .send()
        .await
        .expect("deep link");
    assert_eq!(deep.status(), 200);
    assert!(deep.text().await.expect("body").contains("<title>spa</title>"));
    assert!(
        !index.text().await.expect("body").contains("liveview-surface"),
        "the dashboard's index is the Live View's"
    );

    // The balancer serves the same build as the end users' client: its index carries the
    // marker, on `/` and on the reset link's path; the assets are the same files; the
    // API still goes to the app servers (a JSON 404, not the index).
    let lb = format!("http://{}", running.lb());
    for path in ["/", "/reset-password?token=abc", "/index.html"] {
        let page = http.get(format!("{lb}{path}")).send().await.expect("client index");
        assert_eq!(page.status(), 200, "{path}");
        assert_eq!(page.headers()["cache-control"], "no-cache", "{path}");
        let html = page.text().await.expect("body");
        assert!(html.contains(liveview::site::CLIENT_MARKER), "{path}: {html}");
    }
    let wasm = http
        .get(format!("{lb}/frontend-0123456789abcdef_bg.wasm"))
        .send()
        .await
        .expect("wasm");
    assert_eq!(wasm.headers()["content-type"], "application/wasm");
    assert_eq!(wasm.headers()["cache-control"], "public, max-age=31536000, immutable");
    let api = http.get(format!("{lb}/api/nope")).send().await.expect("api");
    assert_eq!(api.status(), 404);
    assert!(api.json::<serde_json::Value>().await.expect("JSON")["error"].is_string());
    system.stop().await;
}

#[tokio::test]
async fn without_a_built_spa_the_root_says_how_to_build_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let system = start(Some(&dir.path().join("missing"))).await;
    let running = &system.running;
    let response = system
        .http
        .clone()
        .get(format!("http://{}/", running.dash()))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 503);
    assert!(response.text().await.expect("body").contains("make build"));
    system.stop().await;
}

#[tokio::test]
async fn an_unreachable_smtp_server_degrades_the_system_but_is_not_critical() {
    // A port that was free a moment ago: nothing answers there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let url = format!("smtp://{dead}");
    let system = TestSystem::start(|config| {
        config.servers = 1;
        config.smtp_url = Some(url.clone());
    })
    .await;
    let status = system_status(&system).await;
    let smtp = status.components.iter().find(|c| c.id == "smtp").expect("smtp listed");
    assert_eq!(smtp.health, ComponentHealth::Unhealthy);
    assert_eq!(smtp.detail.as_deref(), Some("connection refused"));
    assert_eq!(
        status.status,
        OverallHealth::Degraded,
        "mail waits in its queue; nothing else is down"
    );
    system.stop().await;
}

/// Method, path, content type, body, the status expected.
type Case = (reqwest::Method, &'static str, Option<&'static str>, Vec<u8>, u16);

/// The dashboard's control endpoints answer bad input like the app servers do: a JSON
/// `{"error"}` 4xx with the right status, and nothing changed.
#[tokio::test]
async fn dashboard_bad_input_gets_the_json_error_shape_and_changes_nothing() {
    let system = start(None).await;
    let send = |method: reqwest::Method, path: &str, content_type: Option<&str>, body: Vec<u8>| {
        let mut request = system.http.request(method, system.dashboard(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    let json = Some("application/json");
    let cases: Vec<Case> = vec![
        (
            reqwest::Method::POST,
            "/api/queues/mail-dlq/requeue",
            json,
            b"{".to_vec(),
            400,
        ),
        (
            reqwest::Method::POST,
            "/api/queues/mail-dlq/requeue",
            json,
            br#"{"jobId":5}"#.to_vec(),
            400,
        ),
        (
            reqwest::Method::POST,
            "/api/queues/mail-dlq/requeue",
            json,
            br#"{"foo":5}"#.to_vec(),
            400,
        ),
        (
            reqwest::Method::POST,
            "/api/queues/mail-dlq/requeue",
            Some("text/plain"),
            b"{}".to_vec(),
            415,
        ),
        (
            reqwest::Method::PUT,
            "/api/live-view/controls",
            json,
            br#"{"dealys":{"databaseOperation":1}}"#.to_vec(),
            400,
        ),
        (
            reqwest::Method::PUT,
            "/api/live-view/controls",
            json,
            vec![b' '; 3 << 20],
            413,
        ),
        (reqwest::Method::PUT, "/api/faults", None, b"{}".to_vec(), 415),
        (reqwest::Method::GET, "/api/servers/1/stop", None, Vec::new(), 405),
        (reqwest::Method::POST, "/api/live-view/status", None, Vec::new(), 405),
        (reqwest::Method::DELETE, "/api/queues", None, Vec::new(), 405),
        (reqwest::Method::PUT, "/metrics", None, Vec::new(), 405),
        (reqwest::Method::POST, "/api/live-view/ws", None, Vec::new(), 405),
        (reqwest::Method::DELETE, "/api/live-view/sse", None, Vec::new(), 405),
    ];
    let delay = json!({ "delays": { "databaseOperation": 300 } });
    assert_eq!(
        system.dashboard_put("/api/live-view/controls", &delay).await.status(),
        200
    );
    for (method, path, content_type, body, status) in cases {
        let label = format!("{method} {path} ({content_type:?}, {} bytes)", body.len());
        let response = send(method, path, content_type, body).await.expect("answers");
        assert_eq!(response.status().as_u16(), status, "{label}");
        let answer: serde_json::Value = response.json().await.unwrap_or_else(|_| panic!("{label}: a JSON body"));
        assert!(answer["error"].is_string(), "{label}: {answer}");
    }
    // Out of range: refused, not clamped (a rate of 10^12 would have the load generator
    // spawn without end).
    for body in [
        r#"{"delays":{"queueing":1000000000000}}"#,
        r#"{"simulateLoad":true,"simulationRate":1e12}"#,
        r#"{"playbackSpeed":50}"#,
    ] {
        let response = send(
            reqwest::Method::PUT,
            "/api/live-view/controls",
            json,
            body.as_bytes().to_vec(),
        )
        .await
        .expect("answers");
        assert_eq!(response.status(), 400, "{body}");
    }
    let answer: serde_json::Value = system
        .dashboard_put("/api/live-view/controls", &json!({ "delays": { "queueing": 40_000 } }))
        .await
        .json()
        .await
        .expect("json");
    assert!(answer["fields"]["delays.queueing"].is_string(), "{answer}");
    // No field named wrongly: the field is named in the answer.
    let answer: serde_json::Value = send(
        reqwest::Method::POST,
        "/api/queues/mail-dlq/requeue",
        json,
        br#"{"jobId":5}"#.to_vec(),
    )
    .await
    .expect("answers")
    .json()
    .await
    .expect("json");
    assert!(answer["fields"]["jobId"].is_string(), "{answer}");
    // The misspelt and out-of-range PUTs left the settings as they were.
    let controls = system.dashboard_json("/api/live-view/controls").await;
    assert_eq!(controls["delays"]["databaseOperation"], 300);
    assert_eq!(
        controls["simulateLoad"], false,
        "the refused rate did not start the load"
    );
    // An empty requeue body still means "all of them".
    let requeued = send(reqwest::Method::POST, "/api/queues/mail-dlq/requeue", None, Vec::new())
        .await
        .expect("answers");
    assert_eq!(requeued.status(), 200);
    system.stop().await;
}

// Regression: only the live stream checked Origin; any web page could stop a server or
// requeue every dead letter with a simple cross-origin POST.
#[tokio::test]
async fn a_foreign_origin_changes_nothing_on_any_state_changing_route() {
    let system = start(None).await;
    let before = support::observable_state(&system).await;
    for (method, path, body) in support::STATE_CHANGING {
        for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
            let response = support::send_text(&system, method, path, body, &[("origin", origin)]).await;
            assert_eq!(response.status(), 403, "{method} {path} from {origin}");
            let error: serde_json::Value = response.json().await.expect("json");
            assert_eq!(error, json!({"error": "origin not allowed"}));
        }
    }
    assert_eq!(support::observable_state(&system).await, before, "nothing changed");
    system.stop().await;
}

// Regression: same-origin was judged against Host, which DNS rebinding controls.
#[tokio::test]
async fn a_foreign_host_is_refused_on_every_route_even_with_a_matching_origin() {
    let system = start(None).await;
    let before = support::observable_state(&system).await;
    let port = system.running.dash().port();
    let host = format!("evil.example:{port}");
    let origin = format!("http://evil.example:{port}");
    for (method, path, body) in support::STATE_CHANGING.iter().copied().chain([
        ("GET", "/status", ""),
        ("GET", "/api/queues", ""),
        ("GET", "/", ""),
    ]) {
        let response = support::send_text(&system, method, path, body, &[("host", &host), ("origin", &origin)]).await;
        assert_eq!(response.status(), 421, "{method} {path} for {host}");
        let error: serde_json::Value = response.json().await.expect("json");
        assert_eq!(error, json!({"error": "host not allowed"}));
    }
    assert_eq!(support::observable_state(&system).await, before, "nothing changed");
    system.stop().await;
}

#[tokio::test]
async fn the_dashboards_own_origin_and_programs_without_one_may_change_things() {
    let system = start(None).await;
    let own = format!("http://{}", system.running.dash());
    let localhost = format!("http://localhost:{}", system.running.dash().port());
    for origin in [own.as_str(), localhost.as_str()] {
        let response = system
            .http
            .put(system.dashboard("/api/balancer"))
            .header("origin", origin)
            .json(&json!({"algorithm": "least-connections"}))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 200, "from {origin}");
    }
    let paused = system.dashboard_post("/api/queues/mail/pause", &json!({})).await;
    assert_eq!(paused.status(), 200, "no Origin: curl and programs");
    system.stop().await;
}

// Regression: with no SMTP attempt in a second, the SMTP card said 100% success.
#[tokio::test]
async fn no_smtp_attempt_is_neither_a_success_nor_a_failure() {
    let system = start(None).await;
    let smtp = support::eventually("an SMTP sample", Duration::from_secs(5), || async {
        let status = system.dashboard_json("/api/live-view/status").await;
        status["componentMetrics"]
            .as_array()?
            .iter()
            .find(|component| component["component"] == "smtp")
            .cloned()
    })
    .await;
    assert_eq!(smtp["successRate"], serde_json::Value::Null, "{smtp}");
    assert_eq!(smtp["failureRate"], serde_json::Value::Null, "{smtp}");
    system.stop().await;
}

#[tokio::test]
async fn both_listeners_describe_their_http_api_as_openapi() {
    let system = start(None).await;
    let paths = |spec: serde_json::Value| -> Vec<String> {
        assert_eq!(spec["openapi"], "3.1.0");
        spec["paths"].as_object().expect("paths").keys().cloned().collect()
    };
    let dashboard = paths(system.dashboard_json("/api/openapi.json").await);
    for path in [
        "/status",
        "/api/balancer",
        "/api/queues/{name}/jobs",
        "/api/live-view/controls",
        "/metrics",
    ] {
        assert!(
            dashboard.iter().any(|documented| documented == path),
            "{path} in {dashboard:?}"
        );
    }
    let api = paths(system.lb_json("/api/openapi.json").await);
    for path in ["/api/auth/signup", "/api/purchases", "/api/notifications/{id}/read"] {
        assert!(api.iter().any(|documented| documented == path), "{path} in {api:?}");
    }
    system.stop().await;
}

#[tokio::test]
async fn every_control_action_is_written_down_with_who_what_and_when() {
    let system = start(None).await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    assert_eq!(
        system.dashboard_post("/api/servers/2/stop", &json!({})).await.status(),
        200
    );
    assert_eq!(
        system.dashboard_post("/api/servers/2/start", &json!({})).await.status(),
        200
    );
    let refused = system
        .dashboard_put(
            "/api/live-view/controls",
            &json!({"delays": {"databaseOperation": 99_999}}),
        )
        .await;
    assert_eq!(refused.status(), 400);
    // A foreign origin is refused before the log: it changed nothing.
    let foreign = support::send_text(
        &system,
        "POST",
        "/api/queues/mail/pause",
        "",
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(foreign.status(), 403);
    // Reads are not control actions.
    system.dashboard_json("/api/queues").await;

    let log: wire::AuditLog = serde_json::from_value(system.dashboard_json("/api/audit").await).expect("log");
    let seen: Vec<(&str, &str, &str, u16)> = log
        .entries
        .iter()
        .map(|entry| {
            (
                entry.method.as_str(),
                entry.route.as_str(),
                entry.path.as_str(),
                entry.status,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("PUT", "/api/live-view/controls", "/api/live-view/controls", 400),
            ("POST", "/api/servers/{number}/{action}", "/api/servers/2/start", 200),
            ("POST", "/api/servers/{number}/{action}", "/api/servers/2/stop", 200),
        ],
        "newest first, refused attempts included, foreign origins and reads not"
    );
    let newest = &log.entries[0];
    assert_eq!(newest.actor, "anonymous");
    assert!(newest.body.contains("99999"), "{}", newest.body);
    assert!(newest.at >= before && newest.at <= chrono::Utc::now());
    system.stop().await;
}

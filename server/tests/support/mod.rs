//! Shared by the integration tests: the whole system started in-process on ephemeral
//! ports, a temp data directory, and the embedded capture SMTP server.

// Each test file compiles its own copy and uses only part of it.
#![allow(dead_code)]

pub mod clients;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod users;

use std::path::Path;

use liveview::{Running, config::Config};

pub struct TestSystem {
    pub running: Running,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// The test's own PostgreSQL when the suite runs on it (see [`test_engine`]);
    /// stopped after the system.
    pub postgres: Option<postgres::PostgresServer>,
}

/// The engine the integration tests run on: SQLite, or PostgreSQL when
/// `LIVEVIEW_TEST_ENGINE=postgres` (as `make test` runs them a second time), each test
/// with a PostgreSQL of its own.
pub fn test_engine() -> &'static str {
    match std::env::var("LIVEVIEW_TEST_ENGINE").as_deref() {
        Ok("postgres") => "postgres",
        _ => "sqlite",
    }
}

impl TestSystem {
    /// Starts [`Config::ephemeral`] (every listener on port 0, data in a temp directory)
    /// after `configure` has changed what the test needs.
    pub async fn start(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::ephemeral(dir.path());
        config.site = Self::site_dir(dir.path());
        let postgres = match test_engine() {
            "postgres" => Some(postgres::PostgresServer::start().await),
            _ => None,
        };
        config.database_url = postgres.as_ref().map(postgres::PostgresServer::url);
        configure(&mut config);
        let running = liveview::start(&config).await.expect("system starts");
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        Self {
            running,
            http,
            dir,
            postgres,
        }
    }

    /// Where `TestSystem::start` looks for the SPA: write files here before starting.
    pub fn site_dir(dir: &Path) -> std::path::PathBuf {
        dir.join("site")
    }

    /// A URL on the load balancer.
    pub fn lb(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.lb())
    }

    /// A URL on the dashboard.
    pub fn dashboard(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.dash())
    }

    /// `GET` on the dashboard, answered with JSON.
    pub async fn dashboard_json(&self, path: &str) -> serde_json::Value {
        let response = self.http.get(self.dashboard(path)).send().await.expect("answers");
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.expect("json")
    }

    /// `GET` on the load balancer, answered with JSON.
    pub async fn lb_json(&self, path: &str) -> serde_json::Value {
        let response = self.http.get(self.lb(path)).send().await.expect("answers");
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.expect("json")
    }

    /// `POST` on the dashboard with a JSON body.
    pub async fn dashboard_post(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.dashboard(path))
            .json(body)
            .send()
            .await
            .expect("answers")
    }

    /// `PUT` on the dashboard with a JSON body.
    pub async fn dashboard_put(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .put(self.dashboard(path))
            .json(body)
            .send()
            .await
            .expect("answers")
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        liveview::with_connection!(&mut self.running.database.writing().await.expect("db"), |c| {
            sqlx::query_scalar(sql).fetch_one(c).await
        })
        .expect("count")
    }

    pub async fn stop(self) {
        self.running.shutdown().await;
        drop(self.postgres);
    }
}

/// How long an SSE reader waits for the next event.
const SSE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A reader of `/api/live-view/sse`.
pub struct Sse {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

#[derive(Debug)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn envelope(&self) -> wire::Envelope {
        serde_json::from_str(&self.data).expect("an Envelope")
    }
}

impl Sse {
    pub async fn open(system: &TestSystem, query: &str, last_event_id: Option<u64>) -> Self {
        let mut request = system.http.get(system.dashboard(&format!("/api/live-view/sse{query}")));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.expect("answers");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next event with data (keep-alive comments skipped).
    pub async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(block).expect("UTF-8");
                let mut event = SseEvent {
                    id: None,
                    event: String::new(),
                    data: String::new(),
                };
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => event.id = Some(value.to_string()),
                        "event" => event.event = value.to_string(),
                        "data" => event.data.push_str(value),
                        _ => {}
                    }
                }
                if !event.data.is_empty() {
                    return event;
                }
                continue;
            }
            let chunk = tokio::time::timeout(SSE_WAIT, self.response.chunk())
                .await
                .expect("an event in time")
                .expect("the stream reads")
                .expect("the stream is open");
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// Whether the server ends the stream (within [`SSE_WAIT`]).
    pub async fn ended(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + SSE_WAIT;
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(SSE_WAIT, self.response.chunk()).await {
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) | Ok(Err(_)) => return true,
                Err(_) => return false,
            }
        }
        false
    }
}

/// Polls `check` every 25 ms until it gives `Some`, and returns that; panics naming
/// `what` once `deadline` has passed. The one way tests wait for something to happen.
pub async fn eventually<T, F, Fut>(what: &str, deadline: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = std::time::Instant::now() + deadline;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(std::time::Instant::now() < until, "{what}: not within {deadline:?}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

impl TestSystem {
    /// A step token from the dashboard, for `X-LiveView-Step`.
    pub async fn step_token(&self) -> String {
        let token: serde_json::Value = self
            .dashboard_post("/api/live-view/step-token", &serde_json::json!({}))
            .await
            .json()
            .await
            .expect("json");
        token["token"].as_str().expect("token").to_string()
    }
}

/// A loopback port that was free a moment ago, for a server a test starts itself.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Every route of the dashboard that changes something, with a body it accepts.
pub const STATE_CHANGING: &[(&str, &str, &str)] = &[
    ("PUT", "/api/balancer", r#"{"algorithm":"least-connections"}"#),
    ("POST", "/api/servers/1/stop", ""),
    ("POST", "/api/servers/1/start", ""),
    ("POST", "/api/queues/mail/pause", ""),
    ("POST", "/api/queues/mail/resume", ""),
    ("POST", "/api/queues/mail-dlq/requeue", "{}"),
    (
        "PUT",
        "/api/faults",
        r#"{"smtp4xxRate":0.5,"smtp5xxRate":0,"smtpLatencyMs":0}"#,
    ),
    (
        "PUT",
        "/api/live-view/controls",
        r#"{"delays":{"databaseOperation":100}}"#,
    ),
    ("POST", "/api/live-view/simulate", r#"{"type":"signup","count":1}"#),
    ("POST", "/api/live-view/requests/some-request/step", ""),
    ("POST", "/api/live-view/step-token", ""),
];

pub async fn send_text(
    system: &TestSystem,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    send_text_as(&system.http, system, method, path, body, headers).await
}

/// [`send_text`] with another client (one carrying someone's session cookie).
pub async fn send_text_as(
    client: &reqwest::Client,
    system: &TestSystem,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    // text/plain: what a foreign page can send without a CORS preflight.
    let mut request = client
        .request(method, system.dashboard(path))
        .header("content-type", "text/plain")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("answers")
}

/// What the state-changing routes act on, to show a refusal changed nothing.
pub async fn observable_state(system: &TestSystem) -> serde_json::Value {
    serde_json::json!({
        "servers": system.dashboard_json("/api/servers").await,
        "queues": system.dashboard_json("/api/queues").await,
        "algorithm": system.dashboard_json("/api/balancer").await["algorithm"],
        "faults": system.dashboard_json("/api/faults").await,
        "controls": system.dashboard_json("/api/live-view/controls").await,
    })
}

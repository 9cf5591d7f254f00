//! Telemetry end to end: a purchase's journey over the live stream, stage by stage and
//! in order; the journey API with its logs and nothing secret in it; injected delays in
//! the stage durations; step mode advancing one stage per step while other traffic flows.

use std::time::Duration;
use support::{Sse, TestSystem};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

mod support;

use liveview::config::Config;

/// How many app servers [`flags`] runs.
const SERVERS: u16 = 2;

fn flags(config: &mut Config) {
    config.servers = SERVERS;
}
const PASSWORD: &str = "long-enough-secret";

impl TestSystem {
    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> reqwest::Response {
        let mut request = self.http.post(self.lb(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("answers")
    }

    /// Signs up and logs in; returns the session token.
    async fn user(&self, email: &str) -> String {
        let body = json!({ "email": email, "name": "Ada", "password": PASSWORD });
        assert!(self.post("/api/auth/signup", None, body).await.status().is_success());
        let login = json!({ "email": email, "password": PASSWORD });
        let login: Value = self
            .post("/api/auth/login", None, login)
            .await
            .json()
            .await
            .expect("json");
        login["token"].as_str().expect("token").to_string()
    }

    /// Holds the user's in-app socket and acks every frame, as a real client does.
    async fn acking_client(&self, token: &str) {
        let url = format!("ws://{}/api/notifications/ws?token={token}", self.running.lb());
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("in-app socket");
        support::clients::ack_every_frame(socket);
    }

    /// A purchase with an id of the test's choosing; returns it.
    async fn purchase(&self, token: &str, request_id: &str) -> reqwest::Response {
        self.http
            .post(self.lb("/api/purchases"))
            .bearer_auth(token)
            .header("x-request-id", request_id)
            .json(&json!({ "item": "Lamp", "amountCents": 500, "currency": "EUR" }))
            .send()
            .await
            .expect("answers")
    }

    /// Purchases with `request_id` and answers how long its database stage took (ms).
    async fn db_stage_duration(&self, token: &str, request_id: &str) -> f64 {
        assert_eq!(self.purchase(token, request_id).await.status(), 201);
        let journey = self
            .journey_when(request_id, |journey| stage_names(journey).contains(&"db-query".into()))
            .await;
        let stages = journey["request"]["stages"].as_array().expect("stages");
        let db = stages
            .iter()
            .find(|stage| stage["stage"] == "db-query")
            .expect("db stage");
        db["duration"].as_f64().expect("duration")
    }

    async fn live_status(&self) -> Value {
        self.dashboard_json("/api/live-view/status").await
    }

    /// Signs a user up through the balancer under a request id of the test's choosing.
    async fn sign_up_traced(&self, email: &str, name: &str, request_id: &str) {
        let signup = self
            .http
            .post(self.lb("/api/auth/signup"))
            .header("x-request-id", request_id)
            .json(&json!({ "email": email, "name": name, "password": PASSWORD }))
            .send()
            .await
            .expect("answers");
        assert_eq!(signup.status(), 201);
    }

    /// Logs the user in and opens their acking in-app socket (their first connect).
    async fn connect_user(&self, email: &str) {
        let login = json!({ "email": email, "password": PASSWORD });
        let login: Value = self
            .post("/api/auth/login", None, login)
            .await
            .json()
            .await
            .expect("json");
        self.acking_client(login["token"].as_str().expect("token")).await;
    }

    async fn journey(&self, request_id: &str) -> Option<Value> {
        let url = self.dashboard(&format!("/api/live-view/requests/{request_id}"));
        let response = self.http.get(url).send().await.expect("answers");
        response.status().is_success().then_some(())?;
        Some(response.json().await.expect("json"))
    }

    /// Waits until the journey satisfies `done` (5 s at most).
    async fn journey_when(&self, request_id: &str, done: impl Fn(&Value) -> bool) -> Value {
        support::eventually(
            &format!("journey {request_id} gets there"),
            Duration::from_secs(5),
            || async { self.journey(request_id).await.filter(|journey| done(journey)) },
        )
        .await
    }
}

/// Every envelope of a live-stream frame: one object, or an array of them (a batch).
fn envelopes(text: &str) -> Vec<Value> {
    match serde_json::from_str::<Value>(text).expect("json frame") {
        Value::Array(batch) => batch,
        single => vec![single],
    }
}

fn stage_names(journey: &Value) -> Vec<String> {
    journey["request"]["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|stage| stage["stage"].as_str().expect("name").to_string())
        .collect()
}

#[tokio::test]
async fn a_purchase_journey_arrives_stage_by_stage_in_order() {
    let system = TestSystem::start(flags).await;
    let token = system.user("ada@example.com").await;
    system.acking_client(&token).await;
    let (mut live, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/live-view/ws", system.running.dash()))
        .await
        .expect("live stream");

    let response = system.purchase(&token, "journey-1").await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-request-id"], "journey-1");

    let mut seen: Vec<String> = Vec::new();
    let mut last_seq = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    'reading: loop {
        let message = tokio::time::timeout_at(deadline, live.next())
            .await
            .expect("request:complete within 10 s")
            .expect("stream open")
            .expect("frame");
        let Message::Text(text) = message else { continue };
        for envelope in envelopes(&text) {
            let seq = envelope["seq"].as_u64().expect("seq");
            assert!(seq > last_seq, "seq increases: {seq} after {last_seq}");
            last_seq = seq;
            let payload = &envelope["payload"];
            let mine = payload["requestId"] == "journey-1";
            match envelope["topic"].as_str().expect("topic") {
                "request:new" if mine => seen.push(payload["stages"][0]["stage"].as_str().expect("stage").into()),
                "request:progress" if mine => {
                    let stage = &payload["stage"];
                    if stage["status"] == "completed" {
                        seen.push(stage["stage"].as_str().expect("stage").into());
                    }
                }
                "request:complete" if mine => break 'reading,
                "request:failed" if mine => panic!("the purchase failed: {payload}"),
                _ => {}
            }
        }
    }
    let expected_prefix = [
        "lb-received",
        "lb-forwarded",
        "server-received",
        "middleware",
        "controller",
        "db-query",
        "notification-fanout",
        "queue-add",
        "queue-add",
    ];
    assert_eq!(seen[..expected_prefix.len()], expected_prefix, "{seen:?}");
    let position = |name: &str| {
        seen.iter()
            .position(|seen| seen == name)
            .unwrap_or_else(|| panic!("{name} in {seen:?}"))
    };
    assert!(position("worker-pickup") < position("smtp-attempt"), "{seen:?}");
    assert!(position("inapp-push") < position("client-ack"), "{seen:?}");
    assert!(seen.contains(&"response".to_string()), "{seen:?}");
    assert_eq!(
        seen.iter().filter(|name| *name == "worker-pickup").count(),
        2,
        "{seen:?}"
    );

    let journey = system.journey("journey-1").await.expect("kept");
    assert_eq!(journey["outcome"], "completed");
    assert_eq!(journey["request"]["type"], "purchase");
    assert!(journey["logs"].as_array().expect("logs").len() >= seen.len());
    let text = journey.to_string();
    assert!(!text.contains("ada@example.com"), "addresses are masked: {text}");
    assert!(text.contains("a***@example.com"), "the masked address is shown");
    assert!(
        !text.contains(&token) && !text.contains(PASSWORD),
        "no secret in a journey"
    );
    system.stop().await;
}

#[tokio::test]
async fn an_injected_delay_shows_in_the_stage_duration() {
    let system = TestSystem::start(flags).await;
    let token = system.user("ada@example.com").await;
    let controls = system
        .dashboard_put(
            "/api/live-view/controls",
            &json!({ "delays": { "databaseOperation": 300 } }),
        )
        .await;
    assert_eq!(controls.status(), 200);
    let applied: Value = controls.json().await.expect("json");
    assert_eq!(applied["delays"]["databaseOperation"], 300);

    let duration = system.db_stage_duration(&token, "slow-1").await;
    assert!(
        duration >= 300.0,
        "the 300 ms delay is inside the database stage: {duration}"
    );

    let reset = system.dashboard_put("/api/live-view/controls", &json!({})).await;
    assert_eq!(reset.status(), 200);
    let duration = system.db_stage_duration(&token, "fast-1").await;
    assert!(duration < 300.0, "delay removed: {duration}");

    // A queueing delay holds the jobs in their queues: it shows in the pickups.
    let held = json!({ "delays": { "queueing": 400 } });
    assert_eq!(
        system.dashboard_put("/api/live-view/controls", &held).await.status(),
        200
    );
    assert_eq!(system.purchase(&token, "held-1").await.status(), 201);
    let journey = system
        .journey_when("held-1", |journey| {
            stage_names(journey)
                .iter()
                .filter(|name| *name == "worker-pickup")
                .count()
                == 2
        })
        .await;
    for pickup in journey["request"]["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter(|stage| stage["stage"] == "worker-pickup")
    {
        let duration = pickup["duration"].as_f64().expect("duration");
        assert!(duration >= 400.0, "the hold is inside the pickup: {pickup}");
        assert!(pickup["metadata"]["queuedMs"].as_i64().expect("queuedMs") >= 400);
    }
    system.stop().await;
}

#[tokio::test]
async fn step_mode_advances_one_stage_per_step_while_other_traffic_flows() {
    let system = TestSystem::start(flags).await;
    let token = system.user("ada@example.com").await;
    system.acking_client(&token).await;
    let step_token = system.step_token().await;
    let stepped = {
        let http = system.http.clone();
        let url = system.lb("/api/purchases");
        let token = token.clone();
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .header("x-request-id", "stepped-1")
                .header("x-liveview-step", step_token)
                .json(&json!({ "item": "Lamp", "amountCents": 500, "currency": "EUR" }))
                .send()
                .await
                .expect("answers")
                .status()
        })
    };
    let count = |journey: &Value| journey["request"]["stages"].as_array().map_or(0, Vec::len);
    let first = system.journey_when("stepped-1", |journey| count(journey) >= 1).await;
    assert_eq!(stage_names(&first), ["lb-received"], "waits after its first stage");

    // Other requests are not held up by the stepped one.
    assert_eq!(system.purchase(&token, "free-1").await.status(), 201);

    let step = || async {
        let url = system.dashboard("/api/live-view/requests/stepped-1/step");
        system.http.post(url).send().await.expect("answers").status()
    };
    // One step, then exactly one stage more, and still so a moment later.
    let (system_ref, step_ref, count_ref) = (&system, &step, &count);
    let step_to = |expected: usize| async move {
        let (system, step, count) = (system_ref, step_ref, count_ref);
        assert_eq!(step().await, 200);
        let journey = system
            .journey_when("stepped-1", |journey| count(journey) >= expected)
            .await;
        // A fixed wait, for nothing to happen: no further stage without a step.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let settled = system.journey("stepped-1").await.expect("kept");
        assert_eq!(
            count(&settled),
            expected,
            "one step, one stage: {:?}",
            stage_names(&journey)
        );
    };
    for expected in 2..=4 {
        step_to(expected).await;
    }
    assert_eq!(
        stage_names(&system.journey("stepped-1").await.expect("kept")),
        ["lb-received", "lb-forwarded", "server-received", "middleware"]
    );
    // Step it through to the end of its journey, one stage per step: its own stages
    // (the queue adds, the response) before any worker's, and the in-app ack a step of
    // its own after the push.
    let mut expected = 4;
    while system.journey("stepped-1").await.expect("kept")["outcome"] != "completed" {
        assert!(expected < 40, "the journey ends");
        expected += 1;
        step_to(expected).await;
    }
    assert_eq!(stepped.await.expect("request task"), 201);
    let names = stage_names(&system.journey("stepped-1").await.expect("kept"));
    let first_worker = names
        .iter()
        .position(|name| name == "worker-pickup")
        .expect("picked up");
    let response = names.iter().position(|name| name == "response").expect("answered");
    let last_queue_add = names.iter().rposition(|name| name == "queue-add").expect("queued");
    assert!(last_queue_add < response && response < first_worker, "{names:?}");
    assert_eq!(step().await, 409, "a finished request is no longer stepped");
    let unknown = system.dashboard("/api/live-view/requests/no-such-request/step");
    let unknown = system.http.post(unknown).send().await.expect("answers");
    assert_eq!(unknown.status(), 404);
    let push = names.iter().position(|name| name == "inapp-push").expect("pushed");
    let ack = names.iter().position(|name| name == "client-ack").expect("acked");
    assert!(push < ack, "{names:?}");
    system.stop().await;
}

/// The card of one kind among a live status's component metrics.
fn card<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["componentMetrics"]
        .as_array()
        .expect("components")
        .iter()
        .find(|component| component["component"] == kind)
        .unwrap_or_else(|| panic!("no {kind} card in {status}"))
}

#[tokio::test]
async fn metrics_reach_the_stream_the_rest_api_and_prometheus() {
    let system = TestSystem::start(flags).await;
    let token = system.user("ada@example.com").await;
    system.acking_client(&token).await;
    assert_eq!(system.purchase(&token, "metered-1").await.status(), 201);
    system
        .journey_when("metered-1", |journey| journey["outcome"] == "completed")
        .await;
    // Two samples after the traffic, so the last one has seen it.
    let done = chrono::Utc::now().timestamp_millis();
    support::eventually("two samples after the traffic", Duration::from_secs(5), || async {
        let series = system.dashboard_json("/api/live-view/series?seconds=60").await;
        let after = series
            .as_array()?
            .iter()
            .filter_map(|sample| sample["metrics"]["timestamp"].as_str())
            .filter_map(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .filter(|at| at.timestamp_millis() > done)
            .count();
        (after >= 2).then_some(())
    })
    .await;

    let status = system.live_status().await;
    let kinds: Vec<&str> = status["componentMetrics"]
        .as_array()
        .expect("component metrics")
        .iter()
        .map(|component| component["component"].as_str().expect("tag"))
        .collect();
    for kind in ["load-balancer", "server", "queue", "websocket", "database", "smtp"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    assert_eq!(
        kinds.iter().filter(|kind| **kind == "server").count(),
        usize::from(SERVERS)
    );
    assert_eq!(kinds.iter().filter(|kind| **kind == "queue").count(), 7);
    assert!(status["metrics"]["systemStatus"].is_string(), "{status}");
    // The user's in-app socket is still open through the balancer, but nothing is being
    // worked on: no active request.
    assert_eq!(status["metrics"]["activeRequests"], 0, "{}", status["metrics"]);
    let balancer = card(&status, "load-balancer");
    let connections: u64 = balancer["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|server| server["activeConnections"].as_u64().expect("connections"))
        .sum();
    assert!(connections >= 1, "the socket is counted as a connection: {balancer}");
    let smtp = card(&status, "smtp");
    assert!(
        smtp["sent"].as_u64().expect("sent") >= 2,
        "welcome, login, receipt: {smtp}"
    );
    assert_eq!(smtp["lastReply"]["code"], 250);

    let realtime = system.dashboard_json("/api/live-view/telemetry").await;
    assert_eq!(realtime["telemetry"]["droppedRecords"], 0);
    assert!(realtime["telemetry"]["journeysKept"].as_u64().expect("kept") >= 3);

    let series = system.dashboard_json("/api/live-view/series?seconds=60").await;
    let samples = series.as_array().expect("samples");
    assert!(samples.len() >= 2, "one sample a second, kept: {}", samples.len());
    let times: Vec<&str> = samples
        .iter()
        .map(|sample| sample["metrics"]["timestamp"].as_str().expect("ts"))
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] < pair[1]), "oldest first");
    // The signup, login and purchase read (accounts, the workers' loads) and wrote: the
    // database card counted both in the seconds they happened.
    let busiest = |field: &str| {
        samples
            .iter()
            .flat_map(|sample| sample["components"].as_array().expect("components"))
            .filter(|component| component["component"] == "database")
            .map(|database| database[field].as_f64().expect("a rate"))
            .fold(0.0, f64::max)
    };
    assert!(busiest("readsPerSecond") > 0.0, "reads counted: {series}");
    assert!(busiest("writesPerSecond") > 0.0, "writes counted: {series}");
    assert!(busiest("commitLatencyP99") > 0.0, "commit latencies kept: {series}");

    let metrics = system
        .http
        .get(system.dashboard("/metrics"))
        .send()
        .await
        .expect("answers");
    assert_eq!(metrics.status(), 200);
    let content_type = metrics.headers()["content-type"].to_str().expect("ascii").to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = metrics.text().await.expect("text");
    // A real Prometheus text-format parser must read it, with the conventional types.
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_string()))).expect("parses");
    let value_of = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|sample| sample.metric == name)
            .map(|sample| sample.value.clone())
            .unwrap_or_else(|| panic!("{name} in:\n{text}"))
    };
    assert!(matches!(value_of("liveview_http_requests_total"), prometheus_parse::Value::Counter(n) if n >= 1.0));
    assert!(matches!(
        value_of("liveview_smtp_attempts_total"),
        prometheus_parse::Value::Counter(_)
    ));
    assert!(matches!(
        value_of("liveview_inapp_pushes_total"),
        prometheus_parse::Value::Counter(_)
    ));
    assert!(matches!(
        value_of("liveview_queue_jobs"),
        prometheus_parse::Value::Gauge(_)
    ));
    assert!(matches!(
        value_of("liveview_live_viewers"),
        prometheus_parse::Value::Gauge(_)
    ));
    assert!(matches!(
        value_of("liveview_live_last_seq"),
        prometheus_parse::Value::Gauge(n) if n >= 1.0
    ));
    assert!(matches!(
        value_of("liveview_http_request_duration_seconds"),
        prometheus_parse::Value::Histogram(_)
    ));
    for needle in [
        "liveview_smtp_attempts_total{outcome=\"sent\"}",
        "liveview_queue_jobs{queue=\"mail\",state=\"completed\"}",
        "liveview_telemetry_dropped_total 0",
        "liveview_live_resyncs_total 0",
        "liveview_live_too_slow_total 0",
    ] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }

    let (mut live, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/live-view/ws", system.running.dash()))
        .await
        .expect("live stream");
    let mut topics = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !(topics.contains("system:metrics") && topics.contains("component:metrics")) {
        let message = tokio::time::timeout_at(deadline, live.next())
            .await
            .expect("metrics on the stream within 5 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = message {
            for envelope in envelopes(&text) {
                topics.insert(envelope["topic"].as_str().expect("topic").to_string());
            }
        }
    }
    system.stop().await;
}

#[tokio::test]
async fn the_simulator_sends_real_requests_that_complete_their_journeys() {
    let system = TestSystem::start(flags).await;
    let answer = system
        .dashboard_post(
            "/api/live-view/simulate",
            &json!({ "type": "purchase", "count": 3, "interval": 50 }),
        )
        .await;
    assert_eq!(answer.status(), 202);
    let answer: Value = answer.json().await.expect("json");
    let ids: Vec<String> = answer["requestIds"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|id| id.as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    for id in &ids {
        // Virtual users sign up first (argon2): allow for it.
        let journey = support::eventually(&format!("{id} completed"), Duration::from_secs(10), || async {
            system
                .journey(id)
                .await
                .filter(|journey| journey["outcome"] == "completed")
        })
        .await;
        assert_eq!(journey["request"]["type"], "purchase");
        let names = stage_names(&journey);
        for stage in ["smtp-attempt", "client-ack"] {
            assert!(names.contains(&stage.to_string()), "{id}: {names:?}");
        }
    }
    assert_eq!(
        system.count("SELECT COUNT(*) FROM purchases").await,
        3,
        "real rows, one per simulated request"
    );

    // A simulated newcomer logs in and connects, so the welcome is delivered and acked.
    let answer: Value = system
        .dashboard_post(
            "/api/live-view/simulate",
            &json!({ "type": "signup", "count": 1, "interval": 0 }),
        )
        .await
        .json()
        .await
        .expect("json");
    let id = answer["requestIds"][0].as_str().expect("an id").to_string();
    let journey = support::eventually(
        &format!("the simulated signup {id} completed"),
        Duration::from_secs(10),
        || async {
            system
                .journey(&id)
                .await
                .filter(|journey| journey["outcome"] == "completed")
        },
    )
    .await;
    assert!(stage_names(&journey).contains(&"client-ack".to_string()));

    for (body, field) in [
        (json!({ "type": "purchase", "count": 0, "interval": 0 }), "count"),
        (
            json!({ "type": "purchase", "count": 1, "interval": 3_600_000 }),
            "interval",
        ),
    ] {
        let refused = system.dashboard_post("/api/live-view/simulate", &body).await;
        assert_eq!(refused.status(), 400);
        let error: Value = refused.json().await.expect("json");
        assert!(error["fields"][field].is_string(), "{error}");
    }
    let unknown = system
        .dashboard_post("/api/live-view/simulate", &json!({ "type": "teleport", "count": 1 }))
        .await;
    assert_eq!(unknown.status(), 400);

    // Continuous load from the controls, then off again.
    let on = json!({ "simulateLoad": true, "simulationRate": 20.0, "simulationMix": ["purchase"] });
    let controls = "/api/live-view/controls";
    assert_eq!(system.dashboard_put(controls, &on).await.status(), 200);
    let before = system.count("SELECT COUNT(*) FROM purchases").await;
    support::eventually(
        "the load generator sends purchases while on",
        Duration::from_secs(5),
        || async { (system.count("SELECT COUNT(*) FROM purchases").await >= before + 10).then_some(()) },
    )
    .await;
    assert_eq!(system.dashboard_put(controls, &json!({})).await.status(), 200);
    // Fixed waits: time for purchases already under way to land, then a stretch in which
    // no new one may.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = system.count("SELECT COUNT(*) FROM purchases").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        system.count("SELECT COUNT(*) FROM purchases").await,
        settled,
        "and stops when off"
    );
    system.stop().await;
}

#[tokio::test]
async fn a_signup_journey_ends_when_the_new_user_first_connects() {
    let system = TestSystem::start(flags).await;
    system.sign_up_traced("bo@example.com", "Bo", "signup-1").await;
    let waiting = system
        .journey_when("signup-1", |journey| {
            stage_names(journey).contains(&"inapp-push".into())
        })
        .await;
    assert_eq!(
        waiting["outcome"], "in-progress",
        "the welcome waits for the user's first connect"
    );

    system.connect_user("bo@example.com").await;
    let done = system
        .journey_when("signup-1", |journey| journey["outcome"] == "completed")
        .await;
    let ack = done["request"]["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|stage| stage["stage"] == "client-ack")
        .expect("acked");
    assert_eq!(ack["metadata"]["storedAndForwarded"], true);
    assert_eq!(stage_names(&done)[0], "lb-received");

    // The socket shows in the WebSocket card (sampled once a second): a room on its
    // server, a connect event.
    let websocket = support::eventually("the socket in the WebSocket card", Duration::from_secs(5), || async {
        let status = system.live_status().await;
        let websocket = status["componentMetrics"]
            .as_array()?
            .iter()
            .find(|component| component["component"] == "websocket")?
            .clone();
        (websocket["totalConnections"].as_u64()? >= 1).then_some(websocket)
    })
    .await;
    assert_eq!(websocket["totalConnections"], 1, "{websocket}");
    assert_eq!(websocket["rooms"][0]["users"], 1, "{websocket}");
    assert_eq!(websocket["recentEvents"][0]["type"], "connect", "{websocket}");
    system.stop().await;
}

#[tokio::test]
async fn a_past_window_replays_from_history_in_order_with_original_timestamps() {
    let system = TestSystem::start(flags).await;
    let from = chrono::Utc::now().timestamp_millis();
    let token = system.user("ada@example.com").await;
    system.acking_client(&token).await;
    assert_eq!(system.purchase(&token, "past-1").await.status(), 201);
    system
        .journey_when("past-1", |journey| journey["outcome"] == "completed")
        .await;
    let to = chrono::Utc::now().timestamp_millis();

    // History is written in batches, once a second.
    let events = support::eventually(
        "past-1's request:complete in the history",
        Duration::from_secs(6),
        || async {
            let answer = system
                .dashboard_json(&format!("/api/live-view/history?from={from}&to={to}&topics=request:*"))
                .await;
            let events = answer["events"].as_array().expect("events").clone();
            let complete = events
                .iter()
                .any(|event| event["topic"] == "request:complete" && event["payload"]["requestId"] == "past-1");
            complete.then_some(events)
        },
    )
    .await;
    let mine: Vec<&Value> = events
        .iter()
        .filter(|event| event["payload"]["requestId"] == "past-1")
        .collect();
    assert_eq!(mine.first().expect("events")["topic"], "request:new");
    assert_eq!(mine.last().expect("events")["topic"], "request:complete");
    assert!(
        events
            .iter()
            .all(|event| event["topic"].as_str().expect("topic").starts_with("request:"))
    );
    let seqs: Vec<u64> = events.iter().map(|event| event["seq"].as_u64().expect("seq")).collect();
    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "in the order they went out"
    );
    for event in &events {
        let ts = chrono::DateTime::parse_from_rfc3339(event["ts"].as_str().expect("ts")).expect("rfc 3339");
        let ms = ts.timestamp_millis();
        assert!(
            (from..=to + 1_000).contains(&ms),
            "original timestamp {ms} in the window"
        );
    }

    let bad = system
        .http
        .get(system.dashboard("/api/live-view/history?from=yesterday"))
        .send()
        .await
        .expect("answers");
    assert_eq!(bad.status(), 400);
    system.stop().await;
}

#[tokio::test]
async fn a_signup_journey_arrives_in_order_over_server_sent_events() {
    let system = TestSystem::start(flags).await;
    let mut events = Sse::open(&system, "?topics=request:*", None).await;
    assert_eq!(events.next().await.event, "stream:snapshot");
    system.sign_up_traced("cy@example.com", "Cy", "sse-1").await;
    // The welcome in-app message is delivered, and the journey ends, when Cy connects.
    system.connect_user("cy@example.com").await;
    let mut seen = Vec::new();
    let mut last_id = 0;
    loop {
        let event = events.next().await;
        let envelope: Value = serde_json::from_str(&event.data).expect("an envelope");
        assert_eq!(event.event, envelope["topic"], "the SSE event name is the topic");
        let id: u64 = event.id.as_deref().expect("id").parse().expect("numeric id");
        assert!(id > last_id && id == envelope["seq"], "id = seq, increasing");
        last_id = id;
        let payload = &envelope["payload"];
        if payload["requestId"] != "sse-1" {
            continue;
        }
        match event.event.as_str() {
            "request:new" => seen.push(payload["stages"][0]["stage"].as_str().expect("stage").to_string()),
            "request:progress" if payload["stage"]["status"] == "completed" => {
                seen.push(payload["stage"]["stage"].as_str().expect("stage").to_string());
            }
            "request:complete" => break,
            "request:failed" => panic!("failed: {payload}"),
            _ => {}
        }
    }
    assert_eq!(
        seen[..7],
        [
            "lb-received",
            "lb-forwarded",
            "server-received",
            "middleware",
            "controller",
            "db-query",
            "notification-fanout"
        ],
        "{seen:?}"
    );
    assert!(seen.contains(&"client-ack".to_string()) && seen.contains(&"smtp-attempt".to_string()));
    system.stop().await;
}

/// The design's queue and worker events: each job added, processed and completed, and
/// the workers going busy and idle again.
#[tokio::test]
async fn queue_and_worker_events_follow_every_job() {
    let system = TestSystem::start(flags).await;
    let token = system.user("ada@example.com").await;
    system.acking_client(&token).await;
    let mut events = Sse::open(&system, "?topics=queue:*,worker:*", None).await;
    assert_eq!(system.purchase(&token, "queued-1").await.status(), 201);
    let mut seen: Vec<(String, Value)> = Vec::new();
    let wanted = |seen: &[(String, Value)]| {
        let ours = |topic: &str| {
            seen.iter()
                .filter(|(name, payload)| name == topic && payload["requestId"] == "queued-1")
                .count()
        };
        let idle = seen.iter().filter(|(name, _)| name == "worker:idle").count();
        ours("queue:job:added") == 2
            && ours("queue:job:processing") == 2
            && ours("queue:job:completed") == 2
            && idle >= 2
    };
    while !wanted(&seen) {
        let event = events.next().await;
        if event.event == "stream:snapshot" {
            continue;
        }
        let envelope: Value = serde_json::from_str(&event.data).expect("JSON");
        assert!(
            event.event.starts_with("queue:") || event.event.starts_with("worker:"),
            "subscribed to queue:* and worker:* only, got {}",
            event.event
        );
        seen.push((event.event, envelope["payload"].clone()));
    }
    let added: Vec<&Value> = seen
        .iter()
        .filter(|(name, _)| name == "queue:job:added")
        .map(|(_, payload)| payload)
        .collect();
    let flows: Vec<&str> = added.iter().map(|job| job["flow"].as_str().expect("flow")).collect();
    assert!(flows.contains(&"email") && flows.contains(&"in-app"), "{flows:?}");
    let busy = seen.iter().filter(|(name, _)| name == "worker:processing").count();
    assert!(busy >= 2, "a mail and an in-app worker went busy: {seen:?}");
    system.stop().await;
}

impl TestSystem {
    /// Sends a purchase in step mode on a task of its own; answers its status when done.
    fn stepped_purchase(&self, token: &str, request_id: &str, step_token: String) -> tokio::task::JoinHandle<u16> {
        let request = self
            .http
            .post(self.lb("/api/purchases"))
            .bearer_auth(token)
            .header("x-request-id", request_id)
            .header("x-liveview-step", step_token)
            .json(&json!({ "item": "Lamp", "amountCents": 500, "currency": "EUR" }));
        tokio::spawn(async move { request.send().await.expect("answers").status().as_u16() })
    }

    /// Steps `request_id` until its journey has a stage named `stage`.
    async fn step_until(&self, request_id: &str, stage: &str) {
        let url = self.dashboard(&format!("/api/live-view/requests/{request_id}/step"));
        for _ in 0..40 {
            if self
                .journey(request_id)
                .await
                .is_some_and(|journey| stage_names(&journey).iter().any(|name| name == stage))
            {
                return;
            }
            let stages = self
                .journey(request_id)
                .await
                .map_or(0, |journey| stage_names(&journey).len());
            self.http.post(&url).send().await.expect("answers");
            support::eventually("the step's stage", Duration::from_secs(5), || async {
                let now = self
                    .journey(request_id)
                    .await
                    .map_or(0, |journey| stage_names(&journey).len());
                (now > stages).then_some(())
            })
            .await;
        }
        panic!("{request_id} never reached {stage}");
    }
}

// Regression: the step waits sat inside the app servers' 10 s timeout, so a purchase
// held there was stored and notified, yet its caller was told 503 "request timed out".
#[tokio::test]
async fn a_stepped_purchase_held_past_the_request_timeout_answers_201_once() {
    let system = TestSystem::start(flags).await;
    let token = system.user("ada@example.com").await;
    system.acking_client(&token).await;
    let answer = system.stepped_purchase(&token, "held-1", system.step_token().await);
    // Held after its commit, the worst place: the purchase is stored from here on.
    system.step_until("held-1", "db-query").await;
    assert_eq!(system.count("SELECT COUNT(*) FROM purchases").await, 1);
    // A fixed wait, for nothing to happen: held past the app servers' 10 s timeout, it
    // is still not answered.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(!answer.is_finished(), "still waiting for its steps, not timed out");
    system.step_until("held-1", "response").await;
    assert_eq!(answer.await.expect("request task"), 201);
    assert_eq!(system.count("SELECT COUNT(*) FROM purchases").await, 1, "bought once");
    let journey = system.journey("held-1").await.expect("kept");
    let response = journey["request"]["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|stage| stage["stage"] == "response")
        .expect("response stage")
        .clone();
    assert_eq!(response["metadata"]["status"], 201, "{response}");
    system.stop().await;
}

// Regression: any client of the public balancer could put its requests in step mode.
#[tokio::test]
async fn the_public_cannot_start_step_mode() {
    let system = TestSystem::start(flags).await;
    let token = system.user("ada@example.com").await;
    for (id, header) in [("public-1", "1"), ("public-2", "123.abcdef"), ("public-3", "")] {
        let response = system
            .http
            .post(system.lb("/api/purchases"))
            .bearer_auth(&token)
            .header("x-request-id", id)
            .header("x-liveview-step", header)
            .json(&json!({ "item": "Lamp", "amountCents": 500, "currency": "EUR" }))
            .send();
        // Not held at its first boundary: it is answered without a single step.
        let response = tokio::time::timeout(Duration::from_secs(10), response)
            .await
            .expect("answered without stepping")
            .expect("answers");
        assert_eq!(response.status(), 201, "{header:?}");
        let journey = system.journey_when(id, |_| true).await;
        assert_eq!(journey["metrics"]["stepping"], false, "{header:?}");
    }
    system.stop().await;
}

// Regression: a stepped job held every other job of its worker's batch (and the worker)
// at its step boundaries, up to 15 s each.
#[tokio::test]
async fn a_stepped_job_never_delays_another_users_delivery() {
    let system = TestSystem::start(|config| {
        config.servers = 1;
        config.inapp_workers = 1;
        config.mail_workers = 1;
    })
    .await;
    let ada = system.user("ada@example.com").await;
    let bob = system.user("bob@example.com").await;
    system.acking_client(&ada).await;
    system.acking_client(&bob).await;
    let answer = system.stepped_purchase(&ada, "stepped-job", system.step_token().await);
    system.step_until("stepped-job", "response").await;
    assert_eq!(answer.await.expect("request task"), 201);
    // The one in-app worker has claimed the stepped job and waits for its step.
    support::eventually("the stepped job claimed", Duration::from_secs(5), || async {
        let queues = system.dashboard_json("/api/queues").await;
        let inapp = queues["queues"]
            .as_array()
            .or_else(|| queues.as_array())
            .and_then(|queues| queues.iter().find(|queue| queue["name"] == "inapp").cloned())?;
        (inapp["active"].as_u64()? >= 1).then_some(())
    })
    .await;
    assert_eq!(system.purchase(&bob, "free-1").await.status(), 201);
    // Bob's receipt is pushed and acked while Ada's job still waits for its steps.
    let delivered = system
        .journey_when("free-1", |journey| {
            stage_names(journey).iter().any(|name| name == "client-ack")
        })
        .await;
    assert_eq!(delivered["metrics"]["stepping"], false);
    let held = system.journey("stepped-job").await.expect("kept");
    assert!(
        !stage_names(&held).iter().any(|name| name == "client-ack"),
        "the stepped one is still held: {:?}",
        stage_names(&held)
    );
    system.step_until("stepped-job", "client-ack").await;
    system.stop().await;
}

//! Mail delivery end to end: controllers → outbox → mail queue → mail worker → real SMTP
//! → the embedded capture server; injected 4xx walk the retry tiers to the dead-letter
//! queue, 5xx go there at once, and requeue brings them back.

use std::time::Duration;
use support::TestSystem;

use serde_json::{Value, json};

mod support;

use liveview::config::Config;

/// The flags every test here starts the system with.
/// `--time-scale 0.001`: 5 min → 300 ms, 30 min → 1.8 s.
fn flags(config: &mut Config) {
    config.servers = 1;
    config.time_scale = 0.001;
}

impl TestSystem {
    async fn signup(&self, email: &str) {
        let response = self
            .http
            .post(format!("http://{}/api/auth/signup", self.running.lb()))
            .json(&json!({ "email": email, "name": "Ada", "password": "long-enough" }))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 201);
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(self.dashboard(path))
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json")
    }

    async fn queue(&self, name: &str) -> Value {
        let all = self.get("/api/queues").await;
        all["queues"]
            .as_array()
            .expect("list")
            .iter()
            .find(|q| q["name"] == name)
            .expect("queue")
            .clone()
    }

    async fn faults(&self, faults: Value) {
        let response = self
            .http
            .put(self.dashboard("/api/faults"))
            .json(&faults)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 200);
    }

    /// Waits for the one email job to reach mail-dlq; its attempts and last error.
    async fn dead_lettered_email(&self) -> (i32, String) {
        self.eventually("the job reaches mail-dlq", async |s| {
            s.queue("mail-dlq").await["failed"] == 1
        })
        .await;
        liveview::with_connection!(&mut self.running.database.writing().await.expect("db"), |c| {
            sqlx::query_as("SELECT attempts, last_error FROM jobs WHERE channel = 'email'")
                .fetch_one(c)
                .await
        })
        .expect("job")
    }

    /// [`support::eventually`] on this system, for at most 10 s.
    async fn eventually(&self, what: &str, check: impl AsyncFn(&TestSystem) -> bool) {
        support::eventually(what, Duration::from_secs(10), || async {
            check(self).await.then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn a_signup_email_reaches_the_capture_server_once_with_its_id() {
    let system = TestSystem::start(flags).await;
    system.signup("ada@example.com").await;
    system
        .eventually("the welcome email arrives", async |s| {
            s.get("/api/mailbox").await["total"] == 1
        })
        .await;
    let mailbox = system.get("/api/mailbox").await;
    let message = &mailbox["messages"][0];
    assert_eq!(message["subject"], "Welcome to Live View");
    assert_eq!(message["rcptTo"], "ada@example.com");
    let email_id: String = liveview::with_connection!(&mut system.running.database.writing().await.expect("db"), |c| {
        sqlx::query_scalar("SELECT id FROM emails").fetch_one(c).await
    })
    .expect("email row");
    assert_eq!(message["messageId"], format!("<{email_id}@liveview.local>"));
    system
        .eventually("the job completes", async |s| s.queue("mail").await["completed"] == 1)
        .await;
    let reply: String = liveview::with_connection!(&mut system.running.database.writing().await.expect("db"), |c| {
        sqlx::query_scalar("SELECT smtp_reply FROM emails").fetch_one(c).await
    })
    .expect("reply");
    assert!(reply.starts_with("250 "), "{reply}");
    // A moment later there is still exactly one: nothing re-sends a sent email.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(system.get("/api/mailbox").await["total"], 1);
    system.stop().await;
}

#[tokio::test]
async fn transient_failures_walk_both_retry_tiers_then_dead_letter_and_requeue_delivers() {
    let system = TestSystem::start(flags).await;
    system.faults(json!({ "smtp4xxRate": 1.0 })).await;
    system.signup("ada@example.com").await;
    let (attempts, error) = system.dead_lettered_email().await;
    assert_eq!(attempts, 3, "mail, mail-retry-1, mail-retry-2");
    assert!(error.contains("451"), "{error}");
    assert_eq!(system.get("/api/mailbox").await["total"], 0);

    let preview = system.get("/api/queues/mail-dlq/jobs?errorContains=451").await;
    assert_eq!(preview["total"], 1, "{preview}");
    assert_eq!(preview["jobs"][0]["attempts"], 3);
    assert_eq!(
        system.get("/api/queues/mail-dlq/jobs?errorContains=554").await["total"],
        0
    );

    system.faults(json!({})).await;
    let requeue = system
        .http
        .post(system.dashboard("/api/queues/mail-dlq/requeue"))
        .json(&json!({ "errorContains": "451" }));
    let moved: Value = requeue.send().await.expect("answers").json().await.expect("json");
    assert_eq!(moved["moved"], 1);
    system
        .eventually("the requeued email arrives", async |s| {
            s.get("/api/mailbox").await["total"] == 1
        })
        .await;
    system.stop().await;
}

#[tokio::test]
async fn a_permanent_failure_dead_letters_at_once_with_its_reason() {
    let system = TestSystem::start(flags).await;
    system.faults(json!({ "smtp5xxRate": 1.0 })).await;
    system.signup("ada@example.com").await;
    let (attempts, error) = system.dead_lettered_email().await;
    assert_eq!(attempts, 1, "no retry tier for a 5xx");
    assert!(error.contains("554"), "{error}");
    system.stop().await;
}

#[tokio::test]
async fn paused_queues_hold_their_jobs_until_resumed_and_bad_knobs_are_refused() {
    let system = TestSystem::start(flags).await;
    let pause = system
        .http
        .post(system.dashboard("/api/queues/mail/pause"))
        .send()
        .await
        .expect("answers");
    assert_eq!(pause.status(), 200);
    system.signup("ada@example.com").await;
    // A fixed wait, for nothing to happen: paused, the job is still waiting after it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(system.queue("mail").await["waiting"], 1);
    assert_eq!(system.get("/api/mailbox").await["total"], 0);
    system
        .http
        .post(system.dashboard("/api/queues/mail/resume"))
        .send()
        .await
        .expect("answers");
    system
        .eventually("the email goes out after resume", async |s| {
            s.get("/api/mailbox").await["total"] == 1
        })
        .await;

    let bad = system
        .http
        .put(system.dashboard("/api/faults"))
        .json(&json!({ "smtp4xxRate": 2.0 }))
        .send()
        .await
        .expect("answers");
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.expect("json");
    assert!(body["fields"]["smtp4xxRate"].is_string(), "{body}");
    let unknown = system
        .http
        .post(system.dashboard("/api/queues/nope/pause"))
        .send()
        .await
        .expect("answers");
    assert_eq!(unknown.status(), 404);
    let not_dlq = system
        .http
        .post(system.dashboard("/api/queues/mail/requeue"))
        .send()
        .await
        .expect("answers");
    assert_eq!(not_dlq.status(), 400);
    system.stop().await;
}

/// The SMTP circuit of `/api/live-view/status`'s SMTP metrics.
async fn circuit(system: &TestSystem) -> Value {
    let status = system.get("/api/live-view/status").await;
    status["componentMetrics"]
        .as_array()
        .expect("components")
        .iter()
        .find(|component| component["component"] == "smtp")
        .map(|smtp| smtp["circuit"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_failing_smtp_server_opens_the_circuit_and_mail_waits_until_it_recovers() {
    // Retry tiers of 3 s and 18 s; the breaker keeps real time (5 s open).
    let system = TestSystem::start(|config| {
        config.servers = 1;
        config.time_scale = 0.01;
    })
    .await;
    system.faults(json!({ "smtp4xxRate": 1.0 })).await;
    for n in 0..20 {
        system.signup(&format!("user-{n}@example.com")).await;
    }
    support::eventually("the circuit opens", Duration::from_secs(20), || async {
        (circuit(&system).await == "open").then_some(())
    })
    .await;
    // Open: nobody hammers the server. The failures stop growing while mail waits.
    let failed = |status: Value| {
        status["componentMetrics"]
            .as_array()
            .expect("components")
            .iter()
            .find(|component| component["component"] == "smtp")
            .map_or(0, |smtp| smtp["failed"].as_u64().expect("failed"))
    };
    let before = failed(system.get("/api/live-view/status").await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = failed(system.get("/api/live-view/status").await);
    assert_eq!(before, after, "no SMTP attempt while the circuit is open");
    assert!(
        after < 20,
        "{after} attempts: the circuit opened before every email was tried"
    );

    system.faults(json!({})).await;
    support::eventually("every welcome delivered", Duration::from_secs(60), || async {
        (system.get("/api/mailbox").await["total"] == 20).then_some(())
    })
    .await;
    support::eventually("the circuit shows closed", Duration::from_secs(5), || async {
        (circuit(&system).await == "closed").then_some(())
    })
    .await;
    assert_eq!(
        system.count("SELECT COUNT(*) FROM jobs WHERE queue = 'mail-dlq'").await,
        0,
        "waiting behind the circuit cost no email its delivery"
    );
    system.stop().await;
}

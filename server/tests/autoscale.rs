//! `--autoscale MIN..MAX` through the real system: it starts with MIN servers running,
//! adds one when responses get slow (seed 001's 2 s) and gives it back once things are
//! quiet, each decision in the activity feed with its reason.

use std::time::Duration;

use serde_json::json;
use support::{TestSystem, eventually};
use tokio_util::sync::CancellationToken;

mod support;

async fn running(system: &TestSystem) -> usize {
    system.dashboard_json("/api/servers").await["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .filter(|server| server["running"] == true)
        .count()
}

async fn autoscale_activity(system: &TestSystem) -> Vec<String> {
    liveview::with_connection!(&mut system.running.database.read().await.expect("db"), |c| {
        sqlx::query_scalar(
            "SELECT description FROM activity_stream WHERE event_type = 'autoscale' ORDER BY created_at_ms",
        )
        .fetch_all(c)
        .await
    })
    .expect("rows")
}

#[tokio::test]
async fn slow_responses_add_a_server_and_quiet_gives_it_back() {
    let system = TestSystem::start(|config| {
        config.autoscale = Some("1..3".parse().expect("range"));
        config.autoscale_every_ms = 200;
    })
    .await;
    let servers = system.dashboard_json("/api/servers").await;
    assert_eq!(
        servers["servers"].as_array().expect("servers").len(),
        3,
        "MAX servers bound"
    );
    eventually("MIN running", Duration::from_secs(5), || async {
        (running(&system).await == 1).then_some(())
    })
    .await;

    // Every login waits 2.5 s at the database: the response time passes 2 s.
    let ada = json!({"email": "ada@example.com", "name": "Ada", "password": "s3cret-pass"});
    let signed_up = system
        .http
        .post(system.lb("/api/auth/signup"))
        .json(&ada)
        .send()
        .await
        .expect("signup");
    assert_eq!(signed_up.status(), 201);
    let delay = json!({"delays": {"databaseOperation": 2500}});
    assert_eq!(
        system.dashboard_put("/api/live-view/controls", &delay).await.status(),
        200
    );
    let load = CancellationToken::new();
    // Three at a time: the delay holds the one SQLite writer, so more would only queue.
    for _ in 0..3 {
        let (http, url, stop) = (system.http.clone(), system.lb("/api/auth/login"), load.clone());
        tokio::spawn(async move {
            let login = json!({"email": "ada@example.com", "password": "s3cret-pass"});
            while !stop.is_cancelled() {
                let _ = http.post(&url).json(&login).send().await;
            }
        });
    }
    eventually("a server added", Duration::from_secs(20), || async {
        (running(&system).await == 2).then_some(())
    })
    .await;
    let decisions = eventually("the decision recorded", Duration::from_secs(30), || async {
        let decisions = autoscale_activity(&system).await;
        (decisions.len() > 2).then_some(decisions)
    })
    .await;
    // At first, from the MAX bound down to MIN, each stop in the feed.
    assert_eq!(
        decisions[..2],
        [
            "Stopped server-3 (3 → 2 servers): keeping the autoscaler's count of 1, not 3",
            "Stopped server-2 (2 → 1 servers): keeping the autoscaler's count of 1, not 2",
        ],
        "{decisions:?}"
    );
    let decisions = &decisions[2..];
    // The response time passes its bound; on a machine busy with other tests the
    // process's CPU may pass its own first, and either starts the server.
    assert!(
        ["response time", "CPU"]
            .iter()
            .any(|reason| decisions[0].starts_with(&format!("Started server-2 (1 → 2 servers): {reason}"))),
        "{decisions:?}"
    );

    load.cancel();
    let none = json!({"delays": {"databaseOperation": 0}});
    assert_eq!(
        system.dashboard_put("/api/live-view/controls", &none).await.status(),
        200
    );
    // Each stop is announced once it is done: wait for as many stops as starts.
    let decisions = eventually("back to one", Duration::from_secs(30), || async {
        let decisions = autoscale_activity(&system).await.split_off(2);
        let stops = decisions.iter().filter(|d| d.starts_with("Stopped")).count();
        (running(&system).await == 1 && 2 * stops >= decisions.len()).then_some(decisions)
    })
    .await;
    assert!(
        decisions.last().expect("a decision").starts_with("Stopped server-"),
        "{decisions:?}"
    );
    // Never past MAX, never flapping: one or two starts while slow (the second after the
    // cooldown, when the pressure held), then as many stops, nothing in between.
    let starts = decisions
        .iter()
        .take_while(|decision| decision.starts_with("Started"))
        .count();
    assert!((1..=2).contains(&starts), "{decisions:?}");
    assert_eq!(decisions.len(), 2 * starts, "{decisions:?}");
    assert!(
        decisions[starts..]
            .iter()
            .all(|decision| decision.starts_with("Stopped") && decision.contains("quiet")),
        "{decisions:?}"
    );
    system.stop().await;
}

#[tokio::test]
async fn autoscale_runs_in_a_process_with_a_dashboard() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = liveview::config::Config::ephemeral(dir.path());
    config.role = wire::ProcessRole::Lb;
    config.autoscale = Some("1..2".parse().expect("range"));
    let refused = liveview::start(&config).await.err().expect("refused").to_string();
    assert!(refused.contains("--autoscale"), "{refused}");
}

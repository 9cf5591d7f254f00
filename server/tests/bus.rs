//! The bus across processes, on a real Redis: two systems that share nothing but the bus
//! see each other's control changes, the bus rides out a Redis restart, and a bus that
//! cannot be reached stops the start with the reason.

use std::time::Duration;

use liveview::{
    bus::{Bus, Channel},
    cluster::ClusterSecret,
};
use serde_json::json;
use support::{TestSystem, redis::RedisServer};

mod support;

const SECRET: &str = "a cluster secret for the tests";

fn secret() -> ClusterSecret {
    ClusterSecret::new(SECRET).expect("long enough")
}

/// A system on the Redis bus at `url`, with the tests' cluster secret.
async fn on_the_bus(url: &str) -> TestSystem {
    let url = url.to_string();
    TestSystem::start(move |config| {
        config.bus_url = Some(url);
        config.cluster_secret = Some(SECRET.into());
    })
    .await
}

async fn queueing_delay(system: &TestSystem) -> u64 {
    system.dashboard_json("/api/live-view/controls").await["delays"]["queueing"]
        .as_u64()
        .expect("a delay")
}

#[tokio::test]
async fn a_control_change_on_one_dashboard_reaches_every_process_over_redis() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let first = on_the_bus(&url).await;
    let second = on_the_bus(&url).await;
    assert_eq!(first.running.bus.describe(), "redis");

    let changed = first
        .dashboard_put("/api/live-view/controls", &json!({"delays": {"queueing": 1234}}))
        .await;
    assert_eq!(changed.status(), 200);
    support::eventually(
        "the second process applies the change",
        Duration::from_secs(10),
        || async { (queueing_delay(&second).await == 1234).then_some(()) },
    )
    .await;
    // And back the other way.
    second
        .dashboard_put("/api/live-view/controls", &json!({"delays": {"queueing": 50}}))
        .await;
    support::eventually(
        "the first process applies the change",
        Duration::from_secs(10),
        || async { (queueing_delay(&first).await == 50).then_some(()) },
    )
    .await;
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn without_a_bus_url_two_systems_share_nothing() {
    let first = TestSystem::start(|_| {}).await;
    let second = TestSystem::start(|_| {}).await;
    assert_eq!(first.running.bus.describe(), "in-process");
    first
        .dashboard_put("/api/live-view/controls", &json!({"delays": {"queueing": 1234}}))
        .await;
    assert_eq!(queueing_delay(&first).await, 1234);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(queueing_delay(&second).await, 0);
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn the_bus_rides_out_a_redis_restart() {
    let mut redis = RedisServer::start().await;
    let sender = Bus::redis(&redis.url(), &secret()).await.expect("connects");
    let receiver = Bus::redis(&redis.url(), &secret()).await.expect("connects");
    let mut messages = receiver.subscribe::<u64>(Channel::Controls).await.expect("subscribes");
    sender.publish(Channel::Controls, &1u64).await.expect("published");
    let first = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .expect("in time");
    assert_eq!(first, Some((sender.me().clone(), 1)));

    redis.kill();
    redis.run().await;
    // Pub/sub keeps nothing for a subscriber that is away: publish until it is back.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut sent = 1u64;
    let received = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no message got through after the restart"
        );
        sent += 1;
        let _ = sender.publish(Channel::Controls, &sent).await;
        if let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(200), messages.next()).await {
            break message;
        }
    };
    assert!(received.1 >= 2, "a message sent after the restart: {received:?}");
    sender.close().await;
    receiver.close().await;
}

#[tokio::test]
async fn a_bus_that_cannot_be_reached_stops_the_start() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = liveview::config::Config::ephemeral(dir.path());
    config.bus_url = Some(format!("redis://:hunter2@127.0.0.1:{port}"));
    config.cluster_secret = Some(SECRET.into());
    let started = tokio::time::timeout(Duration::from_secs(20), liveview::start(&config))
        .await
        .expect("gives up in time");
    let error = started.err().expect("refused").to_string();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(!error.contains("hunter2"), "no password in the error: {error}");
}

#[tokio::test]
async fn a_bus_between_processes_needs_the_cluster_secret() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = liveview::config::Config::ephemeral(dir.path());
    config.bus_url = Some(redis.url());
    let error = liveview::start(&config).await.err().expect("refused").to_string();
    assert!(error.contains("--bus-url needs --cluster-secret"), "{error}");
    config.cluster_secret = Some("short".into());
    let error = liveview::start(&config).await.err().expect("refused").to_string();
    assert!(error.contains("at least 16 characters"), "{error}");
}

#[tokio::test]
async fn a_message_from_outside_the_cluster_is_dropped() {
    let redis = RedisServer::start().await;
    let system = on_the_bus(&redis.url()).await;
    // Someone who can reach the Redis but has another secret, or none.
    let outsider = Bus::redis(
        &redis.url(),
        &ClusterSecret::new("not the cluster's secret").expect("ok"),
    )
    .await
    .expect("connects");
    let forged = json!({
        "stamp": {"at_ms": i64::MAX, "process": "outsider"},
        "settings": {"delays": {"queueing": 30000}}
    });
    outsider.publish(Channel::Controls, &forged).await.expect("published");
    // A member's change after the forgery gets through: the forgery was not just slow.
    let member = Bus::redis(&redis.url(), &secret()).await.expect("connects");
    let mut watch = member
        .subscribe::<serde_json::Value>(Channel::Controls)
        .await
        .expect("subscribes");
    system
        .dashboard_put("/api/live-view/controls", &json!({"delays": {"queueing": 70}}))
        .await;
    let (_, seen) = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("in time")
        .expect("a message");
    assert_eq!(seen["settings"]["delays"]["queueing"], 70, "members read members");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(queueing_delay(&system).await, 70, "the forged change was dropped");
    // The same message signed with the cluster's key is applied: it was the signature.
    member.publish(Channel::Controls, &forged).await.expect("published");
    support::eventually("a member's message is applied", Duration::from_secs(5), || async {
        (queueing_delay(&system).await == 30_000).then_some(())
    })
    .await;
    outsider.close().await;
    member.close().await;
    system.stop().await;
}

#[tokio::test]
async fn a_step_token_from_one_dashboard_is_good_at_every_balancer_of_the_cluster() {
    let redis = RedisServer::start().await;
    let first = on_the_bus(&redis.url()).await;
    let second = on_the_bus(&redis.url()).await;
    let token = first.step_token().await;
    assert!(second.running.controls.steps().token_valid(&token));
    let alone = TestSystem::start(|_| {}).await;
    assert!(
        !alone.running.controls.steps().token_valid(&token),
        "a process outside the cluster has its own key"
    );
    first.stop().await;
    second.stop().await;
    alone.stop().await;
}

/// The ids of the Redis connections blocked in `XREAD`: the bus's stream readers.
async fn stream_readers(admin: &fred::prelude::Client) -> Vec<String> {
    use fred::prelude::*;
    let list: String = admin
        .custom(fred::cmd!("CLIENT"), vec!["LIST"])
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter(|line| line.contains("cmd=xread"))
        .filter_map(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")))
        .map(str::to_string)
        .collect()
}

// Telemetry is a Redis Stream: a dashboard whose connection drops reads on from the last
// message it had. On pub/sub, what was sent while it reconnected (100 ms at least) would
// be lost; here every message arrives, once, in order.
#[tokio::test]
async fn a_telemetry_reader_whose_connection_drops_misses_nothing() {
    use fred::prelude::*;
    let redis = RedisServer::start().await;
    let sender = Bus::redis(&redis.url(), &secret()).await.expect("connects");
    let receiver = Bus::redis(&redis.url(), &secret()).await.expect("connects");
    let admin = fred::prelude::Builder::from_config(Config::from_url(&redis.url()).expect("url"))
        .build()
        .expect("client");
    admin.init().await.expect("connects");
    // Sent before the subscription: not read (a reader starts from now).
    sender.publish(Channel::Telemetry, &0u64).await.expect("published");
    let mut messages = receiver.subscribe::<u64>(Channel::Telemetry).await.expect("subscribes");
    let mut kills = 0;
    for round in 0..5u64 {
        support::eventually("the reader is blocked in XREAD", Duration::from_secs(5), || async {
            (!stream_readers(&admin).await.is_empty()).then_some(())
        })
        .await;
        for id in stream_readers(&admin).await {
            let _: Value = admin
                .custom(fred::cmd!("CLIENT"), vec!["KILL", "ID", &id])
                .await
                .expect("CLIENT KILL");
            kills += 1;
        }
        // Sent while the reader reconnects.
        for n in 1..=40 {
            sender
                .publish(Channel::Telemetry, &(round * 40 + n))
                .await
                .expect("published");
        }
    }
    assert!(kills >= 5, "the reader's connection was dropped each round: {kills}");
    let mut received = Vec::new();
    while received.len() < 200 {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("every message arrives")
            .expect("a message");
        received.push(next.1);
    }
    assert_eq!(received, (1..=200).collect::<Vec<u64>>(), "each once, in order");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), messages.next())
            .await
            .is_err(),
        "nothing more"
    );
    sender.close().await;
    receiver.close().await;
}

// On a cluster a process with everything (`--role all`) sends its telemetry over the bus
// like the others: another dashboard of the cluster shows its journeys.
#[tokio::test]
async fn a_dashboard_shows_the_journeys_of_another_full_process_on_the_bus() {
    let redis = RedisServer::start().await;
    let first = on_the_bus(&redis.url()).await;
    let second = on_the_bus(&redis.url()).await;
    let signup = json!({ "email": "grace@example.com", "name": "Grace", "password": "a long password 1" });
    let response = first
        .http
        .post(first.lb("/api/auth/signup"))
        .header("x-request-id", "signup-on-first")
        .json(&signup)
        .send()
        .await
        .expect("answers");
    assert!(response.status().is_success(), "{}", response.status());
    for system in [&first, &second] {
        let journey = support::eventually("the journey on every dashboard", Duration::from_secs(10), || async {
            let url = system.dashboard("/api/live-view/requests/signup-on-first");
            let response = system.http.get(url).send().await.expect("answers");
            let journey: serde_json::Value = response.json().await.ok()?;
            let stages = journey["request"]["stages"].as_array()?;
            stages
                .iter()
                .any(|stage| stage["stage"] == "smtp-attempt")
                .then_some(journey)
        })
        .await;
        let stages = journey["request"]["stages"].as_array().expect("stages");
        // Once each: the first dashboard folds its own records from the bus only.
        for name in ["lb-received", "controller", "response"] {
            let seen = stages.iter().filter(|stage| stage["stage"] == name).count();
            assert_eq!(seen, 1, "{name}: {stages:?}");
        }
    }
    first.stop().await;
    second.stop().await;
}

// The settings in force are kept in the database: a process that starts after a change
// starts with it, and one that missed it on the bus (here: on another Redis) reads it
// within a refresh.
#[tokio::test]
async fn a_process_that_starts_after_a_change_or_missed_it_acts_on_it() {
    let postgres = support::postgres::PostgresServer::start().await;
    let (redis, other_redis) = (RedisServer::start().await, RedisServer::start().await);
    let on = |bus: String| {
        let database = postgres.url();
        TestSystem::start(move |config| {
            config.bus_url = Some(bus);
            config.cluster_secret = Some(SECRET.into());
            config.database_url = Some(database);
        })
    };
    let first = on(redis.url()).await;
    let away = on(other_redis.url()).await;
    let changed = first
        .dashboard_put("/api/live-view/controls", &json!({"delays": {"queueing": 70}}))
        .await;
    assert_eq!(changed.status(), 200);
    let later = on(redis.url()).await;
    assert_eq!(queueing_delay(&later).await, 70, "read at start");
    support::eventually(
        "the process that missed it reads it",
        Duration::from_secs(15),
        || async { (queueing_delay(&away).await == 70).then_some(()) },
    )
    .await;
    // A newer change wins everywhere, an older stamp in the database does not undo it.
    away.dashboard_put("/api/live-view/controls", &json!({"delays": {"queueing": 90}}))
        .await;
    support::eventually(
        "the newer change reaches the others",
        Duration::from_secs(15),
        || async { (queueing_delay(&first).await == 90 && queueing_delay(&later).await == 90).then_some(()) },
    )
    .await;
    for system in [first, away, later] {
        system.stop().await;
    }
}

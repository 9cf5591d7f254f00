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

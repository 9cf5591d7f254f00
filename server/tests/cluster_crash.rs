//! The cluster under `kill -9`: 1 lb, 2 app, 2 worker and 1 dashboard, each its own
//! `liveview` process, on a real PostgreSQL and Redis (started by the test), mail going
//! to a real SMTP server outside (in this test process, on a database of its own), end
//! users as real socket clients through the lb. Under a purchase load one app process
//! and one worker process are killed with SIGKILL; the worker comes back on its data
//! directory, as a supervisor would bring it back, the app does not. Then every
//! accepted purchase's email is at the SMTP server under its own Message-ID, every
//! in-app notification reached its user in exactly one frame, and the dashboard folded
//! journeys that went through each app process.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use liveview::{smtp::CaptureServer, storage::Database};
use serde_json::Value;
use support::{
    clients::{Frames, load, signed_in_users, spawn_clients},
    free_port,
    postgres::PostgresServer,
    process::Process,
    redis::RedisServer,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

mod support;

const USERS: usize = 4;
const MAIL_WORKERS: u64 = 4;

/// `liveview ARGS --data DATA --time-scale 0.01`, in a role of the cluster.
async fn start(env: &[(String, String)], data: &std::path::Path, args: &[&str], health: Option<String>) -> Process {
    let mut all: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    all.extend([
        "--data".into(),
        data.display().to_string(),
        "--time-scale".into(),
        "0.01".into(),
    ]);
    Process::start(all, env, health).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_an_app_and_a_worker_process_loses_nothing_and_sends_nothing_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let postgres = PostgresServer::start().await;
    let redis = RedisServer::start().await;
    let smtp_db = Database::open(&format!("sqlite://{}", dir.path().join("smtp.db").display()))
        .await
        .expect("smtp db");
    let capture = CaptureServer::new(smtp_db);
    let smtp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let smtp: SocketAddr = smtp_listener.local_addr().expect("addr");
    let smtp_stop = CancellationToken::new();
    capture.spawn(smtp_listener, &TaskTracker::new(), smtp_stop.clone());

    let env = vec![
        ("LIVEVIEW_DATABASE_URL".to_string(), postgres.url()),
        ("LIVEVIEW_BUS_URL".to_string(), redis.url()),
        (
            "LIVEVIEW_CLUSTER_SECRET".to_string(),
            "a cluster secret for the tests".to_string(),
        ),
    ];
    let data = |name: &str| dir.path().join(name);
    let lb = format!("127.0.0.1:{}", free_port());
    let mut apps = Vec::new();
    let mut app_ids = Vec::new();
    for n in 1..=2 {
        let listen = format!("127.0.0.1:{}", free_port());
        app_ids.push(format!("app@{listen}"));
        apps.push(
            start(
                &env,
                &data(&format!("app-{n}")),
                &["--role", "app", "--listen", &listen, "--lb", &lb],
                Some(format!("http://{listen}/healthz")),
            )
            .await,
        );
    }
    let smtp_url = format!("smtp://{smtp}");
    let mail_workers = MAIL_WORKERS.to_string();
    let worker_args = [
        "--role",
        "worker",
        "--smtp-url",
        &smtp_url,
        "--mail-workers",
        &mail_workers,
    ];
    let mut workers = Vec::new();
    for n in 1..=2 {
        workers.push(start(&env, &data(&format!("worker-{n}")), &worker_args, None).await);
    }
    let backends = app_ids
        .iter()
        .map(|id| id.trim_start_matches("app@"))
        .collect::<Vec<_>>()
        .join(",");
    let _lb = start(
        &env,
        &data("lb"),
        &[
            "--role",
            "lb",
            "--lb",
            &lb,
            "--backends",
            &backends,
            "--health-interval-ms",
            "200",
        ],
        Some(format!("http://{lb}/healthz")),
    )
    .await;
    let dashboard = format!("127.0.0.1:{}", free_port());
    let _dashboard = start(
        &env,
        &data("dashboard"),
        &["--role", "dashboard", "--dashboard", &dashboard, "--lb", &lb],
        Some(format!("http://{dashboard}/healthz")),
    )
    .await;

    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let tokens = signed_in_users(&lb, USERS).await;
    let frames: Frames = Arc::default();
    let clients_stop = CancellationToken::new();
    let clients = spawn_clients(&lb, &tokens, &frames, &clients_stop);
    let load_stop = Arc::new(AtomicBool::new(false));
    let load_task = tokio::spawn(load(lb.clone(), tokens.clone(), load_stop.clone()));

    // These sleeps wait for nothing: they are how long the load runs between the kills.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    apps[0].kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    workers[0].kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    workers[0].spawn().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    load_stop.store(true, Ordering::Relaxed);
    let accepted = load_task.await.expect("load");
    assert!(accepted.len() > 50, "the load was real: {} accepted", accepted.len());

    // The owed deliveries, from the cluster's database.
    let db = Database::open(&postgres.url()).await.expect("cluster db");
    let rows = |sql: &'static str| {
        let db = db.clone();
        async move {
            let rows: Vec<(String, String)> = liveview::with_connection!(&mut db.read().await.expect("db"), |c| {
                sqlx::query_as(sql).fetch_all(c).await
            })
            .expect("rows");
            rows.into_iter().collect::<BTreeMap<String, String>>()
        }
    };
    let owed_emails = rows("SELECT id, request_id FROM emails WHERE kind = 'purchase'").await;
    let owed_notifications = rows("SELECT id, request_id FROM notifications WHERE kind = 'purchase'").await;
    for request in &accepted {
        assert!(
            owed_emails.values().any(|owner| owner == request),
            "accepted request {request} has its email row"
        );
        assert!(
            owed_notifications.values().any(|owner| owner == request),
            "accepted request {request} has its notification row"
        );
    }

    // Every delivery lands: the dead worker's leases are released by the others once
    // its heartbeats stop (10 s), the dead app's users reconnect through the lb.
    let signup_and_login_emails = (USERS * 2) as u64;
    support::eventually(
        "every owed email stored and every owed notification framed",
        Duration::from_secs(90),
        || async {
            let stored = capture.count().await.expect("count");
            let delivered = frames
                .lock()
                .expect("lock")
                .keys()
                .filter(|id| owed_notifications.contains_key(*id))
                .count();
            (stored == owed_emails.len() as u64 + signup_and_login_emails && delivered == owed_notifications.len())
                .then_some(())
        },
    )
    .await;
    // Emails: each owed one stored once under its own Message-ID.
    let stored = capture.messages(10_000).await.expect("messages");
    let mut received: Vec<String> = stored
        .iter()
        .filter_map(|message| message.message_id.as_deref())
        .map(|id| {
            id.trim_matches(['<', '>'])
                .trim_end_matches("@liveview.local")
                .to_string()
        })
        .filter(|id| owed_emails.contains_key(id))
        .collect();
    received.sort();
    assert_eq!(
        received,
        owed_emails.keys().cloned().collect::<Vec<_>>(),
        "each purchase email once"
    );
    // A send in flight at the kill (taken by the server, its 250 not yet seen) goes again
    // with the same Message-ID: at most one per mail worker of the killed process.
    let duplicates = capture.duplicates().await.expect("duplicates");
    assert!(duplicates <= MAIL_WORKERS, "{duplicates} repeated sends");
    // In-app: each owed notification in exactly one frame.
    let frames = frames.lock().expect("lock").clone();
    for id in owed_notifications.keys() {
        assert_eq!(
            frames.get(id),
            Some(&1),
            "notification {id} reached its user exactly once"
        );
    }
    // The dashboard folded journeys that went through each app process.
    for id in &app_ids {
        let journeys: Value = http
            .get(format!(
                "http://{dashboard}/api/live-view/requests?type=purchase&server={id}"
            ))
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json");
        assert!(
            journeys.as_array().is_some_and(|list| !list.is_empty()),
            "the dashboard saw purchases through {id}"
        );
    }

    clients_stop.cancel();
    for client in clients {
        client.await.expect("client");
    }
    smtp_stop.cancel();
    println!(
        "accepted {} purchases across the kills of an app and a worker process; {} emails and {} in-app frames, \
         each exactly once; {duplicates} repeated SMTP sends dropped by Message-ID",
        accepted.len(),
        owed_emails.len(),
        owed_notifications.len()
    );
}

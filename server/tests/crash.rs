//! Crash safety: `kill -9` the whole process twice under load, start it again on the
//! same data, and count. Every accepted request's email reaches a real SMTP server (one
//! running in this test process, so it outlives the kills) and its in-app notification
//! reaches a real socket client — each exactly once — and nothing else arrives. For
//! email "exactly once" holds at an idempotent receiver: see the note on duplicates.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use liveview::{smtp::CaptureServer, storage::Database};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

mod support;

use support::{
    clients::{Frames, load, signed_in_users, spawn_clients},
    process::Process,
};

const USERS: usize = 4;
const MAIL_WORKERS: u64 = 4;
const KILLS: u64 = 2;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The whole system in one process, with its balancer's address; killed when dropped.
struct Liveview {
    process: Process,
    lb: String,
}

impl Liveview {
    async fn start(data: &str, smtp: SocketAddr) -> Self {
        let (dashboard, lb) = (free_port(), free_port());
        let args = [
            "--dashboard",
            &format!("127.0.0.1:{dashboard}"),
            "--lb",
            &format!("127.0.0.1:{lb}"),
            "--servers",
            "2",
            "--server-port-base",
            "0",
            "--smtp-url",
            &format!("smtp://{smtp}"),
            "--mail-workers",
            &MAIL_WORKERS.to_string(),
            "--time-scale",
            "0.01",
            "--data",
            data,
        ]
        .map(String::from)
        .to_vec();
        let lb = format!("127.0.0.1:{lb}");
        let process = Process::start(args, &[], Some(format!("http://{lb}/healthz"))).await;
        Self { process, lb }
    }

    async fn spawn(&mut self) {
        self.process.spawn().await;
    }

    fn kill(&mut self) {
        self.process.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_and_delivers_each_notification_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The SMTP server: a separate database, in this process, untouched by the kills.
    let smtp_db = Database::open(&format!("sqlite://{}", dir.path().join("smtp.db").display()))
        .await
        .expect("smtp db");
    let capture = CaptureServer::new(smtp_db);
    let smtp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let smtp_addr = smtp_listener.local_addr().expect("addr");
    let smtp_stop = CancellationToken::new();
    capture.spawn(smtp_listener, &TaskTracker::new(), smtp_stop.clone());

    let data = dir.path().join("data");
    let mut liveview = Liveview::start(data.to_str().expect("utf-8"), smtp_addr).await;
    let lb = liveview.lb.clone();
    let tokens = signed_in_users(&lb, USERS).await;
    let frames: Frames = Arc::default();
    let clients_stop = CancellationToken::new();
    let clients = spawn_clients(&lb, &tokens, &frames, &clients_stop);
    let load_stop = Arc::new(AtomicBool::new(false));
    let load_task = tokio::spawn(load(lb.clone(), tokens.clone(), load_stop.clone()));

    // These sleeps wait for nothing: they are how long the load runs against a live
    // process before each kill, with no process up after it, and after the last restart.
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        liveview.kill();
        tokio::time::sleep(Duration::from_millis(200)).await;
        liveview.spawn().await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    load_stop.store(true, Ordering::Relaxed);
    let accepted = load_task.await.expect("load");
    assert!(accepted.len() > 50, "the load was real: {} accepted", accepted.len());

    // The owed deliveries, read from the database the process keeps writing.
    let db = Database::open(&format!("sqlite://{}", data.join("liveview.db").display()))
        .await
        .expect("data db");
    let owed_emails: BTreeMap<String, String> =
        liveview::with_connection!(&mut db.writing().await.expect("db"), |c| sqlx::query_as(
            "SELECT id, request_id FROM emails WHERE kind = 'purchase'"
        )
        .fetch_all(c)
        .await)
        .expect("emails")
        .into_iter()
        .collect();
    let owed_notifications: BTreeMap<String, String> = liveview::with_connection!(
        &mut db.writing().await.expect("db"),
        |c| sqlx::query_as("SELECT id, request_id FROM notifications WHERE kind = 'purchase'")
            .fetch_all(c)
            .await
    )
    .expect("notifications")
    .into_iter()
    .collect();
    let requests_with_email: std::collections::BTreeSet<&String> = owed_emails.values().collect();
    for request in &accepted {
        assert!(
            requests_with_email.contains(request),
            "accepted request {request} has its email row"
        );
    }
    assert!(owed_notifications.values().filter(|r| accepted.contains(r)).count() == accepted.len());

    // Wait for every delivery to land.
    let expected_signup_and_login_emails = (USERS * 2) as i64;
    support::eventually(
        "every owed email stored and every owed notification framed",
        Duration::from_secs(60),
        || async {
            let stored = capture.count().await.expect("count");
            let delivered = frames
                .lock()
                .expect("lock")
                .keys()
                .filter(|id| owed_notifications.contains_key(*id))
                .count();
            (stored as i64 == owed_emails.len() as i64 + expected_signup_and_login_emails
                && delivered == owed_notifications.len())
            .then_some(())
        },
    )
    .await;

    // Emails: each owed one stored once under its own Message-ID, nothing else.
    let received: Vec<(Option<String>,)> =
        liveview::with_connection!(&mut capture_db(&dir).await.writing().await.expect("db"), |c| {
            sqlx::query_as("SELECT message_id FROM mailbox").fetch_all(c).await
        })
        .expect("mailbox");
    let mut received_ids: Vec<String> = received
        .into_iter()
        .map(|(id,)| {
            id.expect("Message-ID")
                .trim_matches(['<', '>'])
                .trim_end_matches("@liveview.local")
                .to_string()
        })
        .filter(|id| owed_emails.contains_key(id))
        .collect();
    received_ids.sort();
    assert_eq!(
        received_ids,
        owed_emails.keys().cloned().collect::<Vec<_>>(),
        "each purchase email once"
    );
    // In-app: each owed notification in exactly one frame, and no frame for anything else.
    let frames = frames.lock().expect("lock").clone();
    for id in owed_notifications.keys() {
        assert_eq!(
            frames.get(id),
            Some(&1),
            "notification {id} reached its user exactly once"
        );
    }
    // SMTP has no two-phase commit: a message the server has taken but whose 250 had not
    // reached the killed process is sent again, with the same Message-ID, which this
    // (idempotent) server drops. Only a send in flight at the kill can repeat: at most one
    // per mail worker per kill.
    let duplicates = capture.duplicates().await.expect("duplicates") as u64;
    assert!(duplicates <= KILLS * MAIL_WORKERS, "{duplicates} repeated sends");

    clients_stop.cancel();
    for client in clients {
        client.await.expect("client");
    }
    smtp_stop.cancel();
    println!(
        "accepted {} purchases across {KILLS} kills; {} emails stored and {} in-app frames, each exactly once; \
         {duplicates} repeated SMTP sends dropped by Message-ID",
        accepted.len(),
        owed_emails.len(),
        owed_notifications.len()
    );
}

async fn capture_db(dir: &tempfile::TempDir) -> Database {
    Database::open(&format!("sqlite://{}", dir.path().join("smtp.db").display()))
        .await
        .expect("smtp db")
}

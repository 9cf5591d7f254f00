//! The storage layer on a real PostgreSQL (started by each test): every migration
//! applies and makes exactly the tables and columns SQLite has, and what several
//! processes sharing one database rely on holds — job claims never hand one job to two
//! workers, and one user's notifications from concurrent transactions get a gapless
//! `seq`. (The rest of the integration suite runs on PostgreSQL too, with
//! `LIVEVIEW_TEST_ENGINE=postgres`.)

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use liveview::{
    notify::{InAppDraft, Notice},
    queue::{QueueName, Queues},
    storage::{Database, Engine, WriteBatch},
};
use support::postgres::PostgresServer;

mod support;

type Schema = BTreeMap<String, Vec<String>>;

async fn sqlite_schema() -> Schema {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("schema.db").display());
    let database = liveview::storage::Database::open(&url).await.expect("migrated");
    let rows: Vec<(String, String)> =
        liveview::with_connection!(&mut database.writing().await.expect("db"), |c| sqlx::query_as(
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx_%' ORDER BY m.name, p.name",
        )
        .fetch_all(c)
        .await)
        .expect("schema");
    database.close().await;
    collect(rows)
}

fn collect(rows: Vec<(String, String)>) -> Schema {
    let mut schema = Schema::new();
    for (table, column) in rows {
        schema.entry(table).or_default().push(column);
    }
    schema
}

#[tokio::test]
async fn every_migration_applies_on_postgresql_and_makes_the_same_schema() {
    let postgres = PostgresServer::start().await;
    let pool = sqlx::PgPool::connect(&postgres.url()).await.expect("connects");
    sqlx::migrate!("./migrations")
        .run(&pool)
        .await
        .expect("every migration applies");
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx\\_%' ORDER BY table_name, column_name",
    )
    .fetch_all(&pool)
    .await
    .expect("schema");
    let postgres_schema = collect(rows);
    let sqlite = sqlite_schema().await;
    assert!(
        sqlite.contains_key("jobs") && sqlite.contains_key("operators"),
        "{sqlite:?}"
    );
    assert_eq!(postgres_schema, sqlite, "the same tables and columns on both engines");
    // Applying them again is a no-op, as at every start.
    sqlx::migrate!("./migrations").run(&pool).await.expect("idempotent");
    pool.close().await;
}

/// `count` handles on one PostgreSQL database: as many processes would hold.
async fn processes(postgres: &PostgresServer, count: usize) -> Vec<Database> {
    let mut handles = Vec::new();
    for _ in 0..count {
        let database = Database::open(&postgres.url()).await.expect("opens");
        assert_eq!(database.engine(), Engine::Postgres);
        handles.push(database);
    }
    handles
}

#[tokio::test]
async fn workers_of_several_processes_claim_each_job_once() {
    let postgres = PostgresServer::start().await;
    let databases = processes(&postgres, 3).await;
    const JOBS: usize = 600;
    for chunk in 0..JOBS / 100 {
        let mut batch = WriteBatch::default();
        for n in 0..100 {
            Queues::enqueue(
                &mut batch,
                QueueName::Mail,
                &format!("target-{chunk}-{n}"),
                None,
                None,
                Duration::ZERO,
            );
        }
        databases[0].commit(batch).await.expect("enqueued");
    }
    // Two workers per process, claiming batches of 7 side by side until none is left.
    let mut workers = Vec::new();
    for (process, database) in databases.iter().enumerate() {
        for worker in 0..2 {
            let queues = Queues::new(database.clone(), 1.0);
            let name = format!("process-{process}/worker-{worker}");
            workers.push(tokio::spawn(async move {
                let mut claimed = Vec::new();
                loop {
                    let jobs = queues
                        .claim_batch(&[QueueName::Mail], &name, Duration::from_secs(60), 7)
                        .await
                        .expect("claims");
                    if jobs.is_empty() {
                        return claimed;
                    }
                    claimed.extend(jobs.into_iter().map(|job| (job.id, job.attempts)));
                }
            }));
        }
    }
    let mut all = Vec::new();
    let mut busy_workers = 0;
    for worker in workers {
        let claimed = worker.await.expect("worker");
        busy_workers += usize::from(!claimed.is_empty());
        all.extend(claimed);
    }
    let distinct: BTreeSet<&String> = all.iter().map(|(id, _)| id).collect();
    assert_eq!(all.len(), JOBS, "every job claimed, and none twice");
    assert_eq!(distinct.len(), JOBS);
    assert!(
        all.iter().all(|(_, attempts)| *attempts == 1),
        "each job's first attempt"
    );
    assert!(busy_workers > 1, "the claims went side by side");
    // And a lease that ran out is claimed again, by another process.
    let queues = Queues::new(databases[1].clone(), 1.0);
    liveview::with_connection!(&mut databases[2].writing().await.expect("db"), |c| {
        sqlx::query("UPDATE jobs SET lease_until_ms = 0 WHERE id = $1")
            .bind(all[0].0.as_str())
            .execute(c)
            .await
            .map(drop)
    })
    .expect("expire one lease");
    let again = queues
        .claim_batch(&[QueueName::Mail], "process-1/late", Duration::from_secs(60), 10)
        .await
        .expect("claims");
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id.as_str(), again[0].attempts), (all[0].0.as_str(), 2));
    for database in databases {
        database.close().await;
    }
}

#[tokio::test]
async fn one_users_notifications_from_concurrent_transactions_get_a_gapless_seq() {
    let postgres = PostgresServer::start().await;
    let databases = processes(&postgres, 2).await;
    liveview::with_connection!(&mut databases[0].writing().await.expect("db"), |c| {
        sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, created_at_ms) VALUES ('u1', 'ada@example.com', 'Ada', 'x', 0)",
        )
        .execute(c)
        .await
        .map(drop)
    })
    .expect("user");
    const NOTIFICATIONS: usize = 60;
    let commits = (0..NOTIFICATIONS).map(|n| {
        let database = databases[n % 2].clone();
        tokio::spawn(async move {
            let mut batch = WriteBatch::default();
            // A purchase row first, as a controller writes it: its foreign key
            // share-locks the user row the notification then locks.
            batch
                .statement(
                    "INSERT INTO purchases (id, user_id, item, amount_cents, currency, created_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(format!("p{n}"))
                .bind("u1")
                .bind("book")
                .bind(100i64)
                .bind("EUR")
                .bind(0i64);
            let notice = Notice {
                kind: wire::NotificationType::Purchase,
                user_id: Some("u1".into()),
                email: None,
                in_app: Some(InAppDraft {
                    title: format!("Receipt {n}"),
                    body: "Thanks".into(),
                }),
                subject_id: None,
            };
            liveview::notify::fan_out(&mut batch, &notice, None, Duration::ZERO);
            database.commit(batch).await
        })
    });
    for commit in commits.collect::<Vec<_>>() {
        commit.await.expect("task").expect("committed");
    }
    let seqs: Vec<i64> = liveview::with_connection!(&mut databases[1].read().await.expect("db"), |c| {
        sqlx::query_scalar("SELECT seq FROM notifications WHERE user_id = 'u1' ORDER BY seq")
            .fetch_all(c)
            .await
    })
    .expect("seqs");
    assert_eq!(seqs, (1..=NOTIFICATIONS as i64).collect::<Vec<_>>());
    for database in databases {
        database.close().await;
    }
}

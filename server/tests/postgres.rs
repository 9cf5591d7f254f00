//! The same migrations on both engines: on a real PostgreSQL (started by the test) every
//! migration applies, and the schema it makes has exactly the tables and columns the
//! SQLite one has. The storage layer itself runs on SQLite today; this keeps the
//! migrations ready for `--database-url postgres://…`.

use std::collections::BTreeMap;

use support::postgres::PostgresServer;

mod support;

type Schema = BTreeMap<String, Vec<String>>;

async fn sqlite_schema() -> Schema {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("schema.db").display());
    let database = liveview::storage::Database::open(&url).await.expect("migrated");
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx_%' ORDER BY m.name, p.name",
    )
    .fetch_all(&database.pool)
    .await
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

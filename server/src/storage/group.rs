//! Group commit: one writer task commits the write batches of many requests and workers
//! in one transaction and one round trip to SQLite.
//!
//! SQLite has one writer at a time anyway, so writers only ever wait for each other; what
//! a separate transaction per request adds is a commit each (and two more hand-offs to
//! the connection's thread, `BEGIN` and `COMMIT`), plus taking a pooled connection. Here
//! the batches that arrived while the previous group was committing share one
//! `BEGIN IMMEDIATE … COMMIT`, so under load a commit costs one batch's hand-off per
//! request plus two per group; with no load a group is one batch and waits for nothing.
//!
//! Only blind writes take this path (a batch whose statements need no answer). If a
//! joined group fails, it is rolled back and each batch runs again in a transaction of
//! its own, so one bad batch fails alone and the others still commit.
//!
//! A caller that stops waiting (its request was cancelled) does not withdraw its batch:
//! once handed over it commits, as if the reply had been lost on the way back.

use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::WriteBatch;

/// The most batches joined into one transaction: enough to absorb a burst, small enough
/// that one SQL text stays well under SQLite's limits and a failed group is cheap to
/// replay.
const MAX_GROUP: usize = 64;
/// Batches waiting for the writer; a full queue makes callers wait (backpressure).
const QUEUE_DEPTH: usize = 4_096;

struct Pending {
    batch: WriteBatch,
    done: oneshot::Sender<Result<(), sqlx::Error>>,
}

/// The handle callers commit through; cheap to clone.
#[derive(Clone)]
pub struct GroupCommitter {
    sender: mpsc::Sender<Pending>,
}

impl GroupCommitter {
    /// Starts the writer task, which commits on `writer` (the database's writer
    /// connection, taken in turn with the other writers for each group).
    pub fn start(writer: SqlitePool) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(write_groups(writer, receiver));
        Self { sender }
    }

    /// Commits `batch` in its own transaction or in one shared with other batches;
    /// returns once it is durable (or failed on its own).
    pub async fn commit(&self, batch: WriteBatch) -> Result<(), sqlx::Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let (done, answer) = oneshot::channel();
        self.sender
            .send(Pending { batch, done })
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

async fn write_groups(writer: SqlitePool, mut receiver: mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while receiver.recv_many(&mut group, MAX_GROUP).await > 0 {
        let outcomes = match writer.acquire().await {
            Ok(mut connection) => {
                let outcomes = commit_group(&mut connection, &group).await;
                if outcomes
                    .iter()
                    .any(|outcome| matches!(outcome, Err(sqlx::Error::Io(_))))
                {
                    // Broken: the pool opens a fresh connection for the next writer.
                    connection.close_on_drop();
                }
                outcomes
            }
            Err(error) => {
                tracing::error!(%error, "group commit: no writer connection");
                group.iter().map(|_| Err(sqlx::Error::PoolTimedOut)).collect()
            }
        };
        for (pending, outcome) in group.drain(..).zip(outcomes) {
            // A caller that gave up waiting has nothing to be told.
            let _ = pending.done.send(outcome);
        }
    }
}

/// Commits the group as one transaction; when that fails, each batch alone.
async fn commit_group(connection: &mut SqliteConnection, group: &[Pending]) -> Vec<Result<(), sqlx::Error>> {
    match in_transaction(connection, group.iter().map(|pending| &pending.batch)).await {
        Ok(()) => group.iter().map(|_| Ok(())).collect(),
        Err(error) if group.len() == 1 => vec![Err(error)],
        Err(error) => {
            tracing::warn!(%error, batches = group.len(), "group commit failed; committing its batches one by one");
            let mut outcomes = Vec::with_capacity(group.len());
            for pending in group {
                outcomes.push(in_transaction(connection, std::iter::once(&pending.batch)).await);
            }
            outcomes
        }
    }
}

/// Runs the batches in one `BEGIN IMMEDIATE … COMMIT`, each batch as its own call so
/// that its SQL text recurs and its prepared statements are reused (one text joining
/// the whole group would be new every time, and parsed every time). If it stops
/// half-way, rolls back so the connection is clean for the
/// next group.
async fn in_transaction<'a>(
    connection: &mut SqliteConnection,
    batches: impl Iterator<Item = &'a WriteBatch>,
) -> Result<(), sqlx::Error> {
    let result = async {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *connection).await?;
        for batch in batches {
            batch.run_on(connection).await?;
        }
        sqlx::query("COMMIT").execute(&mut *connection).await.map(drop)
    }
    .await;
    if result.is_err() {
        // "no transaction is active" is the expected answer when BEGIN itself failed.
        let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use crate::storage::{Database, WriteBatch};

    async fn database() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = crate::storage::resolve_url(dir.path(), None).expect("url");
        let db = Database::open(&url).await.expect("db");
        crate::with_connection!(&mut db.writing().await.expect("writer"), |c| {
            sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY, v BIGINT NOT NULL)")
                .execute(c)
                .await
                .map(drop)
        })
        .expect("table");
        (dir, db)
    }

    fn insert(key: &str, value: i64) -> WriteBatch {
        let mut batch = WriteBatch::default();
        batch
            .statement("INSERT INTO t (k, v) VALUES (?, ?)")
            .bind(key)
            .bind(value);
        batch
    }

    #[tokio::test]
    async fn concurrent_batches_all_commit() {
        let (_dir, db) = database().await;
        let commits = (0..200).map(|i| {
            let db = db.clone();
            tokio::spawn(async move { db.commit(insert(&format!("k{i}"), i)).await })
        });
        for commit in commits {
            commit.await.expect("task").expect("committed");
        }
        let (count, sum): (i64, i64) = crate::with_connection!(&mut db.read().await.expect("read"), |c| {
            sqlx::query_as("SELECT COUNT(*), SUM(v) FROM t").fetch_one(c).await
        })
        .expect("count");
        assert_eq!((count, sum), (200, (0..200).sum()));
    }

    #[tokio::test]
    async fn a_failing_batch_fails_alone_and_leaves_nothing_behind() {
        let (_dir, db) = database().await;
        db.commit(insert("taken", 1)).await.expect("first");
        // Two statements: the first succeeds, the second breaks the primary key, so the
        // whole batch must roll back — while the batches around it commit.
        let mut bad = insert("half", 2);
        bad.statement("INSERT INTO t (k, v) VALUES (?, ?)")
            .bind("taken")
            .bind(3i64);
        let (a, b, c) = tokio::join!(db.commit(insert("a", 4)), db.commit(bad), db.commit(insert("c", 5)));
        a.expect("a commits");
        c.expect("c commits");
        let error = b.expect_err("the bad batch fails");
        assert!(error.to_string().contains("UNIQUE"), "{error}");
        let keys: Vec<String> = crate::with_connection!(&mut db.read().await.expect("read"), |c| {
            sqlx::query_scalar("SELECT k FROM t ORDER BY k").fetch_all(c).await
        })
        .expect("keys");
        assert_eq!(keys, ["a", "c", "taken"], "nothing of the bad batch remains");
        db.commit(insert("after", 6)).await.expect("the writer still works");
    }
}

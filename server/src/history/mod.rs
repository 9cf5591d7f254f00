//! History: every live-stream message persisted, so a past window can be replayed with
//! its original timestamps (`GET /api/live-view/history?from=&to=`).
//!
//! It lives in its own SQLite file (`DATA/history.db`), not in the system's database:
//! the history is written at the rate of the whole telemetry stream, and sharing a
//! write lock with the pipeline it observes would slow the pipeline down. Writes are
//! batched (one transaction a second, or sooner when many are waiting); recording is a
//! `try_send`, counted when it does not fit, like the rest of the telemetry. Retention
//! and downsampling are flags: messages older than `--history-minutes` go, and metric
//! samples older than `--history-full-minutes` are thinned to one per component per
//! minute.

use std::{
    path::Path,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use sqlx::{
    Row, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use crate::{now_ms, storage::WriteBatch};

/// Messages waiting to be written before new ones are dropped (and counted)...
const QUEUE: usize = 200_000;
/// ...and the bytes they may hold: the history must not grow memory faster than it
/// can write, whatever the size of the events.
const QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// Queued bytes that wake the writer before its second is up, and the most one
/// transaction writes: SQLite copies what it binds, so big transactions cost memory.
const WRITE_BYTES: usize = 1024 * 1024;
/// Rows per INSERT statement.
const ROWS_PER_STATEMENT: usize = 200;
/// The longest a message waits to be written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Topics thinned after `--history-full-minutes`.
const METRIC_TOPICS: [&str; 2] = ["system:metrics", "component:metrics"];

/// One live-stream message as it went out.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub ts_ms: i64,
    pub topic: &'static str,
    /// The whole envelope as JSON (shared with the live stream's frame, not copied).
    pub json: Utf8Bytes,
}

/// Retention settings.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Everything older goes.
    pub keep: Duration,
    /// Metric samples older than this keep one per component per minute.
    pub full_detail: Duration,
}

/// The recording end, held by the hub; cheap to clone.
#[derive(Clone)]
pub struct History {
    sender: mpsc::Sender<Entry>,
    dropped: Arc<AtomicU64>,
    /// Bytes of JSON queued and not yet taken by the writer.
    queued_bytes: Arc<AtomicUsize>,
    /// Wakes the writer when a transaction's worth is waiting.
    wake: Arc<Notify>,
    pool: SqlitePool,
}

impl History {
    /// Opens (creating if needed) `dir/history.db` and starts the writer and retention.
    pub async fn open(
        dir: &Path,
        retention: Retention,
        tasks: &tokio_util::task::TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", dir.join("history.db").display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        // The history file has one table and owns it; the system's migrations do not
        // apply to it.
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS live_events (\
               id INTEGER PRIMARY KEY AUTOINCREMENT, \
               ts_ms BIGINT NOT NULL, \
               seq BIGINT NOT NULL, \
               topic TEXT NOT NULL, \
               envelope TEXT NOT NULL)",
        )
        .execute(&pool)
        .await?;
        sqlx::query("CREATE INDEX IF NOT EXISTS live_events_ts ON live_events (ts_ms)")
            .execute(&pool)
            .await?;
        let (sender, receiver) = mpsc::channel(QUEUE);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let wake = Arc::new(Notify::new());
        let history = Self {
            sender,
            dropped: Arc::new(AtomicU64::new(0)),
            queued_bytes: queued_bytes.clone(),
            wake: wake.clone(),
            pool: pool.clone(),
        };
        tasks.spawn(write(pool.clone(), receiver, queued_bytes, wake, shutdown.clone()));
        tasks.spawn(retain(pool, retention, shutdown));
        Ok(history)
    }

    /// Records every event of a published frame.
    pub fn record_frame(&self, published: &crate::live::Published) {
        let ts_ms = now_ms();
        for event in &published.events {
            self.record(Entry {
                seq: event.seq,
                ts_ms,
                topic: event.tags.topic,
                json: event.json().clone(),
            });
        }
    }

    /// Queues a message for writing; never waits.
    pub fn record(&self, entry: Entry) {
        let bytes = entry.json.len();
        let queued = self.queued_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if queued >= WRITE_BYTES {
            self.wake.notify_one();
        }
        if queued > QUEUE_BYTES {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.sender.try_send(entry).is_err() {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Messages that could not be queued for writing.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The messages published between `from_ms` and `to_ms` (inclusive), in the order
    /// they went out, at most `limit`; optionally only topics starting with one of
    /// `topics`. Each is the original envelope JSON.
    pub async fn window(
        &self,
        from_ms: i64,
        to_ms: i64,
        topics: &[String],
        limit: u32,
    ) -> Result<Vec<String>, sqlx::Error> {
        let mut sql = String::from("SELECT envelope FROM live_events WHERE ts_ms >= ? AND ts_ms <= ?");
        if !topics.is_empty() {
            let alternatives = vec!["topic LIKE ? ESCAPE '\\'"; topics.len()].join(" OR ");
            sql.push_str(&format!(" AND ({alternatives})"));
        }
        sql.push_str(" ORDER BY id LIMIT ?");
        // Only placeholders are formatted in; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(from_ms).bind(to_ms);
        for topic in topics {
            let prefix = topic.strip_suffix('*').unwrap_or(topic);
            let escaped = prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            let pattern = if topic.ends_with('*') {
                format!("{escaped}%")
            } else {
                escaped
            };
            query = query.bind(pattern);
        }
        let rows = query.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|row| row.get::<String, _>(0)).collect())
    }

    /// The oldest and newest timestamps kept, if any.
    pub async fn range(&self) -> Result<Option<(i64, i64)>, sqlx::Error> {
        let row: (Option<i64>, Option<i64>) = sqlx::query_as("SELECT MIN(ts_ms), MAX(ts_ms) FROM live_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.0.zip(row.1))
    }
}

/// Writes queued messages in batches until shutdown, then what is left.
async fn write(
    pool: SqlitePool,
    mut receiver: mpsc::Receiver<Entry>,
    queued_bytes: Arc<AtomicUsize>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut entries = Vec::with_capacity(4_096);
    loop {
        let stop = tokio::select! {
            () = shutdown.cancelled() => true,
            () = wake.notified() => false,
            () = tokio::time::sleep(FLUSH_EVERY) => false,
        };
        let mut bytes = 0;
        loop {
            let next = receiver.try_recv().ok();
            if let Some(entry) = &next {
                queued_bytes.fetch_sub(entry.json.len(), Ordering::Relaxed);
                bytes += entry.json.len();
            }
            let done = next.is_none();
            entries.extend(next);
            if (done || bytes >= WRITE_BYTES) && !entries.is_empty() {
                if let Err(error) = insert(&pool, &entries).await {
                    tracing::warn!(%error, lost = entries.len(), "could not write live history");
                }
                entries.clear();
                bytes = 0;
            }
            if done {
                break;
            }
        }
        if stop {
            return;
        }
    }
}

async fn insert(pool: &SqlitePool, entries: &[Entry]) -> Result<(), sqlx::Error> {
    let mut batch = WriteBatch::default();
    batch.statement("BEGIN");
    for chunk in entries.chunks(ROWS_PER_STATEMENT) {
        let rows = vec!["(?, ?, ?, ?)"; chunk.len()].join(", ");
        batch.statement_owned(format!(
            "INSERT INTO live_events (ts_ms, seq, topic, envelope) VALUES {rows}"
        ));
        for entry in chunk {
            batch
                .bind(entry.ts_ms)
                .bind(entry.seq as i64)
                .bind(entry.topic)
                .bind(entry.json.as_str());
        }
    }
    batch.statement("COMMIT");
    let mut connection = pool.acquire().await?;
    let result = batch.run_on(&mut connection).await;
    if result.is_err() {
        let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
    }
    result
}

/// Applies retention and downsampling every minute until shutdown.
async fn retain(pool: SqlitePool, retention: Retention, shutdown: CancellationToken) {
    crate::every(Duration::from_secs(60), shutdown, || async {
        let now = now_ms();
        let expired = sqlx::query("DELETE FROM live_events WHERE ts_ms < ?")
            .bind(now - retention.keep.as_millis() as i64)
            .execute(&pool)
            .await;
        // One sample per minute survives: the ones from the minute's first second.
        let thinned =
            sqlx::query("DELETE FROM live_events WHERE ts_ms < ? AND topic IN (?, ?) AND ts_ms % 60000 >= 1000")
                .bind(now - retention.full_detail.as_millis() as i64)
                .bind(METRIC_TOPICS[0])
                .bind(METRIC_TOPICS[1])
                .execute(&pool)
                .await;
        if let Err(error) = expired.and(thinned) {
            tracing::warn!(%error, "could not apply live history retention");
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, ts_ms: i64, topic: &'static str) -> Entry {
        Entry {
            seq,
            ts_ms,
            topic,
            json: format!(r#"{{"seq":{seq},"topic":"{topic}"}}"#).into(),
        }
    }

    #[tokio::test]
    async fn a_window_comes_back_in_order_and_by_topic_prefix() {
        let dir = tempfile::tempdir().expect("dir");
        let tasks = tokio_util::task::TaskTracker::new();
        let shutdown = CancellationToken::new();
        let retention = Retention {
            keep: Duration::from_secs(3_600),
            full_detail: Duration::from_secs(600),
        };
        let history = History::open(dir.path(), retention, &tasks, shutdown.clone())
            .await
            .expect("opens");
        for (seq, ts, topic) in [
            (1, 1_000, "system:status"),
            (2, 2_000, "request:new"),
            (3, 3_000, "request:progress"),
            (4, 4_000, "queue:job:retry"),
        ] {
            history.record(entry(seq, ts, topic));
        }
        let mut window = Vec::new();
        for _ in 0..50 {
            window = history.window(2_000, 3_500, &[], 100).await.expect("reads");
            if window.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(window.len(), 2, "{window:?}");
        assert!(window[0].contains(r#""seq":2"#) && window[1].contains(r#""seq":3"#));
        let requests = history
            .window(0, 10_000, &["request:*".to_string()], 100)
            .await
            .expect("reads");
        assert_eq!(requests.len(), 2);
        assert_eq!(history.range().await.expect("range"), Some((1_000, 4_000)));
        shutdown.cancel();
    }
}

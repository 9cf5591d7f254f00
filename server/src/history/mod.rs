//! History: every live-stream message persisted, so a past window can be replayed with
//! its original timestamps (`GET /api/live-view/history?from=&to=`).
//!
//! It lives beside the system's database, not in it: the history is written at the rate
//! of the whole telemetry stream, and sharing a write lock with the pipeline it observes
//! would slow the pipeline down. It stores the frames exactly as they went out (a batch
//! of envelopes under load), so recording costs no serialization and one record a frame,
//! not one per event; reading a window splits the frames again, and reads are rare.
//!
//! Two stores: the stream's frames are appended to a log of segment files
//! ([`frames`], `DATA/history-frames/`), and the frames of metric samples only (the
//! sampler's, once a second), which are thinned as they age, go to an SQLite file
//! (`DATA/history.db`; frames found in it are read too).
//! Recording is a `try_send`, counted when it does not fit, like the rest of the
//! telemetry. Retention and downsampling are flags: frames older than
//! `--history-minutes` go, metric samples older than `--history-full-minutes` are
//! thinned to one per minute, and beyond `--history-max-mb` on disk the oldest frames go
//! first, whatever their age.

mod frames;
mod retention;

use retention::retain;

use futures_util::TryStreamExt;
use std::{
    path::Path,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::value::RawValue;
use sqlx::{
    SqlitePool,
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
/// Queued bytes that wake the SQLite writer before its second is up, and the most one
/// of its transactions (or one write of the frame log) takes: SQLite copies what it
/// binds, so big transactions cost memory.
const WRITE_BYTES: usize = 1024 * 1024;
/// Rows per INSERT statement.
const ROWS_PER_STATEMENT: usize = 200;
/// The longest a message waits to be written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Topics whose frames are thinned after `--history-full-minutes`.
const METRIC_TOPICS: [&str; 2] = ["system:metrics", "component:metrics"];

/// One live-stream frame as it went out.
#[derive(Debug, Clone)]
pub struct Entry {
    pub first_seq: u64,
    pub last_seq: u64,
    pub ts_ms: i64,
    /// Every event of the frame is a metric sample.
    pub metrics_only: bool,
    /// One envelope, or an array of them (shared with the live stream, not copied).
    pub json: Utf8Bytes,
}

/// Retention settings.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Everything older goes.
    pub keep: Duration,
    /// Metric samples older than this keep one per component per minute.
    pub full_detail: Duration,
    /// The most the frames may take on disk; the oldest go first beyond it. Under peak
    /// load the stream is tens of megabytes a second (README, `--history-max-mb`), so
    /// `keep` alone could fill a disk with tens of gigabytes an hour.
    pub max_bytes: u64,
}

/// The recording end, held by the hub; cheap to clone.
#[derive(Clone)]
pub struct History {
    /// Metric samples, to SQLite.
    sender: mpsc::Sender<Entry>,
    /// Every other frame, to the frame log's writer thread.
    frame_sender: mpsc::Sender<Entry>,
    frames: frames::FrameLog,
    dropped: Arc<AtomicU64>,
    /// Bytes of JSON queued and not yet taken by the writer.
    queued_bytes: Arc<AtomicUsize>,
    /// Wakes the writer when a transaction's worth is waiting.
    wake: Arc<Notify>,
    pool: SqlitePool,
}

impl History {
    /// Opens (creating if needed) `dir/history.db` and the frame log in
    /// `dir/history-frames/`, and starts their writers and retention.
    pub async fn open(
        dir: &Path,
        retention: Retention,
        tasks: &tokio_util::task::TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self, sqlx::Error> {
        let file = dir.join("history.db");
        let pool = match connect(&file).await {
            Ok(pool) => pool,
            Err(error) => {
                // A replay cache, not a record: a file that cannot be opened (say, left
                // damaged by a power cut, see `connect`) is set aside and a new one begun.
                let aside = dir.join(format!("history.db.unreadable-{}", now_ms()));
                tracing::warn!(%error, aside = %aside.display(), "the live history could not be opened; starting a new one");
                std::fs::rename(&file, &aside).map_err(sqlx::Error::Io)?;
                for suffix in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(dir.join(format!("history.db{suffix}")));
                }
                connect(&file).await?
            }
        };
        let (sender, receiver) = mpsc::channel(QUEUE);
        let (frame_sender, frame_receiver) = mpsc::channel(QUEUE);
        // Small enough segments that the size cap frees space in steps of a sixty-fourth.
        let segment_bytes = (retention.max_bytes / 64).clamp(256 * 1024, 32 * 1024 * 1024);
        let frames = frames::FrameLog::open(&dir.join("history-frames"), segment_bytes).map_err(sqlx::Error::Io)?;
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let wake = Arc::new(Notify::new());
        let history = Self {
            sender,
            frame_sender,
            frames: frames.clone(),
            dropped: Arc::new(AtomicU64::new(0)),
            queued_bytes: queued_bytes.clone(),
            wake: wake.clone(),
            pool: pool.clone(),
        };
        {
            let (queued_bytes, dropped, frames) = (queued_bytes.clone(), history.dropped.clone(), frames.clone());
            std::thread::Builder::new()
                .name("history-frames".into())
                .spawn(move || {
                    frames.write_until_closed(
                        frame_receiver,
                        |entry| {
                            queued_bytes.fetch_sub(entry.json.len(), Ordering::Relaxed);
                        },
                        |lost| {
                            dropped.fetch_add(lost as u64, Ordering::Relaxed);
                        },
                    );
                })
                .map_err(sqlx::Error::Io)?;
        }
        tasks.spawn(write(pool.clone(), receiver, queued_bytes, wake, shutdown.clone()));
        tasks.spawn(retain(pool, frames, retention, shutdown));
        Ok(history)
    }

    /// Records every event of a published frame.
    pub fn record_frame(&self, published: &crate::live::Published) {
        self.record(Entry {
            first_seq: published.first(),
            last_seq: published.last(),
            ts_ms: now_ms(),
            metrics_only: published
                .events
                .iter()
                .all(|event| METRIC_TOPICS.contains(&event.tags.topic)),
            json: published.json().clone(),
        });
    }

    /// Queues a message for writing; never waits.
    pub fn record(&self, entry: Entry) {
        let bytes = entry.json.len();
        let queued = self.queued_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if queued > QUEUE_BYTES {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let sent = if entry.metrics_only {
            if queued >= WRITE_BYTES {
                self.wake.notify_one();
            }
            self.sender.try_send(entry)
        } else {
            self.frame_sender.try_send(entry)
        };
        if sent.is_err() {
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
    /// `topics` (`request:*`) or equal to one. Each is the original envelope.
    pub async fn window(
        &self,
        from_ms: i64,
        to_ms: i64,
        topics: &[String],
        limit: u32,
    ) -> Result<Vec<Box<RawValue>>, sqlx::Error> {
        let wanted = |topic: &str| topic_wanted(topics, topic);
        let limit = limit as usize;
        // Each store's first `limit` events, merged: together they hold the window's.
        let mut stored = Vec::new();
        // Read frame by frame and stop at `limit`: a window can hold an hour of frames.
        let mut rows = sqlx::query_as::<_, (i64, i64, String)>(
            "SELECT ts_ms, first_seq, frame FROM live_frames WHERE ts_ms >= ? AND ts_ms <= ? ORDER BY id",
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch(&self.pool);
        let mut taken = 0;
        while let Some((ts_ms, first_seq, frame)) = rows.try_next().await? {
            taken += split_frame(&frame, &wanted, |envelope| {
                stored.push((ts_ms, first_seq as u64, envelope))
            });
            if taken >= limit {
                break;
            }
        }
        drop(rows);
        let frames = self.frames.clone();
        let topics = topics.to_vec();
        let logged = tokio::task::spawn_blocking(move || {
            let wanted = |topic: &str| topic_wanted(&topics, topic);
            let mut logged = Vec::new();
            frames.read(from_ms, to_ms, |frame| {
                split_frame(&frame.json, &wanted, |envelope| {
                    logged.push((frame.ts_ms, frame.first_seq, envelope));
                });
                logged.len() < limit
            });
            logged
        })
        .await
        .map_err(|error| sqlx::Error::Io(std::io::Error::other(error)))?;
        stored.extend(logged);
        // Stable: the envelopes of one frame keep their order.
        stored.sort_by_key(|(ts_ms, first_seq, _)| (*ts_ms, *first_seq));
        stored.truncate(limit);
        Ok(stored.into_iter().map(|(_, _, envelope)| envelope).collect())
    }

    /// The oldest and newest timestamps kept, if any.
    pub async fn range(&self) -> Result<Option<(i64, i64)>, sqlx::Error> {
        let row: (Option<i64>, Option<i64>) = sqlx::query_as("SELECT MIN(ts_ms), MAX(ts_ms) FROM live_frames")
            .fetch_one(&self.pool)
            .await?;
        let ranges = [row.0.zip(row.1), self.frames.range()];
        let oldest = ranges.iter().flatten().map(|(oldest, _)| *oldest).min();
        let newest = ranges.iter().flatten().map(|(_, newest)| *newest).max();
        Ok(oldest.zip(newest))
    }
}

/// Whether an envelope of `topic` is asked for: every topic when `topics` is empty,
/// otherwise those equal to one of them or under one of their prefixes (`request:*`).
fn topic_wanted(topics: &[String], topic: &str) -> bool {
    topics.is_empty() || topics.iter().any(|wanted| crate::live::topic_matches(wanted, topic))
}

/// Splits a stored frame (one envelope, or an array of them) into its envelopes and
/// hands on those whose topic is `wanted`, as the text that went out: never parsed into
/// numbers and written again (which changed the last digit of some floats). Returns how
/// many it handed on.
fn split_frame(frame: &str, wanted: &impl Fn(&str) -> bool, mut push: impl FnMut(Box<RawValue>)) -> usize {
    let parsed = if frame.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<&RawValue>>(frame)
    } else {
        serde_json::from_str::<&RawValue>(frame).map(|single| vec![single])
    };
    let envelopes = match parsed {
        Ok(envelopes) => envelopes,
        Err(error) => {
            tracing::warn!(%error, "a stored live frame does not parse; skipped");
            return 0;
        }
    };
    let mut pushed = 0;
    for envelope in envelopes {
        let topic = serde_json::from_str::<Topic<'_>>(envelope.get()).map(|only| only.topic);
        if wanted(topic.as_deref().unwrap_or_default()) {
            push(envelope.to_owned());
            pushed += 1;
        }
    }
    pushed
}

/// An envelope's topic, read without the rest of it.
#[derive(serde::Deserialize)]
struct Topic<'a> {
    #[serde(borrow)]
    topic: std::borrow::Cow<'a, str>,
}

/// Opens the history file with its one table.
///
/// `synchronous=OFF`: checkpoints hand the pages to the kernel without `fsync`. The
/// history is a replay cache beside the durable store, and fsyncs of tens of megabytes
/// hold up the database's own writes (BENCHMARKS.md, "the history without fsync"). In WAL mode
/// a crash of this process loses nothing; a power cut or an OS crash may leave the file
/// damaged, and then [`History::open`] sets it aside and begins a new one.
async fn connect(file: &Path) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", file.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Off)
        // Rows of kilobytes, appended and read back in time order: 64 KiB pages take
        // fewer page and WAL-frame operations per row than the default 4 KiB. Applies
        // to a new history file.
        .page_size(65_536)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    // The history file has one table and owns it; the system's migrations do not
    // apply to it.
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS live_frames (\
           id INTEGER PRIMARY KEY AUTOINCREMENT, \
           ts_ms BIGINT NOT NULL, \
           first_seq BIGINT NOT NULL, \
           last_seq BIGINT NOT NULL, \
           metrics_only BOOLEAN NOT NULL, \
           frame TEXT NOT NULL)",
    )
    .execute(&pool)
    .await?;
    sqlx::query("CREATE INDEX IF NOT EXISTS live_frames_ts ON live_frames (ts_ms)")
        .execute(&pool)
        .await?;
    // A damaged file can open and still fail on its first real read.
    sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM live_frames")
        .fetch_one(&pool)
        .await?;
    Ok(pool)
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
        let rows = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        batch.statement_owned(format!(
            "INSERT INTO live_frames (ts_ms, first_seq, last_seq, metrics_only, frame) VALUES {rows}"
        ));
        for entry in chunk {
            batch
                .bind(entry.ts_ms)
                .bind(entry.first_seq as i64)
                .bind(entry.last_seq as i64)
                .bind(entry.metrics_only)
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

#[cfg(test)]
mod tests {
    use super::*;
    use retention::{apply_retention, used_bytes};

    /// A history keeping an hour, full detail for ten minutes.
    async fn open(dir: &std::path::Path) -> (History, Retention, CancellationToken) {
        open_capped(dir, 1 << 30).await
    }

    async fn open_capped(dir: &std::path::Path, max_bytes: u64) -> (History, Retention, CancellationToken) {
        let shutdown = CancellationToken::new();
        let retention = Retention {
            keep: Duration::from_secs(3_600),
            full_detail: Duration::from_secs(600),
            max_bytes,
        };
        let tasks = tokio_util::task::TaskTracker::new();
        let history = History::open(dir, retention, &tasks, shutdown.clone())
            .await
            .expect("opens");
        (history, retention, shutdown)
    }

    /// A frame of one envelope per topic, numbered from `first`.
    fn frame(first: u64, ts_ms: i64, topics: &[&str]) -> Entry {
        let envelopes: Vec<String> = topics
            .iter()
            .enumerate()
            .map(|(index, topic)| format!(r#"{{"seq":{},"topic":"{topic}"}}"#, first + index as u64))
            .collect();
        let json = match envelopes.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(",")),
        };
        Entry {
            first_seq: first,
            last_seq: first + topics.len() as u64 - 1,
            ts_ms,
            metrics_only: false,
            json: json.into(),
        }
    }

    #[tokio::test]
    async fn a_window_comes_back_in_order_and_by_topic_prefix() {
        let dir = tempfile::tempdir().expect("dir");
        let (history, _, shutdown) = open(dir.path()).await;
        history.record(frame(1, 1_000, &["system:status"]));
        history.record(frame(2, 2_000, &["request:new", "request:progress"]));
        // Metric samples are kept apart (in SQLite) and come back in their place.
        history.record(Entry {
            metrics_only: true,
            ..frame(4, 2_500, &["system:metrics"])
        });
        history.record(frame(5, 3_000, &["queue:job:retry"]));
        history.record(frame(6, 4_000, &["request:complete"]));
        let window = window_when(&history, (2_000, 3_500), |window| window.len() == 4).await;
        let seqs: Vec<u64> = window.iter().map(|envelope| seq_of(envelope)).collect();
        assert_eq!(seqs, [2, 3, 4, 5], "a batch frame is split again, in order");
        let requests = history
            .window(0, 10_000, &["request:*".to_string()], 100)
            .await
            .expect("reads");
        let seqs: Vec<u64> = requests.iter().map(|envelope| seq_of(envelope)).collect();
        assert_eq!(seqs, [2, 3, 6]);
        let limited = history.window(0, 10_000, &[], 2).await.expect("reads");
        assert_eq!(limited.len(), 2);
        assert_eq!(history.range().await.expect("range"), Some((1_000, 4_000)));
        shutdown.cancel();
    }

    /// The window `from..=to` once `done` holds for it (the writer flushes within a
    /// second), or as it is after five seconds.
    async fn window_when(
        history: &History,
        (from, to): (i64, i64),
        done: impl Fn(&[Box<RawValue>]) -> bool,
    ) -> Vec<Box<RawValue>> {
        let mut window = Vec::new();
        for _ in 0..50 {
            window = history.window(from, to, &[], 100).await.expect("reads");
            if done(&window) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        window
    }

    fn seq_of(envelope: &RawValue) -> u64 {
        let envelope: serde_json::Value = serde_json::from_str(envelope.get()).expect("an envelope");
        envelope["seq"].as_u64().expect("seq")
    }

    #[tokio::test]
    async fn retention_drops_old_frames_and_thins_old_metric_samples() {
        let dir = tempfile::tempdir().expect("dir");
        let (history, retention, shutdown) = open(dir.path()).await;
        let now = 100 * 60_000_i64;
        let metric = |first, ts_ms| Entry {
            metrics_only: true,
            ..frame(first, ts_ms, &["system:metrics"])
        };
        let expired = now - 3_700_000;
        let old = now - 1_200_000; // older than full detail, kept
        history.record(frame(1, expired, &["request:new"]));
        history.record(metric(2, old - old % 60_000)); // a minute's first second: kept
        history.record(metric(3, old - old % 60_000 + 5_000)); // thinned
        history.record(frame(4, old - old % 60_000 + 5_000, &["request:progress"])); // not metrics: kept
        history.record(metric(5, now - 1_000)); // recent: kept
        window_when(&history, (0, now), |window| window.len() == 5).await;
        apply_retention(&history.pool, &history.frames, retention, now)
            .await
            .expect("applies");
        let seqs: Vec<u64> = history
            .window(0, now, &[], 100)
            .await
            .expect("reads")
            .iter()
            .map(|envelope| seq_of(envelope))
            .collect();
        assert_eq!(seqs, [2, 4, 5]);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn an_unreadable_history_file_is_set_aside_and_a_new_one_begun() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("history.db"), vec![0x5a; 64 * 1024]).expect("writes garbage");
        let (history, _, shutdown) = open(dir.path()).await;
        history.record(frame(1, 1_000, &["system:status"]));
        let window = window_when(&history, (0, 2_000), |window| !window.is_empty()).await;
        assert_eq!(window.len(), 1, "the new file records");
        let aside: Vec<String> = std::fs::read_dir(dir.path())
            .expect("lists")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("history.db.unreadable-"))
            .collect();
        assert_eq!(aside.len(), 1, "the damaged file is kept aside: {aside:?}");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn envelopes_come_back_as_the_text_that_went_out() {
        let dir = tempfile::tempdir().expect("dir");
        let (history, _, shutdown) = open(dir.path()).await;
        // A float whose shortest text has 17 digits: parsed and written again, it lost
        // its last one.
        let sent = r#"{"seq":1,"topic":"system:metrics","payload":{"latencyMs":0.45926300000000003}}"#;
        history.record(Entry {
            json: sent.into(),
            ..frame(1, 1_000, &["system:metrics"])
        });
        let window = window_when(&history, (0, 2_000), |window| !window.is_empty()).await;
        assert_eq!(window.iter().map(|raw| raw.get()).collect::<Vec<_>>(), [sent]);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn over_its_size_cap_the_history_drops_its_oldest_frames() {
        let dir = tempfile::tempdir().expect("dir");
        let (history, capped, shutdown) = open_capped(dir.path(), 4_000_000).await;
        // 400 frames of 16 KiB, 6.4 MB, against a 4 MB cap; handed over a quarter at a
        // time, since the writer's queue takes at most 4 MiB. Stamped just now, so the
        // time-based retention leaves them alone (and its next round in the background
        // is ten seconds away).
        let start = now_ms() - 1_000;
        let bulky = |seq: u64| Entry {
            json: format!(
                r#"{{"seq":{seq},"topic":"request:new","pad":"{}"}}"#,
                "x".repeat(16 * 1024)
            )
            .into(),
            ..frame(seq, start + seq as i64, &["request:new"])
        };
        for seq in 1..=400 {
            history.record(bulky(seq));
            if seq % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(1_200)).await;
            }
        }
        assert_eq!(history.dropped(), 0, "every frame was queued");
        let (first, last) = (start + 1, start + 400);
        for _ in 0..100 {
            if history.range().await.expect("range") == Some((first, last)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let used = || async { used_bytes(&history.pool).await.expect("size") + history.frames.bytes() };
        let before = used().await;
        assert!(before > capped.max_bytes, "over the cap first: {before} bytes");
        apply_retention(&history.pool, &history.frames, capped, now_ms())
            .await
            .expect("applies");
        let used = used().await;
        assert!(
            used <= capped.max_bytes,
            "{used} bytes used against a cap of {}",
            capped.max_bytes
        );
        let (oldest, newest) = history.range().await.expect("range").expect("frames left");
        assert_eq!(newest, last, "the newest frame stays");
        assert!(oldest > first, "the oldest went first");
        shutdown.cancel();
    }
}

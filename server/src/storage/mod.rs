//! The database: an sqlx pool on SQLite (WAL), migrations embedded in the binary and
//! run at start. SQLite is the only engine today; any other `--database-url` scheme is
//! refused at start.

mod batch;
mod group;

pub use batch::{SqlValue, WriteBatch};
use group::GroupCommitter;

use std::{
    ops::{Deref, DerefMut},
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::{
    Sqlite, SqliteConnection, SqlitePool, Transaction,
    pool::PoolConnection,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

/// How often old rows (completed jobs, captured mail) are pruned. Often, so each prune
/// is small: once a minute, under load, a prune deleted over 100,000 rows at once and
/// the pipeline fell seconds behind while it ran.
pub const RETENTION_EVERY: Duration = Duration::from_secs(1);

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("data directory {path} is not usable: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("unsupported database URL scheme in {url}: this version supports sqlite: URLs")]
    UnsupportedUrl { url: String },
    #[error("cannot open database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("cannot migrate database {url}: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("cannot write to database {url}: {source}")]
    Write { url: String, source: sqlx::Error },
}

/// The open database and how to name it without leaking credentials.
#[derive(Clone)]
pub struct Database {
    /// For reads: taken through [`Database::reads`], which counts them. Writes here
    /// still work (through the busy timeout) but go uncounted; under load every write
    /// goes through [`Database::writing`] or [`Database::commit`].
    pub pool: SqlitePool,
    /// The one connection every write goes through; see [`Database::writing`].
    writer: SqlitePool,
    /// Commits blind write batches together (see [`group`]).
    group: GroupCommitter,
    /// Counted reads, writes and commit latencies, for the live view's database card.
    pub stats: Arc<DbStats>,
    /// The URL with any password removed, for logs and the status page.
    pub display_url: String,
}

/// Where the database lives: `--database-url` if given, else `DATA/liveview.db`, after
/// making sure the data directory exists and is writable.
pub fn resolve_url(data_dir: &Path, database_url: Option<&str>) -> Result<String, StorageError> {
    if let Some(url) = database_url {
        return Ok(url.to_string());
    }
    prepare_data_dir(data_dir)?;
    Ok(format!("sqlite://{}", data_dir.join("liveview.db").display()))
}

/// Creates the directory if absent and proves it is writable, so the error names the
/// directory instead of surfacing later as an obscure SQLite failure.
fn prepare_data_dir(dir: &Path) -> Result<(), StorageError> {
    let fail = |source| StorageError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)
}

impl Database {
    /// Opens the database, runs the embedded migrations and records this start.
    pub async fn open(url: &str) -> Result<Self, StorageError> {
        let display_url = redact_url(url);
        if !url.starts_with("sqlite:") {
            return Err(StorageError::UnsupportedUrl { url: display_url });
        }
        let open_error = |source| StorageError::Open {
            url: display_url.clone(),
            source,
        };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(open_error)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL is durable across process crashes; only an OS crash can lose
            // the last transactions, which is the usual SQLite trade for throughput.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // No memory map: the file grows all the time under load, and every growth
            // made each connection unmap and map it again, with a TLB shootdown across
            // cores each time. A
            // 64 MiB page cache per connection keeps the working set in memory instead.
            .pragma("mmap_size", "0")
            .pragma("cache_size", "-65536")
            // Batches are run by their SQL text, and a worker's batch has a text per size
            // (1 to 32 jobs): room for all of them, so none is parsed again.
            .statement_cache_capacity(512);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            // No ping before handing out a connection: for SQLite it is one more round
            // trip to the connection's thread per query, and a broken file connection
            // fails its query just as clearly.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(open_error)?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|source| StorageError::Migrate {
                url: display_url.clone(),
                source,
            })?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // A write waits its turn however long the queue; the callers (requests,
            // workers) have their own time limits.
            .acquire_timeout(Duration::from_secs(60))
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        let group = GroupCommitter::start(writer.clone());
        let database = Self {
            pool,
            group,
            writer,
            stats: Arc::default(),
            display_url,
        };
        database.record_boot().await?;
        Ok(database)
    }

    async fn record_boot(&self) -> Result<(), StorageError> {
        sqlx::query("INSERT INTO boots (started_at_ms, version) VALUES (?, ?)")
            .bind(chrono::Utc::now().timestamp_millis())
            .bind(env!("CARGO_PKG_VERSION"))
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|source| StorageError::Write {
                url: self.display_url.clone(),
                source,
            })
    }

    /// Waits for the writer connection: the one connection in this process that
    /// writes, handed to one writer at a time, first come first served.
    ///
    /// Why one: SQLite lets one connection write at a time, and when another holds the
    /// lock it makes the others *sleep and poll* (1, 2, 5, 10, … up to 100 ms), which
    /// under load put whole seconds into the tail latency; a queue in the process wakes
    /// each writer the moment the previous one is done. And one connection keeps its
    /// page cache: SQLite empties a connection's cache whenever another connection has
    /// written since its last transaction, so with writes spread over the pool every
    /// write would begin by reading its pages again. Writes on [`Database::pool`] still work,
    /// through the busy timeout; everything that writes under load comes here.
    pub async fn writing(&self) -> Result<Writing, sqlx::Error> {
        let started = Instant::now();
        Ok(Writing {
            connection: self.writer.acquire().await?,
            started,
            stats: self.stats.clone(),
        })
    }

    /// The read pool, for one read, counted for the database card: every read in the
    /// system takes its connection here, so the card's reads/s is all of them.
    pub fn reads(&self) -> &SqlitePool {
        self.stats.read();
        &self.pool
    }

    /// Begins a transaction on the writer connection, holding it until the transaction
    /// ends. An immediate transaction takes SQLite's lock up front, so it can never fail
    /// half way with "database is locked" the way a deferred one that read first can.
    pub async fn begin_write(&self) -> Result<WriteTransaction, sqlx::Error> {
        self.stats.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTransaction { tx })
    }

    /// Commits a batch of writes that needs no answer, in one transaction shared with
    /// whatever other batches are waiting (group commit); returns once it is durable.
    pub async fn commit(&self, batch: WriteBatch) -> Result<(), sqlx::Error> {
        let started = Instant::now();
        let result = self.group.commit(batch).await;
        self.stats.wrote(started);
        result
    }

    /// Runs a `DELETE` of a limited number of rows (its SQL says `LIMIT n`) again and
    /// again until a round removes nothing; answers how many rows went in all. Each
    /// round is a short transaction taken in turn with the other writers
    /// ([`Database::writing`]): one `DELETE` of a minute's completed jobs or captured
    /// mail under load (tens of thousands of rows) held the write lock for two seconds,
    /// and every request and worker waited behind it.
    pub async fn delete_in_chunks(
        &self,
        delete: impl Fn() -> sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> Result<u64, sqlx::Error> {
        let mut total = 0;
        loop {
            match delete().execute(&mut *self.writing().await?).await?.rows_affected() {
                0 => return Ok(total),
                deleted => total += deleted,
            }
        }
    }

    /// How many times a process has started on this database.
    pub async fn boot_count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM boots")
            .fetch_one(&self.pool)
            .await
    }

    /// A round trip to the database; returns how long it took.
    pub async fn ping(&self) -> Result<Duration, sqlx::Error> {
        let started = Instant::now();
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(started.elapsed())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// What the database card shows: reads taken through [`Database::reads`], writes
/// through [`Database::writing`], [`Database::begin_write`] and [`Database::commit`],
/// and how long the writes through `writing` and `commit` took (waiting for the writer
/// included).
#[derive(Default)]
pub struct DbStats {
    pub reads: std::sync::atomic::AtomicU64,
    pub writes: std::sync::atomic::AtomicU64,
    /// Milliseconds each commit took in the current second (bounded).
    commit_ms: std::sync::Mutex<Vec<f64>>,
}

impl DbStats {
    pub fn read(&self) {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A write that began at `started` is done.
    pub fn wrote(&self, started: Instant) {
        self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut window = self.commit_ms.lock().unwrap_or_else(|poison| poison.into_inner());
        if window.len() < 8_192 {
            window.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }

    /// The commit latencies since the last call.
    pub fn take_latencies(&self) -> Vec<f64> {
        std::mem::take(&mut *self.commit_ms.lock().unwrap_or_else(|poison| poison.into_inner()))
    }
}

/// The writer connection, held by one writer; counted as one write, and its time from
/// asking to giving it back as that write's latency, when dropped.
pub struct Writing {
    connection: PoolConnection<Sqlite>,
    started: Instant,
    stats: Arc<DbStats>,
}

impl Deref for Writing {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.connection
    }
}

impl DerefMut for Writing {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.connection
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.stats.wrote(self.started);
    }
}

/// A write transaction on the writer connection ([`Database::writing`]), which goes
/// back to the next writer when the transaction commits or is dropped (which rolls
/// back).
pub struct WriteTransaction {
    tx: Transaction<'static, Sqlite>,
}

impl WriteTransaction {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl Deref for WriteTransaction {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

/// Removes a password from `scheme://user:password@host/...` so the URL can be shown.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_display_url() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db.internal:5432/live"),
            "postgres://app:***@db.internal:5432/live"
        );
        assert_eq!(redact_url("sqlite://data/liveview.db"), "sqlite://data/liveview.db");
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }

    #[tokio::test]
    async fn opens_migrates_and_counts_boots_across_restarts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = resolve_url(&dir.path().join("nested/data"), None).expect("data dir is created");
        let first = Database::open(&url).await.expect("first open");
        assert_eq!(first.boot_count().await.expect("count"), 1);
        first.close().await;
        let second = Database::open(&url).await.expect("second open");
        assert_eq!(second.boot_count().await.expect("count"), 2, "the file persisted");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&second.pool)
            .await
            .expect("pragma");
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_file_in_the_way_of_the_data_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").expect("write");
        let error = resolve_url(&file.join("data"), None).expect_err("cannot create under a file");
        assert!(error.to_string().starts_with("data directory "), "{error}");
    }

    #[tokio::test]
    async fn other_schemes_are_refused_by_name() {
        let error = Database::open("postgres://u:pw@localhost/db")
            .await
            .err()
            .expect("refused");
        let text = error.to_string();
        assert!(text.contains("unsupported database URL scheme"), "{text}");
        assert!(!text.contains("pw"), "password leaked: {text}");
    }
}

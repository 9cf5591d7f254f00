//! The database: an sqlx pool on SQLite (WAL, the embedded default) or on PostgreSQL
//! (`--database-url postgres://…`, for several processes), with the same migrations
//! embedded in the binary and run at start on either.
//!
//! Code reaches a connection through [`Database::read`], [`Database::writing`] or
//! [`Database::begin_write`] and runs its statements with [`with_connection!`], which
//! compiles them for both engines. Statements are written in the SQL both understand,
//! with `$1, $2, …` placeholders (SQLite reads them too); where the engines differ (job
//! claims, the mailbox's pruning), the code matches on [`Connection`] and says why.

mod batch;
mod group;

pub use batch::{SqlValue, WriteBatch, numbered};
use group::GroupCommitter;

use std::{
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::{
    PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction,
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

/// How often old rows (completed jobs, captured mail) are pruned. Often, so each prune
/// is small: once a minute, under load, a prune deleted over 100,000 rows at once and
/// the pipeline fell seconds behind while it ran.
pub const RETENTION_EVERY: Duration = Duration::from_secs(1);

/// Connections one process keeps to PostgreSQL: enough for the requests' transactions,
/// the workers' claims and the reads side by side; PostgreSQL's default limit (100)
/// leaves room for a dozen processes.
const POSTGRES_CONNECTIONS: u32 = 16;

/// How many times a PostgreSQL transaction that lost a race (a deadlock, or two
/// notifications for one user taking the same `seq`) runs again before its error is
/// the answer.
const POSTGRES_ATTEMPTS: u32 = 5;

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("data directory {path} is not usable: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("unsupported database URL scheme in {url}: use sqlite:… or postgres://…")]
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

/// Which engine a [`Database`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The engine a database URL names, if it is one this version runs on.
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// True when several processes may share this database (and its job queues).
    pub fn is_shared(self) -> bool {
        self == Self::Postgres
    }
}

#[derive(Clone)]
enum Pools {
    Sqlite {
        /// For reads, through [`Database::read`].
        reads: SqlitePool,
        /// The one connection every write goes through; see [`Database::writing`].
        writer: SqlitePool,
        /// Commits blind write batches together (see [`group`]).
        group: GroupCommitter,
    },
    Postgres(PgPool),
}

/// The open database and how to name it without leaking credentials.
#[derive(Clone)]
pub struct Database {
    pools: Pools,
    /// Counted reads, writes and commit latencies, for the live view's database card.
    pub stats: Arc<DbStats>,
    /// The URL with any password removed, for logs and the status page.
    pub display_url: String,
}

/// A connection of either engine, borrowed to run statements on
/// (see [`with_connection!`]).
pub enum Connection<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

/// What statements can run on: a read connection, the writer, a write transaction.
pub trait Connect {
    fn connection(&mut self) -> Connection<'_>;
}

/// Runs `$body` with `$c` bound to the connection of `$on` (a `&mut` [`Connect`]), once
/// compiled for each engine: the statements in it are written once for both.
///
/// ```ignore
/// let count: i64 = with_connection!(&mut db.read().await?, |c| {
///     sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE name = $1").bind(name).fetch_one(c).await
/// })?;
/// ```
#[macro_export]
macro_rules! with_connection {
    ($on:expr, |$c:ident| $body:expr) => {
        match $crate::storage::Connect::connection($on) {
            $crate::storage::Connection::Sqlite($c) => $body,
            $crate::storage::Connection::Postgres($c) => $body,
        }
    };
}

enum Pooled {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl Connect for Pooled {
    fn connection(&mut self) -> Connection<'_> {
        match self {
            Self::Sqlite(connection) => Connection::Sqlite(connection),
            Self::Postgres(connection) => Connection::Postgres(connection),
        }
    }
}

/// A connection for reads ([`Database::read`]).
pub struct Read {
    connection: Pooled,
}

impl Connect for Read {
    fn connection(&mut self) -> Connection<'_> {
        self.connection.connection()
    }
}

/// Where the database lives: `--database-url` if given, else `DATA/liveview.db`, after
/// making sure the data directory exists and is writable (it holds this process's own
/// files whatever the database: the live history, the sent ledger).
pub fn resolve_url(data_dir: &Path, database_url: Option<&str>) -> Result<String, StorageError> {
    prepare_data_dir(data_dir)?;
    Ok(match database_url {
        Some(url) => url.to_string(),
        None => format!("sqlite://{}", data_dir.join("liveview.db").display()),
    })
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
        let pools = match Engine::of_url(url) {
            Some(Engine::Sqlite) => open_sqlite(url, &display_url).await?,
            Some(Engine::Postgres) => open_postgres(url, &display_url).await?,
            None => return Err(StorageError::UnsupportedUrl { url: display_url }),
        };
        let migrator = sqlx::migrate!("./migrations");
        let migrated = match &pools {
            // Several processes may start at once: sqlx takes an advisory lock on
            // PostgreSQL, so one migrates and the others wait and find it done.
            Pools::Postgres(pool) => migrator.run(pool).await,
            Pools::Sqlite { reads, .. } => migrator.run(reads).await,
        };
        migrated.map_err(|source| StorageError::Migrate {
            url: display_url.clone(),
            source,
        })?;
        let database = Self {
            pools,
            stats: Arc::default(),
            display_url,
        };
        database.record_boot().await?;
        Ok(database)
    }

    pub fn engine(&self) -> Engine {
        match self.pools {
            Pools::Sqlite { .. } => Engine::Sqlite,
            Pools::Postgres(_) => Engine::Postgres,
        }
    }

    async fn record_boot(&self) -> Result<(), StorageError> {
        let write_error = |source| StorageError::Write {
            url: self.display_url.clone(),
            source,
        };
        let mut writing = self.writing().await.map_err(write_error)?;
        with_connection!(&mut writing, |c| {
            sqlx::query("INSERT INTO boots (started_at_ms, version) VALUES ($1, $2)")
                .bind(chrono::Utc::now().timestamp_millis())
                .bind(env!("CARGO_PKG_VERSION"))
                .execute(c)
                .await
                .map(drop)
        })
        .map_err(write_error)
    }

    /// A connection for one read (or a few), counted for the database card: every read
    /// in the system takes its connection here, so the card's reads/s is all of them.
    pub async fn read(&self) -> Result<Read, sqlx::Error> {
        self.stats.read();
        Ok(Read {
            connection: self.read_connection().await?,
        })
    }

    async fn read_connection(&self) -> Result<Pooled, sqlx::Error> {
        Ok(match &self.pools {
            Pools::Sqlite { reads, .. } => Pooled::Sqlite(reads.acquire().await?),
            Pools::Postgres(pool) => Pooled::Postgres(pool.acquire().await?),
        })
    }

    /// Waits for a connection to write on.
    ///
    /// On SQLite it is the writer connection: the one connection in this process that
    /// writes, handed to one writer at a time, first come first served. Why one: SQLite
    /// lets one connection write at a time, and when another holds the lock it makes the
    /// others *sleep and poll* (1, 2, 5, 10, … up to 100 ms), which under load put whole
    /// seconds into the tail latency; a queue in the process wakes each writer the
    /// moment the previous one is done. And one connection keeps its page cache: SQLite
    /// empties a connection's cache whenever another connection has written since its
    /// last transaction, so with writes spread over the pool every write would begin by
    /// reading its pages again.
    ///
    /// On PostgreSQL, which writes concurrently, it is any pooled connection.
    pub async fn writing(&self) -> Result<Writing, sqlx::Error> {
        let started = Instant::now();
        let connection = match &self.pools {
            Pools::Sqlite { writer, .. } => Pooled::Sqlite(writer.acquire().await?),
            Pools::Postgres(pool) => Pooled::Postgres(pool.acquire().await?),
        };
        Ok(Writing {
            connection,
            started,
            stats: self.stats.clone(),
        })
    }

    /// Begins a transaction to write in. On SQLite it holds the writer connection until
    /// it ends, and is immediate: it takes SQLite's lock up front, so it can never fail
    /// half way with "database is locked" the way a deferred one that read first can.
    pub async fn begin_write(&self) -> Result<WriteTransaction, sqlx::Error> {
        self.stats.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tx = match &self.pools {
            Pools::Sqlite { writer, .. } => Tx::Sqlite(writer.begin_with("BEGIN IMMEDIATE").await?),
            Pools::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        };
        Ok(WriteTransaction { tx })
    }

    /// Commits a batch of writes that needs no answer and returns once it is durable.
    /// On SQLite it shares one transaction with whatever other batches are waiting
    /// (group commit); on PostgreSQL it is a transaction of its own, run again if it
    /// lost a race to a concurrent one.
    pub async fn commit(&self, batch: WriteBatch) -> Result<(), sqlx::Error> {
        let started = Instant::now();
        let result = match &self.pools {
            Pools::Sqlite { group, .. } => group.commit(batch).await,
            Pools::Postgres(pool) => commit_postgres(pool, &batch).await,
        };
        self.stats.wrote(started);
        result
    }

    /// Runs a `DELETE` of a limited number of rows (its SQL says `LIMIT 1000` in a
    /// subquery, and binds `$1` to `bound`) again and again until a round removes
    /// nothing; answers how many rows went in all. Each round is a short transaction
    /// taken in turn with the other writers ([`Database::writing`]): one `DELETE` of a
    /// minute's completed jobs or captured mail under load (tens of thousands of rows)
    /// held SQLite's write lock for two seconds, and every request and worker waited
    /// behind it.
    pub async fn delete_in_chunks(&self, delete: &'static str, bound: i64) -> Result<u64, sqlx::Error> {
        let mut total = 0;
        loop {
            let mut writing = self.writing().await?;
            let deleted = with_connection!(&mut writing, |c| {
                sqlx::query(delete)
                    .bind(bound)
                    .execute(c)
                    .await
                    .map(|done| done.rows_affected())
            })?;
            match deleted {
                0 => return Ok(total),
                deleted => total += deleted,
            }
        }
    }

    /// How many times a process has started on this database.
    pub async fn boot_count(&self) -> Result<i64, sqlx::Error> {
        with_connection!(&mut self.read().await?, |c| {
            sqlx::query_scalar("SELECT COUNT(*) FROM boots").fetch_one(c).await
        })
    }

    /// A round trip to the database; returns how long it took.
    pub async fn ping(&self) -> Result<Duration, sqlx::Error> {
        let started = Instant::now();
        // Not counted as a read: the probe's ping is not the system's work.
        let mut connection = self.read_connection().await?;
        with_connection!(&mut connection, |c| sqlx::query("SELECT 1").execute(c).await.map(drop))?;
        Ok(started.elapsed())
    }

    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite { reads, writer, .. } => {
                reads.close().await;
                writer.close().await;
            }
            Pools::Postgres(pool) => pool.close().await,
        }
    }
}

async fn open_sqlite(url: &str, display_url: &str) -> Result<Pools, StorageError> {
    let open_error = |source| StorageError::Open {
        url: display_url.to_string(),
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
    let reads = SqlitePoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        // No ping before handing out a connection: for SQLite it is one more round
        // trip to the connection's thread per query, and a broken file connection
        // fails its query just as clearly.
        .test_before_acquire(false)
        .connect_with(options.clone())
        .await
        .map_err(open_error)?;
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
    Ok(Pools::Sqlite { reads, writer, group })
}

async fn open_postgres(url: &str, display_url: &str) -> Result<Pools, StorageError> {
    let open_error = |source| StorageError::Open {
        url: display_url.to_string(),
        source,
    };
    let options = PgConnectOptions::from_str(url)
        .map_err(open_error)?
        .application_name(concat!("liveview ", env!("CARGO_PKG_VERSION")))
        // Batches are run by their SQL text; room for every size a worker uses.
        .statement_cache_capacity(512);
    let pool = PgPoolOptions::new()
        .max_connections(POSTGRES_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .map_err(open_error)?;
    Ok(Pools::Postgres(pool))
}

/// One batch in a PostgreSQL transaction of its own, run again when it lost a race.
async fn commit_postgres(pool: &PgPool, batch: &WriteBatch) -> Result<(), sqlx::Error> {
    let mut attempt = 1;
    loop {
        let result = async {
            let mut tx = pool.begin().await?;
            batch.run(Connection::Postgres(&mut tx)).await?;
            tx.commit().await
        }
        .await;
        match result {
            Err(error) if attempt < POSTGRES_ATTEMPTS && lost_a_race(&error) => {
                tracing::debug!(%error, attempt, "transaction lost a race; running it again");
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// A PostgreSQL error that running the transaction again can cure: a deadlock, a
/// serialization failure, or a unique key taken by a concurrent transaction (two
/// notifications of one user computing the same next `seq`).
pub fn lost_a_race(error: &sqlx::Error) -> bool {
    matches!(
        error.as_database_error().and_then(|error| error.code()).as_deref(),
        Some("40001" | "40P01" | "23505")
    )
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

/// A connection to write on ([`Database::writing`]); counted as one write, and its
/// time from asking to giving it back as that write's latency, when dropped.
pub struct Writing {
    connection: Pooled,
    started: Instant,
    stats: Arc<DbStats>,
}

impl Connect for Writing {
    fn connection(&mut self) -> Connection<'_> {
        self.connection.connection()
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.stats.wrote(self.started);
    }
}

enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A write transaction ([`Database::begin_write`]); dropping it rolls back. On SQLite
/// it holds the writer connection, which goes back to the next writer when it ends.
pub struct WriteTransaction {
    tx: Tx,
}

impl WriteTransaction {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.tx {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

impl Connect for WriteTransaction {
    fn connection(&mut self) -> Connection<'_> {
        match &mut self.tx {
            Tx::Sqlite(tx) => Connection::Sqlite(tx),
            Tx::Postgres(tx) => Connection::Postgres(tx),
        }
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
        let mut read = second.read().await.expect("read");
        let Connection::Sqlite(c) = read.connection() else {
            panic!("a sqlite: URL opens SQLite")
        };
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(c)
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
        let error = Database::open("mysql://u:pw@localhost/db")
            .await
            .err()
            .expect("refused");
        let text = error.to_string();
        assert!(text.contains("unsupported database URL scheme"), "{text}");
        assert!(!text.contains("pw"), "password leaked: {text}");
    }
}

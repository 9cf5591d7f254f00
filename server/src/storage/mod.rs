//! The database: an sqlx pool on SQLite (WAL) by default, migrations embedded in the
//! binary and run at start. SQL stays portable so PostgreSQL can follow through
//! `--database-url`.

mod batch;
mod group;

pub use batch::{SqlValue, WriteBatch};
use group::GroupCommitter;

use std::{
    path::{Path, PathBuf},
    str::FromStr,
    time::{Duration, Instant},
};

use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

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
    pub pool: SqlitePool,
    /// Commits blind write batches together (see [`group`]).
    group: GroupCommitter,
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
            // Map the file instead of copying pages through read(2) on every miss.
            .pragma("mmap_size", "268435456")
            .pragma("cache_size", "-65536");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
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
        let group = GroupCommitter::start(options).await.map_err(open_error)?;
        let database = Self {
            pool,
            group,
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

    /// Begins a transaction that will write. SQLite's default (deferred) transaction
    /// takes the write lock only at its first write and fails at once with "database is
    /// locked" if another writer got in since its first read; an immediate one takes the
    /// lock up front, so the busy timeout applies and it waits its turn instead.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Commits a batch of writes that needs no answer, in one transaction shared with
    /// whatever other batches are waiting (group commit); returns once it is durable.
    pub async fn commit(&self, batch: WriteBatch) -> Result<(), sqlx::Error> {
        self.group.commit(batch).await
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

//! The sent ledger: a small append-only file where a mail worker writes an email's id
//! the instant the SMTP server has answered 250, before the database transaction that
//! records it. A `kill -9` between the two leaves the id in the ledger (a completed
//! `write(2)` is in the kernel and survives the process), and the next start marks those
//! emails sent instead of sending them again. It narrows the at-least-once window from a
//! database commit under write contention (milliseconds) to one buffered write
//! (microseconds). It is ours because it is a few lines, not a storage engine.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::Mutex,
};

use crate::{now_ms, storage::Database};

/// Entries beyond which the ledger is emptied as soon as no send is between its 250
/// and its commit.
const COMPACT_AFTER: u64 = 10_000;

pub struct SentLedger {
    path: PathBuf,
    state: Mutex<LedgerState>,
}

struct LedgerState {
    file: File,
    entries: u64,
    /// Recorded but not yet committed to the database.
    uncommitted: u64,
}

impl SentLedger {
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).read(true).append(true).open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            state: Mutex::new(LedgerState {
                file,
                entries: 0,
                uncommitted: 0,
            }),
        })
    }

    /// Marks every email the ledger names as sent (and its job completed), then empties
    /// it. Runs at start, before any worker. Returns how many emails it settled.
    pub async fn replay(&self, db: &Database) -> Result<u64, LedgerError> {
        let mut text = String::new();
        File::open(&self.path)?.read_to_string(&mut text)?;
        let ids: Vec<&str> = text.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
        let mut settled = 0;
        let mut tx = db.begin_write().await?;
        for id in &ids {
            settled += sqlx::query(
                "UPDATE emails SET sent_at_ms = ?, smtp_reply = '250 (recorded in the sent ledger)' WHERE id = ? AND sent_at_ms IS NULL",
            )
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("UPDATE jobs SET state = 'completed', lease_owner = NULL, updated_at_ms = ? WHERE target_id = ? AND state <> 'completed'")
                .bind(now_ms())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let mut state = self.lock();
        state.file.set_len(0)?;
        state.file.seek(SeekFrom::Start(0))?;
        state.entries = 0;
        Ok(settled)
    }

    /// Records that the SMTP server accepted `email_id`. Call [`Self::committed`] once the
    /// database says so too.
    pub fn record(&self, email_id: &str) -> io::Result<()> {
        let mut state = self.lock();
        state.file.write_all(format!("{email_id}\n").as_bytes())?;
        state.entries += 1;
        state.uncommitted += 1;
        Ok(())
    }

    /// The database now holds what the last [`Self::record`] of this worker said. Empties
    /// the ledger when it has grown and nothing is in the window.
    pub fn committed(&self) {
        let mut state = self.lock();
        state.uncommitted = state.uncommitted.saturating_sub(1);
        if state.uncommitted == 0 && state.entries >= COMPACT_AFTER && state.file.set_len(0).is_ok() {
            state.entries = 0;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("sent ledger: {0}")]
    Io(#[from] io::Error),
    #[error("sent ledger: {0}")]
    Database(#[from] sqlx::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replay_marks_recorded_emails_sent_and_empties_the_ledger() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = crate::storage::resolve_url(dir.path(), None).expect("url");
        let db = Database::open(&url).await.expect("db");
        sqlx::query("INSERT INTO emails (id, kind, to_address, subject, body, created_at_ms) VALUES ('e1', 'signup', 'a@example.com', 's', 'b', 0)")
            .execute(&db.pool)
            .await
            .expect("email");
        sqlx::query("INSERT INTO jobs (id, queue, channel, target_id, state, run_at_ms, created_at_ms, updated_at_ms) VALUES ('j1', 'mail', 'email', 'e1', 'active', 0, 0, 0)")
            .execute(&db.pool)
            .await
            .expect("job");

        let path = dir.path().join("sent.ledger");
        // A process records a 250 and dies before its commit.
        SentLedger::open(&path).expect("opens").record("e1").expect("records");

        let ledger = SentLedger::open(&path).expect("reopens");
        assert_eq!(ledger.replay(&db).await.expect("replays"), 1);
        let (sent, state): (Option<i64>, String) =
            sqlx::query_as("SELECT e.sent_at_ms, j.state FROM emails e JOIN jobs j ON j.target_id = e.id")
                .fetch_one(&db.pool)
                .await
                .expect("row");
        assert!(sent.is_some());
        assert_eq!(state, "completed");
        assert_eq!(std::fs::metadata(&path).expect("file").len(), 0, "emptied");
        assert_eq!(ledger.replay(&db).await.expect("replays again"), 0, "idempotent");
    }
}

//! The sent ledger: a small append-only file where a mail worker writes an email's id
//! the instant the SMTP server has answered 250, before the database transaction that
//! records it. A `kill -9` between the two leaves the id in the ledger (a completed
//! `write(2)` is in the kernel and survives the process), and the next start marks those
//! emails sent instead of sending them again. It narrows the at-least-once window from a
//! database commit under write contention (milliseconds) to one buffered write
//! (microseconds). It is ours because it is a few lines, not a storage engine.
//!
//! Two files keep it small under any load: entries go to the current one; once it holds
//! [`ROTATE_AFTER`] entries and every entry of the previous one is committed, the
//! current one becomes the previous one (replacing it) and a new current one begins.
//! A moment with *nothing* uncommitted never comes under continuous load (many
//! conversations send side by side), so waiting for one would let the file grow
//! without end.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Write},
    path::{Path, PathBuf},
    sync::Mutex,
};

use crate::{now_ms, storage::Database};

/// Entries after which the current file is rotated (once the previous one is settled).
const ROTATE_AFTER: u64 = 10_000;

pub struct SentLedger {
    path: PathBuf,
    previous_path: PathBuf,
    state: Mutex<LedgerState>,
}

struct LedgerState {
    file: File,
    /// Counts rotations; an entry belongs to the generation it was written in.
    generation: u64,
    entries: u64,
    /// Recorded but not yet committed to the database, in the current file and in the
    /// previous one.
    uncommitted: u64,
    uncommitted_previous: u64,
}

/// Which file an entry went to, for [`SentLedger::committed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    generation: u64,
}

impl SentLedger {
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).read(true).append(true).open(path)?;
        let mut previous_path = path.as_os_str().to_owned();
        previous_path.push(".previous");
        Ok(Self {
            path: path.to_path_buf(),
            previous_path: previous_path.into(),
            state: Mutex::new(LedgerState {
                file,
                generation: 0,
                entries: 0,
                uncommitted: 0,
                uncommitted_previous: 0,
            }),
        })
    }

    /// Marks every email the ledger names (in both files) as sent (and its job
    /// completed), then empties it. Runs at start, before any worker. Returns how many
    /// emails it settled.
    pub async fn replay(&self, db: &Database) -> Result<u64, LedgerError> {
        let mut text = String::new();
        if let Ok(mut previous) = File::open(&self.previous_path) {
            previous.read_to_string(&mut text)?;
        }
        File::open(&self.path)?.read_to_string(&mut text)?;
        let ids: Vec<&str> = text.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
        let mut settled = 0;
        let mut tx = db.begin_write().await?;
        for id in &ids {
            settled += crate::with_connection!(&mut tx, |c| {
                sqlx::query(
                "UPDATE emails SET sent_at_ms = $1, smtp_reply = '250 (recorded in the sent ledger)' WHERE id = $2 AND sent_at_ms IS NULL",
            )
            .bind(now_ms())
            .bind(id)
            .execute(c)
            .await.map(|done| done.rows_affected())
            })?;
            crate::with_connection!(&mut tx, |c| {
                sqlx::query("UPDATE jobs SET state = 'completed', lease_owner = NULL, updated_at_ms = $1 WHERE target_id = $2 AND state <> 'completed'")
                .bind(now_ms())
                .bind(id)
                .execute(c)
                .await.map(|done| done.rows_affected())
            })?;
        }
        tx.commit().await?;
        let mut state = self.lock();
        state.file.set_len(0)?;
        state.entries = 0;
        match std::fs::remove_file(&self.previous_path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error.into()),
            _ => {}
        }
        Ok(settled)
    }

    /// Records that the SMTP server accepted `email_id`. Call [`Self::committed`] with
    /// the answer once the database says so too.
    pub fn record(&self, email_id: &str) -> io::Result<Entry> {
        let mut state = self.lock();
        if state.entries >= ROTATE_AFTER && state.uncommitted_previous == 0 {
            self.rotate(&mut state)?;
        }
        state.file.write_all(format!("{email_id}\n").as_bytes())?;
        state.entries += 1;
        state.uncommitted += 1;
        Ok(Entry {
            generation: state.generation,
        })
    }

    /// The database now holds what `entry` said.
    pub fn committed(&self, entry: Entry) {
        let mut state = self.lock();
        if entry.generation == state.generation {
            state.uncommitted = state.uncommitted.saturating_sub(1);
        } else if entry.generation + 1 == state.generation {
            state.uncommitted_previous = state.uncommitted_previous.saturating_sub(1);
        }
    }

    /// The current file becomes the previous one (whose entries are all committed, so
    /// it may go) and a new, empty current file begins.
    fn rotate(&self, state: &mut LedgerState) -> io::Result<()> {
        std::fs::rename(&self.path, &self.previous_path)?;
        state.file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)?;
        state.generation += 1;
        state.entries = 0;
        state.uncommitted_previous = std::mem::take(&mut state.uncommitted);
        Ok(())
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
        crate::with_connection!(&mut db.writing().await.expect("db"), |c| sqlx::query("INSERT INTO emails (id, kind, to_address, subject, body, created_at_ms) VALUES ('e1', 'signup', 'a@example.com', 's', 'b', 0)")
            .execute(c)
            .await.map(|done| done.rows_affected()))
            .expect("email");
        crate::with_connection!(&mut db.writing().await.expect("db"), |c| sqlx::query("INSERT INTO jobs (id, queue, channel, target_id, state, run_at_ms, created_at_ms, updated_at_ms) VALUES ('j1', 'mail', 'email', 'e1', 'active', 0, 0, 0)")
            .execute(c)
            .await.map(|done| done.rows_affected()))
            .expect("job");

        let path = dir.path().join("sent.ledger");
        // A process records a 250 and dies before its commit.
        SentLedger::open(&path).expect("opens").record("e1").expect("records");

        let ledger = SentLedger::open(&path).expect("reopens");
        assert_eq!(ledger.replay(&db).await.expect("replays"), 1);
        let (sent, state): (Option<i64>, String) =
            crate::with_connection!(&mut db.writing().await.expect("db"), |c| sqlx::query_as(
                "SELECT e.sent_at_ms, j.state FROM emails e JOIN jobs j ON j.target_id = e.id"
            )
            .fetch_one(c)
            .await)
            .expect("row");
        assert!(sent.is_some());
        assert_eq!(state, "completed");
        assert_eq!(std::fs::metadata(&path).expect("file").len(), 0, "emptied");
        assert_eq!(ledger.replay(&db).await.expect("replays again"), 0, "idempotent");
    }

    #[test]
    fn the_ledger_rotates_under_continuous_load_and_keeps_what_is_uncommitted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sent.ledger");
        let ledger = SentLedger::open(&path).expect("opens");
        let size = |path: &Path| std::fs::metadata(path).map_or(0, |meta| meta.len());
        // Always one entry in the window between its 250 and its commit, never none.
        let mut open_entry = ledger.record("email-0").expect("records");
        for n in 1..=3 * ROTATE_AFTER {
            let next = ledger.record(&format!("email-{n}")).expect("records");
            ledger.committed(open_entry);
            open_entry = next;
        }
        let bound = (ROTATE_AFTER + 1) * "email-30000\n".len() as u64;
        assert!(size(&path) <= bound, "current file {} > {bound}", size(&path));
        assert!(size(&ledger.previous_path) <= bound, "previous file bounded too");
        let last = format!("email-{}", 3 * ROTATE_AFTER);
        let current = std::fs::read_to_string(&path).expect("read");
        assert!(
            current.lines().any(|line| line == last),
            "the uncommitted entry is kept"
        );
    }
}

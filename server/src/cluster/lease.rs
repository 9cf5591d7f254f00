//! A duty one process of the cluster does at a time (evaluating alerts, say): whoever
//! holds the lease's row does it, renewing it well within its time; when the holder
//! stops renewing — it stopped or died — another process takes the row once the time
//! is up. The row is in the database, the one place every process reaches; a cluster of
//! one always holds it.

use std::time::Duration;

use crate::{now_ms, storage::Database};

/// Takes or renews the lease `name` for `holder` until `hold` from now; whether
/// `holder` has it. One statement: an upsert that only overwrites the row when it is
/// `holder`'s or has run out, so two processes asking at once cannot both get it.
pub async fn hold(db: &Database, name: &str, holder: &str, hold: Duration) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let until = now + hold.as_millis() as i64;
    let taken = crate::with_connection!(&mut db.writing().await?, |c| sqlx::query(
        "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms \
         WHERE leases.holder = excluded.holder OR leases.until_ms < $4"
    )
    .bind(name)
    .bind(holder)
    .bind(until)
    .bind(now)
    .execute(c)
    .await
    .map(|done| done.rows_affected()))?;
    Ok(taken == 1)
}

/// Gives the lease up (at a clean stop), so another process need not wait it out.
pub async fn release(db: &Database, name: &str, holder: &str) -> Result<(), sqlx::Error> {
    crate::with_connection!(&mut db.writing().await?, |c| sqlx::query(
        "DELETE FROM leases WHERE name = $1 AND holder = $2"
    )
    .bind(name)
    .bind(holder)
    .execute(c)
    .await
    .map(drop))
}

/// A lease as its would-be holder keeps it: it writes to the database only when a third
/// of the time it took has passed, so a duty run every 200 ms does not queue a write
/// behind every other one (SQLite's writer may be held seconds by a delay under test).
#[derive(Debug)]
pub struct Lease {
    name: &'static str,
    holder: String,
    hold: Duration,
    renewed: Option<std::time::Instant>,
}

impl Lease {
    pub fn new(name: &'static str, holder: String, hold: Duration) -> Self {
        Self {
            name,
            holder,
            hold,
            renewed: None,
        }
    }

    /// Whether `holder` holds it now, taking or renewing it when due.
    pub async fn held(&mut self, db: &Database) -> Result<bool, sqlx::Error> {
        if let Some(at) = self.renewed
            && at.elapsed() < self.hold / 3
        {
            return Ok(true);
        }
        let held = hold(db, self.name, &self.holder, self.hold).await?;
        self.renewed = held.then(std::time::Instant::now);
        Ok(held)
    }

    /// Gives it up, at a clean stop.
    pub async fn release(self, db: &Database) -> Result<(), sqlx::Error> {
        release(db, self.name, &self.holder).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_until_it_lets_go_or_runs_out() {
        let dir = tempfile::tempdir().expect("dir");
        let url = crate::storage::resolve_url(dir.path(), None).expect("url");
        let db = Database::open(&url).await.expect("db");
        let long = Duration::from_secs(60);
        assert!(hold(&db, "alerts", "a", long).await.expect("a takes"));
        assert!(hold(&db, "alerts", "a", long).await.expect("a renews"));
        assert!(!hold(&db, "alerts", "b", long).await.expect("b waits"));
        release(&db, "alerts", "a").await.expect("release");
        assert!(hold(&db, "alerts", "b", Duration::ZERO).await.expect("b takes"));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(hold(&db, "alerts", "a", long).await.expect("b's ran out"));

        // Kept: renewed once, then trusted for a third of its time without a write.
        let mut kept = Lease::new("alerts", "a".into(), long);
        assert!(kept.held(&db).await.expect("a holds"));
        release(&db, "alerts", "a").await.expect("gone behind its back");
        assert!(kept.held(&db).await.expect("not asked again yet"));
        let mut other = Lease::new("alerts", "b".into(), long);
        assert!(other.held(&db).await.expect("b takes the released row"));
        assert!(!Lease::new("alerts", "a".into(), long).held(&db).await.expect("a asks"));
        other.release(&db).await.expect("release");
    }
}

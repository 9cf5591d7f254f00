//! Which processes the cluster has: each registers at start (role, id, address,
//! version), heartbeats every [`HEARTBEAT_EVERY`], and says when it stops. One that has
//! not heartbeated for [`DOWN_AFTER`] is down; the workers that are left release the
//! job leases its workers held, so its jobs are due again at once instead of when their
//! leases run out. The rows are in the database, the one place every process reaches.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wire::{ProcessInfo, ProcessRole};

use crate::{bus::ProcessId, now_ms, storage::Database};

/// How often a process says it is alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// Silence after which a process is down: five heartbeats missed.
pub const DOWN_AFTER: Duration = Duration::from_secs(10);
/// How long a process that went away stays listed.
pub const LISTED_FOR: Duration = Duration::from_secs(3_600);

/// A `processes` row: id, role, address, version, started, heartbeat, stopped.
type ProcessRow = (String, String, String, String, i64, i64, Option<i64>);

/// This process's row, and the means to read everyone's.
#[derive(Clone)]
pub struct ProcessRegistry {
    db: Database,
    me: ProcessId,
    role: ProcessRole,
}

/// The lease owner a worker of `process` claims under: `<process id>/<worker id>`, so
/// the leases of a process that died can be found and released.
pub fn lease_owner(process: &ProcessId, worker: &str) -> String {
    format!("{}/{worker}", process.0)
}

impl ProcessRegistry {
    /// Registers this process (its first heartbeat).
    pub async fn register(db: Database, me: ProcessId, role: ProcessRole, address: &str) -> Result<Self, sqlx::Error> {
        let now = now_ms();
        crate::with_connection!(&mut db.writing().await?, |c| {
            sqlx::query(
                "INSERT INTO processes (id, role, address, version, started_at_ms, heartbeat_at_ms) VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(&me.0)
            .bind(role.as_str())
            .bind(address)
            .bind(env!("CARGO_PKG_VERSION"))
            .bind(now)
            .execute(c)
            .await
            .map(drop)
        })?;
        Ok(Self { db, me, role })
    }

    pub fn me(&self) -> &ProcessId {
        &self.me
    }

    /// Says this process is alive (and, if another had found it dead, that it is back).
    pub async fn heartbeat(&self) -> Result<(), sqlx::Error> {
        crate::with_connection!(&mut self.db.writing().await?, |c| {
            sqlx::query("UPDATE processes SET heartbeat_at_ms = $1, stopped_at_ms = NULL WHERE id = $2")
                .bind(now_ms())
                .bind(&self.me.0)
                .execute(c)
                .await
                .map(drop)
        })
    }

    /// Every process seen in the last [`LISTED_FOR`], by role, newest first.
    pub async fn list(&self) -> Result<Vec<ProcessInfo>, sqlx::Error> {
        let now = now_ms();
        let rows: Vec<ProcessRow> = crate::with_connection!(&mut self.db.read().await?, |c| {
            sqlx::query_as(
                "SELECT id, role, address, version, started_at_ms, heartbeat_at_ms, stopped_at_ms FROM processes \
                     WHERE heartbeat_at_ms > $1 ORDER BY role, started_at_ms DESC, id",
            )
            .bind(now - LISTED_FOR.as_millis() as i64)
            .fetch_all(c)
            .await
        })?;
        let at = |ms| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
        Ok(rows
            .into_iter()
            .filter_map(|(id, role, address, version, started, heartbeat, stopped)| {
                Some(ProcessInfo {
                    id,
                    role: ProcessRole::parse(&role)?,
                    address,
                    version,
                    started_at: at(started),
                    last_heartbeat: at(heartbeat),
                    up: stopped.is_none() && now - heartbeat < DOWN_AFTER.as_millis() as i64,
                })
            })
            .collect())
    }

    /// Releases the leases held by workers of processes that stopped heartbeating (and
    /// marks those processes stopped, so each is released once); answers how many jobs
    /// are due again. Each dead process's release is one transaction: its row and its
    /// leases change together, so two workers racing to release it do it once.
    pub async fn release_the_dead(&self) -> Result<u64, sqlx::Error> {
        let now = now_ms();
        let dead: Vec<String> = crate::with_connection!(&mut self.db.read().await?, |c| {
            sqlx::query_scalar(
                "SELECT id FROM processes WHERE stopped_at_ms IS NULL AND heartbeat_at_ms < $1 AND role IN ('all', 'worker')",
            )
            .bind(now - DOWN_AFTER.as_millis() as i64)
            .fetch_all(c)
            .await
        })?;
        let mut released = 0;
        for id in dead {
            let mut tx = self.db.begin_write().await?;
            let marked = crate::with_connection!(&mut tx, |c| {
                sqlx::query("UPDATE processes SET stopped_at_ms = $1 WHERE id = $2 AND stopped_at_ms IS NULL AND heartbeat_at_ms < $3")
                    .bind(now)
                    .bind(&id)
                    .bind(now - DOWN_AFTER.as_millis() as i64)
                    .execute(c)
                    .await
                    .map(|done| done.rows_affected())
            })?;
            if marked == 0 {
                continue;
            }
            let jobs = release_leases(&mut tx, &id, now).await?;
            tx.commit().await?;
            tracing::warn!(process = %id, jobs, "a worker process stopped heartbeating; its jobs are due again");
            released += jobs;
        }
        Ok(released)
    }

    /// Heartbeats (and, in a process with workers, releases the dead's leases) every
    /// [`HEARTBEAT_EVERY`] until shutdown; then says this process stopped and gives back
    /// its own workers' leases.
    pub async fn run(self, shutdown: CancellationToken) {
        crate::every(HEARTBEAT_EVERY, shutdown, || async {
            if let Err(error) = self.heartbeat().await {
                tracing::warn!(%error, "could not heartbeat");
            }
            if self.role.works()
                && let Err(error) = self.release_the_dead().await
            {
                tracing::warn!(%error, "could not release the leases of dead processes");
            }
        })
        .await;
    }

    /// Says this process stopped cleanly and releases what its workers still held (the
    /// workers have stopped by now).
    pub async fn stop(&self) -> Result<(), sqlx::Error> {
        let now = now_ms();
        let mut tx = self.db.begin_write().await?;
        crate::with_connection!(&mut tx, |c| {
            sqlx::query("UPDATE processes SET stopped_at_ms = $1 WHERE id = $2")
                .bind(now)
                .bind(&self.me.0)
                .execute(c)
                .await
                .map(drop)
        })?;
        release_leases(&mut tx, &self.me.0, now).await?;
        tx.commit().await
    }
}

/// Makes the jobs leased by `process`'s workers due again.
async fn release_leases(
    tx: &mut crate::storage::WriteTransaction,
    process: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    crate::with_connection!(tx, |c| {
        sqlx::query(
            "UPDATE jobs SET state = 'waiting', lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = $1 \
             WHERE state = 'active' AND lease_owner LIKE $2",
        )
        .bind(now)
        .bind(format!("{process}/%"))
        .execute(c)
        .await
        .map(|done| done.rows_affected())
    })
}

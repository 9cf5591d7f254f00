//! What operators and retention do with the queues: counts, listings, pausing,
//! requeueing dead letters, and pruning completed jobs.

use std::{sync::Arc, time::Duration};

use super::{JobView, QueueCounts, QueueName, Queues};
use crate::{now_ms, storage::RETENTION_EVERY};

impl Queues {
    /// Deletes completed jobs last touched more than `keep` ago; answers how many. Their
    /// notifications and emails stay: only the finished bookkeeping goes.
    pub async fn prune_completed(&self, keep: Duration) -> Result<u64, sqlx::Error> {
        let before = now_ms() - keep.as_millis() as i64;
        // The table is in insertion order, so the oldest completed jobs are found first.
        self.db
            .delete_in_chunks(
                "DELETE FROM jobs WHERE id IN \
                 (SELECT id FROM jobs WHERE state = 'completed' AND updated_at_ms < $1 LIMIT 1000)",
                before,
            )
            .await
    }

    /// Prunes completed jobs every [`RETENTION_EVERY`] until shutdown, so the job table holds the
    /// work in progress and the last `keep` of history, not every job ever run.
    pub async fn run_retention(self: Arc<Self>, keep: Duration, shutdown: tokio_util::sync::CancellationToken) {
        crate::every(RETENTION_EVERY, shutdown, || async {
            match self.prune_completed(keep).await {
                Ok(0) => {}
                Ok(pruned) => tracing::debug!(pruned, "completed jobs pruned"),
                Err(error) => tracing::warn!(%error, "could not prune completed jobs"),
            }
        })
        .await;
    }

    pub async fn set_paused(&self, queue: QueueName, paused: bool) -> Result<(), sqlx::Error> {
        crate::with_connection!(&mut self.db.writing().await?, |c| {
            sqlx::query(
            "INSERT INTO queue_controls (queue, paused) VALUES ($1, $2) ON CONFLICT (queue) DO UPDATE SET paused = excluded.paused",
        )
        .bind(queue.as_str())
        .bind(i64::from(paused))
        .execute(c)
        .await.map(|done| done.rows_affected())
        })?;
        if !paused {
            self.wake(queue.channel());
        }
        Ok(())
    }

    /// Moves dead-lettered jobs back to the start of their channel: one job by id, or
    /// every job whose last error contains `error_contains`. Answers how many moved.
    pub async fn requeue(
        &self,
        dlq: QueueName,
        job_id: Option<&str>,
        error_contains: Option<&str>,
    ) -> Result<u64, sqlx::Error> {
        let pattern = like_pattern(error_contains);
        let moved = crate::with_connection!(&mut self.db.writing().await?, |c| {
            sqlx::query(
            "UPDATE jobs SET queue = $1, state = 'waiting', attempts = 0, run_at_ms = $2, updated_at_ms = $2 \
             WHERE queue = $3 AND state = 'failed' AND ($4 IS NULL OR id = $4) AND ($5 IS NULL OR LOWER(last_error) LIKE LOWER($5) ESCAPE '\\')",
        )
        .bind(dlq.first().as_str())
        .bind(now_ms())
        .bind(dlq.as_str())
        .bind(job_id)
        .bind(&pattern)
        .execute(c)
        .await.map(|done| done.rows_affected())
        })?;
        if moved > 0 {
            self.wake(dlq.channel());
        }
        Ok(moved)
    }

    /// The newest jobs of a queue whose last error contains `error_contains` (all when
    /// `None`), and how many match in all: the preview of what a requeue would move.
    pub async fn list(
        &self,
        queue: QueueName,
        error_contains: Option<&str>,
        limit: u32,
    ) -> Result<(u64, Vec<JobView>), sqlx::Error> {
        let pattern = like_pattern(error_contains);
        // Case-insensitive on both engines: SQLite's LIKE ignores ASCII case, PostgreSQL's does not.
        let filter = "WHERE queue = $1 AND ($2 IS NULL OR LOWER(last_error) LIKE LOWER($2) ESCAPE '\\')";
        let total: i64 = crate::with_connection!(&mut self.db.read().await?, |c| sqlx::query_scalar(
            sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM jobs {filter}"))
        )
        .bind(queue.as_str())
        .bind(&pattern)
        .fetch_one(c)
        .await)?;
        type Row = (
            String,
            String,
            String,
            String,
            Option<String>,
            i32,
            Option<String>,
            i64,
            i64,
        );
        let rows: Vec<Row> = crate::with_connection!(&mut self.db.read().await?, |c| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, queue, state, target_id, request_id, attempts, last_error, run_at_ms, updated_at_ms FROM jobs {filter} \
             ORDER BY updated_at_ms DESC, id DESC LIMIT $3"
        )))
        .bind(queue.as_str())
        .bind(&pattern)
        .bind(i64::from(limit))
        .fetch_all(c)
        .await
        })?;
        let jobs = rows
            .into_iter()
            .map(
                |(id, queue, state, target_id, request_id, attempts, last_error, run_at_ms, updated_at_ms)| JobView {
                    id,
                    queue,
                    state,
                    target_id,
                    request_id,
                    attempts: attempts.into(),
                    last_error,
                    run_at_ms,
                    updated_at_ms,
                },
            )
            .collect();
        Ok((total.max(0) as u64, jobs))
    }

    /// Counts per queue and state, every queue listed even when empty.
    pub async fn counts(&self) -> Result<Vec<QueueCounts>, sqlx::Error> {
        let now = now_ms();
        let rows: Vec<(String, String, bool, i64)> = crate::with_connection!(&mut self.db.read().await?, |c| {
            sqlx::query_as(
            "SELECT queue, state, (state = 'delayed' AND run_at_ms > $1) AS not_due, COUNT(*) FROM jobs GROUP BY queue, state, not_due",
        )
        .bind(now)
        .fetch_all(c)
        .await
        })?;
        let paused: Vec<(String,)> = crate::with_connection!(&mut self.db.read().await?, |c| sqlx::query_as(
            "SELECT queue FROM queue_controls WHERE paused = 1"
        )
        .fetch_all(c)
        .await)?;
        let mut counts: Vec<QueueCounts> = QueueName::ALL
            .iter()
            .map(|queue| QueueCounts {
                name: queue.as_str().to_string(),
                paused: paused.iter().any(|(name,)| name == queue.as_str()),
                ..QueueCounts::default()
            })
            .collect();
        for (queue, state, not_due, count) in rows {
            let Some(entry) = counts.iter_mut().find(|entry| entry.name == queue) else {
                continue;
            };
            let count = count as u64;
            match (state.as_str(), not_due) {
                ("delayed", true) => entry.delayed += count,
                ("waiting" | "delayed", _) => entry.waiting += count,
                ("active", _) => entry.active += count,
                ("completed", _) => entry.completed += count,
                ("failed", _) => entry.failed += count,
                _ => {}
            }
        }
        Ok(counts)
    }
}

/// A `LIKE` pattern matching text that contains `needle` literally.
fn like_pattern(needle: Option<&str>) -> Option<String> {
    needle.map(|text| {
        format!(
            "%{}%",
            text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
        )
    })
}

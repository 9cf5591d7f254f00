//! The history's retention: frames older than `--history-minutes` go, metric samples
//! older than `--history-full-minutes` are thinned to one a minute, and over
//! `--history-max-mb` the oldest frames go first, whatever their age.

use std::time::Duration;

use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use super::{Retention, frames};
use crate::now_ms;

/// How often retention runs: often enough that at peak load the file overshoots its size
/// cap by a few hundred megabytes at most.
const RETAIN_EVERY: Duration = Duration::from_secs(10);
/// Frames deleted per statement when the file is over its size cap.
const PRUNE_ROWS: i64 = 100;

/// Applies retention and downsampling every [`RETAIN_EVERY`] until shutdown.
pub(super) async fn retain(
    pool: SqlitePool,
    frames: frames::FrameLog,
    retention: Retention,
    shutdown: CancellationToken,
) {
    crate::every(RETAIN_EVERY, shutdown, || async {
        if let Err(error) = apply_retention(&pool, &frames, retention, now_ms()).await {
            tracing::warn!(%error, "could not apply live history retention");
        }
    })
    .await;
}

/// Deletes frames older than `keep`, and thins frames of metrics only (one a second) that
/// are older than `full_detail` to the ones from each minute's first second. Over the
/// size cap, the frame log's oldest segments go first, then the oldest rows.
pub(super) async fn apply_retention(
    pool: &SqlitePool,
    frames: &frames::FrameLog,
    retention: Retention,
    now: i64,
) -> Result<(), sqlx::Error> {
    let cutoff = now - retention.keep.as_millis() as i64;
    sqlx::query("DELETE FROM live_frames WHERE ts_ms < ?")
        .bind(cutoff)
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM live_frames WHERE ts_ms < ? AND metrics_only AND ts_ms % 60000 >= 1000")
        .bind(now - retention.full_detail.as_millis() as i64)
        .execute(pool)
        .await?;
    // Over the size cap, the oldest frames go until the history is back under 90% of it
    // (the pages freed in the SQLite file are reused, so it stops growing there).
    let in_file = used_bytes(pool).await?;
    let frames_cap = retention.max_bytes.saturating_sub(in_file);
    let frames_target = if frames.bytes() > frames_cap {
        frames_cap / 10 * 9
    } else {
        u64::MAX
    };
    {
        let frames = frames.clone();
        tokio::task::spawn_blocking(move || frames.prune(cutoff, frames_target))
            .await
            .map_err(|error| sqlx::Error::Io(std::io::Error::other(error)))?;
    }
    let file_cap = retention.max_bytes.saturating_sub(frames.bytes());
    if in_file <= file_cap {
        return Ok(());
    }
    let target = file_cap / 10 * 9;
    loop {
        let deleted =
            sqlx::query("DELETE FROM live_frames WHERE id IN (SELECT id FROM live_frames ORDER BY id LIMIT ?)")
                .bind(PRUNE_ROWS)
                .execute(pool)
                .await?
                .rows_affected();
        if deleted == 0 || used_bytes(pool).await? <= target {
            return Ok(());
        }
    }
}

/// Bytes of the history file in use: its pages less the free ones.
pub(super) async fn used_bytes(pool: &SqlitePool) -> Result<u64, sqlx::Error> {
    let used: i64 = sqlx::query_scalar(
        "SELECT (page_count - freelist_count) * page_size \
         FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()",
    )
    .fetch_one(pool)
    .await?;
    Ok(used.max(0) as u64)
}

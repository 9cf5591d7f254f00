//! The figures over time (`GET /api/v1/analytics/series`): per minute, hour or day, for
//! any range, each bucket computed from what happened in it.
//!
//! Counted and summed figures (revenue, purchases, signups, …) are counted from their
//! rows per minute by the database and folded here into the buckets, which start on the
//! minute, on the hour and at midnight in `--timezone` (clock changes included). Active
//! users are sampled (every 5 s, by each dashboard): each sample raises its minute's,
//! hour's and day's maximum in `realtime_metrics`, whose minutes are kept two days and
//! hours ninety; days are kept.

use chrono::{DateTime, Duration, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use wire::{SeriesMetric, SeriesPoint, SeriesStep};

use super::figures::{self, ACTIVE_USERS_METRIC, major};
use crate::storage::Database;

/// The most buckets one answer holds.
pub const MAX_POINTS: usize = 10_000;
/// How long each tier of active-user samples is kept.
pub const KEEP_MINUTES_MS: i64 = 2 * 86_400_000;
pub const KEEP_HOURS_MS: i64 = 90 * 86_400_000;

/// The name a step has in `realtime_metrics.step`.
pub fn step_name(step: SeriesStep) -> &'static str {
    match step {
        SeriesStep::Minute => "minute",
        SeriesStep::Hour => "hour",
        SeriesStep::Day => "day",
    }
}

/// The start of the bucket `at_ms` is in.
pub fn bucket_of(at_ms: i64, step: SeriesStep, tz: Tz) -> i64 {
    match step {
        SeriesStep::Minute => figures::minute_of(at_ms),
        SeriesStep::Hour => {
            let Some(at) = DateTime::from_timestamp_millis(at_ms) else {
                return at_ms;
            };
            let local = at.with_timezone(&tz).naive_local();
            let hour = local.date().and_hms_opt(local.hour(), 0, 0).unwrap_or(local);
            // A local hour that exists twice (clocks going back): the one `at` is in.
            tz.from_local_datetime(&hour)
                .latest()
                .filter(|start| start.timestamp_millis() <= at_ms)
                .or_else(|| tz.from_local_datetime(&hour).earliest())
                .map_or(at_ms, |start| start.timestamp_millis())
        }
        SeriesStep::Day => figures::periods(DateTime::from_timestamp_millis(at_ms).unwrap_or_default(), tz).day_ms,
    }
}

/// The start of the bucket after the one starting at `start_ms`.
fn next_bucket(start_ms: i64, step: SeriesStep, tz: Tz) -> i64 {
    let guess = match step {
        SeriesStep::Minute => return start_ms + 60_000,
        SeriesStep::Hour => start_ms + 3_600_000,
        // A day is 23 to 25 hours: 26 h on lands in the next day whatever the clocks do.
        SeriesStep::Day => start_ms + 26 * 3_600_000,
    };
    bucket_of(guess, step, tz).max(start_ms + 60_000)
}

/// The buckets that cover `[from_ms, to_ms)`, as their starts and the end of the last.
pub fn buckets(from_ms: i64, to_ms: i64, step: SeriesStep, tz: Tz) -> Result<Vec<i64>, String> {
    let mut starts = vec![bucket_of(from_ms, step, tz)];
    while let Some(&last) = starts.last() {
        let next = next_bucket(last, step, tz);
        if next >= to_ms {
            starts.push(next);
            break;
        }
        starts.push(next);
        if starts.len() > MAX_POINTS + 1 {
            return Err(format!(
                "more than {MAX_POINTS} buckets: take a larger step or a shorter range"
            ));
        }
    }
    Ok(starts)
}

/// `SELECT minute, COUNT(*)` of a table's rows in `[$1, $2)`.
macro_rules! per_minute_of {
    ($table:literal) => {
        concat!(
            "SELECT created_at_ms / 60000, COUNT(*) FROM ",
            $table,
            " WHERE created_at_ms >= $1 AND created_at_ms < $2 GROUP BY created_at_ms / 60000"
        )
    };
}

/// Per minute, from the rows: `(minute start, value)`; none for a sampled metric.
async fn per_minute(
    db: &Database,
    metric: SeriesMetric,
    currency: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, f64)>, sqlx::Error> {
    // Integer division by 60000 floors the (positive) stamps to their minute on both engines.
    let (sql, extras): (&'static str, Vec<&str>) = match metric {
        SeriesMetric::Revenue => (
            "SELECT created_at_ms / 60000, CAST(SUM(amount_cents) AS BIGINT) FROM purchases \
             WHERE created_at_ms >= $1 AND created_at_ms < $2 AND currency = $3 GROUP BY created_at_ms / 60000",
            vec![currency],
        ),
        SeriesMetric::Purchases => (per_minute_of!("purchases"), vec![]),
        SeriesMetric::Signups => (per_minute_of!("users"), vec![]),
        SeriesMetric::Views => (per_minute_of!("item_views"), vec![]),
        SeriesMetric::Logins => (ACTIVITY_PER_MINUTE, vec!["login", "login"]),
        SeriesMetric::Invitations => (ACTIVITY_PER_MINUTE, vec!["invitation", "invitation_accepted"]),
        SeriesMetric::PasswordResets => (ACTIVITY_PER_MINUTE, vec!["password_reset", "password_reset"]),
        SeriesMetric::ActiveUsers => return Ok(Vec::new()),
    };
    let rows: Vec<(i64, i64)> = crate::with_connection!(&mut db.read().await?, |c| {
        let mut query = sqlx::query_as(sql).bind(from_ms).bind(to_ms);
        for extra in &extras {
            query = query.bind(*extra);
        }
        query.fetch_all(c).await
    })?;
    Ok(rows
        .into_iter()
        .map(|(minute, value)| {
            let value = match metric {
                SeriesMetric::Revenue => major(value, currency),
                _ => value as f64,
            };
            (minute * 60_000, value)
        })
        .collect())
}

const ACTIVITY_PER_MINUTE: &str = "SELECT created_at_ms / 60000, COUNT(*) FROM activity_stream \
     WHERE created_at_ms >= $1 AND created_at_ms < $2 AND event_type IN ($3, $4) GROUP BY created_at_ms / 60000";

/// The active-user samples of `step` in the range: `(bucket start, highest)`.
async fn samples(db: &Database, step: SeriesStep, from_ms: i64, to_ms: i64) -> Result<Vec<(i64, f64)>, sqlx::Error> {
    crate::with_connection!(&mut db.read().await?, |c| sqlx::query_as(
        "SELECT bucket_ms, value FROM realtime_metrics WHERE metric_name = $1 AND step = $2 \
         AND bucket_ms >= $3 AND bucket_ms < $4"
    )
    .bind(ACTIVE_USERS_METRIC)
    .bind(step_name(step))
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(c)
    .await)
}

/// `metric` per `step` over `[from, to)`, every bucket present, oldest first.
pub async fn series(
    db: &Database,
    metric: SeriesMetric,
    step: SeriesStep,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    (currency, tz): (&str, Tz),
    now: DateTime<Utc>,
) -> Result<Result<Vec<SeriesPoint>, String>, sqlx::Error> {
    let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
    let starts = match buckets(from_ms, to_ms, step, tz) {
        Ok(starts) => starts,
        Err(refused) => return Ok(Err(refused)),
    };
    let (first, end) = (starts[0], *starts.last().unwrap_or(&to_ms));
    let mut values = vec![0.0_f64; starts.len() - 1];
    let bucket_index = |at: i64| starts.partition_point(|start| *start <= at).checked_sub(1);
    if metric == SeriesMetric::ActiveUsers {
        for (at, value) in samples(db, step, first, end).await? {
            if let Some(index) = bucket_index(at).filter(|index| *index < values.len()) {
                values[index] = values[index].max(value);
            }
        }
    } else {
        for (at, value) in per_minute(db, metric, currency, first, end).await? {
            if let Some(index) = bucket_index(at).filter(|index| *index < values.len()) {
                values[index] += value;
            }
        }
    }
    let now_ms = now.timestamp_millis();
    Ok(Ok(starts
        .windows(2)
        .zip(values)
        .map(|(bounds, value)| SeriesPoint {
            t: DateTime::from_timestamp_millis(bounds[0]).unwrap_or_default(),
            // Sums of cents in major units: round away the float's dust.
            value: (value * 1000.0).round() / 1000.0,
            partial: bounds[0] <= now_ms && now_ms < bounds[1],
        })
        .collect()))
}

/// Today so far against yesterday up to the same time of day.
pub async fn today_against_yesterday(
    db: &Database,
    metric: SeriesMetric,
    (currency, tz): (&str, Tz),
    now: DateTime<Utc>,
) -> Result<(f64, f64), sqlx::Error> {
    let now_ms = now.timestamp_millis();
    let today = figures::periods(now, tz).day_ms;
    let yesterday = figures::periods(DateTime::from_timestamp_millis(today - 1).unwrap_or_default(), tz).day_ms;
    let so_far = now_ms - today;
    let total = async |from: i64, to: i64| -> Result<f64, sqlx::Error> {
        if metric == SeriesMetric::ActiveUsers {
            let minutes = samples(db, SeriesStep::Minute, from, to).await?;
            return Ok(minutes.into_iter().map(|(_, value)| value).fold(0.0, f64::max));
        }
        let minutes = per_minute(db, metric, currency, from, to).await?;
        Ok((minutes.into_iter().map(|(_, value)| value).sum::<f64>() * 1000.0).round() / 1000.0)
    };
    Ok((
        total(today, now_ms + 1).await?,
        total(yesterday, yesterday + so_far + 1).await?,
    ))
}

/// Raises the minute's, hour's and day's highest active-user sample.
pub async fn record_active_users(db: &Database, current: u64, now_ms: i64, tz: Tz) -> Result<(), sqlx::Error> {
    for step in [SeriesStep::Minute, SeriesStep::Hour, SeriesStep::Day] {
        crate::with_connection!(&mut db.writing().await?, |c| sqlx::query(
            "INSERT INTO realtime_metrics (metric_name, step, bucket_ms, value) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (metric_name, step, bucket_ms) DO UPDATE SET value = \
             CASE WHEN excluded.value > realtime_metrics.value THEN excluded.value ELSE realtime_metrics.value END"
        )
        .bind(ACTIVE_USERS_METRIC)
        .bind(step_name(step))
        .bind(bucket_of(now_ms, step, tz))
        .bind(current as f64)
        .execute(c)
        .await
        .map(drop))?;
    }
    Ok(())
}

/// Removes the minute samples older than two days and the hour samples older than 90.
pub async fn clean_up(db: &Database, now_ms: i64) -> Result<(), sqlx::Error> {
    for (step, keep) in [("minute", KEEP_MINUTES_MS), ("hour", KEEP_HOURS_MS)] {
        crate::with_connection!(&mut db.writing().await?, |c| sqlx::query(
            "DELETE FROM realtime_metrics WHERE step = $1 AND bucket_ms < $2"
        )
        .bind(step)
        .bind(now_ms - keep)
        .execute(c)
        .await
        .map(drop))?;
    }
    Ok(())
}

/// The default range of a step: the last hour of minutes, day of hours, 30 days.
pub fn default_span(step: SeriesStep) -> Duration {
    match step {
        SeriesStep::Minute => Duration::hours(1),
        SeriesStep::Hour => Duration::hours(24),
        SeriesStep::Day => Duration::days(30),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text).expect("time").timestamp_millis()
    }

    #[test]
    fn hours_and_days_start_in_the_reporting_zone() {
        let kolkata = chrono_tz::Asia::Kolkata;
        // 10:45 UTC is 16:15 in Kolkata: its hour began at 10:30 UTC.
        assert_eq!(
            bucket_of(ms("2026-12-01T10:45:00Z"), SeriesStep::Hour, kolkata),
            ms("2026-12-01T10:30:00Z")
        );
        assert_eq!(
            bucket_of(ms("2026-12-01T10:45:00Z"), SeriesStep::Day, kolkata),
            ms("2026-11-30T18:30:00Z")
        );
        assert_eq!(
            bucket_of(ms("2026-12-01T10:45:59Z"), SeriesStep::Minute, kolkata),
            ms("2026-12-01T10:45:00Z")
        );
    }

    #[test]
    fn a_day_with_a_clock_change_is_one_bucket_of_its_own_length() {
        let berlin = chrono_tz::Europe::Berlin;
        // 2026-10-25 is 25 hours long in Berlin.
        let starts = buckets(
            ms("2026-10-24T22:00:00Z"),
            ms("2026-10-26T22:00:00Z"),
            SeriesStep::Day,
            berlin,
        )
        .expect("buckets");
        assert_eq!(
            starts,
            [
                ms("2026-10-24T22:00:00Z"),
                ms("2026-10-25T23:00:00Z"),
                ms("2026-10-26T23:00:00Z")
            ]
        );
        // Its hours: 25 of them, the repeated 02:00 included.
        let hours = buckets(
            ms("2026-10-24T22:00:00Z"),
            ms("2026-10-25T23:00:00Z"),
            SeriesStep::Hour,
            berlin,
        )
        .expect("buckets");
        assert_eq!(hours.len() - 1, 25);
    }

    #[test]
    fn too_many_buckets_are_refused() {
        let refused = buckets(0, 30 * 86_400_000, SeriesStep::Minute, Tz::UTC);
        assert!(refused.is_err());
    }
}

//! The business figures (`GET /api/v1/analytics/realtime-metrics`), each a query over
//! the rows of what happened; the README defines every one.
//!
//! Times are Unix milliseconds in the database; "today", "this week" (from Monday) and
//! "this month" start at midnight in the reporting time zone, found here and passed to
//! the queries as bounds, so both engines compute the same figures.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use wire::{
    ActiveUsers, ActivityType, BusinessMetrics, ContentFigures, GeoLocation, LiveActivity, Revenue, RevenueFigures,
    SystemLoad, Transactions,
};

use super::{Reporting, activity};
use crate::storage::Database;

/// A user is `current` with activity within this.
pub const CURRENT_WINDOW_MS: i64 = 5 * 60_000;
/// Users with a session active since `$1`.
const ACTIVE_SINCE: &str = "SELECT COUNT(DISTINCT user_id) FROM active_sessions WHERE last_activity_ms >= $1";
/// The name of active users' per-minute values in `realtime_metrics`.
pub const ACTIVE_USERS_METRIC: &str = "activeUsers.current";

/// Where today, this week and this month began, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    pub day_ms: i64,
    pub week_ms: i64,
    pub month_ms: i64,
}

/// The first instant of `date` in `tz`: midnight, or (where a clock change skips
/// midnight) the first time that day has.
fn start_of(date: NaiveDate, tz: Tz) -> i64 {
    (0..24)
        .find_map(|hour| tz.from_local_datetime(&date.and_hms_opt(hour, 0, 0)?).earliest())
        .map_or(0, |start| start.timestamp_millis())
}

/// The periods `now` is in, with days in `tz`; weeks start on Monday (ISO 8601).
pub fn periods(now: DateTime<Utc>, tz: Tz) -> Periods {
    let today = now.with_timezone(&tz).date_naive();
    let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    let first = today.with_day(1).unwrap_or(today);
    Periods {
        day_ms: start_of(today, tz),
        week_ms: start_of(monday, tz),
        month_ms: start_of(first, tz),
    }
}

/// Digits after the decimal point of a currency's major unit (ISO 4217's exponent):
/// `amount_cents` is in the minor unit, so 1000 is 10.00 EUR but 1000 JPY.
pub fn minor_digits(currency: &str) -> i32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND"
        | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// An amount in a currency's minor unit, in its major unit.
pub fn major(amount_minor: i64, currency: &str) -> f64 {
    amount_minor as f64 / 10f64.powi(minor_digits(currency))
}

/// Every figure as of `now`; `load` is the last second's traffic from the telemetry.
pub async fn snapshot(
    db: &Database,
    reporting: &Reporting,
    load: SystemLoad,
    now: DateTime<Utc>,
) -> Result<BusinessMetrics, sqlx::Error> {
    let periods = periods(now, reporting.timezone);
    let now_ms = now.timestamp_millis();
    Ok(BusinessMetrics {
        revenue: revenue(db, &reporting.currency, periods).await?,
        active_users: active_users(db, periods, now_ms, &reporting.geography).await?,
        transactions: transactions(db).await?,
        content: content(db).await?,
        live_activity: live_activity(db).await?,
        system_load: SystemLoad {
            queue_depth: queue_depth(db).await?,
            ..load
        },
        alerts: crate::alerts::open(db).await?,
        timestamp: now,
    })
}

async fn revenue(db: &Database, currency: &str, periods: Periods) -> Result<Revenue, sqlx::Error> {
    // SUM of a BIGINT is NUMERIC on PostgreSQL: cast back, on both engines.
    let rows: Vec<(String, i64, i64, i64, i64)> = crate::with_connection!(&mut db.read().await?, |c| sqlx::query_as(
        "SELECT currency, CAST(SUM(amount_cents) AS BIGINT), \
         CAST(SUM(CASE WHEN created_at_ms >= $1 THEN amount_cents ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN created_at_ms >= $2 THEN amount_cents ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN created_at_ms >= $3 THEN amount_cents ELSE 0 END) AS BIGINT) \
         FROM purchases GROUP BY currency"
    )
    .bind(periods.day_ms)
    .bind(periods.week_ms)
    .bind(periods.month_ms)
    .fetch_all(c)
    .await)?;
    let by_currency: BTreeMap<String, RevenueFigures> = rows
        .into_iter()
        .map(|(code, total, today, week, month)| {
            let figures = RevenueFigures {
                total: major(total, &code),
                today: major(today, &code),
                this_week: major(week, &code),
                this_month: major(month, &code),
            };
            (code, figures)
        })
        .collect();
    Ok(Revenue {
        currency: currency.to_string(),
        figures: by_currency.get(currency).copied().unwrap_or_default(),
        by_currency,
    })
}

/// `activeUsers.current` as of `now_ms`.
pub async fn active_now(db: &Database, now_ms: i64) -> Result<u64, sqlx::Error> {
    count(db, ACTIVE_SINCE, now_ms - CURRENT_WINDOW_MS).await
}

async fn count(db: &Database, sql: &'static str, bound: i64) -> Result<u64, sqlx::Error> {
    let n: i64 = crate::with_connection!(&mut db.read().await?, |c| sqlx::query_scalar(sql)
        .bind(bound)
        .fetch_one(c)
        .await)?;
    Ok(n.max(0) as u64)
}

async fn count_rows(db: &Database, sql: &'static str) -> Result<u64, sqlx::Error> {
    let n: i64 = crate::with_connection!(&mut db.read().await?, |c| sqlx::query_scalar(sql).fetch_one(c).await)?;
    Ok(n.max(0) as u64)
}

async fn active_by(db: &Database, sql: &'static str, since_ms: i64) -> Result<BTreeMap<String, u64>, sqlx::Error> {
    let rows: Vec<(String, i64)> = crate::with_connection!(&mut db.read().await?, |c| sqlx::query_as(sql)
        .bind(since_ms)
        .fetch_all(c)
        .await)?;
    Ok(rows.into_iter().map(|(key, n)| (key, n.max(0) as u64)).collect())
}

async fn active_users(
    db: &Database,
    periods: Periods,
    now_ms: i64,
    geography: &super::geo::Geography,
) -> Result<ActiveUsers, sqlx::Error> {
    let since = now_ms - CURRENT_WINDOW_MS;
    let current = active_now(db, now_ms).await?;
    // A session's last activity only moves forward: active today ⇔ last active today.
    let today = count(db, ACTIVE_SINCE, periods.day_ms).await?;
    let by_segment = active_by(
        db,
        "SELECT u.user_type, COUNT(DISTINCT s.user_id) FROM active_sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.last_activity_ms >= $1 GROUP BY u.user_type",
        since,
    )
    .await?;
    let by_source = active_by(
        db,
        "SELECT u.signup_source, COUNT(DISTINCT s.user_id) FROM active_sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.last_activity_ms >= $1 GROUP BY u.signup_source",
        since,
    )
    .await?;
    let by_country = active_by(
        db,
        "SELECT country, COUNT(DISTINCT user_id) FROM active_sessions \
         WHERE last_activity_ms >= $1 AND country IS NOT NULL GROUP BY country",
        since,
    )
    .await?;
    let mut locations: Vec<GeoLocation> = by_country
        .into_iter()
        .map(|(country, users)| GeoLocation {
            name: geography.name(&country),
            country,
            users,
        })
        .collect();
    locations.sort_by(|a, b| b.users.cmp(&a.users).then_with(|| a.country.cmp(&b.country)));
    let (peak, hour_ago): (Option<f64>, Option<f64>) =
        crate::with_connection!(&mut db.read().await?, |c| sqlx::query_as(
            "SELECT MAX(CASE WHEN bucket_ms >= $2 THEN value END), MAX(CASE WHEN bucket_ms = $3 THEN value END) \
         FROM realtime_metrics WHERE metric_name = $1 AND step = 'minute'"
        )
        .bind(ACTIVE_USERS_METRIC)
        .bind(now_ms - 24 * 3_600_000)
        .bind(minute_of(now_ms - 3_600_000))
        .fetch_one(c)
        .await)?;
    Ok(ActiveUsers {
        current,
        today,
        peak24h: (peak.unwrap_or(0.0) as u64).max(current),
        trend: current as i64 - hour_ago.unwrap_or(0.0) as i64,
        by_segment,
        by_source,
        locations,
    })
}

/// The start of the minute `at_ms` is in.
pub fn minute_of(at_ms: i64) -> i64 {
    at_ms - at_ms.rem_euclid(60_000)
}

/// How often sessions inactive for a day, and samples past their tier, are removed.
const CLEAN_UP_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes old sessions, samples and resolved alerts until shutdown (the samples themselves come from
/// the feed's snapshots, [`super::feed`]).
pub async fn keep_clean(db: Database, shutdown: tokio_util::sync::CancellationToken) {
    crate::every(CLEAN_UP_EVERY, shutdown, || async {
        if let Err(error) = super::sessions::clean_up(&db).await {
            tracing::warn!(%error, "old sessions could not be removed");
        }
        if let Err(error) = super::series::clean_up(&db, crate::now_ms()).await {
            tracing::warn!(%error, "old samples could not be removed");
        }
        if let Err(error) = crate::alerts::clean_up(&db, crate::now_ms()).await {
            tracing::warn!(%error, "old alerts could not be removed");
        }
    })
    .await;
}

async fn transactions(db: &Database) -> Result<Transactions, sqlx::Error> {
    let total = count_rows(db, "SELECT COUNT(*) FROM purchases").await?;
    // Each a range of the (queue, state, run_at_ms) index: the dead letters, and the
    // jobs not done yet, never the completed ones (most of the table). The first form
    // of `pending` looked for a dead letter of each pending job's purchase by scanning
    // the whole table per job: under load, every 5 s, a backlog times the table.
    let failed = count_rows(
        db,
        "SELECT COUNT(DISTINCT subject_id) FROM jobs WHERE queue IN ('mail-dlq', 'inapp-dlq') \
         AND state = 'failed' AND subject_id IS NOT NULL",
    )
    .await?;
    let pending = count_rows(
        db,
        "SELECT COUNT(DISTINCT subject_id) FROM jobs \
         WHERE queue IN ('mail', 'mail-retry-1', 'mail-retry-2', 'inapp', 'inapp-retry') \
         AND state IN ('waiting', 'delayed', 'active') AND subject_id IS NOT NULL \
         AND subject_id NOT IN (SELECT subject_id FROM jobs WHERE queue IN ('mail-dlq', 'inapp-dlq') \
             AND state = 'failed' AND subject_id IS NOT NULL)",
    )
    .await?;
    Ok(Transactions {
        total,
        pending,
        failed,
        completed: total.saturating_sub(pending + failed),
    })
}

async fn content(db: &Database) -> Result<ContentFigures, sqlx::Error> {
    let total_views = count_rows(db, "SELECT COUNT(*) FROM item_views").await?;
    let total_purchases = count_rows(db, "SELECT COUNT(*) FROM purchases WHERE item_id IS NOT NULL").await?;
    let conversion_rate = if total_views == 0 {
        0.0
    } else {
        (total_purchases as f64 / total_views as f64 * 10_000.0).round() / 100.0
    };
    Ok(ContentFigures {
        total_views,
        total_purchases,
        conversion_rate,
    })
}

async fn live_activity(db: &Database) -> Result<LiveActivity, sqlx::Error> {
    let kept = LiveActivity::KEPT;
    Ok(LiveActivity {
        signups: activity::recent(db, &[ActivityType::Signup], kept).await?,
        payments: activity::recent(db, &[ActivityType::Payment], kept).await?,
        invitations: activity::recent(db, &[ActivityType::Invitation, ActivityType::InvitationAccepted], kept).await?,
        logins: activity::recent(db, &[ActivityType::Login], kept).await?,
        password_resets: activity::recent(db, &[ActivityType::PasswordReset], kept).await?,
        system: activity::recent(db, &[ActivityType::Autoscale], kept).await?,
    })
}

/// Delivery jobs waiting, delayed or active, over every queue but the dead letters.
pub async fn queue_depth(db: &Database) -> Result<u64, sqlx::Error> {
    count_rows(
        db,
        "SELECT COUNT(*) FROM jobs WHERE queue IN ('mail', 'mail-retry-1', 'mail-retry-2', 'inapp', 'inapp-retry') \
         AND state IN ('waiting', 'delayed', 'active')",
    )
    .await
}

#[cfg(test)]
mod queue_names {
    /// The counts above name the queues in their SQL (to stay on the index): they must
    /// be the queues there are.
    #[test]
    fn the_counts_name_every_work_queue_and_dead_letter_queue() {
        use crate::queue::QueueName;
        let work: Vec<&str> = QueueName::MAIL_WORK
            .iter()
            .chain(QueueName::INAPP_WORK.iter())
            .map(|queue| queue.as_str())
            .collect();
        assert_eq!(work, ["mail", "mail-retry-1", "mail-retry-2", "inapp", "inapp-retry"]);
        let dead: Vec<&str> = QueueName::ALL
            .iter()
            .filter(|queue| queue.as_str().ends_with("-dlq"))
            .map(|queue| queue.as_str())
            .collect();
        assert_eq!(dead, ["mail-dlq", "inapp-dlq"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
    }

    fn ms(text: &str) -> i64 {
        at(text).timestamp_millis()
    }

    #[test]
    fn periods_start_at_midnight_in_the_reporting_zone() {
        // Sunday 2026-03-29, 22:30 UTC: already Monday 00:30 in Berlin (CEST, +2 since
        // 01:00 UTC that day), so Berlin's day and week began at 22:00 UTC.
        let now = at("2026-03-29T22:30:00Z");
        let berlin = periods(now, chrono_tz::Europe::Berlin);
        assert_eq!(berlin.day_ms, ms("2026-03-29T22:00:00Z"));
        assert_eq!(berlin.week_ms, ms("2026-03-29T22:00:00Z"));
        // March began in Berlin at midnight CET (+1).
        assert_eq!(berlin.month_ms, ms("2026-02-28T23:00:00Z"));
        let utc = periods(now, Tz::UTC);
        assert_eq!(utc.day_ms, ms("2026-03-29T00:00:00Z"));
        assert_eq!(utc.week_ms, ms("2026-03-23T00:00:00Z"));
        assert_eq!(utc.month_ms, ms("2026-03-01T00:00:00Z"));
        // New York on the 1st at 02:00 UTC is still the last day of the month before.
        let new_york = periods(at("2026-12-01T02:00:00Z"), chrono_tz::America::New_York);
        assert_eq!(new_york.day_ms, ms("2026-11-30T05:00:00Z"));
        assert_eq!(new_york.month_ms, ms("2026-11-01T04:00:00Z"));
    }

    #[test]
    fn a_day_whose_midnight_is_skipped_starts_at_its_first_hour() {
        // Santiago skips from 00:00 to 01:00 on 2026-09-06 (−4 → −3).
        let santiago = periods(at("2026-09-06T12:00:00Z"), chrono_tz::America::Santiago);
        assert_eq!(santiago.day_ms, ms("2026-09-06T04:00:00Z"));
    }

    #[test]
    fn amounts_are_in_the_major_unit_of_their_currency() {
        assert_eq!(major(1250, "EUR"), 12.5);
        assert_eq!(major(1250, "JPY"), 1250.0);
        assert_eq!(major(1250, "KWD"), 1.25);
    }
}

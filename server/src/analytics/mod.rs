//! Business monitoring: what the business is doing, computed from the system's rows.
//!
//! - [`activity`]: the live activity feed (`activity_stream`), written in the
//!   transaction of what it records and announced on the live stream after the commit;
//! - [`sessions`]: end users' sessions as they are used (`active_sessions`), touched by
//!   every authenticated request and open in-app socket;
//! - [`figures`]: the snapshot of `GET /api/v1/analytics/realtime-metrics`, each figure
//!   a query over those rows and the business rows (purchases, items, jobs);
//! - [`feed`]: the figures as they change, for the live stream and `/ws/metrics`;
//! - [`series`]: the figures over time, per minute, hour or day;
//! - [`geo`]: the country of an end user's address, and the world map's outlines.
//!
//! Nothing here keeps a figure in memory: every process computes the same figures from
//! the same database, so a dashboard in any process of a cluster shows them.

pub mod activity;
pub mod feed;
pub mod figures;
pub mod geo;
pub mod series;
pub mod sessions;

use std::sync::Arc;

use chrono_tz::Tz;

/// How figures are reported: in which currency, with days in which time zone, and
/// countries under which names.
#[derive(Clone)]
pub struct Reporting {
    /// ISO 4217 (`--currency`).
    pub currency: String,
    /// Day, week and month boundaries (`--timezone`).
    pub timezone: Tz,
    pub geography: Arc<geo::Geography>,
}

impl Default for Reporting {
    fn default() -> Self {
        Self {
            currency: "EUR".into(),
            timezone: Tz::UTC,
            geography: Default::default(),
        }
    }
}

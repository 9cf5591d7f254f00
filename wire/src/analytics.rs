//! Business monitoring: what the business is doing right now, computed from the
//! system's rows (`GET /api/v1/analytics/realtime-metrics`, and `/ws/metrics` every 5 s).
//!
//! The snapshot has seed 004's shape (`revenue`, `activeUsers`, `transactions`,
//! `content`, `timestamp`) with seed 001's additions (`liveActivity`, `systemLoad`).
//! Each figure is defined in the README, once. Seed 001 calls an item of the activity
//! feed a `LiveEvent`; here it is an [`ActivityEvent`], since `LiveEvent` already names
//! an event of the live stream.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// `GET /api/v1/analytics/realtime-metrics`: the business figures as of `timestamp`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BusinessMetrics {
    pub revenue: Revenue,
    pub active_users: ActiveUsers,
    pub transactions: Transactions,
    pub content: ContentFigures,
    pub live_activity: LiveActivity,
    pub system_load: SystemLoad,
    /// Seed 001's `alerts`: the alerts firing or recovering now, most severe first.
    #[serde(default)]
    pub alerts: Vec<crate::RealtimeAlert>,
    #[serde(deserialize_with = "crate::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "crate::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub timestamp: Timestamp,
}

/// Revenue from purchases, in major units (`12.5` for 1250 cents).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revenue {
    /// The currency of the four figures below (`--currency`).
    pub currency: String,
    #[serde(flatten)]
    pub figures: RevenueFigures,
    /// Every currency purchases were made in, that one included.
    pub by_currency: BTreeMap<String, RevenueFigures>,
}

/// One currency's revenue: since the start, and since the start of the day, the week
/// (Monday) and the month in `--timezone`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevenueFigures {
    pub total: f64,
    pub today: f64,
    pub this_week: f64,
    pub this_month: f64,
}

/// Users seen: with an authenticated request or an open in-app socket.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveUsers {
    /// In the last 5 minutes.
    pub current: u64,
    /// Since the start of the day in `--timezone`.
    pub today: u64,
    /// The most `current` was at any minute of the last 24 hours (this one included).
    pub peak24h: u64,
    /// `current` less what it was an hour ago.
    pub trend: i64,
    /// `current` by the user type given at signup.
    pub by_segment: BTreeMap<String, u64>,
    /// `current` by the signup source.
    pub by_source: BTreeMap<String, u64>,
    /// `current` by the country of their sessions' addresses, most users first; a user
    /// whose address maps to no country is in none.
    pub locations: Vec<GeoLocation>,
}

/// Active users in one country.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GeoLocation {
    /// ISO 3166-1 alpha-2 (`DE`).
    pub country: String,
    pub name: String,
    pub users: u64,
}

/// `GET /api/v1/analytics/world`: the countries' outlines the activity map is drawn
/// from, in degrees (longitude, latitude), from Natural Earth's 1:110m shapes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorldMap {
    pub countries: Vec<CountryShape>,
}

/// One country's outline: rings of `[longitude, latitude]` points (outer rings and holes
/// alike; an even-odd fill draws both).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CountryShape {
    /// ISO 3166-1 alpha-2; none for a territory without one (Northern Cyprus).
    pub country: Option<String>,
    pub name: String,
    pub rings: Vec<Vec<[f32; 2]>>,
}

/// Purchases by how far their receipt got.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transactions {
    pub total: u64,
    /// A receipt (email or in-app) not delivered yet, none dead-lettered.
    pub pending: u64,
    /// Every receipt delivered.
    pub completed: u64,
    /// A receipt dead-lettered (until it is requeued).
    pub failed: u64,
}

/// The catalogue's figures.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentFigures {
    /// `GET /api/items/{id}` answered 200.
    pub total_views: u64,
    /// Purchases naming a catalogue item.
    pub total_purchases: u64,
    /// `totalPurchases / totalViews × 100`, to two decimals; 0 without views.
    pub conversion_rate: f64,
}

/// The newest activity of each kind, newest first (at most [`LiveActivity::KEPT`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveActivity {
    pub signups: Vec<ActivityEvent>,
    pub payments: Vec<ActivityEvent>,
    /// Friend requests sent and accepted.
    pub invitations: Vec<ActivityEvent>,
    pub logins: Vec<ActivityEvent>,
    pub password_resets: Vec<ActivityEvent>,
    /// What the system did on its own: the autoscaler's starts and stops.
    #[serde(default)]
    pub system: Vec<ActivityEvent>,
}

impl LiveActivity {
    /// How many of each kind the snapshot carries.
    pub const KEPT: usize = 20;
}

/// The system's load over the last second, from the telemetry; `queueDepth` now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemLoad {
    /// Requests the balancer answered.
    pub requests_per_second: f64,
    /// Their mean response time, milliseconds.
    pub avg_response_time: f64,
    /// Percent of them answered 5xx.
    pub error_rate: f64,
    /// Delivery jobs waiting, delayed or active, over every queue but the dead letters.
    pub queue_depth: u64,
}

/// What an activity event is about.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityType {
    Signup,
    Payment,
    /// A friend request sent.
    Invitation,
    /// A friend request accepted.
    InvitationAccepted,
    Login,
    PasswordReset,
    /// The autoscaler started or stopped an app server (no user; the reason in the
    /// description).
    Autoscale,
}

impl ActivityType {
    pub const ALL: [Self; 7] = [
        Self::Signup,
        Self::Payment,
        Self::Invitation,
        Self::InvitationAccepted,
        Self::Login,
        Self::PasswordReset,
        Self::Autoscale,
    ];

    /// The name stored in `activity_stream.event_type` and sent as `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signup => "signup",
            Self::Payment => "payment",
            Self::Invitation => "invitation",
            Self::InvitationAccepted => "invitation_accepted",
            Self::Login => "login",
            Self::PasswordReset => "password_reset",
            Self::Autoscale => "autoscale",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// One item of the live activity feed (seed 001's `LiveEvent`). Email addresses appear
/// only masked (`a***@example.com`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivityEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: ActivityType,
    pub user_id: String,
    pub user_name: String,
    pub description: String,
    /// A payment's amount, in major units of `metadata.currency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(deserialize_with = "crate::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "crate::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub timestamp: Timestamp,
    /// The request that did it: its journey in the live view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// What `/ws/metrics` carries, both ways, as `{"type": …}` objects (seed 004's
/// protocol): the server sends `metrics` on connect and every 5 s, `activity` for each
/// new item of the feed to a client subscribed to it, `ping` every 30 s and `pong` to a
/// client's `ping`; a client may send `subscribe` (answered with `subscribed`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum MetricsMessage {
    Metrics {
        data: Box<BusinessMetrics>,
    },
    Activity {
        data: Box<ActivityEvent>,
    },
    Ping,
    Pong,
    /// Replaces the channels the client receives (`metrics` alone until it asks).
    Subscribe {
        channels: Vec<MetricsChannel>,
    },
    Subscribed {
        channels: Vec<MetricsChannel>,
    },
    /// A client message the server could not use; the socket stays open.
    Error {
        error: String,
    },
}

/// A channel of `/ws/metrics`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsChannel {
    /// The snapshot, every 5 s.
    Metrics,
    /// Each new item of the activity feed.
    Activity,
}

/// A figure over time (`GET /api/v1/analytics/series?metric=`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SeriesMetric {
    /// Purchases' amounts in `--currency`, major units, summed per bucket.
    Revenue,
    /// Purchases made.
    Purchases,
    Signups,
    Logins,
    /// Friend requests sent and accepted.
    Invitations,
    PasswordResets,
    /// Catalogue items viewed.
    Views,
    /// The highest `activeUsers.current` sampled in the bucket.
    ActiveUsers,
}

/// A bucket's length; hours and days start on the hour and at midnight in `--timezone`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SeriesStep {
    Minute,
    Hour,
    Day,
}

/// One bucket of a series.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesPoint {
    /// Where the bucket starts.
    #[serde(deserialize_with = "crate::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "crate::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub t: Timestamp,
    pub value: f64,
    /// The bucket is still filling (now is in it).
    pub partial: bool,
}

/// `GET /api/v1/analytics/series`: a figure per bucket, oldest first, every bucket of
/// the range present (0 where nothing happened).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    pub metric: SeriesMetric,
    pub step: SeriesStep,
    pub points: Vec<SeriesPoint>,
}

/// `GET /api/v1/analytics/compare?metric=`: today so far against yesterday up to the
/// same time of day, in `--timezone`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TodayAgainstYesterday {
    pub metric: SeriesMetric,
    pub today_so_far: f64,
    pub yesterday_to_same_time: f64,
}

/// An item of the catalogue (`GET /api/items`, `GET /api/items/{id}`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub id: String,
    pub name: String,
    pub description: String,
    /// In the currency's minor unit.
    pub price_cents: i64,
    pub currency: String,
}

/// `GET /api/items`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Items {
    pub items: Vec<Item>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_support::{at, round_trip};

    /// A snapshot with every part filled in.
    pub(crate) fn snapshot() -> BusinessMetrics {
        let payment = ActivityEvent {
            id: "a1".into(),
            kind: ActivityType::Payment,
            user_id: "u1".into(),
            user_name: "Ada".into(),
            description: "Ada bought Lamp for 12.50 EUR".into(),
            value: Some(12.5),
            timestamp: at(0),
            request_id: Some("r1".into()),
            metadata: BTreeMap::from([("currency".into(), "EUR".into())]),
        };
        let figures = RevenueFigures {
            total: 12.5,
            today: 12.5,
            this_week: 12.5,
            this_month: 12.5,
        };
        BusinessMetrics {
            revenue: Revenue {
                currency: "EUR".into(),
                figures,
                by_currency: BTreeMap::from([("EUR".into(), figures)]),
            },
            active_users: ActiveUsers {
                current: 1,
                today: 1,
                peak24h: 1,
                trend: 1,
                by_segment: BTreeMap::from([("customer".into(), 1)]),
                by_source: BTreeMap::from([("direct".into(), 1)]),
                locations: vec![GeoLocation {
                    country: "DE".into(),
                    name: "Germany".into(),
                    users: 1,
                }],
            },
            transactions: Transactions {
                total: 1,
                pending: 1,
                completed: 0,
                failed: 0,
            },
            content: ContentFigures {
                total_views: 4,
                total_purchases: 1,
                conversion_rate: 25.0,
            },
            live_activity: LiveActivity {
                payments: vec![payment],
                ..LiveActivity::default()
            },
            system_load: SystemLoad::default(),
            alerts: vec![crate::alerts::tests::sample_alert()],
            timestamp: at(1),
        }
    }

    #[test]
    fn the_snapshot_has_the_seeds_names() {
        let json = round_trip(&snapshot());
        assert_eq!(json["revenue"]["thisWeek"], 12.5);
        assert_eq!(json["revenue"]["byCurrency"]["EUR"]["thisMonth"], 12.5);
        assert_eq!(json["activeUsers"]["peak24h"], 1);
        assert_eq!(json["activeUsers"]["bySegment"]["customer"], 1);
        assert_eq!(json["content"]["conversionRate"], 25.0);
        assert_eq!(json["liveActivity"]["payments"][0]["type"], "payment");
        assert_eq!(json["liveActivity"]["payments"][0]["userName"], "Ada");
        assert_eq!(json["liveActivity"]["passwordResets"], serde_json::json!([]));
        assert_eq!(json["systemLoad"]["queueDepth"], 0);
    }

    #[test]
    fn metrics_socket_messages_have_seed_004s_names() {
        let ping = round_trip(&MetricsMessage::Ping);
        assert_eq!(ping, serde_json::json!({ "type": "ping" }));
        let subscribe: MetricsMessage =
            serde_json::from_str(r#"{"type":"subscribe","channels":["metrics","activity"]}"#).expect("reads");
        assert_eq!(
            subscribe,
            MetricsMessage::Subscribe {
                channels: vec![MetricsChannel::Metrics, MetricsChannel::Activity]
            }
        );
        assert!(serde_json::from_str::<MetricsMessage>(r#"{"type":"subscribe","channels":["gossip"]}"#).is_err());
    }

    #[test]
    fn activity_types_are_named_once() {
        for kind in ActivityType::ALL {
            assert_eq!(ActivityType::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).expect("serializes"),
                serde_json::json!(kind.as_str())
            );
        }
    }
}

//! Alerts: rules over the system's and the business's figures (`GET/PUT
//! /api/v1/alert-rules`), the alerts they raise (`GET /api/v1/alerts`, seed 001's
//! `RealtimeAlert` with its state), and silences (`/api/v1/alert-silences`).
//!
//! A rule has one level per severity; each level goes *normal → pending* (the condition
//! must hold for `forSeconds`) *→ firing → recovering* (the value must stay past the
//! level's `recover` for `keepFiringSeconds`) *→ normal*. `recover` is a second, easier
//! threshold: a value wobbling around `threshold` neither resolves an alert nor raises
//! another. The README defines each signal.

use serde::{Deserialize, Serialize};

use super::Timestamp;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AlertSeverity {
    Info,
    Warning,
    Error,
    Critical,
}

impl AlertSeverity {
    pub fn name(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
        }
    }
}

/// What a rule watches.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AlertSignal {
    /// Percent of the last second's requests that failed (no data without requests).
    ErrorRate,
    /// The slowest app server's p99 latency over the last second, in ms (no data
    /// without requests).
    P99Latency,
    /// Jobs waiting or delayed in every queue but the dead-letter ones.
    QueueDepth,
    /// Jobs dead-lettered in the last 5 minutes.
    DeadLetters,
    /// Percent of the last second's SMTP attempts that failed (no data without
    /// attempts).
    SmtpFailures,
    /// `activeUsers.current`.
    ActiveUsers,
    /// Requests per second through the app servers.
    RequestsPerSecond,
}

impl AlertSignal {
    pub const ALL: [AlertSignal; 7] = [
        Self::ErrorRate,
        Self::P99Latency,
        Self::QueueDepth,
        Self::DeadLetters,
        Self::SmtpFailures,
        Self::ActiveUsers,
        Self::RequestsPerSecond,
    ];

    /// The canvas component an alert on this signal points at.
    pub fn component(self) -> &'static str {
        match self {
            Self::ErrorRate | Self::P99Latency | Self::RequestsPerSecond => "load-balancer",
            Self::QueueDepth => "queue:mail",
            Self::DeadLetters => "queue:mail-dlq",
            Self::SmtpFailures => "smtp",
            Self::ActiveUsers => "websocket",
        }
    }

    /// Seed 002's `performance:alert` is for these: how fast and how well requests go.
    pub fn is_performance(self) -> bool {
        matches!(self, Self::ErrorRate | Self::P99Latency | Self::RequestsPerSecond)
    }

    /// How a value reads: `2.5 %`, `340 ms`, `12`.
    pub fn format(self, value: f64) -> String {
        match self {
            Self::ErrorRate | Self::SmtpFailures => format!("{value:.1} %"),
            Self::P99Latency => format!("{value:.0} ms"),
            Self::RequestsPerSecond => format!("{value:.1}/s"),
            Self::QueueDepth | Self::DeadLetters | Self::ActiveUsers => format!("{value:.0}"),
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AlertComparison {
    /// Fires when the value is above `threshold`; recovers at or below `recover`.
    Above,
    /// Fires when the value is below `threshold`; recovers at or above `recover`.
    Below,
}

/// What `threshold` and `recover` compare the value with.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AlertMode {
    /// The value itself.
    #[default]
    Threshold,
    /// The value as a percentage of its baseline: the mean of the same weekday and hour
    /// over the last four weeks of hourly rollups (seed 000's anomaly detection). Only
    /// for `activeUsers`, the one signal with rollups; no baseline is no data.
    Anomaly,
}

/// One severity of a rule.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertLevel {
    pub severity: AlertSeverity,
    pub threshold: f64,
    /// Past this, towards normal, the alert recovers (hysteresis).
    pub recover: f64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertRule {
    /// Lowercase letters, digits and `-`, at most 64.
    pub id: String,
    /// At most 100 characters.
    pub name: String,
    pub signal: AlertSignal,
    pub comparison: AlertComparison,
    #[serde(default)]
    pub mode: AlertMode,
    /// One to four, each severity at most once.
    pub levels: Vec<AlertLevel>,
    /// How long the condition must hold before the alert fires (0 to 3600).
    pub for_seconds: u32,
    /// How long the value must stay recovered before the alert resolves (0 to 3600).
    pub keep_firing_seconds: u32,
    /// A reminder while it fires, every this many minutes (0: none; at most 1440).
    #[serde(default)]
    pub repeat_minutes: u32,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// `GET` and `PUT /api/v1/alert-rules`: every rule (a `PUT` replaces them all).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertRules {
    pub rules: Vec<AlertRule>,
    /// Where each rule is as of the last evaluation (answers only; ignored in a `PUT`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<RuleStatus>,
}

/// A rule's state as of its last evaluation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleStatus {
    pub rule_id: String,
    pub state: AlertState,
    /// The signal's value then (in percent of the baseline for an anomaly rule).
    pub value: Option<f64>,
    #[serde(deserialize_with = "crate::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "crate::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub evaluated_at: Timestamp,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AlertState {
    Normal,
    Pending,
    Firing,
    Recovering,
    /// Fired and resolved (an alert's last state).
    Resolved,
    /// The signal had no value (a rule's state, never an alert's).
    NoData,
    /// The signal could not be read (a rule's state, never an alert's).
    Error,
}

/// Seed 001's `RealtimeAlert`, with where it is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeAlert {
    pub id: String,
    pub rule_id: String,
    pub severity: AlertSeverity,
    pub message: String,
    /// Active users when it fired.
    pub affected_users: u64,
    /// It resolves by itself when the value recovers (every rule's alerts do).
    pub auto_resolve: bool,
    /// When it fired (when it became pending, while pending).
    #[serde(deserialize_with = "crate::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "crate::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub timestamp: Timestamp,
    pub state: AlertState,
    #[serde(deserialize_with = "crate::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "crate::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub started_at: Timestamp,
    #[serde(default, deserialize_with = "crate::rfc3339::read_option")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "crate::rfc3339::write_option"))]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub ended_at: Option<Timestamp>,
    pub signal: AlertSignal,
    /// The value that made it fire, and the latest.
    pub value: f64,
    pub threshold: f64,
    /// The canvas component it is about.
    pub component: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    /// A firing critical level of the same rule mutes this one's notifications.
    #[serde(default)]
    pub muted: bool,
}

/// `GET /api/v1/alerts`: open alerts first (most severe first), then the latest resolved.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alerts {
    pub alerts: Vec<RealtimeAlert>,
}

/// A time during which a rule's alerts (every rule's, without `ruleId`) notify nobody;
/// they still fire and resolve.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertSilence {
    pub id: String,
    pub rule_id: Option<String>,
    pub reason: String,
    pub created_by: String,
    #[serde(deserialize_with = "crate::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "crate::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub until: Timestamp,
}

/// `POST /api/v1/alert-silences`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSilence {
    #[serde(default)]
    pub rule_id: Option<String>,
    /// 1 to 10080 (a week).
    pub minutes: u32,
    /// At most 200 characters.
    #[serde(default)]
    pub reason: String,
}

/// `GET /api/v1/alert-silences`: the silences in force.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertSilences {
    pub silences: Vec<AlertSilence>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_support::{at, round_trip};

    pub(crate) fn sample_alert() -> RealtimeAlert {
        RealtimeAlert {
            id: "a-1".into(),
            rule_id: "error-rate".into(),
            severity: AlertSeverity::Critical,
            message: "Error rate 12.0 % above 10.0 %".into(),
            affected_users: 3,
            auto_resolve: true,
            timestamp: at(2),
            state: AlertState::Firing,
            started_at: at(1),
            ended_at: None,
            signal: AlertSignal::ErrorRate,
            value: 12.0,
            threshold: 10.0,
            component: "load-balancer".into(),
            acknowledged_by: None,
            muted: false,
        }
    }

    #[test]
    fn alerts_and_rules_cross_the_wire() {
        round_trip(&sample_alert());
        let json = serde_json::to_value(sample_alert()).expect("json");
        assert_eq!(json["affectedUsers"], 3);
        assert_eq!(json["severity"], "critical");
        assert_eq!(json["state"], "firing");
        let rules: AlertRules = serde_json::from_value(serde_json::json!({"rules": [{
            "id": "queue", "name": "Queue depth", "signal": "queueDepth", "comparison": "above",
            "levels": [{"severity": "warning", "threshold": 100, "recover": 50}],
            "forSeconds": 30, "keepFiringSeconds": 30
        }]}))
        .expect("rules");
        assert!(rules.rules[0].enabled);
        assert_eq!(rules.rules[0].mode, AlertMode::Threshold);
        round_trip(&rules);
        let unknown = serde_json::json!({"rules": [], "extra": 1});
        assert!(serde_json::from_value::<AlertRules>(unknown).is_err());
    }
}

//! System status: the facts behind the `/status` page and the `system:status` event,
//! and the header metrics behind `system:metrics`.

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// The whole system's health, decided by [`OverallHealth::from_components`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverallHealth {
    Healthy,
    Degraded,
    Critical,
}

impl OverallHealth {
    /// The stated rules: critical when something every request needs is down (the
    /// dashboard, the load balancer, the database, or every app server); degraded when
    /// anything else is down (one app server, the SMTP server: mail waits in its queue);
    /// healthy otherwise.
    pub fn from_components(components: &[ComponentStatus]) -> Self {
        let down = |c: &&ComponentStatus| c.health != ComponentHealth::Healthy;
        let essential = [
            ComponentKind::Dashboard,
            ComponentKind::LoadBalancer,
            ComponentKind::Database,
        ];
        let essential_down = components.iter().filter(down).any(|c| essential.contains(&c.kind));
        let servers: Vec<_> = components.iter().filter(|c| c.kind == ComponentKind::Server).collect();
        let all_servers_down = !servers.is_empty() && servers.iter().all(down);
        if essential_down || all_servers_down {
            Self::Critical
        } else if components.iter().any(|c| down(&c)) {
            Self::Degraded
        } else {
            Self::Healthy
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Critical => "critical",
        }
    }
}

/// What a component is; decides its color and its place on the diagram.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentKind {
    Dashboard,
    LoadBalancer,
    Server,
    Database,
    Queue,
    Worker,
    Websocket,
    Smtp,
}

impl ComponentKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Dashboard => "dashboard",
            Self::LoadBalancer => "load balancer",
            Self::Server => "app server",
            Self::Database => "database",
            Self::Queue => "queue",
            Self::Worker => "worker",
            Self::Websocket => "websocket",
            Self::Smtp => "smtp server",
        }
    }
}

/// One component's health as last checked.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentHealth {
    Healthy,
    Unhealthy,
    Stopped,
}

impl ComponentHealth {
    pub fn label(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Stopped => "stopped",
        }
    }
}

/// One component as the status check saw it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Stable id: `dashboard`, `load-balancer`, `server-1`, `database`, ...
    pub id: String,
    pub name: String,
    pub kind: ComponentKind,
    pub health: ComponentHealth,
    /// Where it listens (`127.0.0.1:5001`) or what it is (`sqlite://data/liveview.db`),
    /// never with credentials.
    pub address: String,
    /// A short figure a person reads at a glance (`healthz in 0.4 ms`).
    pub figure: String,
    /// How long the check took, when the check was a round trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Why it is not healthy, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The payload of `system:status` and of `GET /status` as JSON.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemStatus {
    pub status: OverallHealth,
    pub version: String,
    #[serde(deserialize_with = "super::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "super::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub started_at: Timestamp,
    pub uptime_seconds: u64,
    /// `uptime_seconds` for people: `2d 3h 4m 5s`.
    pub uptime: String,
    /// When these facts were gathered.
    #[serde(deserialize_with = "super::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "super::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub timestamp: Timestamp,
    pub components: Vec<ComponentStatus>,
}

/// The payload of `system:metrics`: the design's `HeaderMetrics` plus when it was sampled.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemMetrics {
    pub system_status: OverallHealth,
    /// HTTP requests the app servers are working on at the sample (not the users'
    /// in-app sockets, which stay open through the balancer for as long as they live).
    pub active_requests: u64,
    pub requests_per_second: f64,
    /// Milliseconds.
    pub average_latency: f64,
    /// Fraction of requests that failed, 0.0 to 1.0.
    pub error_rate: f64,
    pub uptime: String,
    #[serde(deserialize_with = "super::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "super::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub timestamp: Timestamp,
}

/// Formats seconds the way the header shows uptime: `3h 2m 1s`, largest unit first.
pub fn format_uptime(seconds: u64) -> String {
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (hours, rest) = (rest / 3_600, rest % 3_600);
    let (minutes, secs) = (rest / 60, rest % 60);
    let parts = [(days, "d"), (hours, "h"), (minutes, "m")];
    let mut out = String::new();
    for (value, unit) in parts {
        if value > 0 || !out.is_empty() {
            out.push_str(&format!("{value}{unit} "));
        }
    }
    out.push_str(&format!("{secs}s"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{at, round_trip};

    fn component(id: &str, kind: ComponentKind, health: ComponentHealth) -> ComponentStatus {
        ComponentStatus {
            id: id.into(),
            name: id.into(),
            kind,
            health,
            address: "127.0.0.1:5001".into(),
            figure: "healthz in 0.4 ms".into(),
            latency_ms: Some(0.4),
            detail: None,
        }
    }

    fn healthy_system() -> Vec<ComponentStatus> {
        vec![
            component("dashboard", ComponentKind::Dashboard, ComponentHealth::Healthy),
            component("load-balancer", ComponentKind::LoadBalancer, ComponentHealth::Healthy),
            component("server-1", ComponentKind::Server, ComponentHealth::Healthy),
            component("server-2", ComponentKind::Server, ComponentHealth::Healthy),
            component("database", ComponentKind::Database, ComponentHealth::Healthy),
        ]
    }

    #[test]
    fn all_healthy_is_healthy() {
        assert_eq!(
            OverallHealth::from_components(&healthy_system()),
            OverallHealth::Healthy
        );
    }

    #[test]
    fn one_server_down_is_degraded() {
        let mut system = healthy_system();
        system[2].health = ComponentHealth::Stopped;
        assert_eq!(OverallHealth::from_components(&system), OverallHealth::Degraded);
    }

    #[test]
    fn every_server_down_is_critical() {
        let mut system = healthy_system();
        system[2].health = ComponentHealth::Unhealthy;
        system[3].health = ComponentHealth::Stopped;
        assert_eq!(OverallHealth::from_components(&system), OverallHealth::Critical);
    }

    #[test]
    fn smtp_down_is_degraded_because_mail_waits_in_its_queue() {
        let mut system = healthy_system();
        system.push(component("smtp", ComponentKind::Smtp, ComponentHealth::Unhealthy));
        assert_eq!(OverallHealth::from_components(&system), OverallHealth::Degraded);
    }

    #[test]
    fn database_down_is_critical() {
        let mut system = healthy_system();
        system[4].health = ComponentHealth::Unhealthy;
        assert_eq!(OverallHealth::from_components(&system), OverallHealth::Critical);
    }

    #[test]
    fn uptime_is_formatted_largest_unit_first() {
        assert_eq!(format_uptime(0), "0s");
        assert_eq!(format_uptime(61), "1m 1s");
        assert_eq!(format_uptime(3_600), "1h 0m 0s");
        assert_eq!(format_uptime(2 * 86_400 + 3 * 3_600 + 4 * 60 + 5), "2d 3h 4m 5s");
    }

    #[test]
    fn system_status_round_trips_with_design_names() {
        let mut components = healthy_system();
        components[3].detail = Some("connection refused".into());
        components[3].latency_ms = None;
        let status = SystemStatus {
            status: OverallHealth::Degraded,
            version: "0.1.0".into(),
            started_at: at(0),
            uptime_seconds: 61,
            uptime: format_uptime(61),
            timestamp: at(61),
            components,
        };
        let json = round_trip(&status);
        assert_eq!(json["status"], "degraded");
        assert_eq!(json["uptimeSeconds"], 61);
        assert_eq!(json["components"][1]["kind"], "load-balancer");
        assert_eq!(json["components"][0]["latencyMs"], 0.4);
        assert!(json["components"][3].get("latencyMs").is_none());
    }

    #[test]
    fn system_metrics_round_trips_with_header_names() {
        let metrics = SystemMetrics {
            system_status: OverallHealth::Healthy,
            active_requests: 3,
            requests_per_second: 12.5,
            average_latency: 4.25,
            error_rate: 0.01,
            uptime: "5s".into(),
            timestamp: at(5),
        };
        let json = round_trip(&metrics);
        for key in [
            "systemStatus",
            "activeRequests",
            "requestsPerSecond",
            "averageLatency",
            "errorRate",
            "uptime",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
    }
}

//! Per-component metrics: the payloads of `component:metrics`, shaped like the design's
//! `LoadBalancerMetrics`, `QueueMetrics` and `WebSocketMetrics`, plus servers, the
//! database and SMTP.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Timestamp;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BalancerAlgorithm {
    RoundRobin,
    LeastConnections,
}

impl BalancerAlgorithm {
    /// The wire name, without going through serde.
    pub fn name(self) -> &'static str {
        match self {
            Self::RoundRobin => "round-robin",
            Self::LeastConnections => "least-connections",
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActiveState {
    Active,
    Inactive,
}

/// One app server as the balancer sees it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BalancedServer {
    pub id: String,
    pub url: String,
    pub healthy: bool,
    pub active_connections: u64,
    pub requests_handled: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StickySessions {
    pub total: u64,
    pub by_server: BTreeMap<String, u64>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerMetrics {
    pub status: ActiveState,
    pub algorithm: BalancerAlgorithm,
    pub servers: Vec<BalancedServer>,
    pub sticky_sessions: StickySessions,
}

/// One app server's own view of its work.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerMetrics {
    pub id: String,
    pub url: String,
    pub running: bool,
    pub requests_per_second: f64,
    pub in_flight: u64,
    /// Milliseconds.
    pub latency_p50: f64,
    /// Milliseconds.
    pub latency_p99: f64,
    pub errors: u64,
    pub requests_handled: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerCounts {
    pub active: u64,
    pub idle: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueMetrics {
    /// The queue's name and its jobs by state, as `GET /api/queues` counts them.
    #[serde(flatten)]
    pub counts: crate::QueueCounts,
    /// Jobs per second.
    pub processing_rate: f64,
    /// Milliseconds a job waited before a worker picked it up.
    pub average_wait_time: f64,
    pub workers: WorkerCounts,
}

impl QueueMetrics {
    /// `mail-dlq` and `inapp-dlq`: their jobs are failed, never waiting.
    pub fn is_dead_letter(&self) -> bool {
        self.counts.name.ends_with("-dlq")
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Room {
    pub name: String,
    pub users: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SocketEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub user_id: String,
    #[serde(deserialize_with = "super::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "super::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub timestamp: Timestamp,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketMetrics {
    pub total_connections: u64,
    pub authenticated_users: u64,
    pub messages_per_second: f64,
    pub rooms: Vec<Room>,
    pub recent_events: Vec<SocketEvent>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseMetrics {
    /// `sqlite` or `postgres`.
    pub backend: String,
    pub reads_per_second: f64,
    pub writes_per_second: f64,
    /// Milliseconds a write transaction took to commit (the group committer's or a
    /// controller's own), in the last second.
    pub commit_latency_p50: f64,
    /// Milliseconds.
    pub commit_latency_p99: f64,
}

/// The last reply an SMTP server gave.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SmtpReply {
    pub code: u16,
    pub message: String,
    #[serde(deserialize_with = "super::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "super::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
}

/// The mail workers' circuit breaker in front of the SMTP server.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CircuitState {
    /// Mail is sent.
    #[default]
    Closed,
    /// One send is let through to see whether the server is back.
    HalfOpen,
    /// The server failed too often: mail waits in its queue.
    Open,
}

impl CircuitState {
    pub fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half-open",
            Self::Open => "open",
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SmtpMetrics {
    pub sent_per_second: f64,
    /// Fractions of the last second's attempts, 0.0 to 1.0; `null` when there were none
    /// (no attempt is neither a success nor a failure).
    pub success_rate: Option<f64>,
    pub failure_rate: Option<f64>,
    pub sent: u64,
    pub failed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<SmtpReply>,
    /// The most open of the mail workers' breakers (of every process).
    #[serde(default)]
    pub circuit: CircuitState,
}

/// The payload of `component:metrics`, tagged by the component it measures.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "component", rename_all = "kebab-case")]
pub enum ComponentMetrics {
    LoadBalancer(LoadBalancerMetrics),
    Server(ServerMetrics),
    Queue(QueueMetrics),
    Websocket(WebSocketMetrics),
    Database(DatabaseMetrics),
    Smtp(SmtpMetrics),
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_support::{at, round_trip};

    pub(crate) fn sample_queue() -> QueueMetrics {
        QueueMetrics {
            counts: crate::QueueCounts {
                name: "mail-retry-1".into(),
                waiting: 4,
                active: 1,
                completed: 120,
                failed: 3,
                delayed: 2,
                paused: false,
            },
            processing_rate: 7.5,
            average_wait_time: 35.0,
            workers: WorkerCounts { active: 1, idle: 3 },
        }
    }

    pub(crate) fn every_component_metric() -> Vec<ComponentMetrics> {
        let mut by_server = BTreeMap::new();
        by_server.insert("server-1".to_string(), 2);
        vec![
            ComponentMetrics::LoadBalancer(LoadBalancerMetrics {
                status: ActiveState::Active,
                algorithm: BalancerAlgorithm::LeastConnections,
                servers: vec![BalancedServer {
                    id: "server-1".into(),
                    url: "http://127.0.0.1:5001".into(),
                    healthy: true,
                    active_connections: 2,
                    requests_handled: 40,
                }],
                sticky_sessions: StickySessions { total: 2, by_server },
            }),
            ComponentMetrics::Server(ServerMetrics {
                id: "server-1".into(),
                url: "http://127.0.0.1:5001".into(),
                running: true,
                requests_per_second: 3.0,
                in_flight: 1,
                latency_p50: 2.5,
                latency_p99: 9.0,
                errors: 0,
                requests_handled: 40,
            }),
            ComponentMetrics::Queue(sample_queue()),
            ComponentMetrics::Websocket(WebSocketMetrics {
                total_connections: 5,
                authenticated_users: 4,
                messages_per_second: 1.5,
                rooms: vec![Room {
                    name: "live-view".into(),
                    users: 2,
                }],
                recent_events: vec![SocketEvent {
                    kind: "connect".into(),
                    user_id: "u-1".into(),
                    timestamp: at(3),
                }],
            }),
            ComponentMetrics::Database(DatabaseMetrics {
                backend: "sqlite".into(),
                reads_per_second: 10.0,
                writes_per_second: 4.0,
                commit_latency_p50: 0.3,
                commit_latency_p99: 2.0,
            }),
            ComponentMetrics::Smtp(SmtpMetrics {
                sent_per_second: 1.0,
                success_rate: Some(0.9),
                failure_rate: Some(0.1),
                sent: 9,
                failed: 1,
                last_reply: Some(SmtpReply {
                    code: 250,
                    message: "OK".into(),
                    at: at(4),
                }),
                circuit: CircuitState::HalfOpen,
            }),
        ]
    }

    #[test]
    fn algorithm_names_are_the_wire_names() {
        for algorithm in [BalancerAlgorithm::RoundRobin, BalancerAlgorithm::LeastConnections] {
            assert_eq!(serde_json::to_value(algorithm).expect("json"), algorithm.name());
        }
    }

    #[test]
    fn every_component_metric_round_trips_with_its_tag() {
        let tags = ["load-balancer", "server", "queue", "websocket", "database", "smtp"];
        for (metric, tag) in every_component_metric().iter().zip(tags) {
            let json = round_trip(metric);
            assert_eq!(json["component"], tag);
        }
    }

    #[test]
    fn design_field_names_are_kept() {
        let json = round_trip(&every_component_metric()[0]);
        assert_eq!(json["algorithm"], "least-connections");
        assert_eq!(json["servers"][0]["activeConnections"], 2);
        assert_eq!(json["stickySessions"]["byServer"]["server-1"], 2);
        let json = round_trip(&sample_queue());
        assert_eq!(json["processingRate"], 7.5);
        assert_eq!(json["averageWaitTime"], 35.0);
        assert_eq!(json["workers"]["idle"], 3);
        let json = round_trip(&every_component_metric()[3]);
        assert_eq!(json["recentEvents"][0]["type"], "connect");
        assert_eq!(json["recentEvents"][0]["userId"], "u-1");
    }
}

//! The dashboard's REST bodies (`--dashboard`): what the control API, the live-view API
//! and the health check take and answer, one type each, read by the server, the SPA and
//! the tests alike. The live stream's own messages are in [`crate::events`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{
    BalancerAlgorithm, ComponentMetrics, ComponentStatus, NotificationType, RequestTracker, SystemMetrics, Timestamp,
};

/// `GET /healthz` on every listener: `{"status": "ok", "component": …}` and what the
/// component adds about itself.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok`, or why not (`no healthy backend`).
    pub status: String,
    /// `dashboard`, `load-balancer` or `server`.
    pub component: String,
    /// An app server's name (`server-2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<u64>,
    /// The balancer's algorithm and backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<BalancerAlgorithm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_backends: Option<usize>,
}

impl Health {
    pub fn ok(component: &str) -> Self {
        Self {
            status: "ok".into(),
            component: component.into(),
            id: None,
            address: None,
            uptime_seconds: None,
            algorithm: None,
            backends: None,
            healthy_backends: None,
        }
    }
}

/// `PUT /api/balancer`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalancerUpdate {
    pub algorithm: BalancerAlgorithm,
}

/// One app server in `GET /api/servers`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerRow {
    pub id: String,
    pub address: String,
    pub running: bool,
    /// As the balancer's health checks see it.
    pub healthy: bool,
}

/// `GET /api/servers`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerList {
    pub servers: Vec<ServerRow>,
}

/// `POST /api/servers/{n}/stop` and `/start`: the server and whether it now runs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerState {
    pub id: String,
    pub running: bool,
}

/// Counts for one queue, in `GET /api/queues`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueCounts {
    /// `mail`, `mail-retry-1`, `mail-retry-2`, `mail-dlq`, `inapp`, `inapp-retry`, `inapp-dlq`.
    pub name: String,
    pub waiting: u64,
    pub active: u64,
    pub completed: u64,
    pub failed: u64,
    pub delayed: u64,
    #[serde(default)]
    pub paused: bool,
}

/// `GET /api/queues`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueList {
    pub queues: Vec<QueueCounts>,
}

/// A job as the queue endpoints list it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub id: String,
    pub queue: String,
    /// `waiting`, `delayed`, `active`, `completed` or `failed`.
    pub state: String,
    /// The notification or email id: the delivery's idempotency key.
    pub target_id: String,
    pub request_id: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub run_at_ms: i64,
    pub updated_at_ms: i64,
}

/// `GET /api/queues/{name}/jobs`: the newest jobs and how many match in all.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobList {
    pub queue: String,
    pub total: u64,
    pub jobs: Vec<JobView>,
}

/// `POST /api/queues/{dlq}/requeue`: one job, every job whose last error contains a text,
/// or (`{}`) every job.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequeueFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_contains: Option<String>,
}

/// `POST /api/queues/{name}/pause` and `/resume`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePaused {
    pub queue: String,
    pub paused: bool,
}

/// `POST /api/queues/{dlq}/requeue`: how many jobs moved, and where.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requeued {
    pub queue: String,
    pub moved_to: String,
    pub moved: u64,
}

/// The answer of a queue action: [`QueuePaused`] for pause and resume, [`Requeued`] for
/// a requeue.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueueActionDone {
    Paused(QueuePaused),
    Requeued(Requeued),
}

/// Fault knobs of the embedded capture SMTP server (`GET`/`PUT /api/faults`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    /// Fraction of messages answered `451` (try again later), 0.0 to 1.0.
    #[serde(rename = "smtp4xxRate", default)]
    pub smtp_4xx_rate: f64,
    /// Fraction of messages answered `554` (rejected for good), 0.0 to 1.0.
    #[serde(rename = "smtp5xxRate", default)]
    pub smtp_5xx_rate: f64,
    /// Added before every end-of-DATA reply.
    #[serde(default)]
    pub smtp_latency_ms: u64,
}

/// One message the capture server stored.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredMessage {
    pub id: String,
    pub message_id: Option<String>,
    pub mail_from: String,
    pub rcpt_to: String,
    pub subject: Option<String>,
    pub raw: String,
    pub received_at_ms: i64,
}

/// `GET /api/mailbox`: the newest messages, how many in all, and how many repeats of a
/// stored `Message-ID` were taken and dropped.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mailbox {
    pub total: u64,
    pub duplicates_ignored: u64,
    pub messages: Vec<StoredMessage>,
}

/// `GET /api/live-view/status`: every component's health, the header figures and every
/// component's metrics.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveStatus {
    pub components: Vec<ComponentStatus>,
    pub metrics: SystemMetrics,
    pub component_metrics: Vec<ComponentMetrics>,
    #[serde(deserialize_with = "crate::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "crate::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub timestamp: Timestamp,
}

/// One second's figures: the header's and every component's (`GET /api/live-view/series`
/// answers the last of them, oldest first).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub metrics: SystemMetrics,
    pub components: Vec<ComponentMetrics>,
    /// The CPU and memory of the process that sampled; in a dashboard's merged sample,
    /// of the busiest process that runs app servers (what the autoscaler reads).
    #[serde(default)]
    pub load: ProcessLoad,
}

/// A process's share of its machine over the last second.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessLoad {
    /// CPU time used, percent of all the machine's cores.
    pub cpu: f64,
    /// Resident memory, percent of the machine's.
    pub memory: f64,
}

/// The live stream's own counters.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveStats {
    pub last_seq: u64,
    pub viewers: usize,
    /// Times a viewer fell behind and was sent a gap and a snapshot.
    pub resyncs: u64,
    /// Viewers closed because they could not keep up.
    pub too_slow: u64,
    /// Events that could not be serialized and were dropped (a bug if ever non-zero).
    pub unserializable: u64,
}

/// The telemetry's own health.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryHealth {
    /// Stage records that did not fit the telemetry's channel.
    pub dropped_records: u64,
    pub journeys_kept: usize,
    pub journeys_in_progress: usize,
    pub viewers: usize,
    /// Frames the history could not keep.
    pub history_dropped: u64,
    pub stream: LiveStats,
}

/// `GET /api/live-view/telemetry`: the last second's figures, and the telemetry's own
/// health.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryReport {
    pub metrics: SystemMetrics,
    pub components: Vec<ComponentMetrics>,
    pub telemetry: TelemetryHealth,
    #[serde(deserialize_with = "crate::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "crate::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub timestamp: Timestamp,
}

/// How a journey ended, once it has.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    InProgress,
    Completed,
    Failed,
}

impl Outcome {
    /// The name on the wire.
    pub fn label(self) -> &'static str {
        match self {
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// One log line of a journey, made from a stage; never a secret.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    #[serde(deserialize_with = "crate::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "crate::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub timestamp: Timestamp,
    /// `info`, `warn` or `error`.
    pub level: String,
    pub component: String,
    pub message: String,
}

/// One journey in `GET /api/live-view/requests`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JourneySummary {
    #[serde(flatten)]
    pub request: RequestTracker,
    pub outcome: Outcome,
}

/// Figures about one journey, derived from its stages.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMetrics {
    /// Milliseconds.
    pub total_duration: f64,
    pub stages: usize,
    pub failed_stages: usize,
    pub retries: usize,
    /// Milliseconds spent in each kind of stage, summed.
    pub time_by_stage: BTreeMap<String, f64>,
    /// Whether it waits for steps now.
    pub stepping: bool,
}

/// `GET /api/live-view/requests/{id}`: the journey, its log lines and its figures.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestDetails {
    pub request: RequestTracker,
    pub outcome: Outcome,
    pub logs: Vec<LogLine>,
    pub metrics: RequestMetrics,
}

/// `POST /api/live-view/requests/{id}/step`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stepped {
    pub request_id: String,
    pub stepped: bool,
}

/// `POST /api/live-view/step-token`: for `X-LiveView-Step` on requests to the balancer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepTokenIssued {
    pub token: String,
    #[serde(deserialize_with = "crate::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "crate::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
}

/// `POST /api/live-view/simulate`: virtual users send `count` real requests of one type
/// through the balancer, `interval` ms apart, in step mode when `step`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SimulateRequest {
    #[serde(rename = "type")]
    pub kind: NotificationType,
    pub count: u32,
    /// Milliseconds between requests.
    #[serde(default)]
    pub interval: u64,
    #[serde(default)]
    pub step: bool,
}

/// The answer to [`SimulateRequest`] (202): the run's id and each request's, in order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimulationStarted {
    pub simulation_id: String,
    #[serde(rename = "type")]
    pub kind: NotificationType,
    pub count: u32,
    pub interval: u64,
    pub step: bool,
    pub request_ids: Vec<String>,
}

/// The span of time the history holds (ms since the epoch).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryKept {
    pub oldest: i64,
    pub newest: i64,
}

/// `GET /api/live-view/history`: the stream's messages of a past window as they went
/// out, each kept as its JSON (read with [`crate::parse_frame`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize, Deserialize)]
pub struct HistoryWindow {
    pub from: i64,
    pub to: i64,
    /// More messages fell in the window than `limit`.
    pub truncated: bool,
    pub kept: Option<HistoryKept>,
    /// Each an envelope of the live stream (`{"seq", "ts", "topic", "payload"}`).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub events: Vec<Box<RawValue>>,
}

/// Every error answer, on every listener: what went wrong and, for a 400, each bad
/// field with why.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

/// One control action taken on the dashboard, as the audit log keeps it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: String,
    #[serde(deserialize_with = "crate::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "crate::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    /// Who: `anonymous` while the dashboard runs without sign-in.
    pub actor: String,
    pub method: String,
    /// The route it matched (`/api/servers/{number}/{action}`).
    pub route: String,
    /// The path as sent (`/api/servers/2/stop`).
    pub path: String,
    /// The request body as sent (at most 4 KiB of it).
    pub body: String,
    /// What the dashboard answered.
    pub status: u16,
}

/// `GET /api/audit`: the newest control actions first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}

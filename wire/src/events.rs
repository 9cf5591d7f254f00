//! The live stream: one [`Envelope`] per event, carrying a sequence number, the server's
//! timestamp, the design's event name as `topic`, and a typed `payload`.
//!
//! ```json
//! {"seq":42,"ts":"2026-11-23T18:00:00Z","topic":"system:status","payload":{...}}
//! ```
//!
//! Framing: one WebSocket frame (or one `data:` of server-sent events) carries either one
//! Envelope object or a JSON array of Envelopes in seq order, when the server sends a batch
//! at once. [`parse_frame`] reads both. With `?encoding=msgpack` the frames are binary and
//! hold the same Envelope (or array of Envelopes) in MessagePack with field names kept.
//!
//! Three topics are about the stream itself and are never stored for resuming:
//! `stream:snapshot` (the whole state, sent first and after every gap), `stream:gap` (the
//! seqs this viewer will never get, followed by a snapshot) and `stream:error` (a client
//! message the server could not use). Their `seq` is the last event they reflect.

use serde::{Deserialize, Serialize};

use super::{
    ActiveUsers, ActivityEvent, BusinessMetrics, ComponentMetrics, ComponentStatus, ControlSettings, Flow,
    NotificationType, RealtimeAlert, RequestTracker, Stage, SystemLoad, SystemMetrics, SystemStage, SystemStatus,
    Timestamp,
};

/// One message on the live stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Strictly increasing per server process; a client resumes after the last one it saw.
    pub seq: u64,
    /// When the server published it.
    #[serde(deserialize_with = "super::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "super::rfc3339::write"))]
    pub ts: Timestamp,
    #[serde(flatten)]
    pub event: LiveEvent,
}

/// Every event of the live stream, tagged with the design's names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "topic", content = "payload")]
pub enum LiveEvent {
    #[serde(rename = "system:status")]
    SystemStatus(SystemStatus),
    #[serde(rename = "system:metrics")]
    SystemMetrics(SystemMetrics),
    #[serde(rename = "request:new")]
    RequestNew(RequestTracker),
    #[serde(rename = "request:progress")]
    RequestProgress(RequestProgress),
    #[serde(rename = "request:complete")]
    RequestComplete(RequestComplete),
    #[serde(rename = "request:failed")]
    RequestFailed(RequestFailed),
    #[serde(rename = "component:status")]
    ComponentStatus(ComponentStatus),
    #[serde(rename = "component:metrics")]
    ComponentMetrics(ComponentMetrics),
    #[serde(rename = "queue:job:added")]
    QueueJobAdded(QueueJobAdded),
    #[serde(rename = "queue:job:processing")]
    QueueJobProcessing(QueueJobProcessing),
    #[serde(rename = "queue:job:completed")]
    QueueJobCompleted(QueueJobCompleted),
    #[serde(rename = "queue:job:failed")]
    QueueJobFailed(QueueJobFailed),
    #[serde(rename = "queue:job:retry")]
    QueueJobRetry(QueueJobRetry),
    #[serde(rename = "worker:processing")]
    WorkerProcessing(WorkerProcessing),
    #[serde(rename = "worker:idle")]
    WorkerIdle(WorkerIdle),
    #[serde(rename = "notification:email:sent")]
    EmailSent(EmailSent),
    #[serde(rename = "notification:inapp:delivered")]
    InAppDelivered(InAppDelivered),
    #[serde(rename = "controls:changed")]
    ControlsChanged(ControlSettings),
    /// Seed 001's name: a user signed up.
    #[serde(rename = "new_signup")]
    NewSignup(ActivityEvent),
    /// Seed 001's name: a purchase was committed.
    #[serde(rename = "payment_success")]
    PaymentSuccess(ActivityEvent),
    /// Every other item of the activity feed (invitations, logins, password resets).
    #[serde(rename = "activity:new")]
    ActivityNew(ActivityEvent),
    /// Seed 001's name: the system's load, every second.
    #[serde(rename = "system_metrics")]
    SystemLoad(SystemLoad),
    /// Seed 001's name: the active users, every 10 s.
    #[serde(rename = "active_users")]
    ActiveUsers(ActiveUsers),
    /// Seed 002's name: the business figures, every 5 s. Boxed: large.
    #[serde(rename = "analytics:update")]
    AnalyticsUpdate(Box<BusinessMetrics>),
    /// Seed 001's name: an alert fired, resolved or reminds (every signal).
    #[serde(rename = "system_alert")]
    SystemAlert(Box<RealtimeAlert>),
    /// Seed 002's name: the same, for the performance signals (error rate, latency,
    /// traffic), after its `system_alert`.
    #[serde(rename = "performance:alert")]
    PerformanceAlert(Box<RealtimeAlert>),
    /// Boxed: far larger than any other event (the wire form is the same).
    #[serde(rename = "stream:snapshot")]
    Snapshot(Box<LiveSnapshot>),
    #[serde(rename = "stream:gap")]
    Gap(StreamGap),
    #[serde(rename = "stream:error")]
    StreamError(StreamError),
}

impl LiveEvent {
    /// Every topic, as [`topic`](Self::topic) names them (tested to be all of them).
    pub const TOPICS: [&'static str; 29] = [
        "system:status",
        "system:metrics",
        "request:new",
        "request:progress",
        "request:complete",
        "request:failed",
        "component:status",
        "component:metrics",
        "queue:job:added",
        "queue:job:processing",
        "queue:job:completed",
        "queue:job:failed",
        "queue:job:retry",
        "worker:processing",
        "worker:idle",
        "notification:email:sent",
        "notification:inapp:delivered",
        "controls:changed",
        "new_signup",
        "payment_success",
        "activity:new",
        "system_metrics",
        "active_users",
        "analytics:update",
        "system_alert",
        "performance:alert",
        "stream:snapshot",
        "stream:gap",
        "stream:error",
    ];

    /// The design's name of this event, as it appears in `topic`.
    pub fn topic(&self) -> &'static str {
        match self {
            Self::SystemStatus(_) => "system:status",
            Self::SystemMetrics(_) => "system:metrics",
            Self::RequestNew(_) => "request:new",
            Self::RequestProgress(_) => "request:progress",
            Self::RequestComplete(_) => "request:complete",
            Self::RequestFailed(_) => "request:failed",
            Self::ComponentStatus(_) => "component:status",
            Self::ComponentMetrics(_) => "component:metrics",
            Self::QueueJobAdded(_) => "queue:job:added",
            Self::QueueJobProcessing(_) => "queue:job:processing",
            Self::QueueJobCompleted(_) => "queue:job:completed",
            Self::QueueJobFailed(_) => "queue:job:failed",
            Self::QueueJobRetry(_) => "queue:job:retry",
            Self::WorkerProcessing(_) => "worker:processing",
            Self::WorkerIdle(_) => "worker:idle",
            Self::EmailSent(_) => "notification:email:sent",
            Self::InAppDelivered(_) => "notification:inapp:delivered",
            Self::ControlsChanged(_) => "controls:changed",
            Self::NewSignup(_) => "new_signup",
            Self::PaymentSuccess(_) => "payment_success",
            Self::ActivityNew(_) => "activity:new",
            Self::SystemLoad(_) => "system_metrics",
            Self::ActiveUsers(_) => "active_users",
            Self::AnalyticsUpdate(_) => "analytics:update",
            Self::SystemAlert(_) => "system_alert",
            Self::PerformanceAlert(_) => "performance:alert",
            Self::Snapshot(_) => "stream:snapshot",
            Self::Gap(_) => "stream:gap",
            Self::StreamError(_) => "stream:error",
        }
    }

    /// True for the messages about the stream itself (`stream:*`), which only the server's
    /// stream endpoints make and no one publishes.
    pub fn is_stream_control(&self) -> bool {
        matches!(self, Self::Snapshot(_) | Self::Gap(_) | Self::StreamError(_))
    }
}

/// `stream:snapshot`: everything a new (or resynced) viewer needs before the next delta.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveSnapshot {
    /// The latest `system:status`.
    #[serde(default)]
    pub status: Option<SystemStatus>,
    /// The latest `system:metrics`.
    #[serde(default)]
    pub metrics: Option<SystemMetrics>,
    /// The latest `component:metrics` of each component.
    #[serde(default)]
    pub components: Vec<ComponentMetrics>,
    /// The latest `controls:changed`.
    #[serde(default)]
    pub controls: Option<ControlSettings>,
    /// Recent request journeys.
    #[serde(default)]
    pub requests: Vec<RequestTracker>,
}

/// `stream:gap`: the viewer will never get the events `from..=to` (inclusive); a
/// `stream:snapshot` follows at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamGap {
    pub from: u64,
    pub to: u64,
}

/// `stream:error`: a client message the server could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamError {
    pub error: String,
}

/// `request:progress`: one stage started or ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestProgress {
    pub request_id: String,
    #[serde(rename = "type")]
    pub kind: NotificationType,
    pub current_stage: SystemStage,
    pub stage: Stage,
}

/// `request:complete`: every stage of the request has ended well.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestComplete {
    pub request_id: String,
    #[serde(rename = "type")]
    pub kind: NotificationType,
    #[serde(deserialize_with = "super::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "super::rfc3339::write"))]
    pub end_time: Timestamp,
    /// Milliseconds.
    pub total_duration: f64,
}

/// `request:failed`: a stage failed for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestFailed {
    pub request_id: String,
    #[serde(rename = "type")]
    pub kind: NotificationType,
    pub stage: SystemStage,
    /// What went wrong, for people; never internals or secrets.
    pub error: String,
    pub total_duration: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueJobAdded {
    pub queue: String,
    pub job_id: String,
    pub notification_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub flow: Flow,
    /// Set when the job waits for a retry tier.
    #[serde(
        default,
        deserialize_with = "super::rfc3339::read_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "super::rfc3339::write_option"))]
    pub run_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueJobProcessing {
    pub queue: String,
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub worker_id: String,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueJobCompleted {
    pub queue: String,
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Milliseconds the worker spent on it.
    pub duration: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueJobFailed {
    pub queue: String,
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub attempt: u32,
    pub error: String,
    /// True when the job went to a dead-letter queue.
    pub dead_lettered: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueJobRetry {
    /// The queue the attempt failed on.
    pub queue: String,
    /// The retry tier it moved to.
    pub next_queue: String,
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub attempt: u32,
    #[serde(deserialize_with = "super::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "super::rfc3339::write"))]
    pub due_at: Timestamp,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkerKind {
    Mail,
    Inapp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerProcessing {
    pub worker_id: String,
    pub kind: WorkerKind,
    pub queue: String,
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerIdle {
    pub worker_id: String,
    pub kind: WorkerKind,
}

/// `notification:email:sent`: the SMTP server accepted the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailSent {
    pub notification_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Masked: `a***@example.com`.
    pub to: String,
    pub smtp_code: u16,
}

/// `notification:inapp:delivered`: the end user's client acknowledged the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InAppDelivered {
    pub notification_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub user_id: String,
    /// The app server whose socket carried it.
    pub server: String,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::parse_frame;
    use crate::{
        ActivityType, ComponentHealth, ComponentKind, OverallHealth, RequestTracker, SystemStage,
        test_support::{at, round_trip},
    };

    fn sample_stage() -> Stage {
        Stage {
            stage: SystemStage::QueueAdd,
            component: "notification-service".into(),
            start_time: at(1),
            end_time: Some(at(2)),
            duration: Some(1000.0),
            status: crate::StageStatus::Completed,
            metadata: Default::default(),
        }
    }

    /// One of every event, with the topic each must carry on the wire.
    fn activity(kind: ActivityType) -> ActivityEvent {
        ActivityEvent {
            id: "a-1".into(),
            kind,
            user_id: "u-1".into(),
            user_name: "Ada".into(),
            description: "Ada did something".into(),
            value: (kind == ActivityType::Payment).then_some(12.5),
            timestamp: at(3),
            request_id: Some("r-1".into()),
            metadata: [("email".to_string(), "a***@example.com".to_string())].into(),
        }
    }

    fn active_users() -> ActiveUsers {
        crate::analytics::tests::snapshot().active_users
    }

    fn every_event() -> Vec<(LiveEvent, &'static str)> {
        let status = SystemStatus {
            status: OverallHealth::Healthy,
            version: "0.1.0".into(),
            started_at: at(0),
            uptime_seconds: 1,
            uptime: "1s".into(),
            timestamp: at(1),
            components: vec![ComponentStatus {
                id: "database".into(),
                name: "Database".into(),
                kind: ComponentKind::Database,
                health: ComponentHealth::Healthy,
                address: "sqlite://data/liveview.db".into(),
                figure: "SELECT 1 in 0.1 ms".into(),
                latency_ms: Some(0.1),
                detail: None,
            }],
        };
        let request = Some("req-9".to_string());
        let mut events = vec![
            (LiveEvent::SystemStatus(status.clone()), "system:status"),
            (
                LiveEvent::SystemMetrics(SystemMetrics {
                    system_status: OverallHealth::Degraded,
                    active_requests: 1,
                    requests_per_second: 2.0,
                    average_latency: 3.0,
                    error_rate: 0.0,
                    uptime: "1s".into(),
                    timestamp: at(1),
                }),
                "system:metrics",
            ),
            (
                LiveEvent::RequestNew(RequestTracker {
                    request_id: "req-9".into(),
                    kind: NotificationType::Signup,
                    current_stage: SystemStage::LbReceived,
                    start_time: at(0),
                    stages: vec![sample_stage()],
                    total_duration: 0.0,
                }),
                "request:new",
            ),
            (
                LiveEvent::RequestProgress(RequestProgress {
                    request_id: "req-9".into(),
                    kind: NotificationType::Signup,
                    current_stage: SystemStage::QueueAdd,
                    stage: sample_stage(),
                }),
                "request:progress",
            ),
            (
                LiveEvent::RequestComplete(RequestComplete {
                    request_id: "req-9".into(),
                    kind: NotificationType::Signup,
                    end_time: at(3),
                    total_duration: 3000.0,
                }),
                "request:complete",
            ),
            (
                LiveEvent::RequestFailed(RequestFailed {
                    request_id: "req-9".into(),
                    kind: NotificationType::Login,
                    stage: SystemStage::DeadLetter,
                    error: "550 mailbox unavailable".into(),
                    total_duration: 5.0,
                }),
                "request:failed",
            ),
            (
                LiveEvent::ComponentStatus(status.components[0].clone()),
                "component:status",
            ),
            (
                LiveEvent::QueueJobAdded(QueueJobAdded {
                    queue: "mail".into(),
                    job_id: "job-1".into(),
                    notification_id: "n-1".into(),
                    request_id: request.clone(),
                    flow: Flow::Email,
                    run_at: None,
                }),
                "queue:job:added",
            ),
            (
                LiveEvent::QueueJobProcessing(QueueJobProcessing {
                    queue: "mail".into(),
                    job_id: "job-1".into(),
                    request_id: request.clone(),
                    worker_id: "mail-worker-1".into(),
                    attempt: 1,
                }),
                "queue:job:processing",
            ),
            (
                LiveEvent::QueueJobCompleted(QueueJobCompleted {
                    queue: "mail".into(),
                    job_id: "job-1".into(),
                    request_id: request.clone(),
                    duration: 12.0,
                }),
                "queue:job:completed",
            ),
            (
                LiveEvent::QueueJobFailed(QueueJobFailed {
                    queue: "mail-retry-2".into(),
                    job_id: "job-1".into(),
                    request_id: None,
                    attempt: 3,
                    error: "451 try later".into(),
                    dead_lettered: true,
                }),
                "queue:job:failed",
            ),
            (
                LiveEvent::QueueJobRetry(QueueJobRetry {
                    queue: "mail".into(),
                    next_queue: "mail-retry-1".into(),
                    job_id: "job-1".into(),
                    request_id: request.clone(),
                    attempt: 1,
                    due_at: at(300),
                    reason: "451 try later".into(),
                }),
                "queue:job:retry",
            ),
            (
                LiveEvent::WorkerProcessing(WorkerProcessing {
                    worker_id: "inapp-worker-2".into(),
                    kind: WorkerKind::Inapp,
                    queue: "inapp".into(),
                    job_id: "job-2".into(),
                    request_id: request.clone(),
                }),
                "worker:processing",
            ),
            (
                LiveEvent::WorkerIdle(WorkerIdle {
                    worker_id: "mail-worker-1".into(),
                    kind: WorkerKind::Mail,
                }),
                "worker:idle",
            ),
            (
                LiveEvent::EmailSent(EmailSent {
                    notification_id: "n-1".into(),
                    request_id: request.clone(),
                    to: "a***@example.com".into(),
                    smtp_code: 250,
                }),
                "notification:email:sent",
            ),
            (
                LiveEvent::InAppDelivered(InAppDelivered {
                    notification_id: "n-2".into(),
                    request_id: request,
                    user_id: "u-1".into(),
                    server: "server-3".into(),
                }),
                "notification:inapp:delivered",
            ),
            (
                LiveEvent::ControlsChanged(ControlSettings::default()),
                "controls:changed",
            ),
            (LiveEvent::NewSignup(activity(ActivityType::Signup)), "new_signup"),
            (
                LiveEvent::PaymentSuccess(activity(ActivityType::Payment)),
                "payment_success",
            ),
            (LiveEvent::ActivityNew(activity(ActivityType::Login)), "activity:new"),
            (LiveEvent::SystemLoad(SystemLoad::default()), "system_metrics"),
            (LiveEvent::ActiveUsers(active_users()), "active_users"),
            (
                LiveEvent::AnalyticsUpdate(Box::new(crate::analytics::tests::snapshot())),
                "analytics:update",
            ),
            (
                LiveEvent::SystemAlert(Box::new(crate::alerts::tests::sample_alert())),
                "system_alert",
            ),
            (
                LiveEvent::PerformanceAlert(Box::new(crate::alerts::tests::sample_alert())),
                "performance:alert",
            ),
            (
                LiveEvent::Snapshot(Box::new(LiveSnapshot {
                    status: Some(status.clone()),
                    metrics: None,
                    components: crate::components::tests::every_component_metric(),
                    controls: Some(ControlSettings::default()),
                    requests: Vec::new(),
                })),
                "stream:snapshot",
            ),
            (LiveEvent::Gap(StreamGap { from: 3, to: 9 }), "stream:gap"),
            (
                LiveEvent::StreamError(StreamError {
                    error: "unknown message type".into(),
                }),
                "stream:error",
            ),
        ];
        for metric in crate::components::tests::every_component_metric() {
            events.push((LiveEvent::ComponentMetrics(metric), "component:metrics"));
        }
        events
    }

    /// Every event in an envelope, numbered from 1.
    pub(crate) fn every_envelope() -> Vec<Envelope> {
        every_event()
            .into_iter()
            .enumerate()
            .map(|(seq, (event, _))| Envelope {
                seq: seq as u64 + 1,
                ts: at(10),
                event,
            })
            .collect()
    }

    #[test]
    fn topics_lists_every_topic_once() {
        let mut named: Vec<&str> = every_event().iter().map(|(event, _)| event.topic()).collect();
        named.sort_unstable();
        named.dedup();
        let mut listed = LiveEvent::TOPICS.to_vec();
        listed.sort_unstable();
        assert_eq!(named, listed);
    }

    #[test]
    fn every_event_round_trips_in_an_envelope_with_the_design_topic() {
        for (seq, (event, topic)) in every_event().into_iter().enumerate() {
            assert_eq!(event.topic(), topic);
            let envelope = Envelope {
                seq: seq as u64 + 1,
                ts: at(10),
                event,
            };
            let json = round_trip(&envelope);
            assert_eq!(json["topic"], topic);
            assert_eq!(json["seq"], seq as u64 + 1);
            assert!(json["ts"].is_string(), "ts is RFC 3339: {json}");
            assert!(json["payload"].is_object(), "payload is an object: {json}");
        }
    }

    #[test]
    fn envelope_is_flat_on_the_wire() {
        let envelope = Envelope {
            seq: 7,
            ts: at(0),
            event: LiveEvent::WorkerIdle(WorkerIdle {
                worker_id: "w".into(),
                kind: WorkerKind::Mail,
            }),
        };
        let json = serde_json::to_value(&envelope).expect("json");
        let keys: Vec<_> = json.as_object().expect("object").keys().cloned().collect();
        assert_eq!(keys, ["payload", "seq", "topic", "ts"]);
        assert_eq!(json["payload"]["workerId"], "w");
    }

    #[test]
    fn stream_messages_use_design_names() {
        let snapshot = round_trip(&LiveSnapshot::default());
        for key in ["status", "metrics", "components", "controls", "requests"] {
            assert!(snapshot.get(key).is_some(), "{key} in {snapshot}");
        }
        let gap = round_trip(&Envelope {
            seq: 9,
            ts: at(0),
            event: LiveEvent::Gap(StreamGap { from: 3, to: 9 }),
        });
        assert_eq!(gap["topic"], "stream:gap");
        assert_eq!(gap["payload"], serde_json::json!({"from": 3, "to": 9}));
        let error = serde_json::to_value(StreamError { error: "bad".into() }).expect("json");
        assert_eq!(error, serde_json::json!({"error": "bad"}));
        assert!(LiveEvent::Gap(StreamGap { from: 1, to: 1 }).is_stream_control());
        assert!(!LiveEvent::ControlsChanged(ControlSettings::default()).is_stream_control());
    }

    #[test]
    fn a_frame_is_one_envelope_or_an_array_of_them() {
        let one = Envelope {
            seq: 1,
            ts: at(0),
            event: LiveEvent::Gap(StreamGap { from: 1, to: 1 }),
        };
        let two = Envelope { seq: 2, ..one.clone() };
        let single = serde_json::to_string(&one).expect("json");
        assert_eq!(parse_frame(&single).expect("object"), vec![one.clone()]);
        let batch = serde_json::to_string(&[&one, &two]).expect("json");
        assert_eq!(parse_frame(&batch).expect("array"), vec![one, two]);
        assert!(parse_frame("[]").expect("empty array").is_empty());
        assert!(parse_frame("{}").is_err());
        assert!(parse_frame("not json").is_err());
    }

    #[test]
    fn unknown_topic_is_rejected() {
        let text = r#"{"seq":1,"ts":"2026-01-01T00:00:00Z","topic":"system:nope","payload":{}}"#;
        assert!(serde_json::from_str::<Envelope>(text).is_err());
    }
}

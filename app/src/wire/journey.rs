//! A request's journey through the system: the design's `RequestTracker` and its stages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// What a request is for; every controller produces notifications of its own type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationType {
    Signup,
    Login,
    ResetPassword,
    Purchase,
    FriendRequest,
    FriendAccept,
}

impl NotificationType {
    pub const ALL: [NotificationType; 6] = [
        Self::Signup,
        Self::Login,
        Self::ResetPassword,
        Self::Purchase,
        Self::FriendRequest,
        Self::FriendAccept,
    ];

    /// The wire name (`friend-request`), without going through serde.
    pub fn name(self) -> &'static str {
        match self {
            Self::Signup => "signup",
            Self::Login => "login",
            Self::ResetPassword => "reset-password",
            Self::Purchase => "purchase",
            Self::FriendRequest => "friend-request",
            Self::FriendAccept => "friend-accept",
        }
    }
}

/// The delivery path a notification takes; decides a bubble's color.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flow {
    Email,
    InApp,
}

impl Flow {
    /// The wire name (`in-app`), without going through serde.
    pub fn name(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::InApp => "in-app",
        }
    }

    /// The flow a queue carries: `mail`, `mail-retry-1`, `mail-dlq` email; `inapp`,
    /// `inapp-retry`, `inapp-dlq` in-app.
    pub fn of_queue(queue: &str) -> Option<Self> {
        if queue.starts_with("mail") {
            Some(Self::Email)
        } else if queue.starts_with("inapp") {
            Some(Self::InApp)
        } else {
            None
        }
    }
}

/// Where a request is: one value per stage the telemetry observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SystemStage {
    LbReceived,
    LbForwarded,
    ServerReceived,
    Middleware,
    Controller,
    DbQuery,
    Response,
    NotificationFanout,
    QueueAdd,
    WorkerPickup,
    SmtpAttempt,
    RetryScheduled,
    DeadLetter,
    InappPush,
    ClientAck,
    Read,
}

impl SystemStage {
    pub const ALL: [SystemStage; 16] = [
        Self::LbReceived,
        Self::LbForwarded,
        Self::ServerReceived,
        Self::Middleware,
        Self::Controller,
        Self::DbQuery,
        Self::Response,
        Self::NotificationFanout,
        Self::QueueAdd,
        Self::WorkerPickup,
        Self::SmtpAttempt,
        Self::RetryScheduled,
        Self::DeadLetter,
        Self::InappPush,
        Self::ClientAck,
        Self::Read,
    ];

    /// The wire name (`lb-received`, …), without going through serde: log lines and
    /// figures name stages on the telemetry's hot path.
    pub fn name(self) -> &'static str {
        match self {
            Self::LbReceived => "lb-received",
            Self::LbForwarded => "lb-forwarded",
            Self::ServerReceived => "server-received",
            Self::Middleware => "middleware",
            Self::Controller => "controller",
            Self::DbQuery => "db-query",
            Self::Response => "response",
            Self::NotificationFanout => "notification-fanout",
            Self::QueueAdd => "queue-add",
            Self::WorkerPickup => "worker-pickup",
            Self::SmtpAttempt => "smtp-attempt",
            Self::RetryScheduled => "retry-scheduled",
            Self::DeadLetter => "dead-letter",
            Self::InappPush => "inapp-push",
            Self::ClientAck => "client-ack",
            Self::Read => "read",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageStatus {
    Pending,
    Processing,
    Completed,
    Failed,
}

/// Free-form facts about a stage (`server`, `rowsAffected`, `smtpCode`, ...). Never a
/// password, token or reset link; email addresses are masked before they get here.
pub type StageMetadata = BTreeMap<String, serde_json::Value>;

/// One stage of a journey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    pub stage: SystemStage,
    /// The component that ran it: `load-balancer`, `server-2`, `mail-worker-1`, ...
    pub component: String,
    #[serde(deserialize_with = "super::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "super::rfc3339::write"))]
    pub start_time: Timestamp,
    #[serde(
        default,
        deserialize_with = "super::rfc3339::read_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "super::rfc3339::write_option"))]
    pub end_time: Option<Timestamp>,
    /// Milliseconds, once the stage has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    pub status: StageStatus,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: StageMetadata,
}

/// The design's `RequestTracker`: a request and every stage it has passed so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestTracker {
    pub request_id: String,
    #[serde(rename = "type")]
    pub kind: NotificationType,
    pub current_stage: SystemStage,
    #[serde(deserialize_with = "super::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "super::rfc3339::write"))]
    pub start_time: Timestamp,
    pub stages: Vec<Stage>,
    /// Milliseconds from the first stage's start to the last stage's end so far.
    pub total_duration: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_support::{at, round_trip};

    pub(crate) fn sample_stage() -> Stage {
        let mut metadata = StageMetadata::new();
        metadata.insert("server".into(), "server-2".into());
        metadata.insert("algorithm".into(), "round-robin".into());
        Stage {
            stage: SystemStage::LbForwarded,
            component: "load-balancer".into(),
            start_time: at(0),
            end_time: Some(at(1)),
            duration: Some(1000.0),
            status: StageStatus::Completed,
            metadata,
        }
    }

    #[test]
    fn type_names_are_the_wire_names() {
        for kind in NotificationType::ALL {
            assert_eq!(serde_json::to_value(kind).expect("serializes"), kind.name());
        }
        for flow in [Flow::Email, Flow::InApp] {
            assert_eq!(serde_json::to_value(flow).expect("serializes"), flow.name());
        }
        assert_eq!(Flow::of_queue("mail-retry-2"), Some(Flow::Email));
        assert_eq!(Flow::of_queue("inapp-dlq"), Some(Flow::InApp));
        assert_eq!(Flow::of_queue("other"), None);
    }

    #[test]
    fn stage_names_are_the_wire_names() {
        for stage in SystemStage::ALL {
            assert_eq!(serde_json::to_value(stage).expect("json"), stage.name());
        }
    }

    #[test]
    fn request_tracker_round_trips_with_design_names() {
        let open_stage = Stage {
            stage: SystemStage::SmtpAttempt,
            component: "mail-worker-1".into(),
            start_time: at(2),
            end_time: None,
            duration: None,
            status: StageStatus::Processing,
            metadata: StageMetadata::new(),
        };
        let tracker = RequestTracker {
            request_id: "req-1".into(),
            kind: NotificationType::ResetPassword,
            current_stage: SystemStage::SmtpAttempt,
            start_time: at(0),
            stages: vec![sample_stage(), open_stage],
            total_duration: 2000.0,
        };
        let json = round_trip(&tracker);
        assert_eq!(json["requestId"], "req-1");
        assert_eq!(json["type"], "reset-password");
        assert_eq!(json["currentStage"], "smtp-attempt");
        assert_eq!(json["stages"][0]["stage"], "lb-forwarded");
        assert_eq!(json["stages"][0]["metadata"]["server"], "server-2");
        assert_eq!(json["stages"][1]["status"], "processing");
        assert!(json["stages"][1].get("endTime").is_none());
        assert_eq!(json["totalDuration"], 2000.0);
    }

    #[test]
    fn every_enum_value_round_trips() {
        use NotificationType as N;
        for kind in [
            N::Signup,
            N::Login,
            N::ResetPassword,
            N::Purchase,
            N::FriendRequest,
            N::FriendAccept,
        ] {
            round_trip(&kind);
        }
        for flow in [Flow::Email, Flow::InApp] {
            round_trip(&flow);
        }
        assert_eq!(serde_json::to_value(Flow::InApp).expect("json"), "in-app");
        use SystemStage as S;
        for stage in [
            S::LbReceived,
            S::LbForwarded,
            S::ServerReceived,
            S::Middleware,
            S::Controller,
            S::DbQuery,
            S::Response,
            S::NotificationFanout,
            S::QueueAdd,
            S::WorkerPickup,
            S::SmtpAttempt,
            S::RetryScheduled,
            S::DeadLetter,
            S::InappPush,
            S::ClientAck,
            S::Read,
        ] {
            round_trip(&stage);
        }
        for status in [
            StageStatus::Pending,
            StageStatus::Processing,
            StageStatus::Completed,
            StageStatus::Failed,
        ] {
            round_trip(&status);
        }
    }
}

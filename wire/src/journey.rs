//! A request's journey through the system: the design's `RequestTracker` and its stages.

use std::{borrow::Cow, fmt};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use super::Timestamp;

/// What a request is for; every controller produces notifications of its own type.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationType {
    Signup,
    Login,
    ResetPassword,
    Purchase,
    FriendRequest,
    FriendAccept,
    /// A message in a conversation (its sending is the journey; the recipients get an
    /// in-app notification, and an email when it stays unread).
    Message,
}

impl NotificationType {
    pub const ALL: [NotificationType; 7] = [
        Self::Signup,
        Self::Login,
        Self::ResetPassword,
        Self::Purchase,
        Self::FriendRequest,
        Self::FriendAccept,
        Self::Message,
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
            Self::Message => "message",
        }
    }
}

/// The delivery path a notification takes; decides a bubble's color.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// A delivery its worker did not make, because the user switched that category off
    /// for that channel (`channel`, `reason` in the metadata). It ends the delivery.
    Skipped,
}

impl SystemStage {
    pub const ALL: [SystemStage; 17] = [
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
        Self::Skipped,
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
            Self::Skipped => "skipped",
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageStatus {
    Pending,
    Processing,
    Completed,
    Failed,
}

/// Free-form facts about a stage (`server`, `rowsAffected`, `smtpCode`, ...), written as
/// a JSON object in key order. Never a password, token or reset link; email addresses
/// are masked before they get here.
///
/// A short vector kept sorted by key, not a `BTreeMap`: a stage has a handful of facts
/// named by the code's own static strings, and the server builds, copies into a live
/// event and drops thousands of them a second. The map's node allocations and key
/// strings were the largest single part of that (`liveview bench telemetry`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageMetadata(Vec<(Cow<'static, str>, serde_json::Value)>);

impl StageMetadata {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, replacing what it held.
    pub fn insert(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<serde_json::Value>) {
        let (key, value) = (key.into(), value.into());
        match self.0.binary_search_by(|(known, _)| known.as_ref().cmp(key.as_ref())) {
            Ok(at) => self.0[at].1 = value,
            Err(at) => self.0.insert(at, (key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0
            .binary_search_by(|(known, _)| known.as_ref().cmp(key))
            .ok()
            .map(|at| &self.0[at].1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The facts in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &serde_json::Value)> {
        self.0.iter().map(|(key, value)| (key.as_ref(), value))
    }
}

impl<K: Into<Cow<'static, str>>, V: Into<serde_json::Value>> FromIterator<(K, V)> for StageMetadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(facts: I) -> Self {
        let mut metadata = Self::new();
        for (key, value) in facts {
            metadata.insert(key, value);
        }
        metadata
    }
}

impl Serialize for StageMetadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for StageMetadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Facts;
        impl<'de> de::Visitor<'de> for Facts {
            type Value = StageMetadata;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("an object of stage facts")
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<StageMetadata, A::Error> {
                let mut metadata = StageMetadata::new();
                while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
                    metadata.insert(key, value);
                }
                Ok(metadata)
            }
        }
        deserializer.deserialize_map(Facts)
    }
}

/// One stage of a journey.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    pub stage: SystemStage,
    /// The component that ran it: `load-balancer`, `server-2`, `mail-worker-1`, ...
    pub component: String,
    #[serde(deserialize_with = "super::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "super::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub start_time: Timestamp,
    #[serde(
        default,
        deserialize_with = "super::rfc3339::read_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "super::rfc3339::write_option"))]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub end_time: Option<Timestamp>,
    /// Milliseconds, once the stage has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    pub status: StageStatus,
    #[serde(default, skip_serializing_if = "StageMetadata::is_empty")]
    /// What the stage's component adds (`{"server": "server-2"}`), never a secret.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: StageMetadata,
}

/// The design's `RequestTracker`: a request and every stage it has passed so far.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestTracker {
    pub request_id: String,
    #[serde(rename = "type")]
    pub kind: NotificationType,
    pub current_stage: SystemStage,
    #[serde(deserialize_with = "super::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "super::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub start_time: Timestamp,
    pub stages: Vec<Stage>,
    /// Milliseconds from the first stage's start to the last stage's end so far.
    pub total_duration: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{at, round_trip};

    pub(crate) fn sample_stage() -> Stage {
        let mut metadata = StageMetadata::new();
        metadata.insert("server", "server-2");
        metadata.insert("algorithm", "round-robin");
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
    fn metadata_is_an_object_in_key_order_whatever_the_insertion_order() {
        let mut metadata = StageMetadata::new();
        metadata.insert("server", "server-1");
        metadata.insert("algorithm", "round-robin");
        metadata.insert("retriedAfterRefusal", 0);
        metadata.insert("server", "server-2");
        assert_eq!(metadata.len(), 3, "a key set twice is replaced");
        assert_eq!(metadata.get("server"), Some(&serde_json::json!("server-2")));
        assert_eq!(metadata.get("absent"), None);
        let json = serde_json::to_string(&metadata).expect("serializes");
        assert_eq!(
            json,
            r#"{"algorithm":"round-robin","retriedAfterRefusal":0,"server":"server-2"}"#
        );
        // Read back from any order, the same facts in key order.
        let read: StageMetadata =
            serde_json::from_str(r#"{"server":"server-2","retriedAfterRefusal":0,"algorithm":"round-robin"}"#)
                .expect("parses");
        assert_eq!(read, metadata);
        assert!(
            serde_json::from_str::<StageMetadata>("[1, 2]").is_err(),
            "an object, nothing else"
        );
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
            S::Skipped,
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

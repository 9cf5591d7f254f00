//! What a viewer may send on the live stream's WebSocket: choose topics and filters, or
//! ask for what it missed. Each is one JSON object tagged by `type`:
//!
//! ```json
//! {"type":"subscribe","topics":["queue:*","system:status"],"filters":{"flows":["email"]}}
//! {"type":"unsubscribe","topics":["queue:*"]}
//! {"type":"resume","afterSeq":42}
//! ```
//!
//! A topic is an exact name (`system:status`) or a prefix ending in `*` (`queue:*`; `*`
//! alone is every topic). Until its first `subscribe` a viewer gets every topic.

use serde::{Deserialize, Serialize};

use super::{Flow, NotificationType};

/// One message from a viewer to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ClientMessage {
    /// Adds topics (the first `subscribe` naming topics replaces the default "every
    /// topic"; an empty list keeps the topics); `filters`, when given, replaces the
    /// current filters.
    Subscribe {
        topics: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filters: Option<StreamFilters>,
    },
    /// Stops topics: exact names or patterns, as given to `subscribe` or narrower.
    Unsubscribe { topics: Vec<String> },
    /// Sends again every event after `after_seq`, or a `stream:gap` and a fresh
    /// `stream:snapshot` when they are no longer kept.
    #[serde(rename_all = "camelCase")]
    Resume { after_seq: u64 },
}

/// Narrows the events a viewer gets. A dimension left out (or `null`) does not filter; an
/// event with no value for a dimension (`system:status` has no flow) passes its filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamFilters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<Vec<Flow>>,
    /// Notification types (`signup`, `purchase`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<NotificationType>>,
    /// App servers by id (`server-2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<String>>,
}

impl StreamFilters {
    /// True when no dimension filters anything.
    pub fn is_empty(&self) -> bool {
        self.flows.is_none() && self.types.is_none() && self.servers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::round_trip;

    #[test]
    fn client_messages_round_trip_with_design_names() {
        let subscribe = ClientMessage::Subscribe {
            topics: vec!["queue:*".into(), "system:status".into()],
            filters: Some(StreamFilters {
                flows: Some(vec![Flow::InApp]),
                types: Some(vec![NotificationType::Purchase]),
                servers: Some(vec!["server-2".into()]),
            }),
        };
        let json = round_trip(&subscribe);
        assert_eq!(json["type"], "subscribe");
        assert_eq!(json["topics"][0], "queue:*");
        assert_eq!(json["filters"]["flows"][0], "in-app");
        assert_eq!(json["filters"]["types"][0], "purchase");
        assert_eq!(json["filters"]["servers"][0], "server-2");

        let json = round_trip(&ClientMessage::Unsubscribe {
            topics: vec!["worker:*".into()],
        });
        assert_eq!(json, serde_json::json!({"type": "unsubscribe", "topics": ["worker:*"]}));

        let json = round_trip(&ClientMessage::Resume { after_seq: 42 });
        assert_eq!(json, serde_json::json!({"type": "resume", "afterSeq": 42}));
    }

    #[test]
    fn filters_and_their_dimensions_are_optional() {
        let message: ClientMessage =
            serde_json::from_str(r#"{"type":"subscribe","topics":["*"]}"#).expect("no filters");
        assert_eq!(
            message,
            ClientMessage::Subscribe {
                topics: vec!["*".into()],
                filters: None
            }
        );
        let filters: StreamFilters = serde_json::from_str(r#"{"flows":["email"],"types":null}"#).expect("partial");
        assert_eq!(filters.flows, Some(vec![Flow::Email]));
        assert!(filters.types.is_none() && filters.servers.is_none());
        assert!(!filters.is_empty());
        assert!(StreamFilters::default().is_empty());
        assert_eq!(round_trip(&StreamFilters::default()), serde_json::json!({}));
    }

    #[test]
    fn malformed_client_messages_are_errors() {
        for text in [
            r#"{"type":"subscribe"}"#,
            r#"{"type":"resume","afterSeq":-1}"#,
            r#"{"type":"resume","after_seq":1}"#,
            r#"{"type":"dance"}"#,
            r#"{"topics":["a"]}"#,
            r#"{"type":"subscribe","topics":["a"],"filters":{"flows":["fax"]}}"#,
            "[]",
            "",
        ] {
            assert!(serde_json::from_str::<ClientMessage>(text).is_err(), "{text}");
        }
    }
}

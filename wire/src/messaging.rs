//! Messaging between friends (seed 003): conversations, their messages in a gapless
//! `seq` per conversation, and each participant's two horizons — the highest `seq` one of
//! their devices acked (delivered) and the highest they have read — from which every
//! message's delivery state follows for every participant, without a row per message
//! and reader.
//!
//! A message is `sending` only on the sender's device (before the server answered);
//! `sent` once stored; `delivered` to a participant whose delivered horizon reached its
//! `seq`; `read` by one whose read horizon did; `failed` on the sender's device when it
//! gave up. The frames that carry this (`message:new`, `conversation.state_update`, …)
//! are [`crate::UserFrame`]s on the user's one socket.

use serde::{Deserialize, Serialize};

use crate::Person;

/// The longest message body, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4_000;
/// Participants of one conversation, the creator included.
pub const MAX_PARTICIPANTS: usize = 16;
/// The longest client-chosen id.
pub const MAX_CLIENT_ID: usize = 64;
/// The longest conversation title.
pub const MAX_TITLE_CHARS: usize = 100;

/// Where a message stands for one participant (or, on the sender's device, before the
/// server answered).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Sending,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl DeliveryState {
    /// What the horizons of a participant make of the message `seq`.
    pub fn of(seq: i64, delivered_seq: i64, read_seq: i64) -> Self {
        if read_seq >= seq {
            Self::Read
        } else if delivered_seq >= seq {
            Self::Delivered
        } else {
            Self::Sent
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
        }
    }
}

/// One participant of a conversation and how far they have got.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub id: String,
    pub name: String,
    /// The highest `seq` a device of theirs acked.
    pub delivered_seq: i64,
    /// The highest `seq` they have read.
    pub read_seq: i64,
    /// When they left; they see nothing sent after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_at_ms: Option<i64>,
}

/// A conversation as its participants see it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: String,
    /// Set by a participant; else the client names it after the others.
    pub title: Option<String>,
    pub created_by: String,
    pub created_at_ms: i64,
    /// The newest message's `seq` (0 before the first).
    pub last_seq: i64,
    pub participants: Vec<Participant>,
    /// The newest message, for the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Message>,
    /// Messages after the reader's read horizon, not their own.
    pub unread: i64,
}

/// `GET /api/conversations`: the user's conversations, the most recently active first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversations {
    pub conversations: Vec<Conversation>,
}

/// `POST /api/conversations`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewConversation {
    /// The others (friends of the creator); the creator is added.
    pub participants: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// One message.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    /// Counts the conversation's messages without gaps, from 1.
    pub seq: i64,
    pub sender_id: String,
    /// The sender's own id for it: sending it again returns this message.
    pub client_id: String,
    /// Empty once deleted.
    pub body: String,
    pub created_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at_ms: Option<i64>,
}

/// `POST /api/conversations/{id}/messages`, and the socket's `message:send`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewMessage {
    /// Chosen by the sender's device, unique per sender (seed 003's `temp-…` ids fit).
    pub client_id: String,
    pub body: String,
}

/// `GET /api/conversations/{id}/messages?before=SEQ&limit=N`: oldest first; `nextBefore`
/// pages further back.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    pub messages: Vec<Message>,
    pub next_before: Option<i64>,
    pub participants: Vec<Participant>,
}

/// `conversation.state_update`: a participant's horizons moved.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateUpdate {
    pub conversation_id: String,
    pub user_id: String,
    pub delivered_seq: i64,
    pub read_seq: i64,
}

/// `conversation.typing` (seed 003's name and fields), both ways: the client says it
/// types (at most once a second) or stopped; the others hear it, and forget it 5 s after
/// the last one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Typing {
    pub conversation_id: String,
    /// Filled in by the server (a client's own claim is ignored).
    #[serde(default)]
    pub user_id: String,
    pub is_typing: bool,
}

/// `conversation.update_participant`: someone joined or left, or the title changed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationChange {
    pub conversation: Conversation,
    /// Who it concerns, for "Ada left".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<Person>,
    /// `created`, `joined`, `left`, `renamed`.
    pub change: String,
}

/// `PATCH /api/conversations/{id}/messages/{messageId}`: the sender's new text.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageEdit {
    pub body: String,
}

/// `POST /api/conversations/{id}/read` and `/delivered`: the reader's horizon.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Horizon {
    /// Everything up to this seq (more than the conversation has counts as all of it).
    pub up_to_seq: i64,
}

/// `POST /api/conversations/{id}/participants`: a friend of the adder joins.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewParticipant {
    pub user_id: String,
}

/// `PATCH /api/conversations/{id}`: the title (none: named after the participants).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationTitle {
    pub title: Option<String>,
}

/// What a client sends on its socket besides the notification ack (`{"ack": id}`), one
/// JSON object tagged by `type`. A message that is not one of these gets an `error`
/// frame; several in a row close the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum ClientFrame {
    /// A device holds a conversation's messages up to `upToSeq` (delivered).
    #[serde(rename = "message:ack", rename_all = "camelCase")]
    MessageAck { conversation_id: String, up_to_seq: i64 },
    /// The user read up to `upToSeq`.
    #[serde(rename = "message:read", rename_all = "camelCase")]
    MessageRead { conversation_id: String, up_to_seq: i64 },
    /// A message, as `POST /api/conversations/{id}/messages` takes it.
    #[serde(rename = "message:send", rename_all = "camelCase")]
    MessageSend {
        conversation_id: String,
        client_id: String,
        body: String,
    },
    #[serde(rename = "conversation.typing", rename_all = "camelCase")]
    Typing { conversation_id: String, is_typing: bool },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_participants_horizons_make_the_state() {
        assert_eq!(DeliveryState::of(5, 4, 0), DeliveryState::Sent);
        assert_eq!(DeliveryState::of(5, 5, 0), DeliveryState::Delivered);
        assert_eq!(DeliveryState::of(5, 9, 5), DeliveryState::Read);
        // Read without a delivery ack (read on the REST list): read all the same.
        assert_eq!(DeliveryState::of(5, 0, 7), DeliveryState::Read);
        assert_eq!(
            serde_json::to_value(DeliveryState::Delivered).expect("json"),
            "delivered"
        );
    }

    #[test]
    fn client_frames_have_the_seeds_names_and_refuse_strays() {
        let typing: ClientFrame =
            serde_json::from_str(r#"{"type":"conversation.typing","conversationId":"c1","isTyping":true}"#)
                .expect("typing");
        assert_eq!(
            typing,
            ClientFrame::Typing {
                conversation_id: "c1".into(),
                is_typing: true
            }
        );
        let ack: ClientFrame =
            serde_json::from_str(r#"{"type":"message:ack","conversationId":"c1","upToSeq":4}"#).expect("ack");
        assert!(matches!(ack, ClientFrame::MessageAck { up_to_seq: 4, .. }));
        for stray in [
            r#"{"type":"message:ack","conversationId":"c1"}"#,
            r#"{"type":"message:nuke","conversationId":"c1"}"#,
            r#"{"type":"message:read","conversationId":"c1","upToSeq":1,"extra":1}"#,
            r#"{"ack":"n1"}"#,
        ] {
            assert!(serde_json::from_str::<ClientFrame>(stray).is_err(), "{stray}");
        }
    }
}

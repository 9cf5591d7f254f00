//! The end users' notification center (seed 002): categories, the states a notification
//! goes through besides read, the preferences per category and channel, and the frames
//! that keep several tabs and devices of one user in agreement.
//!
//! A user's socket carries typed frames, one JSON object each, tagged by `type`
//! ([`UserFrame`]). The notification frame is the one the socket always sent, with its
//! `type` added, so a client that reads `{id, seq, kind, …}` and acks `{"ack": id}`
//! still works.
//!
//! The unread count is exact on every device: each change of a notification's state
//! makes the user's `inboxVersion` one more and sends every device a
//! `notification:update` with the count after it, as of the newest `seq` then
//! (`upToSeq`). A device keeps the update with the highest version and adds the unread
//! notifications it got with a larger `seq`; a version that skips one means an update
//! was missed, and the device asks `GET /api/notifications` again.

use serde::{Deserialize, Serialize};

use super::{Flow, InAppFrame, NotificationType};

/// What a notification is about, for the lists and the preferences.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationCategory {
    /// Signups, sign-ins, password resets.
    Account,
    Purchases,
    /// Friend requests and their acceptance.
    Social,
    Messages,
    /// Operators' announcements.
    System,
}

impl NotificationCategory {
    pub const ALL: [Self; 5] = [
        Self::Account,
        Self::Purchases,
        Self::Social,
        Self::Messages,
        Self::System,
    ];

    /// The name stored in the `category` columns and sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Purchases => "purchases",
            Self::Social => "social",
            Self::Messages => "messages",
            Self::System => "system",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|category| category.as_str() == name)
    }
}

impl NotificationType {
    /// The category its notifications are filed under.
    pub fn category(self) -> NotificationCategory {
        match self {
            Self::Signup | Self::Login | Self::ResetPassword => NotificationCategory::Account,
            Self::Purchase => NotificationCategory::Purchases,
            Self::FriendRequest | Self::FriendAccept => NotificationCategory::Social,
            Self::Message => NotificationCategory::Messages,
        }
    }

    /// Whether it bypasses the user's preferences: a password reset is asked for by the
    /// user and is useless late, and a sign-in notice is how a stolen account is noticed.
    pub fn critical(self) -> bool {
        matches!(self, Self::ResetPassword | Self::Login)
    }
}

/// One category's channels: whether the user wants it by email and in the app.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CategoryPreference {
    pub category: NotificationCategory,
    pub email: bool,
    pub in_app: bool,
}

impl CategoryPreference {
    pub fn wants(&self, channel: Flow) -> bool {
        match channel {
            Flow::Email => self.email,
            Flow::InApp => self.in_app,
        }
    }
}

/// `GET /api/notifications/preferences` (every category, in [`NotificationCategory::ALL`]'s
/// order) and `PUT` (the categories given are set; the others are left as they are).
/// Critical notifications (a password reset, a new sign-in) are sent whatever these say.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    pub categories: Vec<CategoryPreference>,
}

/// A change of notifications' state, as `POST /api/notifications/{id}/{change}` and
/// `POST /api/notifications/read-all` make it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboxChange {
    /// Shown to the user (the list was open); unseen until then.
    Seen,
    Read,
    /// Moved out of the inbox (and no longer unread).
    Archived,
    /// Back in the inbox.
    Unarchived,
    /// Hidden from the inbox until `snoozedUntilMs`.
    Snoozed,
    /// The preferences changed which categories the app shows (no ids): ask for the
    /// list again.
    Preferences,
    /// Snoozed ones whose time came: back in the inbox (and unread if they were); ask
    /// for the list again to show them.
    Returned,
}

impl InboxChange {
    pub const ALL: [Self; 7] = [
        Self::Seen,
        Self::Read,
        Self::Archived,
        Self::Unarchived,
        Self::Snoozed,
        Self::Preferences,
        Self::Returned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Seen => "seen",
            Self::Read => "read",
            Self::Archived => "archived",
            Self::Unarchived => "unarchived",
            Self::Snoozed => "snoozed",
            Self::Preferences => "preferences",
            Self::Returned => "returned",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|change| change.as_str() == name)
    }
}

/// `notification:update`: notifications changed state on some device; the count after it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxUpdate {
    /// The notifications changed (every one that changed, for `read-all`).
    pub ids: Vec<String>,
    pub change: InboxChange,
    /// Until when, for `snoozed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snoozed_until_ms: Option<i64>,
    /// Unread notifications in the inbox (neither archived nor snoozed) after the change.
    pub unread_count: i64,
    /// The user's newest notification `seq` when the count was taken.
    pub up_to_seq: i64,
    /// One more than the previous update's.
    pub inbox_version: i64,
}

/// One frame on a user's socket (`/api/notifications/ws`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum UserFrame {
    /// A new notification; ack it with `{"ack": id}`.
    #[serde(rename = "notification:new")]
    NotificationNew(InAppFrame),
    #[serde(rename = "notification:update")]
    NotificationUpdate(InboxUpdate),
    /// A message in one of the user's conversations (theirs too, from another device);
    /// ack it with `message:ack`.
    #[serde(rename = "message:new")]
    MessageNew(crate::Message),
    /// A message edited or deleted.
    #[serde(rename = "message:update")]
    MessageUpdate(crate::Message),
    /// A participant's delivered and read horizons moved.
    #[serde(rename = "conversation.state_update")]
    StateUpdate(crate::StateUpdate),
    #[serde(rename = "conversation.typing")]
    Typing(crate::Typing),
    /// Created, someone joined or left, or renamed.
    #[serde(rename = "conversation.update_participant")]
    ConversationChange(crate::ConversationChange),
    /// The operators said something to everyone.
    #[serde(rename = "system:announcement")]
    Announcement(Announcement),
    /// A client message the server refused, and why; repeated ones close the socket.
    #[serde(rename = "error")]
    Error(FrameError),
}

/// An operators' announcement to every end user (the room `system`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Announcement {
    pub id: String,
    pub title: String,
    pub body: String,
    pub created_at_ms: i64,
}

/// `POST /api/announcements` on the dashboard (operators).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAnnouncement {
    /// 1 to 100 characters.
    pub title: String,
    /// 1 to 1,000 characters.
    pub body: String,
}

/// `GET /api/announcements` on the balancer: the last week's, newest first (at most 10).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Announcements {
    pub announcements: Vec<Announcement>,
}

/// Why a client's message was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameError {
    /// `malformed`, `rate-limited`, `forbidden`, `not-found`, `invalid`, `too-large`.
    pub code: String,
    pub message: String,
    /// The `clientId` of the message refused, when it was one.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "clientId")]
    pub client_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::round_trip;

    #[test]
    fn the_notification_frame_keeps_its_fields_and_gains_its_type() {
        let frame = UserFrame::NotificationNew(InAppFrame {
            id: "n1".into(),
            seq: 3,
            kind: "purchase".into(),
            title: "Receipt".into(),
            body: "Thanks".into(),
            created_at: 1_790_000_000_250,
        });
        let json = round_trip(&frame);
        assert_eq!(json["type"], "notification:new");
        // What a client of the frame without a type reads is all there.
        let old: InAppFrame = serde_json::from_value(json).expect("the old frame's fields");
        assert_eq!(old.seq, 3);
    }

    #[test]
    fn an_update_has_the_seeds_name_and_camel_case_fields() {
        let json = round_trip(&UserFrame::NotificationUpdate(InboxUpdate {
            ids: vec!["n1".into()],
            change: InboxChange::Read,
            snoozed_until_ms: None,
            unread_count: 2,
            up_to_seq: 7,
            inbox_version: 4,
        }));
        assert_eq!(
            json,
            serde_json::json!({"type": "notification:update", "ids": ["n1"], "change": "read", "unreadCount": 2, "upToSeq": 7, "inboxVersion": 4})
        );
    }

    #[test]
    fn every_type_has_a_category_and_names_parse_back() {
        assert_eq!(NotificationType::FriendAccept.category(), NotificationCategory::Social);
        assert_eq!(NotificationType::Purchase.category().as_str(), "purchases");
        for category in NotificationCategory::ALL {
            assert_eq!(NotificationCategory::parse(category.as_str()), Some(category));
            assert_eq!(serde_json::to_value(category).expect("json"), category.as_str());
        }
        for change in InboxChange::ALL {
            assert_eq!(InboxChange::parse(change.as_str()), Some(change));
            assert_eq!(serde_json::to_value(change).expect("json"), change.as_str());
        }
        assert!(NotificationCategory::parse("spam").is_none());
    }

    #[test]
    fn preferences_refuse_unknown_fields_and_categories() {
        let good: Preferences =
            serde_json::from_str(r#"{"categories":[{"category":"social","email":false,"inApp":true}]}"#)
                .expect("valid");
        assert!(!good.categories[0].wants(Flow::Email) && good.categories[0].wants(Flow::InApp));
        for bad in [
            r#"{"categories":[{"category":"spam","email":false,"inApp":true}]}"#,
            r#"{"categories":[{"category":"social","email":false}]}"#,
            r#"{"categories":[],"extra":1}"#,
        ] {
            assert!(serde_json::from_str::<Preferences>(bad).is_err(), "{bad}");
        }
    }
}

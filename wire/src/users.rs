//! The notification system's public API (on the balancer, `--lb`): what end users'
//! clients send and get, one type each. The server validates the request bodies itself
//! (its `Validate` rules); these say only their shape.
//!
//! With the `sqlx` feature (the server's), the types that are rows read straight from
//! the database.

use serde::{Deserialize, Serialize};

/// `POST /api/auth/signup`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Signup {
    pub email: String,
    pub name: String,
    pub password: String,
    /// The user's segment (`customer` when not given): a lowercase word of at most 32
    /// letters, digits or dashes, kept for the business figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    /// Where the signup came from (`direct` when not given; a campaign's `utm_source`),
    /// in the same form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `POST /api/auth/login`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub email: String,
    pub password: String,
}

/// `POST /api/auth/reset-password`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub email: String,
}

/// `POST /api/auth/reset-password/confirm`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResetConfirm {
    pub token: String,
    pub new_password: String,
}

/// `POST /api/purchases`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewPurchase {
    pub item: String,
    /// In the currency's minor unit.
    pub amount_cents: i64,
    /// ISO 4217, upper case (`EUR`).
    pub currency: String,
    /// The catalogue item bought (`GET /api/items`), if it is one: counted in the
    /// content figures' purchases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
}

/// `POST /api/friend-requests`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewFriendRequest {
    pub to_email: String,
}

/// Someone as other users see them: no address, no dates.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    pub id: String,
    pub name: String,
}

/// A friend request still waiting, with the person on its other side.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingFriendRequest {
    pub id: String,
    pub person: Person,
    pub created_at_ms: i64,
}

/// `GET /api/friends`: friends (a request accepted either way), by name; requests
/// waiting for the user's answer (`incoming`) and for the other's (`outgoing`), newest
/// first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Friends {
    pub friends: Vec<Person>,
    pub incoming: Vec<PendingFriendRequest>,
    pub outgoing: Vec<PendingFriendRequest>,
}

/// A user as the API shows them (never their password hash).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub created_at_ms: i64,
}

/// `POST /api/auth/login`'s answer: the bearer token and who it signs in.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// `<user id>.<secret>`.
    pub token: String,
    pub user: User,
}

/// An answer that only says what happened (a reset email on its way, a password changed).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub status: String,
}

/// `POST /api/purchases`'s answer (201).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Purchase {
    pub id: String,
    pub item: String,
    pub amount_cents: i64,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    pub created_at_ms: i64,
}

/// A friend request (`POST /api/friend-requests` → 201, `…/accept` → 200).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FriendRequest {
    pub id: String,
    pub from_user_id: String,
    pub to_user_id: String,
    /// `pending` or `accepted`.
    pub status: String,
    pub created_at_ms: i64,
}

/// One notification in the user's notification center.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: String,
    /// Counts the user's notifications without gaps.
    pub seq: i64,
    pub kind: String,
    /// `account`, `purchases`, `social`, `messages` or `system` ([`crate::NotificationCategory`]).
    pub category: String,
    pub title: String,
    pub body: String,
    pub created_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
    /// When a list showed it; unseen until then.
    pub seen_at_ms: Option<i64>,
    pub read_at_ms: Option<i64>,
    pub archived_at_ms: Option<i64>,
    /// Out of the inbox until then.
    pub snoozed_until_ms: Option<i64>,
}

/// `GET /api/notifications`: newest first; `nextBefore` is the `before` of the next page.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPage {
    pub notifications: Vec<Notification>,
    /// Unread notifications in the inbox (neither archived nor snoozed), as of
    /// `inboxVersion` and `upToSeq` (see `notification:update`).
    pub unread_count: i64,
    pub next_before: Option<i64>,
    pub inbox_version: i64,
    pub up_to_seq: i64,
}

/// `POST /api/notifications/{id}/read`: when it was first read.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadReceipt {
    pub id: String,
    pub read_at_ms: i64,
    /// The unread count after, as of `inboxVersion` and `upToSeq` (see
    /// `notification:update`).
    pub unread_count: i64,
    pub inbox_version: i64,
    pub up_to_seq: i64,
}

/// What the in-app socket pushes: one notification. The client acks it with [`Ack`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
#[serde(rename_all = "camelCase")]
pub struct InAppFrame {
    pub id: String,
    pub seq: i64,
    pub kind: String,
    pub title: String,
    pub body: String,
    /// Stored as milliseconds; on the wire RFC 3339 with milliseconds.
    #[cfg_attr(feature = "sqlx", sqlx(rename = "created_at_ms"))]
    #[serde(rename = "createdAt", with = "rfc3339_millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: i64,
}

/// What an in-app client sends: `{"ack": "<notification id>"}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub ack: String,
}

mod rfc3339_millis {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(millis: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        let time = chrono::DateTime::from_timestamp_millis(*millis).unwrap_or_default();
        serializer.serialize_str(&time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let text = String::deserialize(deserializer)?;
        chrono::DateTime::parse_from_rfc3339(&text)
            .map(|time| time.timestamp_millis())
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::round_trip;

    #[test]
    fn an_in_app_frame_carries_its_time_as_rfc3339_with_milliseconds() {
        let frame = InAppFrame {
            id: "n1".into(),
            seq: 3,
            kind: "purchase".into(),
            title: "Receipt".into(),
            body: "Thanks".into(),
            created_at: 1_790_000_000_250,
        };
        let json = round_trip(&frame);
        assert_eq!(json["createdAt"], "2026-09-21T14:13:20.250Z");
        assert_eq!(json["seq"], 3);
    }
}

//! The user's notification center: newest first, paginated, with the unread count.

use axum::{
    Json,
    extract::{Path, State},
};
use serde::Deserialize;
use wire::SystemStage;

use crate::{
    api_error::ApiError,
    middleware::{
        AppServer, CommitPoint,
        extract::{AuthUser, ValidQuery},
    },
    now_ms,
};

use wire::{Notification, NotificationPage, ReadReceipt};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Page {
    limit: Option<u32>,
    /// Only notifications with a smaller `seq` (the previous page's `nextBefore`).
    before: Option<i64>,
}

/// `GET /api/notifications?limit=20&before=SEQ`.
#[utoipa::path(get, path = "/api/notifications", params(Page), responses((status = 200, description = "newest first", body = wire::NotificationPage), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 401, description = "no valid bearer token", body = wire::ErrorBody)), tag = "notifications")]
pub async fn list(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    ValidQuery(page): ValidQuery<Page>,
) -> Result<Json<NotificationPage>, ApiError> {
    let limit = page.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid([("limit", "must be between 1 and 100".to_string())]));
    }
    let notifications: Vec<Notification> =
        crate::with_connection!(&mut server.shared.db.read().await?, |c| sqlx::query_as(
            "SELECT id, seq, kind, title, body, created_at_ms, delivered_at_ms, read_at_ms FROM notifications \
         WHERE user_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(&user.id)
        .bind(page.before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(c)
        .await)?;
    let unread: i64 = crate::with_connection!(&mut server.shared.db.read().await?, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND read_at_ms IS NULL"
    )
    .bind(&user.id)
    .fetch_one(c)
    .await)?;
    let next_before = (notifications.len() == limit as usize)
        .then(|| notifications.last().map(|n| n.seq))
        .flatten();
    Ok(Json(NotificationPage {
        notifications,
        unread_count: unread,
        next_before,
    }))
}

/// `POST /api/notifications/{id}/read`: idempotent; the first read time is kept.
#[utoipa::path(post, path = "/api/notifications/{id}/read", params(("id" = String, Path, description = "the notification")), responses((status = 200, description = "read (the first read time is kept)", body = wire::ReadReceipt), (status = 401, description = "no valid bearer token", body = wire::ErrorBody), (status = 404, description = "no such notification for this user", body = wire::ErrorBody)), tag = "notifications")]
pub async fn mark_read(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    commit: CommitPoint,
) -> Result<Json<ReadReceipt>, ApiError> {
    let mut writer = server.shared.db.writing().await?;
    commit.reached();
    let read: Option<(i64, Option<String>)> = crate::with_connection!(&mut writer, |c| sqlx::query_as(
        "UPDATE notifications SET read_at_ms = COALESCE(read_at_ms, $1) WHERE id = $2 AND user_id = $3 \
         RETURNING read_at_ms, request_id",
    )
    .bind(now_ms())
    .bind(&id)
    .bind(&user.id)
    .fetch_optional(c)
    .await)?;
    match read {
        Some((read_at, request_id)) => {
            // The read receipt is the last stage of the journey that created the notification.
            server
                .shared
                .telemetry
                .stage(request_id.as_deref().unwrap_or_default(), SystemStage::Read, &server.id)
                .meta("notificationId", id.as_str())
                .done();
            Ok(Json(ReadReceipt {
                id,
                read_at_ms: read_at,
            }))
        }
        None => Err(ApiError::not_found("no such notification")),
    }
}

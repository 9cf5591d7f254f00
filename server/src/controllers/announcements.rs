//! The end users' side of operators' announcements: the last week's, for a client that
//! was not connected when they were sent (the live ones come as `system:announcement`).

use axum::{Json, extract::State};
use wire::{Announcement, Announcements};

use crate::{
    api_error::ApiError,
    middleware::{AppServer, extract::AuthUser},
    now_ms,
};

/// How far back `GET /api/announcements` looks.
const KEPT_MS: i64 = 7 * 24 * 3_600_000;

/// `GET /api/announcements` (auth).
#[utoipa::path(get, path = "/api/announcements", responses((status = 200, description = "the last week's, newest first, at most 10", body = wire::Announcements), (status = 401, description = "no valid bearer token", body = wire::ErrorBody)), tag = "notifications")]
pub async fn list(State(server): State<AppServer>, AuthUser(_): AuthUser) -> Result<Json<Announcements>, ApiError> {
    let announcements: Vec<Announcement> = crate::with_connection!(&mut server.shared.db.read().await?, |c| {
        sqlx::query_as(
            "SELECT id, title, body, created_at_ms FROM announcements WHERE created_at_ms > $1 ORDER BY created_at_ms DESC LIMIT 10",
        )
        .bind(now_ms() - KEPT_MS)
        .fetch_all(c)
        .await
    })?;
    Ok(Json(Announcements { announcements }))
}

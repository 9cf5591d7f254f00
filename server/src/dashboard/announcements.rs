//! Operators' announcements to the end users: `POST /api/announcements` stores one and
//! sends it to every end user's socket, in every process (the room `system`, over the
//! bus). Operators only, and audited, like every control action.

use axum::{Json, extract::State, http::StatusCode};
use wire::{Announcement, NewAnnouncement, UserFrame};

use super::Dashboard;
use crate::{
    api_error::ApiError,
    middleware::extract::{FieldErrors, ValidJson, Validate},
    now_ms,
    storage::WriteBatch,
    websocket::rooms::Room,
};

impl Validate for NewAnnouncement {
    fn validate(&self, errors: &mut FieldErrors) {
        errors.length("title", self.title.trim(), 1, 100);
        errors.length("body", self.body.trim(), 1, 1000);
        for (field, text) in [("title", &self.title), ("body", &self.body)] {
            if text.contains('\0') {
                errors.add(field, "must not contain NUL characters");
            }
        }
    }
}

/// `POST /api/announcements {title, body}` → 201.
#[utoipa::path(post, path = "/api/announcements", request_body = wire::NewAnnouncement, responses((status = 201, description = "stored and sent to every end user's socket", body = wire::Announcement), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 403, description = "not an operator", body = wire::ErrorBody)), tag = "operations")]
pub async fn announce(
    State(dashboard): State<Dashboard>,
    ValidJson(body): ValidJson<NewAnnouncement>,
) -> Result<(StatusCode, Json<Announcement>), ApiError> {
    let announcement = Announcement {
        id: crate::accounts::new_id(),
        title: body.title.trim().to_string(),
        body: body.body.trim().to_string(),
        created_at_ms: now_ms(),
    };
    let mut batch = WriteBatch::default();
    batch
        .statement("INSERT INTO announcements (id, title, body, created_at_ms) VALUES (?, ?, ?, ?)")
        .bind(announcement.id.clone())
        .bind(announcement.title.clone())
        .bind(announcement.body.clone())
        .bind(announcement.created_at_ms);
    dashboard.database.commit(batch).await?;
    dashboard
        .rooms
        .send(Room::System, &UserFrame::Announcement(announcement.clone()))
        .await;
    Ok((StatusCode::CREATED, Json(announcement)))
}

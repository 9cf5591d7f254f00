//! Friend requests: the recipient hears by email and in-app; the sender hears in-app
//! when it is accepted.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use wire::{ActivityType, FriendRequest, Friends, NewFriendRequest, NotificationType, PendingFriendRequest, Person};

use super::{RequestId, commit_with_activity, valid_email};
use crate::{
    accounts::{self, new_id},
    analytics::activity,
    api_error::ApiError,
    middleware::{
        AppServer,
        extract::{AuthUser, FieldErrors, ValidJson, Validate},
    },
    notify::{EmailDraft, InAppDraft, Notice},
    now_ms,
    storage::WriteBatch,
};

impl Validate for NewFriendRequest {
    fn validate(&self, errors: &mut FieldErrors) {
        if !valid_email(&self.to_email) {
            errors.add("toEmail", "must be an email address");
        }
    }
}

/// `POST /api/friend-requests` (auth) → 201.
#[utoipa::path(post, path = "/api/friend-requests", request_body = wire::NewFriendRequest, responses((status = 201, description = "sent", body = wire::FriendRequest), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 401, description = "no valid bearer token", body = wire::ErrorBody), (status = 404, description = "no user with that address", body = wire::ErrorBody), (status = 409, description = "already requested", body = wire::ErrorBody)), tag = "friends")]
pub async fn create(
    State(server): State<AppServer>,
    AuthUser(sender): AuthUser,
    request_id: RequestId,
    ValidJson(body): ValidJson<NewFriendRequest>,
) -> Result<(StatusCode, Json<FriendRequest>), ApiError> {
    let Some((recipient, _)) = accounts::find_by_email(&server.shared.db, &body.to_email).await? else {
        return Err(ApiError::not_found("no user with that email"));
    };
    if recipient.id == sender.id {
        return Err(ApiError::invalid([(
            "toEmail",
            "cannot send a friend request to yourself".to_string(),
        )]));
    }
    let mut tx = server.shared.db.begin_write().await?;
    let existing: Option<String> = crate::with_connection!(&mut tx, |c| {
        sqlx::query_scalar(
        "SELECT status FROM friend_requests WHERE (from_user_id = $1 AND to_user_id = $2) OR (from_user_id = $3 AND to_user_id = $4) LIMIT 1",
    )
    .bind(&sender.id)
    .bind(&recipient.id)
    .bind(&recipient.id)
    .bind(&sender.id)
    .fetch_optional(c)
    .await
    })?;
    if let Some(status) = existing {
        return Err(ApiError::conflict(format!(
            "a friend request between you already exists ({status})"
        )));
    }
    let request = FriendRequest {
        id: new_id(),
        from_user_id: sender.id.clone(),
        to_user_id: recipient.id.clone(),
        status: "pending".into(),
        created_at_ms: now_ms(),
    };
    crate::with_connection!(&mut tx, |c| {
        sqlx::query("INSERT INTO friend_requests (id, from_user_id, to_user_id, status, created_at_ms) VALUES ($1, $2, $3, 'pending', $4)")
        .bind(&request.id)
        .bind(&request.from_user_id)
        .bind(&request.to_user_id)
        .bind(request.created_at_ms)
        .execute(c)
        .await.map(|done| done.rows_affected())
    })?;
    let notice = Notice {
        kind: NotificationType::FriendRequest,
        user_id: Some(recipient.id.clone()),
        email: Some(EmailDraft {
            unless_read: None,
            to: recipient.email.clone(),
            subject: format!("{} wants to be your friend", sender.name),
            body: format!(
                "Hello {},\n\n{} sent you a friend request.\n",
                recipient.name, sender.name
            ),
        }),
        in_app: Some(InAppDraft {
            title: "New friend request".into(),
            body: format!("{} wants to be your friend.", sender.name),
        }),
        subject_id: None,
    };
    let invited = activity::event(
        ActivityType::Invitation,
        (&sender.id, &sender.name),
        format!("{} sent {} a friend request", sender.name, recipient.name),
        [
            ("toUserId", recipient.id.clone()),
            ("toUserName", recipient.name.clone()),
            ("friendRequestId", request.id.clone()),
        ],
    );
    commit_with_activity(
        &server,
        Some(tx),
        WriteBatch::default(),
        &[notice],
        invited,
        &request_id,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(request)))
}

/// `POST /api/friend-requests/{id}/accept` (auth, recipient only) → 200.
#[utoipa::path(post, path = "/api/friend-requests/{id}/accept", params(("id" = String, Path, description = "the friend request")), responses((status = 200, description = "accepted", body = wire::FriendRequest), (status = 401, description = "no valid bearer token", body = wire::ErrorBody), (status = 404, description = "no such request for this user", body = wire::ErrorBody), (status = 409, description = "already accepted", body = wire::ErrorBody)), tag = "friends")]
pub async fn accept(
    State(server): State<AppServer>,
    AuthUser(recipient): AuthUser,
    request_id: RequestId,
    Path(id): Path<String>,
) -> Result<Json<FriendRequest>, ApiError> {
    let mut tx = server.shared.db.begin_write().await?;
    let row: Option<(String, String, i64)> = crate::with_connection!(&mut tx, |c| sqlx::query_as(
        "SELECT from_user_id, status, created_at_ms FROM friend_requests WHERE id = $1 AND to_user_id = $2",
    )
    .bind(&id)
    .bind(&recipient.id)
    .fetch_optional(c)
    .await)?;
    // Someone else's request is as invisible as a missing one.
    let Some((from_user_id, status, created_at_ms)) = row else {
        return Err(ApiError::not_found("no such friend request for you"));
    };
    if status != "pending" {
        return Err(ApiError::conflict("friend request already accepted"));
    }
    crate::with_connection!(&mut tx, |c| sqlx::query(
        "UPDATE friend_requests SET status = 'accepted', accepted_at_ms = $1 WHERE id = $2 AND status = 'pending'",
    )
    .bind(now_ms())
    .bind(&id)
    .execute(c)
    .await
    .map(|done| done.rows_affected()))?;
    let notice = Notice {
        kind: NotificationType::FriendAccept,
        user_id: Some(from_user_id.clone()),
        email: None,
        in_app: Some(InAppDraft {
            title: "Friend request accepted".into(),
            body: format!("{} accepted your friend request.", recipient.name),
        }),
        subject_id: None,
    };
    let accepted = activity::event(
        ActivityType::InvitationAccepted,
        (&recipient.id, &recipient.name),
        format!("{} accepted a friend request", recipient.name),
        [("fromUserId", from_user_id.clone()), ("friendRequestId", id.clone())],
    );
    commit_with_activity(
        &server,
        Some(tx),
        WriteBatch::default(),
        &[notice],
        accepted,
        &request_id,
    )
    .await?;
    Ok(Json(FriendRequest {
        id,
        from_user_id,
        to_user_id: recipient.id,
        status: "accepted".into(),
        created_at_ms,
    }))
}

/// `GET /api/friends` (auth): friends and pending requests both ways.
#[utoipa::path(get, path = "/api/friends", responses((status = 200, description = "friends, and requests waiting on either side", body = wire::Friends), (status = 401, description = "no valid bearer token", body = wire::ErrorBody)), tag = "friends")]
pub async fn list(State(server): State<AppServer>, AuthUser(user): AuthUser) -> Result<Json<Friends>, ApiError> {
    // Both directions of every request, with the other person's name; a user has few.
    let rows: Vec<(String, String, String, String, i64, bool)> = crate::with_connection!(
        &mut server.shared.db.read().await?,
        |c| {
            sqlx::query_as(
            "SELECT r.id, r.status, u.id, u.name, r.created_at_ms, r.from_user_id = $1 \
             FROM friend_requests r JOIN users u ON u.id = CASE WHEN r.from_user_id = $2 THEN r.to_user_id ELSE r.from_user_id END \
             WHERE r.from_user_id = $3 OR r.to_user_id = $4 ORDER BY r.created_at_ms DESC LIMIT 1000",
        )
        .bind(&user.id)
        .bind(&user.id)
        .bind(&user.id)
        .bind(&user.id)
        .fetch_all(c)
        .await
        }
    )?;
    let mut friends = Friends::default();
    for (id, status, person_id, name, created_at_ms, sent) in rows {
        let person = Person { id: person_id, name };
        match (status.as_str(), sent) {
            ("accepted", _) => friends.friends.push(person),
            (_, true) => friends.outgoing.push(PendingFriendRequest {
                id,
                person,
                created_at_ms,
            }),
            (_, false) => friends.incoming.push(PendingFriendRequest {
                id,
                person,
                created_at_ms,
            }),
        }
    }
    friends
        .friends
        .sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    friends.friends.dedup_by(|a, b| a.id == b.id);
    Ok(Json(friends))
}

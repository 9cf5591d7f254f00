//! Messaging's HTTP face: conversations, their messages, horizons and participants. The
//! rules are [`crate::messaging`]'s (the socket's `message:*` frames share them), so the
//! bodies' `Validate` only checks their shape.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Deserialize;
use wire::{
    Conversation, ConversationTitle, Conversations, Horizon, Message, MessageEdit, MessagePage, NewConversation,
    NewMessage, NewParticipant, StateUpdate,
};

use super::{RequestId, commit_with_notices};
use crate::{
    accounts::User,
    api_error::ApiError,
    messaging::{self, Prepared, Recipient, Sent},
    middleware::{
        AppServer,
        extract::{AuthUser, FieldErrors, ValidJson, ValidQuery, Validate},
    },
    notify::{EmailDraft, InAppDraft, Notice, UnlessRead},
    storage::WriteBatch,
};

/// How long a message stays unread before its recipient gets an email about it (scaled
/// by `--time-scale`, like the retry tiers).
pub const UNREAD_EMAIL_AFTER: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// How much of a message its notification and email quote.
const PREVIEW_CHARS: usize = 140;

/// The rules are `messaging`'s, applied where the socket applies them too.
macro_rules! checked_there {
    ($($body:ty),*) => {$(
        impl Validate for $body {
            fn validate(&self, _: &mut FieldErrors) {}
        }
    )*};
}
checked_there!(
    NewConversation,
    NewMessage,
    MessageEdit,
    Horizon,
    NewParticipant,
    ConversationTitle
);

/// `POST /api/conversations` → 201 (or 200 with the one-to-one conversation that exists).
#[utoipa::path(post, path = "/api/conversations", request_body = wire::NewConversation, responses((status = 201, description = "created; every participant hears of it", body = wire::Conversation), (status = 200, description = "the one-to-one conversation these two already have", body = wire::Conversation), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 401, description = "no valid bearer token", body = wire::ErrorBody), (status = 403, description = "a participant is not the caller's friend", body = wire::ErrorBody), (status = 404, description = "no such user", body = wire::ErrorBody)), tag = "messaging")]
pub async fn create(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    ValidJson(body): ValidJson<NewConversation>,
) -> Result<(StatusCode, Json<Conversation>), ApiError> {
    let (conversation, created) = server.shared.messaging.create(&user, &body).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(conversation)))
}

/// `GET /api/conversations`.
#[utoipa::path(get, path = "/api/conversations", responses((status = 200, description = "the caller's conversations, the most recently active first", body = wire::Conversations), (status = 401, description = "no valid bearer token", body = wire::ErrorBody)), tag = "messaging")]
pub async fn list(State(server): State<AppServer>, AuthUser(user): AuthUser) -> Result<Json<Conversations>, ApiError> {
    let conversations = server.shared.messaging.list(&user).await?;
    Ok(Json(Conversations { conversations }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    /// Only messages with a smaller `seq` (the previous page's `nextBefore`).
    before: Option<i64>,
    /// 1 to 200; 50 when left out.
    limit: Option<i64>,
}

/// `GET /api/conversations/{id}/messages?before=&limit=`.
#[utoipa::path(get, path = "/api/conversations/{id}/messages", params(("id" = String, Path, description = "the conversation"), MessagesQuery), responses((status = 200, description = "oldest first, and every participant's horizons", body = wire::MessagePage), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 401, description = "no valid bearer token", body = wire::ErrorBody), (status = 403, description = "not in this conversation", body = wire::ErrorBody), (status = 404, description = "no such conversation", body = wire::ErrorBody)), tag = "messaging")]
pub async fn messages(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    ValidQuery(query): ValidQuery<MessagesQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=messaging::MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid([(
            "limit",
            format!("must be between 1 and {}", messaging::MAX_PAGE),
        )]));
    }
    if query.before.is_some_and(|before| before < 1) {
        return Err(ApiError::invalid([("before", "must be at least 1".to_string())]));
    }
    let page = server.shared.messaging.page(&user, &id, query.before, limit).await?;
    Ok(Json(page))
}

/// `POST /api/conversations/{id}/messages {clientId, body}` → 201, or 200 with the
/// message this `clientId` already made.
#[utoipa::path(post, path = "/api/conversations/{id}/messages", params(("id" = String, Path, description = "the conversation")), request_body = wire::NewMessage, responses((status = 201, description = "stored (sent); the members hear of it", body = wire::Message), (status = 200, description = "sent before with this clientId: that message", body = wire::Message), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 401, description = "no valid bearer token", body = wire::ErrorBody), (status = 403, description = "not in this conversation (or left it)", body = wire::ErrorBody), (status = 404, description = "no such conversation", body = wire::ErrorBody), (status = 409, description = "this clientId was used in another conversation", body = wire::ErrorBody), (status = 413, description = "the body is too long", body = wire::ErrorBody)), tag = "messaging")]
pub async fn send(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    request_id: RequestId,
    Path(id): Path<String>,
    ValidJson(body): ValidJson<NewMessage>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let sent = send_message(&server, &user, &id, &body, &request_id).await?;
    let status = if sent.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(sent.message)))
}

/// `PATCH /api/conversations/{id}/messages/{messageId} {body}` (its sender).
#[utoipa::path(patch, path = "/api/conversations/{id}/messages/{message_id}", params(("id" = String, Path, description = "the conversation"), ("message_id" = String, Path, description = "the message")), request_body = wire::MessageEdit, responses((status = 200, description = "edited; the members see it", body = wire::Message), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 401, description = "no valid bearer token", body = wire::ErrorBody), (status = 403, description = "not the sender, or not in the conversation", body = wire::ErrorBody), (status = 404, description = "no such conversation or message", body = wire::ErrorBody), (status = 409, description = "the message was deleted", body = wire::ErrorBody), (status = 413, description = "the body is too long", body = wire::ErrorBody)), tag = "messaging")]
pub async fn edit(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    Path((id, message_id)): Path<(String, String)>,
    ValidJson(body): ValidJson<MessageEdit>,
) -> Result<Json<Message>, ApiError> {
    let message = server
        .shared
        .messaging
        .amend(&user, &id, &message_id, Some(&body.body))
        .await?;
    Ok(Json(message))
}

/// `DELETE /api/conversations/{id}/messages/{messageId}` (its sender): the text goes,
/// the place in the conversation stays.
#[utoipa::path(delete, path = "/api/conversations/{id}/messages/{message_id}", params(("id" = String, Path, description = "the conversation"), ("message_id" = String, Path, description = "the message")), responses((status = 200, description = "deleted; the members see it", body = wire::Message), (status = 401, description = "no valid bearer token", body = wire::ErrorBody), (status = 403, description = "not the sender, or not in the conversation", body = wire::ErrorBody), (status = 404, description = "no such conversation or message", body = wire::ErrorBody), (status = 409, description = "already deleted", body = wire::ErrorBody)), tag = "messaging")]
pub async fn delete(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    Path((id, message_id)): Path<(String, String)>,
) -> Result<Json<Message>, ApiError> {
    let message = server.shared.messaging.amend(&user, &id, &message_id, None).await?;
    Ok(Json(message))
}

/// `POST /api/conversations/{id}/read {upToSeq}`: the caller read up to it.
#[utoipa::path(post, path = "/api/conversations/{id}/read", params(("id" = String, Path, description = "the conversation")), request_body = wire::Horizon, responses((status = 200, description = "the caller's horizons now (never moved back)", body = wire::StateUpdate), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 401, description = "no valid bearer token", body = wire::ErrorBody), (status = 403, description = "not in this conversation", body = wire::ErrorBody), (status = 404, description = "no such conversation", body = wire::ErrorBody)), tag = "messaging")]
pub async fn read(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    ValidJson(body): ValidJson<Horizon>,
) -> Result<Json<StateUpdate>, ApiError> {
    let update = server
        .shared
        .messaging
        .horizon(&user, &id, messaging::Horizon::Read, body.up_to_seq)
        .await?;
    Ok(Json(update))
}

/// `PATCH /api/conversations/{id} {title}`.
#[utoipa::path(patch, path = "/api/conversations/{id}", params(("id" = String, Path, description = "the conversation")), request_body = wire::ConversationTitle, responses((status = 200, description = "renamed; the members hear of it", body = wire::Conversation), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 401, description = "no valid bearer token", body = wire::ErrorBody), (status = 403, description = "not in this conversation", body = wire::ErrorBody), (status = 404, description = "no such conversation", body = wire::ErrorBody)), tag = "messaging")]
pub async fn rename(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    ValidJson(body): ValidJson<ConversationTitle>,
) -> Result<Json<Conversation>, ApiError> {
    let conversation = server
        .shared
        .messaging
        .rename(&user, &id, body.title.as_deref())
        .await?;
    Ok(Json(conversation))
}

/// `POST /api/conversations/{id}/participants {userId}`: a friend of the caller joins.
#[utoipa::path(post, path = "/api/conversations/{id}/participants", params(("id" = String, Path, description = "the conversation")), request_body = wire::NewParticipant, responses((status = 200, description = "joined; they see what is said from now on", body = wire::Conversation), (status = 401, description = "no valid bearer token", body = wire::ErrorBody), (status = 403, description = "not in this conversation, or not the caller's friend", body = wire::ErrorBody), (status = 404, description = "no such conversation or user", body = wire::ErrorBody), (status = 409, description = "already in it, or it is full", body = wire::ErrorBody)), tag = "messaging")]
pub async fn add_participant(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    ValidJson(body): ValidJson<NewParticipant>,
) -> Result<Json<Conversation>, ApiError> {
    let conversation = server.shared.messaging.add(&user, &id, &body.user_id).await?;
    Ok(Json(conversation))
}

/// `DELETE /api/conversations/{id}/participants/me`: the caller leaves.
#[utoipa::path(delete, path = "/api/conversations/{id}/participants/me", params(("id" = String, Path, description = "the conversation")), responses((status = 200, description = "left; what was said until now stays readable", body = wire::Conversation), (status = 401, description = "no valid bearer token", body = wire::ErrorBody), (status = 403, description = "not in this conversation (or left it)", body = wire::ErrorBody), (status = 404, description = "no such conversation", body = wire::ErrorBody)), tag = "messaging")]
pub async fn leave(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Conversation>, ApiError> {
    let conversation = server.shared.messaging.leave(&user, &id).await?;
    Ok(Json(conversation))
}

/// Sends a message (the `POST` and the socket's `message:send`): stored with its
/// recipients' notifications in one commit — an in-app notification now, an email that
/// waits [`UNREAD_EMAIL_AFTER`] and goes only if the message is still unread (both as
/// their preferences for `messages` say) — then announced to the members.
pub async fn send_message(
    server: &AppServer,
    sender: &User,
    conversation_id: &str,
    body: &NewMessage,
    request_id: &RequestId,
) -> Result<Sent, ApiError> {
    match server
        .shared
        .messaging
        .prepare_send(sender, conversation_id, body)
        .await?
    {
        Prepared::Existing(message) => Ok(Sent {
            message,
            created: false,
        }),
        Prepared::New {
            tx,
            message,
            members,
            recipients,
        } => {
            let after = server.shared.queues.scaled(UNREAD_EMAIL_AFTER);
            let notices: Vec<Notice> = recipients
                .iter()
                .map(|recipient| message_notice(server, sender, &message, recipient, after))
                .collect();
            commit_with_notices(server, tx, WriteBatch::default(), &notices, request_id).await?;
            server.shared.messaging.announce_message(&message, members).await;
            Ok(Sent { message, created: true })
        }
    }
}

fn message_notice(
    server: &AppServer,
    sender: &User,
    message: &Message,
    recipient: &Recipient,
    after: std::time::Duration,
) -> Notice {
    let mut preview: String = message.body.chars().take(PREVIEW_CHARS).collect();
    if message.body.chars().count() > PREVIEW_CHARS {
        preview.push('…');
    }
    Notice {
        kind: wire::NotificationType::Message,
        user_id: Some(recipient.id.clone()),
        email: Some(EmailDraft {
            to: recipient.email.clone(),
            subject: format!("{} sent you a message", sender.name),
            body: format!(
                "Hello {},\n\n{} wrote to you:\n\n{preview}\n\nAnswer at {}/\n",
                recipient.name, sender.name, server.shared.public_url
            ),
            unless_read: Some(UnlessRead {
                message_id: message.id.clone(),
                after,
            }),
        }),
        in_app: Some(InAppDraft {
            title: format!("New message from {}", sender.name),
            body: preview,
        }),
        subject_id: Some(message.id.clone()),
    }
}

//! Messaging between friends (seed 003; README "Messaging"): conversations, their
//! messages and each member's horizons, in the database, and the frames that tell the
//! members' sockets — in every process, through [`Rooms`] — what changed.
//!
//! Every rule lives here once; the REST handlers (`controllers::conversations`) and the
//! socket's `message:*` frames (`websocket`) both call it. A message is stored before
//! anyone hears of it, with its `seq` taken from the conversation in the same
//! transaction, so the seq is gapless and a resend with the same `clientId` finds the
//! stored message instead of making a second.

use axum::http::StatusCode;
use wire::{
    Conversation, ConversationChange, DeliveryState, MAX_CLIENT_ID, MAX_MESSAGE_CHARS, MAX_PARTICIPANTS,
    MAX_TITLE_CHARS, Message, MessagePage, NewConversation, NewMessage, Participant, Person, StateUpdate, UserFrame,
};

use crate::{
    accounts::{User, new_id},
    api_error::ApiError,
    now_ms,
    storage::{Connect, Database, WriteTransaction},
    websocket::rooms::{Room, Rooms},
};

/// The most messages one page of history holds.
pub const MAX_PAGE: i64 = 200;
/// Messages read at a time when forwarding what waited for a user.
pub const FORWARD_BATCH: i64 = 500;

/// The columns of `messages` a [`Message`] is read from.
const MESSAGE_COLUMNS: &str = "msg.id, msg.conversation_id, msg.seq, msg.sender_id, msg.client_id, msg.body, msg.created_at_ms, msg.edited_at_ms, msg.deleted_at_ms";

/// Which horizon a reader moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Horizon {
    /// A device holds the messages (its ack).
    Delivered,
    /// The user read them (which also means delivered).
    Read,
}

/// A member's row, as the checks need it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Membership {
    joined_after_seq: i64,
    left_after_seq: Option<i64>,
    delivered_seq: i64,
    read_seq: i64,
    last_seq: i64,
}

/// What a send answers with: the stored message, and whether this call made it (a
/// resend did not).
pub struct Sent {
    pub message: Message,
    pub created: bool,
}

/// A send's first half ([`Messaging::prepare_send`]).
pub enum Prepared {
    /// This `clientId` made it before: nothing to commit.
    Existing(Message),
    /// Written in `tx`, not yet committed: the caller adds the notifications for
    /// `recipients` and commits, then announces it to `members`.
    New {
        tx: WriteTransaction,
        message: Message,
        members: Vec<String>,
        recipients: Vec<Recipient>,
    },
}

/// Someone a message is for: who they are and where their reminder goes.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Recipient {
    pub id: String,
    pub name: String,
    pub email: String,
}

/// The messaging service of one process.
#[derive(Clone)]
pub struct Messaging {
    db: Database,
    rooms: Rooms,
}

fn forbidden(why: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, why)
}

fn no_conversation() -> ApiError {
    ApiError::not_found("no such conversation")
}

/// A message body's checks: not empty (400), not over [`MAX_MESSAGE_CHARS`] (413).
pub fn check_body(body: &str) -> Result<(), ApiError> {
    if body.trim().is_empty() {
        return Err(ApiError::invalid([("body", "must not be empty".to_string())]));
    }
    // PostgreSQL's text cannot hold NUL; no person types one.
    if body.contains('\0') {
        return Err(ApiError::invalid([(
            "body",
            "must not contain NUL characters".to_string(),
        )]));
    }
    if body.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a message holds at most {MAX_MESSAGE_CHARS} characters"),
        ));
    }
    Ok(())
}

fn check_client_id(client_id: &str) -> Result<(), ApiError> {
    let fine = !client_id.is_empty()
        && client_id.len() <= MAX_CLIENT_ID
        && client_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if fine {
        Ok(())
    } else {
        Err(ApiError::invalid([(
            "clientId",
            format!("must be 1 to {MAX_CLIENT_ID} letters, digits or - _ . :"),
        )]))
    }
}

fn check_title(title: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(title) = title.map(str::trim) else {
        return Ok(None);
    };
    if title.is_empty() {
        return Ok(None);
    }
    if title.chars().count() > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
        return Err(ApiError::invalid([(
            "title",
            format!("must be at most {MAX_TITLE_CHARS} characters, none of them control characters"),
        )]));
    }
    Ok(Some(title.to_string()))
}

impl Messaging {
    pub fn new(db: Database, rooms: Rooms) -> Self {
        Self { db, rooms }
    }

    /// Whether `a` and `b` are friends (a request between them accepted).
    async fn friends(tx: &mut impl Connect, a: &str, b: &str) -> Result<bool, sqlx::Error> {
        // A text column, not `SELECT 1`: PostgreSQL's literal is an INTEGER, SQLite's a BIGINT.
        let found: Option<String> = crate::with_connection!(tx, |c| sqlx::query_scalar(
            "SELECT id FROM friend_requests WHERE status = 'accepted' \
             AND ((from_user_id = $1 AND to_user_id = $2) OR (from_user_id = $3 AND to_user_id = $4)) LIMIT 1"
        )
        .bind(a)
        .bind(b)
        .bind(b)
        .bind(a)
        .fetch_optional(c)
        .await)?;
        Ok(found.is_some())
    }

    async fn person(tx: &mut impl Connect, id: &str) -> Result<Option<Person>, sqlx::Error> {
        let row: Option<(String, String)> =
            crate::with_connection!(tx, |c| sqlx::query_as("SELECT id, name FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(c)
                .await)?;
        Ok(row.map(|(id, name)| Person { id, name }))
    }

    /// The caller's membership, or why they may not: 404 for a conversation that does
    /// not exist, 403 for one they are not (or no longer) in.
    async fn membership(tx: &mut impl Connect, conversation_id: &str, user_id: &str) -> Result<Membership, ApiError> {
        let row: Option<Membership> = crate::with_connection!(tx, |c| sqlx::query_as(
            "SELECT m.joined_after_seq, m.left_after_seq, m.delivered_seq, m.read_seq, c.last_seq \
             FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.conversation_id = $1 AND m.user_id = $2"
        )
        .bind(conversation_id)
        .bind(user_id)
        .fetch_optional(c)
        .await)?;
        if let Some(member) = row {
            return Ok(member);
        }
        let exists: Option<String> =
            crate::with_connection!(tx, |c| sqlx::query_scalar("SELECT id FROM conversations WHERE id = $1")
                .bind(conversation_id)
                .fetch_optional(c)
                .await)?;
        Err(match exists {
            Some(_) => forbidden("you are not in this conversation"),
            None => no_conversation(),
        })
    }

    /// Like [`Self::membership`], for someone who must still be in it (to write).
    async fn active_membership(
        tx: &mut impl Connect,
        conversation_id: &str,
        user_id: &str,
    ) -> Result<Membership, ApiError> {
        let member = Self::membership(tx, conversation_id, user_id).await?;
        if member.left_after_seq.is_some() {
            return Err(forbidden("you left this conversation"));
        }
        Ok(member)
    }

    /// The members still in it, who hear of what happens in it.
    async fn active_members(tx: &mut impl Connect, conversation_id: &str) -> Result<Vec<String>, sqlx::Error> {
        crate::with_connection!(tx, |c| {
            sqlx::query_scalar(
            "SELECT user_id FROM conversation_members WHERE conversation_id = $1 AND left_at_ms IS NULL ORDER BY user_id"
        )
        .bind(conversation_id)
        .fetch_all(c)
        .await
        })
    }

    async fn participants(tx: &mut impl Connect, conversation_id: &str) -> Result<Vec<Participant>, sqlx::Error> {
        let rows: Vec<(String, String, i64, i64, Option<i64>)> = crate::with_connection!(tx, |c| sqlx::query_as(
            "SELECT u.id, u.name, m.delivered_seq, m.read_seq, m.left_at_ms FROM conversation_members m \
             JOIN users u ON u.id = m.user_id WHERE m.conversation_id = $1 ORDER BY m.joined_at_ms, u.id"
        )
        .bind(conversation_id)
        .fetch_all(c)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(id, name, delivered_seq, read_seq, left_at_ms)| Participant {
                id,
                name,
                delivered_seq,
                read_seq,
                left_at_ms,
            })
            .collect())
    }

    /// One conversation as `viewer` sees it.
    async fn conversation(
        tx: &mut impl Connect,
        conversation_id: &str,
        viewer: &str,
    ) -> Result<Conversation, ApiError> {
        let member = Self::membership(tx, conversation_id, viewer).await?;
        let row: (Option<String>, String, i64) = crate::with_connection!(tx, |c| sqlx::query_as(
            "SELECT title, created_by, created_at_ms FROM conversations WHERE id = $1"
        )
        .bind(conversation_id)
        .fetch_one(c)
        .await)?;
        let visible_up_to = member.left_after_seq.unwrap_or(member.last_seq);
        let last_message: Option<Message> = crate::with_connection!(tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {MESSAGE_COLUMNS} FROM messages msg WHERE msg.conversation_id = $1 AND msg.seq = $2")
        ))
        .bind(conversation_id)
        .bind(visible_up_to)
        .fetch_optional(c)
        .await)?;
        let unread: i64 = crate::with_connection!(tx, |c| {
            sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE conversation_id = $1 AND seq > $2 AND seq <= $3 AND sender_id <> $4 AND deleted_at_ms IS NULL"
        )
        .bind(conversation_id)
        .bind(member.read_seq.max(member.joined_after_seq))
        .bind(visible_up_to)
        .bind(viewer)
        .fetch_one(c)
        .await
        })?;
        Ok(Conversation {
            id: conversation_id.to_string(),
            title: row.0,
            created_by: row.1,
            created_at_ms: row.2,
            last_seq: visible_up_to,
            participants: Self::participants(tx, conversation_id).await?,
            last_message: last_message.filter(|message| message.seq > member.joined_after_seq),
            unread,
        })
    }

    /// `POST /api/conversations`: with the caller's friends. A one-to-one conversation
    /// without a title that exists already is returned (`created` false), not doubled.
    pub async fn create(&self, creator: &User, body: &NewConversation) -> Result<(Conversation, bool), ApiError> {
        let mut others: Vec<String> = body.participants.iter().map(|id| id.trim().to_string()).collect();
        others.sort();
        others.dedup();
        others.retain(|id| *id != creator.id);
        if others.is_empty() {
            return Err(ApiError::invalid([(
                "participants",
                "must name at least one other user".to_string(),
            )]));
        }
        if others.len() >= MAX_PARTICIPANTS {
            return Err(ApiError::invalid([(
                "participants",
                format!("at most {} others", MAX_PARTICIPANTS - 1),
            )]));
        }
        let title = check_title(body.title.as_deref())?;
        let mut tx = self.db.begin_write().await?;
        for other in &others {
            if Self::person(&mut tx, other).await?.is_none() {
                return Err(ApiError::not_found(format!("no user {other}")));
            }
            if !Self::friends(&mut tx, &creator.id, other).await? {
                return Err(forbidden("you can only talk with your friends"));
            }
        }
        if let [other] = others.as_slice()
            && title.is_none()
        {
            let existing: Option<String> = crate::with_connection!(&mut tx, |c| {
                sqlx::query_scalar(
                "SELECT c.id FROM conversations c \
                 JOIN conversation_members a ON a.conversation_id = c.id AND a.user_id = $1 \
                 JOIN conversation_members b ON b.conversation_id = c.id AND b.user_id = $2 \
                 WHERE c.title IS NULL AND (SELECT COUNT(*) FROM conversation_members m WHERE m.conversation_id = c.id) = 2 \
                 ORDER BY c.created_at_ms LIMIT 1"
            )
            .bind(&creator.id)
            .bind(other)
            .fetch_optional(c)
            .await
            })?;
            if let Some(id) = existing {
                let conversation = Self::conversation(&mut tx, &id, &creator.id).await?;
                return Ok((conversation, false));
            }
        }
        let id = new_id();
        let now = now_ms();
        crate::with_connection!(&mut tx, |c| {
            sqlx::query(
            "INSERT INTO conversations (id, title, created_by, created_at_ms, last_seq, last_message_at_ms) VALUES ($1, $2, $3, $4, 0, $5)"
        )
        .bind(&id)
        .bind(&title)
        .bind(&creator.id)
        .bind(now)
        .bind(now)
        .execute(c)
        .await
        .map(|_| ())
        })?;
        for member in std::iter::once(&creator.id).chain(&others) {
            crate::with_connection!(&mut tx, |c| {
                sqlx::query(
                "INSERT INTO conversation_members (conversation_id, user_id, joined_at_ms, joined_after_seq) VALUES ($1, $2, $3, 0)"
            )
            .bind(&id)
            .bind(member)
            .bind(now)
            .execute(c)
            .await
            .map(|_| ())
            })?;
        }
        let conversation = Self::conversation(&mut tx, &id, &creator.id).await?;
        let members = Self::active_members(&mut tx, &id).await?;
        tx.commit().await?;
        self.announce(&conversation, members, None, "created").await;
        Ok((conversation, true))
    }

    /// Tells the members a conversation changed.
    async fn announce(&self, conversation: &Conversation, members: Vec<String>, person: Option<Person>, change: &str) {
        let frame = UserFrame::ConversationChange(ConversationChange {
            conversation: Conversation {
                // Each member's own count differs; the frame carries none.
                unread: 0,
                ..conversation.clone()
            },
            person,
            change: change.to_string(),
        });
        let room = Room::Conversation {
            id: conversation.id.clone(),
            members,
        };
        self.rooms.send(room, &frame).await;
    }

    /// `GET /api/conversations`: the user's, most recently active first (at most 200).
    pub async fn list(&self, user: &User) -> Result<Vec<Conversation>, ApiError> {
        let mut tx = self.db.read().await?;
        let ids: Vec<String> = crate::with_connection!(&mut tx, |c| {
            sqlx::query_scalar(
            "SELECT c.id FROM conversations c JOIN conversation_members m ON m.conversation_id = c.id AND m.user_id = $1 \
             ORDER BY c.last_message_at_ms DESC, c.id LIMIT 200"
        )
        .bind(&user.id)
        .fetch_all(c)
        .await
        })?;
        let mut conversations = Vec::with_capacity(ids.len());
        for id in ids {
            conversations.push(Self::conversation(&mut tx, &id, &user.id).await?);
        }
        Ok(conversations)
    }

    /// `GET /api/conversations/{id}/messages?before=&limit=`: oldest first.
    pub async fn page(
        &self,
        user: &User,
        conversation_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<MessagePage, ApiError> {
        let mut tx = self.db.read().await?;
        let member = Self::membership(&mut tx, conversation_id, &user.id).await?;
        let visible_up_to = member.left_after_seq.unwrap_or(member.last_seq);
        let below = before.unwrap_or(i64::MAX).min(visible_up_to.saturating_add(1));
        let limit = limit.clamp(1, MAX_PAGE);
        let mut messages: Vec<Message> = crate::with_connection!(&mut tx, |c| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages msg WHERE msg.conversation_id = $1 AND msg.seq < $2 AND msg.seq > $3 \
             ORDER BY msg.seq DESC LIMIT $4"
        )))
        .bind(conversation_id)
        .bind(below)
        .bind(member.joined_after_seq)
        .bind(limit)
        .fetch_all(c)
        .await
        })?;
        messages.reverse();
        let next_before = messages
            .first()
            .filter(|oldest| oldest.seq > member.joined_after_seq + 1)
            .map(|oldest| oldest.seq);
        let participants = Self::participants(&mut tx, conversation_id).await?;
        Ok(MessagePage {
            messages,
            next_before,
            participants,
        })
    }

    /// `POST /api/conversations/{id}/messages` and `message:send`, first half: the
    /// message written in a transaction the caller commits with the recipients'
    /// notifications (the outbox), or the one this `clientId` already made. The second
    /// half, once committed, is [`Self::announce_message`].
    pub async fn prepare_send(
        &self,
        sender: &User,
        conversation_id: &str,
        body: &NewMessage,
    ) -> Result<Prepared, ApiError> {
        check_client_id(&body.client_id)?;
        check_body(&body.body)?;
        let mut tx = self.db.begin_write().await?;
        let earlier: Option<Message> = crate::with_connection!(&mut tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {MESSAGE_COLUMNS} FROM messages msg WHERE msg.sender_id = $1 AND msg.client_id = $2")
        ))
        .bind(&sender.id)
        .bind(&body.client_id)
        .fetch_optional(c)
        .await)?;
        if let Some(message) = earlier {
            if message.conversation_id != conversation_id {
                return Err(ApiError::conflict(
                    "this clientId was used for a message in another conversation",
                ));
            }
            return Ok(Prepared::Existing(message));
        }
        Self::active_membership(&mut tx, conversation_id, &sender.id).await?;
        let now = now_ms();
        let seq: i64 = crate::with_connection!(&mut tx, |c| {
            sqlx::query_scalar(
            "UPDATE conversations SET last_seq = last_seq + 1, last_message_at_ms = $1 WHERE id = $2 RETURNING last_seq"
        )
        .bind(now)
        .bind(conversation_id)
        .fetch_one(c)
        .await
        })?;
        let message = Message {
            id: new_id(),
            conversation_id: conversation_id.to_string(),
            seq,
            sender_id: sender.id.clone(),
            client_id: body.client_id.clone(),
            body: body.body.clone(),
            created_at_ms: now,
            edited_at_ms: None,
            deleted_at_ms: None,
        };
        let inserted = crate::with_connection!(&mut tx, |c| {
            sqlx::query(
            "INSERT INTO messages (id, conversation_id, seq, sender_id, client_id, body, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(&message.id)
        .bind(&message.conversation_id)
        .bind(message.seq)
        .bind(&message.sender_id)
        .bind(&message.client_id)
        .bind(&message.body)
        .bind(message.created_at_ms)
        .execute(c)
        .await
        .map(|_| ())
        });
        match inserted {
            Ok(()) => {}
            // The same clientId from another device of the sender, committed between our
            // look and our insert (PostgreSQL; SQLite has one writer): that message it is.
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                drop(tx);
                return match self.by_client_id(&sender.id, &body.client_id).await? {
                    Some(message) if message.conversation_id == conversation_id => Ok(Prepared::Existing(message)),
                    _ => Err(ApiError::conflict("this clientId was used for another message")),
                };
            }
            Err(error) => return Err(error.into()),
        }
        // The sender has it and has read it.
        crate::with_connection!(&mut tx, |c| {
            sqlx::query(
            "UPDATE conversation_members SET delivered_seq = $1, read_seq = $2 WHERE conversation_id = $3 AND user_id = $4"
        )
        .bind(seq)
        .bind(seq)
        .bind(conversation_id)
        .bind(&sender.id)
        .execute(c)
        .await
        .map(|_| ())
        })?;
        let members = Self::active_members(&mut tx, conversation_id).await?;
        let recipients: Vec<Recipient> = crate::with_connection!(&mut tx, |c| sqlx::query_as(
            "SELECT u.id, u.name, u.email FROM conversation_members m JOIN users u ON u.id = m.user_id \
             WHERE m.conversation_id = $1 AND m.left_at_ms IS NULL AND m.user_id <> $2 ORDER BY u.id"
        )
        .bind(conversation_id)
        .bind(&sender.id)
        .fetch_all(c)
        .await)?;
        Ok(Prepared::New {
            tx,
            message,
            members,
            recipients,
        })
    }

    /// A committed message to every member's sockets (the sender's other devices too).
    pub async fn announce_message(&self, message: &Message, members: Vec<String>) {
        let room = Room::Conversation {
            id: message.conversation_id.clone(),
            members,
        };
        self.rooms.send(room, &UserFrame::MessageNew(message.clone())).await;
    }

    async fn by_client_id(&self, sender_id: &str, client_id: &str) -> Result<Option<Message>, sqlx::Error> {
        crate::with_connection!(&mut self.db.read().await?, |c| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {MESSAGE_COLUMNS} FROM messages msg WHERE msg.sender_id = $1 AND msg.client_id = $2")
        ))
        .bind(sender_id)
        .bind(client_id)
        .fetch_optional(c)
        .await)
    }

    /// `PATCH` (a new `body`) or `DELETE` (none) of one's own message; every member
    /// sees the change (`message:update`).
    pub async fn amend(
        &self,
        sender: &User,
        conversation_id: &str,
        message_id: &str,
        body: Option<&str>,
    ) -> Result<Message, ApiError> {
        if let Some(body) = body {
            check_body(body)?;
        }
        let mut tx = self.db.begin_write().await?;
        Self::active_membership(&mut tx, conversation_id, &sender.id).await?;
        let found: Option<Message> = crate::with_connection!(&mut tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {MESSAGE_COLUMNS} FROM messages msg WHERE msg.id = $1 AND msg.conversation_id = $2")
        ))
        .bind(message_id)
        .bind(conversation_id)
        .fetch_optional(c)
        .await)?;
        let Some(mut message) = found else {
            return Err(ApiError::not_found("no such message in this conversation"));
        };
        if message.sender_id != sender.id {
            return Err(forbidden("only its sender may change a message"));
        }
        if message.deleted_at_ms.is_some() {
            return Err(ApiError::conflict("the message was deleted"));
        }
        let now = now_ms();
        match body {
            Some(body) => {
                message.body = body.to_string();
                message.edited_at_ms = Some(now);
            }
            None => {
                message.body = String::new();
                message.deleted_at_ms = Some(now);
            }
        }
        crate::with_connection!(&mut tx, |c| sqlx::query(
            "UPDATE messages SET body = $1, edited_at_ms = $2, deleted_at_ms = $3 WHERE id = $4"
        )
        .bind(&message.body)
        .bind(message.edited_at_ms)
        .bind(message.deleted_at_ms)
        .bind(&message.id)
        .execute(c)
        .await
        .map(|_| ()))?;
        let members = Self::active_members(&mut tx, conversation_id).await?;
        tx.commit().await?;
        let room = Room::Conversation {
            id: conversation_id.to_string(),
            members,
        };
        self.rooms.send(room, &UserFrame::MessageUpdate(message.clone())).await;
        Ok(message)
    }

    /// Moves the reader's horizon forward (never back) and, when it moved, tells every
    /// member (`conversation.state_update`): the senders see delivered and read.
    pub async fn horizon(
        &self,
        reader: &User,
        conversation_id: &str,
        horizon: Horizon,
        up_to_seq: i64,
    ) -> Result<StateUpdate, ApiError> {
        if up_to_seq < 0 {
            return Err(ApiError::invalid([("upToSeq", "must not be negative".to_string())]));
        }
        let mut tx = self.db.begin_write().await?;
        let member = Self::membership(&mut tx, conversation_id, &reader.id).await?;
        let up_to = up_to_seq.min(member.left_after_seq.unwrap_or(member.last_seq));
        let delivered = member.delivered_seq.max(up_to);
        let read = match horizon {
            Horizon::Read => member.read_seq.max(up_to),
            Horizon::Delivered => member.read_seq,
        };
        let update = StateUpdate {
            conversation_id: conversation_id.to_string(),
            user_id: reader.id.clone(),
            delivered_seq: delivered,
            read_seq: read,
        };
        if (delivered, read) == (member.delivered_seq, member.read_seq) {
            return Ok(update);
        }
        crate::with_connection!(&mut tx, |c| {
            sqlx::query(
            "UPDATE conversation_members SET delivered_seq = $1, read_seq = $2 WHERE conversation_id = $3 AND user_id = $4"
        )
        .bind(delivered)
        .bind(read)
        .bind(conversation_id)
        .bind(&reader.id)
        .execute(c)
        .await
        .map(|_| ())
        })?;
        // Read messages read their notifications too, so the bell agrees with the thread.
        let inbox = if read > member.read_seq {
            Self::read_notifications(&mut tx, &reader.id, conversation_id, read).await?
        } else {
            None
        };
        let members = Self::active_members(&mut tx, conversation_id).await?;
        tx.commit().await?;
        let room = Room::Conversation {
            id: conversation_id.to_string(),
            members,
        };
        self.rooms.send(room, &UserFrame::StateUpdate(update.clone())).await;
        if let Some(inbox) = inbox {
            self.rooms
                .send(Room::User(reader.id.clone()), &UserFrame::NotificationUpdate(inbox))
                .await;
        }
        Ok(update)
    }

    /// Marks read the reader's notifications of the conversation's messages up to `seq`;
    /// the notification center's update when any changed (its version bumped).
    async fn read_notifications(
        tx: &mut WriteTransaction,
        reader_id: &str,
        conversation_id: &str,
        seq: i64,
    ) -> Result<Option<wire::InboxUpdate>, sqlx::Error> {
        let now = now_ms();
        let ids: Vec<String> = crate::with_connection!(tx, |c| sqlx::query_scalar(
            "UPDATE notifications SET read_at_ms = $1, seen_at_ms = COALESCE(seen_at_ms, $2) \
             WHERE user_id = $3 AND kind = 'message' AND read_at_ms IS NULL \
             AND subject_id IN (SELECT id FROM messages WHERE conversation_id = $4 AND seq <= $5) RETURNING id"
        )
        .bind(now)
        .bind(now)
        .bind(reader_id)
        .bind(conversation_id)
        .bind(seq)
        .fetch_all(c)
        .await)?;
        if ids.is_empty() {
            return Ok(None);
        }
        crate::controllers::notifications::bump_version(tx, reader_id).await?;
        let count = crate::controllers::notifications::inbox_count(tx, reader_id).await?;
        Ok(Some(count.update(ids, wire::InboxChange::Read, None)))
    }

    /// `POST /api/conversations/{id}/participants`: a member adds a friend of theirs,
    /// who sees what is said from now on.
    pub async fn add(&self, adder: &User, conversation_id: &str, user_id: &str) -> Result<Conversation, ApiError> {
        let mut tx = self.db.begin_write().await?;
        let member = Self::active_membership(&mut tx, conversation_id, &adder.id).await?;
        let Some(person) = Self::person(&mut tx, user_id).await? else {
            return Err(ApiError::not_found(format!("no user {user_id}")));
        };
        if !Self::friends(&mut tx, &adder.id, user_id).await? {
            return Err(forbidden("you can only add your friends"));
        }
        let members = Self::active_members(&mut tx, conversation_id).await?;
        if members.contains(&person.id) {
            return Err(ApiError::conflict("already in this conversation"));
        }
        if members.len() >= MAX_PARTICIPANTS {
            return Err(ApiError::conflict(format!(
                "a conversation holds at most {MAX_PARTICIPANTS}"
            )));
        }
        let now = now_ms();
        // Someone who left and comes back starts again from now.
        crate::with_connection!(&mut tx, |c| sqlx::query(
            "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2"
        )
        .bind(conversation_id)
        .bind(&person.id)
        .execute(c)
        .await
        .map(|_| ()))?;
        crate::with_connection!(&mut tx, |c| {
            sqlx::query(
            "INSERT INTO conversation_members (conversation_id, user_id, joined_at_ms, joined_after_seq, delivered_seq, read_seq) \
             VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(conversation_id)
        .bind(&person.id)
        .bind(now)
        .bind(member.last_seq)
        .bind(member.last_seq)
        .bind(member.last_seq)
        .execute(c)
        .await
        .map(|_| ())
        })?;
        let conversation = Self::conversation(&mut tx, conversation_id, &adder.id).await?;
        let members = Self::active_members(&mut tx, conversation_id).await?;
        tx.commit().await?;
        self.announce(&conversation, members, Some(person), "joined").await;
        Ok(conversation)
    }

    /// `DELETE /api/conversations/{id}/participants/me`: the caller leaves, keeping what
    /// was said until now.
    pub async fn leave(&self, leaver: &User, conversation_id: &str) -> Result<Conversation, ApiError> {
        let mut tx = self.db.begin_write().await?;
        let member = Self::active_membership(&mut tx, conversation_id, &leaver.id).await?;
        let members = Self::active_members(&mut tx, conversation_id).await?;
        crate::with_connection!(&mut tx, |c| {
            sqlx::query(
            "UPDATE conversation_members SET left_at_ms = $1, left_after_seq = $2 WHERE conversation_id = $3 AND user_id = $4"
        )
        .bind(now_ms())
        .bind(member.last_seq)
        .bind(conversation_id)
        .bind(&leaver.id)
        .execute(c)
        .await
        .map(|_| ())
        })?;
        let conversation = Self::conversation(&mut tx, conversation_id, &leaver.id).await?;
        tx.commit().await?;
        let person = Person {
            id: leaver.id.clone(),
            name: leaver.name.clone(),
        };
        // The leaver's other devices hear it too.
        self.announce(&conversation, members, Some(person), "left").await;
        Ok(conversation)
    }

    /// `PATCH /api/conversations/{id} {title}`.
    pub async fn rename(
        &self,
        renamer: &User,
        conversation_id: &str,
        title: Option<&str>,
    ) -> Result<Conversation, ApiError> {
        let title = check_title(title)?;
        let mut tx = self.db.begin_write().await?;
        Self::active_membership(&mut tx, conversation_id, &renamer.id).await?;
        crate::with_connection!(&mut tx, |c| sqlx::query(
            "UPDATE conversations SET title = $1 WHERE id = $2"
        )
        .bind(&title)
        .bind(conversation_id)
        .execute(c)
        .await
        .map(|_| ()))?;
        let conversation = Self::conversation(&mut tx, conversation_id, &renamer.id).await?;
        let members = Self::active_members(&mut tx, conversation_id).await?;
        tx.commit().await?;
        let person = Person {
            id: renamer.id.clone(),
            name: renamer.name.clone(),
        };
        self.announce(&conversation, members, Some(person), "renamed").await;
        Ok(conversation)
    }

    /// The conversation's members still in it, for frames that are not stored (typing).
    pub async fn members_of(&self, conversation_id: &str) -> Result<Vec<String>, ApiError> {
        Ok(Self::active_members(&mut self.db.read().await?, conversation_id).await?)
    }

    /// Sends a frame that is not stored to a conversation's members.
    pub async fn relay(&self, conversation_id: &str, members: Vec<String>, frame: &UserFrame) {
        let room = Room::Conversation {
            id: conversation_id.to_string(),
            members,
        };
        self.rooms.send(room, frame).await;
    }

    /// What waited for `user_id`: the messages of their conversations after their
    /// delivered horizon (and within what they may see), in order per conversation, in
    /// batches of [`FORWARD_BATCH`] after `after` (a conversation id and seq).
    pub async fn waiting(&self, user_id: &str, after: Option<(&str, i64)>) -> Result<Vec<Message>, sqlx::Error> {
        let (after_conversation, after_seq) = after.unwrap_or(("", 0));
        crate::with_connection!(&mut self.db.read().await?, |c| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM conversation_members m JOIN messages msg ON msg.conversation_id = m.conversation_id \
             WHERE m.user_id = $1 AND msg.seq > m.delivered_seq AND msg.seq > m.joined_after_seq \
             AND (m.left_after_seq IS NULL OR msg.seq <= m.left_after_seq) \
             AND (msg.conversation_id > $2 OR (msg.conversation_id = $3 AND msg.seq > $4)) \
             ORDER BY msg.conversation_id, msg.seq LIMIT $5"
        )))
        .bind(user_id)
        .bind(after_conversation)
        .bind(after_conversation)
        .bind(after_seq)
        .bind(FORWARD_BATCH)
        .fetch_all(c)
        .await
        })
    }
}

/// Each participant's state of message `seq` (the sender's own is left out).
pub fn states(seq: i64, sender_id: &str, participants: &[Participant]) -> Vec<(String, DeliveryState)> {
    participants
        .iter()
        .filter(|participant| participant.id != sender_id && participant.left_at_ms.is_none())
        .map(|participant| {
            (
                participant.id.clone(),
                DeliveryState::of(seq, participant.delivered_seq, participant.read_seq),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_ids_and_titles_are_checked() {
        assert_eq!(check_body("hi").map_err(|error| error.status), Ok(()));
        assert_eq!(
            check_body("  \n").map_err(|error| error.status),
            Err(StatusCode::BAD_REQUEST)
        );
        let long = "é".repeat(MAX_MESSAGE_CHARS + 1);
        assert_eq!(
            check_body(&long).map_err(|error| error.status),
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        );
        assert!(
            check_body(&"é".repeat(MAX_MESSAGE_CHARS)).is_ok(),
            "characters, not bytes"
        );
        assert!(check_client_id("temp-1733231231-ab12cd").is_ok());
        assert!(check_client_id("").is_err());
        assert!(check_client_id("has space").is_err());
        assert!(check_client_id(&"a".repeat(MAX_CLIENT_ID + 1)).is_err());
        assert_eq!(check_title(Some("  ")).ok().flatten(), None);
        assert_eq!(check_title(Some(" Trip ")).ok().flatten().as_deref(), Some("Trip"));
        assert!(check_title(Some("bell\u{7}")).is_err());
    }

    #[test]
    fn each_other_participant_has_a_state() {
        let participant = |id: &str, delivered_seq, read_seq| Participant {
            id: id.into(),
            name: id.into(),
            delivered_seq,
            read_seq,
            left_at_ms: None,
        };
        let everyone = [
            participant("ada", 9, 9),
            participant("bob", 5, 3),
            participant("cy", 2, 0),
        ];
        assert_eq!(
            states(4, "ada", &everyone),
            [
                ("bob".to_string(), DeliveryState::Delivered),
                ("cy".to_string(), DeliveryState::Sent)
            ]
        );
        assert_eq!(states(3, "ada", &everyone)[0].1, DeliveryState::Read);
        assert_eq!(states(6, "ada", &everyone)[0].1, DeliveryState::Sent);
    }
}

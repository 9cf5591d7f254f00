//! The notification service: turns a business event into its notifications — an email
//! and an in-app message — and their delivery jobs, all inside the business
//! transaction (the outbox). Commit means "will be delivered"; rollback means "never
//! existed".

use app::wire::NotificationType;
use sqlx::{Sqlite, Transaction};

use crate::{
    accounts::new_id,
    now_ms,
    queue::{QueueName, Queues},
};

/// An email to send.
#[derive(Debug, Clone)]
pub struct EmailDraft {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// A message for the user's notification center.
#[derive(Debug, Clone)]
pub struct InAppDraft {
    pub title: String,
    pub body: String,
}

/// What one business event notifies.
#[derive(Debug, Clone)]
pub struct Notice {
    pub kind: NotificationType,
    /// The recipient; `None` only for emails to an address without an account.
    pub user_id: Option<String>,
    pub email: Option<EmailDraft>,
    pub in_app: Option<InAppDraft>,
}

/// The ids written, which are also the deliveries' idempotency keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FannedOut {
    pub email_id: Option<String>,
    pub notification_id: Option<String>,
}

/// Writes the notice's rows and jobs into `tx`.
pub async fn fan_out(
    tx: &mut Transaction<'_, Sqlite>,
    notice: &Notice,
    request_id: Option<&str>,
) -> Result<FannedOut, sqlx::Error> {
    let kind = kind_name(notice.kind);
    let now = now_ms();
    let mut out = FannedOut::default();
    if let Some(email) = &notice.email {
        let id = new_id();
        sqlx::query(
            "INSERT INTO emails (id, user_id, kind, to_address, subject, body, request_id, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(&notice.user_id)
        .bind(kind)
        .bind(&email.to)
        .bind(&email.subject)
        .bind(&email.body)
        .bind(request_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Queues::enqueue(tx, QueueName::Mail, &id, request_id).await?;
        out.email_id = Some(id);
    }
    if let (Some(message), Some(user_id)) = (&notice.in_app, &notice.user_id) {
        let id = new_id();
        // The per-user counter orders a user's notifications; taking it in this
        // transaction keeps seq gapless and unique per user.
        let seq: i64 = sqlx::query_scalar(
            "UPDATE users SET next_notification_seq = next_notification_seq + 1 WHERE id = ? RETURNING next_notification_seq - 1",
        )
        .bind(user_id)
        .fetch_one(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO notifications (id, user_id, seq, kind, title, body, request_id, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(seq)
        .bind(kind)
        .bind(&message.title)
        .bind(&message.body)
        .bind(request_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Queues::enqueue(tx, QueueName::Inapp, &id, request_id).await?;
        out.notification_id = Some(id);
    }
    Ok(out)
}

pub fn kind_name(kind: NotificationType) -> &'static str {
    match kind {
        NotificationType::Signup => "signup",
        NotificationType::Login => "login",
        NotificationType::ResetPassword => "reset-password",
        NotificationType::Purchase => "purchase",
        NotificationType::FriendRequest => "friend-request",
        NotificationType::FriendAccept => "friend-accept",
    }
}

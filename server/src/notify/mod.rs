//! The notification service: turns a business event into its notifications — an email
//! and an in-app message — and their delivery jobs, written in the business
//! transaction's batch (the outbox). Commit means "will be delivered"; rollback means
//! "never existed".

use crate::{
    accounts::new_id,
    now_ms,
    queue::{QueueName, Queues},
    storage::WriteBatch,
};
use wire::NotificationType;

/// An email to send.
#[derive(Debug, Clone)]
pub struct EmailDraft {
    pub to: String,
    pub subject: String,
    pub body: String,
    /// Sent later, and only if a message is still unread then.
    pub unless_read: Option<UnlessRead>,
}

/// Messaging's reminder: the email waits `after` (already scaled by `--time-scale`) and
/// is skipped if its recipient read `message_id` meanwhile.
#[derive(Debug, Clone)]
pub struct UnlessRead {
    pub message_id: String,
    pub after: std::time::Duration,
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
    /// The business row the notice is about, kept on its delivery jobs (a purchase's
    /// receipts: how far they got is the purchase's state in the business figures).
    pub subject_id: Option<String>,
}

/// SQL for "this email waited to see whether its message would be read, and it was".
pub const READ_ALREADY_SQL: &str = "(emails.unless_read IS NOT NULL AND EXISTS (SELECT 1 FROM messages msg \
     JOIN conversation_members cm ON cm.conversation_id = msg.conversation_id AND cm.user_id = emails.user_id \
     WHERE msg.id = emails.unless_read AND cm.read_seq >= msg.seq))";

/// SQL for "the user of this `table` row (`emails` or `notifications`) switched its
/// category off for `channel`, and it is not critical" (critical ones are delivered
/// whatever the preferences say), as a boolean column.
pub fn muted_sql(table: &str, channel: wire::Flow) -> String {
    let critical: Vec<String> = NotificationType::ALL
        .into_iter()
        .filter(|kind| kind.critical())
        .map(|kind| format!("'{}'", kind.name()))
        .collect();
    format!(
        "(EXISTS (SELECT 1 FROM notification_mutes m WHERE m.user_id = {table}.user_id AND m.category = {table}.category \
         AND m.channel = '{}') AND {table}.kind NOT IN ({}))",
        channel.name(),
        critical.join(", ")
    )
}

/// The ids written, which are also the deliveries' idempotency keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FannedOut {
    pub email_id: Option<String>,
    pub notification_id: Option<String>,
    /// The `mail` job of the email, if any.
    pub email_job_id: Option<String>,
    /// The `inapp` job of the notification, if any.
    pub inapp_job_id: Option<String>,
}

/// Adds the notice's rows and jobs to `batch`, which the caller commits with its
/// business rows.
/// `hold` delays the jobs (the injected queueing delay).
pub fn fan_out(
    batch: &mut WriteBatch,
    notice: &Notice,
    request_id: Option<&str>,
    hold: std::time::Duration,
) -> FannedOut {
    let kind = notice.kind.name();
    let category = notice.kind.category().as_str();
    let now = now_ms();
    let request_id = request_id.map(str::to_string);
    let mut out = FannedOut::default();
    if let Some(email) = &notice.email {
        let id = new_id();
        batch
            .statement(
                "INSERT INTO emails (id, user_id, kind, category, to_address, subject, body, request_id, created_at_ms, unless_read) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id.clone())
            .bind(notice.user_id.clone())
            .bind(kind)
            .bind(category)
            .bind(email.to.clone())
            .bind(email.subject.clone())
            .bind(email.body.clone())
            .bind(request_id.clone())
            .bind(now)
            .bind(email.unless_read.as_ref().map(|unless| unless.message_id.clone()));
        let after = email
            .unless_read
            .as_ref()
            .map_or(std::time::Duration::ZERO, |unless| unless.after);
        out.email_job_id = Some(Queues::enqueue(
            batch,
            QueueName::Mail,
            &id,
            request_id.as_deref(),
            notice.subject_id.as_deref(),
            hold + after,
        ));
        out.email_id = Some(id);
    }
    if let (Some(message), Some(user_id)) = (&notice.in_app, &notice.user_id) {
        let id = new_id();
        // seq orders one user's notifications. Taken as MAX + 1 inside the writing
        // transaction, so it is gapless and unique (and UNIQUE (user_id, seq) would
        // refuse a duplicate): on SQLite the transaction holds the one write lock; on
        // PostgreSQL it first locks the user's row, so a concurrent transaction taking
        // the same user's next seq waits for this one and then sees its row. (NO KEY:
        // the inserts' foreign keys share-lock the same row, and must not wait on it.)
        batch
            .postgres_only("SELECT 1 FROM users WHERE id = ? FOR NO KEY UPDATE")
            .bind(user_id.clone());
        batch
            .statement(
                "INSERT INTO notifications (id, user_id, seq, kind, category, title, body, request_id, created_at_ms, subject_id) \
                 VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM notifications WHERE user_id = ?), ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id.clone())
            .bind(user_id.clone())
            .bind(user_id.clone())
            .bind(kind)
            .bind(category)
            .bind(message.title.clone())
            .bind(message.body.clone())
            .bind(request_id.clone())
            .bind(now)
            .bind(notice.subject_id.clone());
        out.inapp_job_id = Some(Queues::enqueue(
            batch,
            QueueName::Inapp,
            &id,
            request_id.as_deref(),
            notice.subject_id.as_deref(),
            hold,
        ));
        out.notification_id = Some(id);
    }
    out
}

//! The live activity feed: one `activity_stream` row per signup, payment, invitation,
//! login and password reset, written in the same transaction as the business row it
//! records (so the feed never shows what did not happen, nor misses what did), then
//! announced on the live stream.

use wire::{ActivityEvent, ActivityType, LiveEvent};

use crate::{
    accounts::new_id,
    storage::{Database, WriteBatch},
    telemetry::Telemetry,
};

/// A new activity event of `kind` by `user_id`, stamped now.
pub fn event(
    kind: ActivityType,
    (user_id, user_name): (&str, &str),
    description: String,
    metadata: impl IntoIterator<Item = (&'static str, String)>,
) -> ActivityEvent {
    ActivityEvent {
        id: new_id(),
        kind,
        user_id: user_id.to_string(),
        user_name: user_name.to_string(),
        description,
        value: None,
        timestamp: chrono::Utc::now(),
        request_id: None,
        metadata: metadata
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect(),
    }
}

/// `ada@example.com` → `a***@example.com`: enough to tell two users apart on a screen,
/// not enough to write to them.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// Adds the event's row to the batch the controller commits with its business rows.
pub fn record(batch: &mut WriteBatch, event: &ActivityEvent) {
    let metadata = serde_json::to_string(&event.metadata).expect("a map of strings serializes");
    batch
        .statement(
            "INSERT INTO activity_stream (id, event_type, user_id, user_name, description, value, metadata, request_id, created_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(event.id.clone())
        .bind(event.kind.as_str())
        // A system event (the autoscaler's) has no user.
        .bind((!event.user_id.is_empty()).then(|| event.user_id.clone()))
        .bind(event.user_name.clone())
        .bind(event.description.clone())
        .bind(event.value)
        .bind(metadata)
        .bind(event.request_id.clone())
        .bind(event.timestamp.timestamp_millis());
}

/// The live stream's event for a committed activity: seed 001's `new_signup` and
/// `payment_success`, `activity:new` for the others.
pub fn live_event(event: ActivityEvent) -> LiveEvent {
    match event.kind {
        ActivityType::Signup => LiveEvent::NewSignup(event),
        ActivityType::Payment => LiveEvent::PaymentSuccess(event),
        _ => LiveEvent::ActivityNew(event),
    }
}

/// Announces a committed activity to every dashboard (through the telemetry, which
/// crosses to the other processes on the bus).
pub fn announce(telemetry: &Telemetry, event: ActivityEvent) {
    telemetry.event(live_event(event));
}

type Row = (
    String,
    String,
    Option<String>,
    String,
    String,
    Option<f64>,
    String,
    Option<String>,
    i64,
);

/// The newest events of the given kinds, newest first.
pub async fn recent(db: &Database, kinds: &[ActivityType], limit: usize) -> Result<Vec<ActivityEvent>, sqlx::Error> {
    // At most two kinds are asked for together (invitations sent and accepted).
    let first = kinds.first().map_or("", |kind| kind.as_str());
    let second = kinds.get(1).map_or(first, |kind| kind.as_str());
    let rows: Vec<Row> = crate::with_connection!(&mut db.read().await?, |c| sqlx::query_as(
        "SELECT id, event_type, user_id, user_name, description, value, metadata, request_id, created_at_ms \
         FROM activity_stream WHERE event_type IN ($1, $2) ORDER BY created_at_ms DESC, id DESC LIMIT $3"
    )
    .bind(first)
    .bind(second)
    .bind(limit as i64)
    .fetch_all(c)
    .await)?;
    Ok(rows.into_iter().filter_map(from_row).collect())
}

/// Every event stamped at or after `since_ms`, oldest first (at most 1,000).
pub async fn recent_since(db: &Database, since_ms: i64) -> Result<Vec<ActivityEvent>, sqlx::Error> {
    let rows: Vec<Row> = crate::with_connection!(&mut db.read().await?, |c| sqlx::query_as(
        "SELECT id, event_type, user_id, user_name, description, value, metadata, request_id, created_at_ms \
         FROM activity_stream WHERE created_at_ms >= $1 ORDER BY created_at_ms, id LIMIT 1000"
    )
    .bind(since_ms)
    .fetch_all(c)
    .await)?;
    Ok(rows.into_iter().filter_map(from_row).collect())
}

fn from_row(
    (id, kind, user_id, user_name, description, value, metadata, request_id, created_at_ms): Row,
) -> Option<ActivityEvent> {
    Some(ActivityEvent {
        id,
        kind: ActivityType::parse(&kind)?,
        user_id: user_id.unwrap_or_default(),
        user_name,
        description,
        value,
        timestamp: chrono::DateTime::from_timestamp_millis(created_at_ms)?,
        request_id,
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::mask_email;

    #[test]
    fn emails_are_masked() {
        assert_eq!(mask_email("ada@example.com"), "a***@example.com");
        assert_eq!(mask_email("émile@example.fr"), "é***@example.fr");
        assert_eq!(mask_email("not an address"), "***");
    }
}

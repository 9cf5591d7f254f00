//! End users' sessions as they are used (`active_sessions`, seed 001): a row per session
//! token with when it started and was last active, its page views and events, and the
//! client it came from.
//!
//! Every authenticated request touches its session, and an open in-app socket touches
//! it every [`SOCKET_TOUCH_EVERY`]. Touches are gathered in memory and written every
//! [`FLUSH_EVERY`] as one upsert per session: a write per request would cost the
//! pipeline a statement per request for a figure that counts minutes. A crash loses at
//! most the last second of touches, which moves no figure by more than that second.

use std::{collections::HashMap, net::IpAddr, sync::Arc, sync::Mutex, time::Duration};

use tokio_util::sync::CancellationToken;

use super::geo::Geography;
use crate::{
    now_ms,
    storage::{Database, WriteBatch},
};

/// How often gathered touches are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often an open in-app socket says its user is still there: well inside the five
/// minutes that make a user `current`.
pub const SOCKET_TOUCH_EVERY: Duration = Duration::from_secs(60);
/// A session inactive for this long is removed.
pub const KEEP_FOR_MS: i64 = 24 * 3_600_000;
/// Beyond this many sessions touched within one flush, further touches wait for it.
const MAX_PENDING: usize = 100_000;

/// One session's touches since the last flush.
#[derive(Debug, Clone)]
struct Touches {
    user_id: String,
    first_ms: i64,
    last_ms: i64,
    events: i64,
    page_views: i64,
    user_agent: Option<String>,
    /// The latest client address, and its country.
    address: Option<IpAddr>,
    country: Option<String>,
}

/// Who touched a session: the client as the request tells it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Client<'a> {
    pub user_agent: Option<&'a str>,
    /// The end user's address ([`crate::access::TrustedProxies::client`]).
    pub address: Option<IpAddr>,
}

/// What a touch counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch {
    /// An authenticated request.
    Request,
    /// An authenticated request that viewed a catalogue item.
    PageView,
    /// An open in-app socket (no event: the user did nothing new).
    Socket,
}

/// The touches gathered since the last flush, by session.
pub struct SessionActivity {
    pending: Mutex<HashMap<String, Touches>>,
    geography: Arc<Geography>,
}

/// The id a session has in `active_sessions`: from its token's secret, but not the
/// digest that signs in with it (`sessions.secret_hash`), so the table gives nobody a
/// session.
pub fn session_id(token: &str) -> Option<String> {
    let (_, secret) = token.split_once('.')?;
    Some(crate::accounts::digest(&format!("active-session:{secret}"))[..32].to_string())
}

impl SessionActivity {
    /// Places sessions with `geography`.
    pub fn new(geography: Arc<Geography>) -> Self {
        Self {
            pending: Mutex::default(),
            geography,
        }
    }

    /// Counts a touch of `session` by `user_id` from `client`, now.
    pub fn touch(&self, session: String, user_id: &str, touch: Touch, client: Client<'_>) {
        let now = now_ms();
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if pending.len() >= MAX_PENDING && !pending.contains_key(&session) {
            return;
        }
        let entry = pending.entry(session).or_insert_with(|| Touches {
            user_id: user_id.to_string(),
            first_ms: now,
            last_ms: now,
            events: 0,
            page_views: 0,
            user_agent: None,
            address: None,
            country: None,
        });
        entry.last_ms = now;
        entry.events += i64::from(touch != Touch::Socket);
        entry.page_views += i64::from(touch == Touch::PageView);
        if entry.user_agent.is_none() {
            entry.user_agent = client.user_agent.map(|agent| agent.chars().take(256).collect());
        }
        if let Some(address) = client.address
            && entry.address != Some(address)
        {
            entry.address = Some(address);
            entry.country = self.geography.country(address);
        }
    }

    /// Writes the gathered touches, one upsert per session. What fails to be written is
    /// gathered again for the next flush.
    pub async fn flush(&self, db: &Database) -> Result<(), sqlx::Error> {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|poison| poison.into_inner()));
        if taken.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for (session, touches) in &taken {
            batch
                .statement(
                    "INSERT INTO active_sessions (session_id, user_id, started_at_ms, last_activity_ms, page_views, events_count, user_agent, ip_address, country) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (session_id) DO UPDATE SET \
                     last_activity_ms = CASE WHEN excluded.last_activity_ms > active_sessions.last_activity_ms \
                         THEN excluded.last_activity_ms ELSE active_sessions.last_activity_ms END, \
                     page_views = active_sessions.page_views + excluded.page_views, \
                     events_count = active_sessions.events_count + excluded.events_count, \
                     user_agent = COALESCE(active_sessions.user_agent, excluded.user_agent), \
                     ip_address = COALESCE(excluded.ip_address, active_sessions.ip_address), \
                     country = CASE WHEN excluded.ip_address IS NULL THEN active_sessions.country ELSE excluded.country END",
                )
                .bind(session.clone())
                .bind(touches.user_id.clone())
                .bind(touches.first_ms)
                .bind(touches.last_ms)
                .bind(touches.page_views)
                .bind(touches.events)
                .bind(touches.user_agent.clone())
                .bind(touches.address.map(|address| address.to_string()))
                .bind(touches.country.clone());
        }
        if let Err(error) = db.commit(batch).await {
            let mut pending = self.pending.lock().unwrap_or_else(|poison| poison.into_inner());
            for (session, touches) in taken {
                pending.entry(session).or_insert(touches);
            }
            return Err(error);
        }
        Ok(())
    }

    /// Flushes every [`FLUSH_EVERY`] until shutdown, and once more then.
    pub async fn run(self: std::sync::Arc<Self>, db: Database, shutdown: CancellationToken) {
        crate::every(FLUSH_EVERY, shutdown, || async {
            if let Err(error) = self.flush(&db).await {
                tracing::warn!(%error, "session activity could not be written");
            }
        })
        .await;
        if let Err(error) = self.flush(&db).await {
            tracing::warn!(%error, "the last session activity could not be written");
        }
    }
}

/// Removes the sessions inactive for [`KEEP_FOR_MS`]; how many.
pub async fn clean_up(db: &Database) -> Result<u64, sqlx::Error> {
    crate::with_connection!(&mut db.writing().await?, |c| sqlx::query(
        "DELETE FROM active_sessions WHERE last_activity_ms < $1"
    )
    .bind(now_ms() - KEEP_FOR_MS)
    .execute(c)
    .await
    .map(|done| done.rows_affected()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_id_is_not_the_sign_in_digest() {
        let token = format!("user.{}", "a".repeat(64));
        let id = session_id(&token).expect("an id");
        assert_eq!(id.len(), 32);
        assert!(!crate::accounts::digest(&"a".repeat(64)).starts_with(&id));
        assert_eq!(session_id("no-dot"), None);
    }

    #[tokio::test]
    async fn touches_are_counted_and_kept_by_session() {
        let dir = tempfile::tempdir().expect("dir");
        let url = crate::storage::resolve_url(dir.path(), None).expect("url");
        let db = Database::open(&url).await.expect("db");
        crate::with_connection!(&mut db.writing().await.expect("w"), |c| sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, created_at_ms) VALUES ('u1', 'a@example.com', 'A', 'x', 0)"
        )
        .execute(c)
        .await
        .map(drop))
        .expect("user");
        let activity = SessionActivity::new(Default::default());
        let agent = |user_agent| Client {
            user_agent: Some(user_agent),
            address: None,
        };
        activity.touch("s1".into(), "u1", Touch::Request, agent("test-agent"));
        activity.touch("s1".into(), "u1", Touch::PageView, Client::default());
        activity.touch("s1".into(), "u1", Touch::Socket, Client::default());
        activity.flush(&db).await.expect("flush");
        let moved = Client {
            user_agent: Some("other-agent"),
            address: Some("198.51.100.7".parse().expect("ip")),
        };
        activity.touch("s1".into(), "u1", Touch::Request, moved);
        activity.flush(&db).await.expect("flush again");
        activity.touch("s1".into(), "u1", Touch::Socket, Client::default());
        activity.flush(&db).await.expect("flush a third time");
        let row: (i64, i64, Option<String>, Option<String>) =
            crate::with_connection!(&mut db.read().await.expect("r"), |c| {
                sqlx::query_as(
                    "SELECT page_views, events_count, user_agent, ip_address FROM active_sessions WHERE session_id = 's1'",
                )
                .fetch_one(c)
                .await
            })
            .expect("row");
        assert_eq!(row, (1, 3, Some("test-agent".into()), Some("198.51.100.7".into())));
    }
}

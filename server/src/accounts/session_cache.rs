//! Recently checked session tokens, kept in memory so an authenticated request does not
//! cost a database read.
//!
//! An entry lives at most [`TTL`]: sessions are also ended by other processes sharing
//! the database (scale-out), and those can only be seen by asking it again. Ending a
//! user's sessions in this process ([`SessionCache::revoke_user`]) takes effect at once,
//! including for a lookup that was already under way when the sessions were deleted: an
//! entry whose lookup began before the revocation is never served.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::User;

/// How long a checked token is trusted without asking the database again.
pub const TTL: Duration = Duration::from_secs(10);
/// Beyond this many tokens the cache starts over rather than grow.
const MAX_ENTRIES: usize = 100_000;

struct Entry {
    user: User,
    expires_at_ms: i64,
    looked_up: Instant,
}

#[derive(Default)]
struct Inner {
    /// By the SHA-256 digest of the token's secret: the secret itself is never kept.
    entries: HashMap<String, Entry>,
    /// When each user's sessions were last ended here.
    revoked: HashMap<String, Instant>,
}

#[derive(Default)]
pub struct SessionCache {
    inner: Mutex<Inner>,
}

impl SessionCache {
    /// The user of a token checked less than [`TTL`] ago and not revoked since.
    pub fn get(&self, secret_digest: &str, now_ms: i64) -> Option<User> {
        let inner = self.inner.lock().ok()?;
        let entry = inner.entries.get(secret_digest)?;
        let revoked_after_lookup = inner
            .revoked
            .get(&entry.user.id)
            .is_some_and(|revoked| *revoked >= entry.looked_up);
        (entry.looked_up.elapsed() < TTL && entry.expires_at_ms > now_ms && !revoked_after_lookup)
            .then(|| entry.user.clone())
    }

    /// Remembers a token the database confirmed; `looked_up` is when that query began.
    pub fn insert(&self, secret_digest: String, user: User, expires_at_ms: i64, looked_up: Instant) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner.entries.insert(
            secret_digest,
            Entry {
                user,
                expires_at_ms,
                looked_up,
            },
        );
    }

    /// Forgets one token (its session ended here).
    pub fn forget(&self, secret_digest: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.entries.remove(secret_digest);
        }
    }

    /// Forgets every token of `user_id` and refuses lookups begun before now.
    pub fn revoke_user(&self, user_id: &str) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.entries.retain(|_, entry| entry.user.id != user_id);
        let now = Instant::now();
        // A revocation older than TTL outlives every entry it could refuse.
        inner.revoked.retain(|_, at| now.duration_since(*at) < TTL);
        inner.revoked.insert(user_id.to_string(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> User {
        User {
            id: id.into(),
            email: format!("{id}@example.com"),
            name: id.into(),
            created_at_ms: 0,
        }
    }

    #[test]
    fn a_checked_token_is_served_until_it_expires() {
        let cache = SessionCache::default();
        cache.insert("d1".into(), user("u1"), 1_000, Instant::now());
        assert_eq!(cache.get("d1", 999).map(|u| u.id), Some("u1".into()));
        assert!(cache.get("d1", 1_000).is_none(), "the session itself expired");
        assert!(cache.get("other", 0).is_none());
    }

    #[test]
    fn revoking_a_user_refuses_even_a_lookup_that_was_under_way() {
        let cache = SessionCache::default();
        cache.insert("d1".into(), user("u1"), i64::MAX, Instant::now());
        cache.insert("d2".into(), user("u2"), i64::MAX, Instant::now());
        let began_before = Instant::now();
        cache.revoke_user("u1");
        assert!(cache.get("d1", 0).is_none());
        // The database answered "valid" to a query that started before the delete.
        cache.insert("d1".into(), user("u1"), i64::MAX, began_before);
        assert!(cache.get("d1", 0).is_none(), "a stale answer is not served");
        assert!(cache.get("d2", 0).is_some(), "other users keep their sessions");
        cache.insert("d3".into(), user("u1"), i64::MAX, Instant::now());
        assert!(cache.get("d3", 0).is_some(), "a login after the revocation works");
    }
}

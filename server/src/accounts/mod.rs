//! Accounts: users, argon2id password hashes, bearer session tokens and single-use
//! password reset tokens. Secrets are stored only as SHA-256 digests, so a database
//! leak gives no usable token.

mod session_cache;

pub use session_cache::SessionCache;

use std::{sync::OnceLock, time::Instant};

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use sha2::{Digest, Sha256};

use crate::{
    now_ms,
    storage::{Database, WriteTransaction},
};

/// How long a login lasts.
pub const SESSION_TTL_MS: i64 = 7 * 24 * 3_600_000;
/// How long a password reset link works.
pub const RESET_TTL_MS: i64 = 30 * 60_000;

pub use wire::User;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// At most one argon2 computation per core at a time: more would only make every
/// request that hashes slower, and starve everything else of CPU.
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, usize::from)))
}

/// Hashes on a blocking thread: argon2 is deliberately slow (tens of milliseconds) and
/// must not stall the async workers.
pub async fn hash_password(password: String) -> Result<String, HashError> {
    let _slot = hashing_slots()
        .acquire()
        .await
        .map_err(|_| HashError::Hash("hashing closed".into()))?;
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|error| HashError::Hash(error.to_string()))
    })
    .await?
}

/// Checks a password against a stored hash, or against a fixed dummy hash when there is
/// no user, so "no such user" and "wrong password" take the same time.
pub async fn verify_password(password: String, stored: Option<String>) -> Result<bool, HashError> {
    let _slot = hashing_slots()
        .acquire()
        .await
        .map_err(|_| HashError::Hash("hashing closed".into()))?;
    tokio::task::spawn_blocking(move || {
        // The dummy is itself an argon2 hash, computed on first use: here, off the async
        // workers, like every other.
        let stored = stored.as_deref().unwrap_or_else(|| dummy_hash());
        let Ok(parsed) = PasswordHash::new(stored) else {
            return false;
        };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
    })
    .await
    .map_err(HashError::from)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password(new_secret().as_bytes())
            .map(|hash| hash.to_string())
            .unwrap_or_default()
    })
}

/// 32 random bytes as hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    // The OS random source failing is not something a request can recover from.
    getrandom::fill(&mut bytes).expect("the OS random source works");
    hex::encode(bytes)
}

pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub async fn find_by_email(db: &Database, email: &str) -> Result<Option<(User, String)>, sqlx::Error> {
    let row: Option<(String, String, String, i64, String)> = crate::with_connection!(&mut db.read().await?, |c| {
        sqlx::query_as("SELECT id, email, name, created_at_ms, password_hash FROM users WHERE email = $1")
            .bind(email.to_lowercase())
            .fetch_optional(c)
            .await
    })?;
    Ok(row.map(|(id, email, name, created_at_ms, hash)| {
        (
            User {
                id,
                email,
                name,
                created_at_ms,
            },
            hash,
        )
    }))
}

/// Creates a session and returns its token, `<user id>.<secret>`. The user part lets
/// the load balancer keep one user's sockets on one server without a lookup.
pub async fn create_session(tx: &mut WriteTransaction, user_id: &str) -> Result<String, sqlx::Error> {
    let secret = new_secret();
    let now = now_ms();
    crate::with_connection!(tx, |c| sqlx::query(
        "INSERT INTO sessions (secret_hash, user_id, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)"
    )
    .bind(digest(&secret))
    .bind(user_id)
    .bind(now)
    .bind(now + SESSION_TTL_MS)
    .execute(c)
    .await
    .map(drop))?;
    Ok(format!("{user_id}.{secret}"))
}

/// The user a live session token belongs to: from `cache` when it was checked moments
/// ago, else from the database (and then cached).
pub async fn authenticate(db: &Database, cache: &SessionCache, token: &str) -> Result<Option<User>, sqlx::Error> {
    let Some((user_id, secret)) = token.split_once('.') else {
        return Ok(None);
    };
    if secret.len() != 64 {
        return Ok(None);
    }
    let secret_digest = digest(secret);
    let now = now_ms();
    if let Some(user) = cache.get(&secret_digest, now).filter(|user| user.id == user_id) {
        return Ok(Some(user));
    }
    let looked_up = Instant::now();
    let row: Option<(String, String, String, i64, i64)> = crate::with_connection!(&mut db.read().await?, |c| {
        sqlx::query_as(
        "SELECT u.id, u.email, u.name, u.created_at_ms, s.expires_at_ms FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.secret_hash = $1 AND s.user_id = $2 AND s.expires_at_ms > $3",
    )
    .bind(&secret_digest)
    .bind(user_id)
    .bind(now)
    .fetch_optional(c)
    .await
    })?;
    Ok(row.map(|(id, email, name, created_at_ms, expires_at_ms)| {
        let user = User {
            id,
            email,
            name,
            created_at_ms,
        };
        cache.insert(secret_digest, user.clone(), expires_at_ms, looked_up);
        user
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("correct horse".into()).await.expect("hashes");
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            verify_password("correct horse".into(), Some(hash.clone()))
                .await
                .expect("runs")
        );
        assert!(!verify_password("wrong horse".into(), Some(hash)).await.expect("runs"));
        assert!(
            !verify_password("anything".into(), None).await.expect("runs"),
            "no user never verifies"
        );
    }

    #[test]
    fn secrets_are_random_and_digests_are_stable() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(digest(&a), digest(&a));
        assert_ne!(digest(&a), a, "the digest is not the secret");
    }
}

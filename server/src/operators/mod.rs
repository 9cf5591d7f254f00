//! The dashboard's operators: accounts with a [`Role`], argon2id password hashes, and
//! signed-in sessions, all in the database (so every dashboard process of a cluster
//! knows them). Managed with `liveview operators …` ([`cli`]) or, by an admin, with
//! `/api/operators`; signing in and the checks on every request are [`crate::access`]'s.
//!
//! SQL here is written with `$N` placeholders, which SQLite and PostgreSQL both read.

pub mod cli;

use wire::{OperatorInfo, Role};

use crate::{accounts, now_ms, storage::Database};

/// Longest operator name.
pub const MAX_NAME: usize = 64;
/// Shortest password an operator may choose (a generated one is longer).
pub const MIN_PASSWORD: usize = 10;
/// Longest password: argon2 reads all of it.
pub const MAX_PASSWORD: usize = 1_024;
/// Failed sign-ins for one name from one address within [`FAILURE_WINDOW_MS`] after
/// which its sign-ins from there are refused until the oldest ages out. Argon2 already
/// makes each guess cost tens of milliseconds; this caps a name at 10 guesses a quarter
/// of an hour from each address.
pub const MAX_FAILURES: i64 = 10;
pub const FAILURE_WINDOW_MS: i64 = 15 * 60_000;
/// Failed sign-ins for one name from every address together, within
/// [`FAILURE_WINDOW_MS`], after which its sign-ins are refused from everywhere.
pub const MAX_FAILURES_ANYWHERE: i64 = 100;
/// The longest source address kept (an IPv6 address is at most 45 characters).
const MAX_SOURCE: usize = 64;

/// A signed-in (or, without sign-in, assumed) person, as the request handlers and the
/// audit log see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub role: Role,
}

impl Actor {
    /// Everyone, when the dashboard runs without sign-in.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            role: Role::Operator,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("an operator's name is 1 to {MAX_NAME} letters, digits, '.', '_' or '-'")]
    BadName,
    #[error("a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters")]
    BadPassword,
    #[error("there is already an operator named {0:?}")]
    Exists(String),
    #[error("there is no operator named {0:?}")]
    Missing(String),
    #[error("{0:?} is the last admin; add another admin first")]
    LastAdmin(String),
    #[error("too many failed sign-ins for {name:?}; try again in {retry_after_s} s")]
    Throttled { name: String, retry_after_s: i64 },
    #[error(transparent)]
    Hash(#[from] accounts::HashError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

pub fn check_name(name: &str) -> Result<(), OperatorError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid { Ok(()) } else { Err(OperatorError::BadName) }
}

pub fn check_password(password: &str) -> Result<(), OperatorError> {
    let length = password.chars().count();
    if (MIN_PASSWORD..=MAX_PASSWORD).contains(&length) && password.len() <= MAX_PASSWORD * 4 {
        Ok(())
    } else {
        Err(OperatorError::BadPassword)
    }
}

/// A password to hand out once: 18 random bytes as 24 characters of URL-safe base64's
/// alphabet (144 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes
        .iter()
        .map(|byte| char::from(ALPHABET[usize::from(byte & 63)]))
        .collect()
}

/// The operator accounts and their sessions.
#[derive(Clone)]
pub struct Operators {
    db: Database,
}

type OperatorRow = (String, String, i64);

fn info((name, role, created_at_ms): OperatorRow) -> OperatorInfo {
    OperatorInfo {
        name,
        // Only this module writes roles, always one of the three.
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        created_at: chrono::DateTime::from_timestamp_millis(created_at_ms).unwrap_or_default(),
    }
}

impl Operators {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Adds an account; the password is hashed here.
    pub async fn add(&self, name: &str, role: Role, password: &str) -> Result<OperatorInfo, OperatorError> {
        check_name(name)?;
        check_password(password)?;
        let hash = accounts::hash_password(password.to_string()).await?;
        let created_at_ms = now_ms();
        let inserted = crate::with_connection!(&mut self.db.writing().await?, |c| {
            sqlx::query(
            "INSERT INTO operators (name, role, password_hash, created_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(hash)
        .bind(created_at_ms)
        .execute(c)
        .await.map(|done| done.rows_affected())
        })?;
        if inserted == 0 {
            return Err(OperatorError::Exists(name.to_string()));
        }
        Ok(info((name.to_string(), role.as_str().to_string(), created_at_ms)))
    }

    pub async fn list(&self) -> Result<Vec<OperatorInfo>, OperatorError> {
        let rows: Vec<OperatorRow> = crate::with_connection!(&mut self.db.read().await?, |c| sqlx::query_as(
            "SELECT name, role, created_at_ms FROM operators ORDER BY name"
        )
        .fetch_all(c)
        .await)?;
        Ok(rows.into_iter().map(info).collect())
    }

    /// Removes an account and ends its sessions. The last admin stays: without one,
    /// nobody could manage operators from the dashboard.
    pub async fn remove(&self, name: &str) -> Result<(), OperatorError> {
        let mut writing = self.db.writing().await?;
        let role: Option<String> = crate::with_connection!(&mut writing, |c| sqlx::query_scalar(
            "SELECT role FROM operators WHERE name = $1"
        )
        .bind(name)
        .fetch_optional(c)
        .await)?;
        let Some(role) = role else {
            return Err(OperatorError::Missing(name.to_string()));
        };
        if role == Role::Admin.as_str() {
            let admins: i64 = crate::with_connection!(&mut writing, |c| sqlx::query_scalar(
                "SELECT COUNT(*) FROM operators WHERE role = $1"
            )
            .bind(Role::Admin.as_str())
            .fetch_one(c)
            .await)?;
            if admins <= 1 {
                return Err(OperatorError::LastAdmin(name.to_string()));
            }
        }
        crate::with_connection!(&mut writing, |c| sqlx::query(
            "DELETE FROM operator_sessions WHERE operator = $1"
        )
        .bind(name)
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        crate::with_connection!(&mut writing, |c| sqlx::query("DELETE FROM operators WHERE name = $1")
            .bind(name)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(())
    }

    /// A sign-in from `source` (the client's address): the account if the name and
    /// password match. After [`MAX_FAILURES`] failures for the name from that source
    /// within [`FAILURE_WINDOW_MS`], or [`MAX_FAILURES_ANYWHERE`] from all sources, a
    /// refusal whatever the password: someone guessing from one address cannot lock the
    /// operator out of theirs, and guessing from many is bounded all the same. A failure
    /// is counted; a success clears the name's count.
    pub async fn sign_in(&self, name: &str, password: &str, source: &str) -> Result<Option<Actor>, OperatorError> {
        let now = now_ms();
        let since = now - FAILURE_WINDOW_MS;
        let source: String = source.chars().take(MAX_SOURCE).collect();
        let (here, anywhere, oldest): (i64, i64, Option<i64>) = crate::with_connection!(
            &mut self.db.read().await?,
            |c| {
                sqlx::query_as(
                "SELECT CAST(COALESCE(SUM(CASE WHEN source = $3 THEN 1 ELSE 0 END), 0) AS BIGINT), COUNT(*), MIN(at_ms) \
                 FROM operator_sign_in_failures WHERE name = $1 AND at_ms > $2"
            )
            .bind(name)
            .bind(since)
            .bind(&source)
            .fetch_one(c)
            .await
            }
        )?;
        if here >= MAX_FAILURES || anywhere >= MAX_FAILURES_ANYWHERE {
            let retry_after_s = (oldest.unwrap_or(now) + FAILURE_WINDOW_MS - now).max(1_000) / 1_000;
            return Err(OperatorError::Throttled {
                name: name.to_string(),
                retry_after_s,
            });
        }
        let actor = self.verify(name, password).await?;
        let mut writing = self.db.writing().await?;
        if actor.is_some() {
            crate::with_connection!(&mut writing, |c| sqlx::query(
                "DELETE FROM operator_sign_in_failures WHERE name = $1"
            )
            .bind(name)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        } else {
            crate::with_connection!(&mut writing, |c| sqlx::query(
                "DELETE FROM operator_sign_in_failures WHERE at_ms <= $1"
            )
            .bind(since)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
            // A name is kept only as long as an operator's may be.
            let counted: String = name.chars().take(MAX_NAME).collect();
            crate::with_connection!(&mut writing, |c| sqlx::query(
                "INSERT INTO operator_sign_in_failures (name, at_ms, source) VALUES ($1, $2, $3)"
            )
            .bind(counted)
            .bind(now)
            .bind(source)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        }
        Ok(actor)
    }

    /// The account, if the name and password match. Takes as long for an unknown name
    /// as for a wrong password.
    pub async fn verify(&self, name: &str, password: &str) -> Result<Option<Actor>, OperatorError> {
        if password.len() > MAX_PASSWORD * 4 {
            return Ok(None);
        }
        let row: Option<(String, String)> = crate::with_connection!(&mut self.db.read().await?, |c| sqlx::query_as(
            "SELECT role, password_hash FROM operators WHERE name = $1"
        )
        .bind(name)
        .fetch_optional(c)
        .await)?;
        let (role, hash) = row.unzip();
        let matches = accounts::verify_password(password.to_string(), hash).await?;
        Ok(match (matches, role.as_deref().and_then(Role::parse)) {
            (true, Some(role)) => Some(Actor {
                name: name.to_string(),
                role,
            }),
            _ => None,
        })
    }

    /// Starts a session; answers the cookie's token (kept only as its digest) and when
    /// it expires. Expired sessions are swept here, so the table stays small.
    pub async fn start_session(&self, name: &str, ttl_ms: i64) -> Result<(String, i64), OperatorError> {
        let token = accounts::new_secret();
        let now = now_ms();
        let expires_at_ms = now.saturating_add(ttl_ms);
        let mut writing = self.db.writing().await?;
        crate::with_connection!(&mut writing, |c| sqlx::query(
            "DELETE FROM operator_sessions WHERE expires_at_ms <= $1"
        )
        .bind(now)
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        crate::with_connection!(&mut writing, |c| {
            sqlx::query(
            "INSERT INTO operator_sessions (token_digest, operator, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(accounts::digest(&token))
        .bind(name)
        .bind(now)
        .bind(expires_at_ms)
        .execute(c)
        .await.map(|done| done.rows_affected())
        })?;
        Ok((token, expires_at_ms))
    }

    /// Who holds this session token, and until when, if it is current.
    pub async fn session(&self, token: &str) -> Result<Option<(Actor, i64)>, OperatorError> {
        let row: Option<(String, String, i64)> = crate::with_connection!(&mut self.db.read().await?, |c| {
            sqlx::query_as(
            "SELECT o.name, o.role, s.expires_at_ms FROM operator_sessions s JOIN operators o ON o.name = s.operator \
             WHERE s.token_digest = $1 AND s.expires_at_ms > $2",
        )
        .bind(accounts::digest(token))
        .bind(now_ms())
        .fetch_optional(c)
        .await
        })?;
        Ok(row.and_then(|(name, role, expires_at_ms)| {
            Role::parse(&role).map(|role| (Actor { name, role }, expires_at_ms))
        }))
    }

    pub async fn end_session(&self, token: &str) -> Result<(), OperatorError> {
        crate::with_connection!(&mut self.db.writing().await?, |c| sqlx::query(
            "DELETE FROM operator_sessions WHERE token_digest = $1"
        )
        .bind(accounts::digest(token))
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn operators() -> (tempfile::TempDir, Operators) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("ops.db").display());
        let db = Database::open(&url).await.expect("database");
        (dir, Operators::new(db))
    }

    #[test]
    fn names_and_passwords_are_bounded() {
        assert!(check_name("ada.lovelace-1_").is_ok());
        for bad in ["", "a b", "ada;drop", &"x".repeat(MAX_NAME + 1), "é"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_password("short").is_err());
        assert!(check_password(&"p".repeat(MAX_PASSWORD + 1)).is_err());
        assert!(check_password("long enough").is_ok());
        let generated = generate_password();
        assert_eq!(generated.len(), 24);
        assert!(check_password(&generated).is_ok());
        assert_ne!(generated, generate_password());
    }

    #[tokio::test]
    async fn an_operator_signs_in_with_the_right_password_only_and_sessions_end() {
        let (_dir, operators) = operators().await;
        operators.add("ada", Role::Admin, "correct horse").await.expect("added");
        assert!(matches!(
            operators.add("ada", Role::Viewer, "another one!").await,
            Err(OperatorError::Exists(_))
        ));
        let actor = operators.verify("ada", "correct horse").await.expect("verify");
        assert_eq!(
            actor,
            Some(Actor {
                name: "ada".into(),
                role: Role::Admin
            })
        );
        assert_eq!(operators.verify("ada", "wrong horse!").await.expect("verify"), None);
        assert_eq!(operators.verify("nobody", "correct horse").await.expect("verify"), None);

        let (token, _) = operators.start_session("ada", 60_000).await.expect("session");
        assert_eq!(
            operators
                .session(&token)
                .await
                .expect("lookup")
                .map(|(actor, _)| actor.name),
            Some("ada".into())
        );
        assert!(operators.session("forged").await.expect("lookup").is_none());
        operators.end_session(&token).await.expect("end");
        assert!(operators.session(&token).await.expect("lookup").is_none());

        let (expired, _) = operators.start_session("ada", -1).await.expect("session");
        assert!(
            operators.session(&expired).await.expect("lookup").is_none(),
            "an expired session lets no one in"
        );
    }

    #[tokio::test]
    async fn too_many_failed_sign_ins_refuse_the_name_for_a_while_whatever_the_password() {
        let (_dir, operators) = operators().await;
        operators.add("ada", Role::Admin, "correct horse").await.expect("added");
        let guess = |source: &'static str| operators.sign_in("ada", "a wrong guess", source);
        for _ in 0..MAX_FAILURES - 1 {
            assert_eq!(guess("10.0.0.9").await.expect("answered"), None);
        }
        // A success clears the count.
        assert!(
            operators
                .sign_in("ada", "correct horse", "10.0.0.9")
                .await
                .expect("answered")
                .is_some()
        );
        for _ in 0..MAX_FAILURES {
            assert_eq!(guess("10.0.0.9").await.expect("answered"), None);
        }
        let refused = operators.sign_in("ada", "correct horse", "10.0.0.9").await;
        assert!(
            matches!(refused, Err(OperatorError::Throttled { retry_after_s, .. }) if retry_after_s > 800),
            "{refused:?}"
        );
        // The guesser's address is refused; Ada's own is not.
        assert!(
            operators
                .sign_in("ada", "correct horse", "192.168.1.5")
                .await
                .expect("answered")
                .is_some(),
            "someone guessing elsewhere does not lock Ada out"
        );
        // Another name is not held up.
        operators
            .add("bob", Role::Viewer, "battery staple")
            .await
            .expect("added");
        assert!(
            operators
                .sign_in("bob", "battery staple", "10.0.0.9")
                .await
                .expect("answered")
                .is_some()
        );
    }

    #[tokio::test]
    async fn guessing_from_many_addresses_is_bounded_for_the_name() {
        let (_dir, operators) = operators().await;
        operators.add("ada", Role::Admin, "correct horse").await.expect("added");
        let sources: Vec<String> = (0..MAX_FAILURES_ANYWHERE)
            .map(|n| format!("10.1.{}.{}", n / 250, n % 250))
            .collect();
        for source in &sources {
            assert_eq!(
                operators
                    .sign_in("ada", "a wrong guess", source)
                    .await
                    .expect("answered"),
                None
            );
        }
        let refused = operators.sign_in("ada", "correct horse", "192.168.1.5").await;
        assert!(matches!(refused, Err(OperatorError::Throttled { .. })), "{refused:?}");
    }

    #[tokio::test]
    async fn removing_an_operator_ends_their_sessions_but_the_last_admin_stays() {
        let (_dir, operators) = operators().await;
        operators.add("ada", Role::Admin, "correct horse").await.expect("added");
        operators
            .add("bob", Role::Viewer, "battery staple")
            .await
            .expect("added");
        let (token, _) = operators.start_session("bob", 60_000).await.expect("session");
        operators.remove("bob").await.expect("removed");
        assert!(operators.session(&token).await.expect("lookup").is_none());
        assert!(matches!(operators.remove("bob").await, Err(OperatorError::Missing(_))));
        assert!(matches!(
            operators.remove("ada").await,
            Err(OperatorError::LastAdmin(_))
        ));
        let names: Vec<String> = operators
            .list()
            .await
            .expect("list")
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, ["ada"]);
    }
}

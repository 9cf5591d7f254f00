//! Signup, login and password reset.

use axum::{Json, extract::State, http::StatusCode};
use wire::{ActivityType, Done, Login, NotificationType, ResetConfirm, ResetRequest, Session, Signup};

use super::{RequestId, commit_with_activity, commit_with_notices, valid_email};
use crate::{
    accounts::{self, User},
    analytics::activity,
    api_error::ApiError,
    middleware::{
        AppServer,
        extract::{AuthUser, FieldErrors, ValidJson, Validate, bearer_token},
    },
    notify::{EmailDraft, InAppDraft, Notice},
    now_ms,
    storage::WriteBatch,
};

fn check_email(errors: &mut FieldErrors, field: &str, email: &str) {
    if !valid_email(email) {
        errors.add(field, "must be an email address");
    }
}

fn check_password(errors: &mut FieldErrors, field: &str, password: &str) {
    errors.length(field, password, 8, 128);
}

/// A segment or source word: lowercase letters, digits and dashes, 1 to 32 of them.
fn check_word(errors: &mut FieldErrors, field: &str, word: Option<&str>) {
    let Some(word) = word else {
        return;
    };
    let fits = (1..=32).contains(&word.len())
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !fits {
        errors.add(field, "must be 1 to 32 lowercase letters, digits or dashes");
    }
}

impl Validate for Signup {
    fn validate(&self, errors: &mut FieldErrors) {
        check_email(errors, "email", &self.email);
        errors.length("name", self.name.trim(), 1, 100);
        check_password(errors, "password", &self.password);
        check_word(errors, "userType", self.user_type.as_deref());
        check_word(errors, "source", self.source.as_deref());
    }
}

/// `POST /api/auth/signup` → 201 with the user; a welcome email and in-app message.
#[utoipa::path(post, path = "/api/auth/signup", request_body = wire::Signup, responses((status = 201, description = "signed up; a welcome email and in-app message follow", body = wire::User), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 409, description = "the address has an account", body = wire::ErrorBody)), tag = "accounts")]
pub async fn signup(
    State(server): State<AppServer>,
    request_id: RequestId,
    ValidJson(body): ValidJson<Signup>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let email = body.email.to_lowercase();
    let name = body.name.trim().to_string();
    let hash = accounts::hash_password(body.password)
        .await
        .map_err(ApiError::internal)?;
    let user = User {
        id: accounts::new_id(),
        email,
        name,
        created_at_ms: now_ms(),
    };
    let user_type = body.user_type.unwrap_or_else(|| "customer".into());
    let source = body.source.unwrap_or_else(|| "direct".into());
    let mut tx = server.shared.db.begin_write().await?;
    let inserted = crate::with_connection!(&mut tx, |c| {
        sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, created_at_ms, user_type, signup_source) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (email) DO NOTHING",
    )
    .bind(&user.id)
    .bind(&user.email)
    .bind(&user.name)
    .bind(&hash)
    .bind(user.created_at_ms)
    .bind(&user_type)
    .bind(&source)
    .execute(c)
    .await.map(|done| done.rows_affected())
    })?;
    if inserted == 0 {
        return Err(ApiError::conflict("an account with this email already exists"));
    }
    let notice = Notice {
        kind: NotificationType::Signup,
        user_id: Some(user.id.clone()),
        email: Some(EmailDraft {
            unless_read: None,
            to: user.email.clone(),
            subject: "Welcome to Live View".into(),
            body: format!("Hello {},\n\nyour account is ready.\n", user.name),
        }),
        in_app: Some(InAppDraft {
            title: "Welcome!".into(),
            body: format!("Glad you are here, {}.", user.name),
        }),
        subject_id: None,
    };
    let signed_up = activity::event(
        ActivityType::Signup,
        (&user.id, &user.name),
        format!("New {user_type} signed up"),
        [
            ("email", activity::mask_email(&user.email)),
            ("userType", user_type),
            ("source", source),
        ],
    );
    commit_with_activity(
        &server,
        Some(tx),
        WriteBatch::default(),
        &[notice],
        signed_up,
        &request_id,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

impl Validate for Login {
    fn validate(&self, errors: &mut FieldErrors) {
        errors.length("email", &self.email, 1, 254);
        errors.length("password", &self.password, 1, 128);
    }
}

/// `POST /api/auth/login` → 200 `{token, user}`; a new-login email and in-app message.
#[utoipa::path(post, path = "/api/auth/login", request_body = wire::Login, responses((status = 200, description = "signed in", body = wire::Session), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 401, description = "wrong email or password", body = wire::ErrorBody)), tag = "accounts")]
pub async fn login(
    State(server): State<AppServer>,
    request_id: RequestId,
    ValidJson(body): ValidJson<Login>,
) -> Result<Json<Session>, ApiError> {
    let found = accounts::find_by_email(&server.shared.db, &body.email).await?;
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let verified = accounts::verify_password(body.password, hash)
        .await
        .map_err(ApiError::internal)?;
    let Some(user) = user.filter(|_| verified) else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid email or password"));
    };
    let mut tx = server.shared.db.begin_write().await?;
    let token = accounts::create_session(&mut tx, &user.id).await?;
    let notice = Notice {
        kind: NotificationType::Login,
        user_id: Some(user.id.clone()),
        email: Some(EmailDraft {
            unless_read: None,
            to: user.email.clone(),
            subject: "New sign-in to your account".into(),
            body: format!(
                "Hello {},\n\nyour account was just signed in to. If this was not you, reset your password.\n",
                user.name
            ),
        }),
        in_app: Some(InAppDraft {
            title: "New sign-in".into(),
            body: "Your account was just signed in to.".into(),
        }),
        subject_id: None,
    };
    let logged_in = activity::event(
        ActivityType::Login,
        (&user.id, &user.name),
        format!("{} signed in", user.name),
        [("email", activity::mask_email(&user.email))],
    );
    commit_with_activity(
        &server,
        Some(tx),
        WriteBatch::default(),
        &[notice],
        logged_in,
        &request_id,
    )
    .await?;
    Ok(Json(Session { token, user }))
}

impl Validate for ResetRequest {
    fn validate(&self, errors: &mut FieldErrors) {
        check_email(errors, "email", &self.email);
    }
}

/// `POST /api/auth/reset-password` → 202 whether or not the address has an account, so
/// the answer reveals nothing; a reset email with a single-use link when it does.
#[utoipa::path(post, path = "/api/auth/reset-password", request_body = wire::ResetRequest, responses((status = 202, description = "a reset email if the address has an account", body = wire::Done), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody)), tag = "accounts")]
pub async fn reset_password(
    State(server): State<AppServer>,
    request_id: RequestId,
    ValidJson(body): ValidJson<ResetRequest>,
) -> Result<(StatusCode, Json<Done>), ApiError> {
    let accepted = (
        StatusCode::ACCEPTED,
        Json(Done {
            status: "if this address has an account, a reset email is on its way".into(),
        }),
    );
    let Some((user, _)) = accounts::find_by_email(&server.shared.db, &body.email).await? else {
        return Ok(accepted);
    };
    let token = accounts::new_secret();
    let now = now_ms();
    let mut tx = server.shared.db.begin_write().await?;
    crate::with_connection!(&mut tx, |c| sqlx::query(
        "INSERT INTO password_resets (token_hash, user_id, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)"
    )
    .bind(accounts::digest(&token))
    .bind(&user.id)
    .bind(now)
    .bind(now + accounts::RESET_TTL_MS)
    .execute(c)
    .await
    .map(|done| done.rows_affected()))?;
    let link = format!("{}/reset-password?token={token}", server.shared.public_url);
    let notice = Notice {
        kind: NotificationType::ResetPassword,
        user_id: Some(user.id.clone()),
        email: Some(EmailDraft {
            unless_read: None,
            to: user.email.clone(),
            subject: "Reset your password".into(),
            body: format!(
                "Hello {},\n\nto choose a new password, open this link within 30 minutes:\n{link}\n\nIt works once. If you did not ask for it, ignore this email.\n",
                user.name
            ),
        }),
        in_app: None,
        subject_id: None,
    };
    let asked = activity::event(
        ActivityType::PasswordReset,
        (&user.id, &user.name),
        format!("{} asked to reset their password", user.name),
        [("email", activity::mask_email(&user.email))],
    );
    commit_with_activity(&server, Some(tx), WriteBatch::default(), &[notice], asked, &request_id).await?;
    Ok(accepted)
}

impl Validate for ResetConfirm {
    fn validate(&self, errors: &mut FieldErrors) {
        errors.length("token", &self.token, 1, 128);
        check_password(errors, "newPassword", &self.new_password);
    }
}

/// `POST /api/auth/reset-password/confirm`: sets the new password, spends the token and
/// ends every session of the account.
#[utoipa::path(post, path = "/api/auth/reset-password/confirm", request_body = wire::ResetConfirm, responses((status = 200, description = "password changed; every session ended", body = wire::Done), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody)), tag = "accounts")]
pub async fn confirm_reset(
    State(server): State<AppServer>,
    request_id: RequestId,
    ValidJson(body): ValidJson<ResetConfirm>,
) -> Result<Json<Done>, ApiError> {
    let hash = accounts::hash_password(body.new_password)
        .await
        .map_err(ApiError::internal)?;
    let now = now_ms();
    let mut tx = server.shared.db.begin_write().await?;
    // Spending the token is the guard: only one confirm can flip used_at_ms from NULL.
    let user_id: Option<String> = crate::with_connection!(&mut tx, |c| {
        sqlx::query_scalar(
        "UPDATE password_resets SET used_at_ms = $1 WHERE token_hash = $2 AND used_at_ms IS NULL AND expires_at_ms > $3 RETURNING user_id",
    )
    .bind(now)
    .bind(accounts::digest(&body.token))
    .bind(now)
    .fetch_optional(c)
    .await
    })?;
    let Some(user_id) = user_id else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "reset token is invalid, expired or already used",
        ));
    };
    crate::with_connection!(&mut tx, |c| sqlx::query(
        "UPDATE users SET password_hash = $1 WHERE id = $2"
    )
    .bind(&hash)
    .bind(&user_id)
    .execute(c)
    .await
    .map(|done| done.rows_affected()))?;
    crate::with_connection!(&mut tx, |c| sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(&user_id)
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
    let notice = Notice {
        kind: NotificationType::ResetPassword,
        user_id: Some(user_id.clone()),
        email: None,
        in_app: Some(InAppDraft {
            title: "Password changed".into(),
            body: "Your password was changed and every other session was signed out.".into(),
        }),
        subject_id: None,
    };
    commit_with_notices(&server, tx, WriteBatch::default(), &[notice], &request_id).await?;
    // The deleted sessions must not live on in memory.
    server.shared.sessions.revoke_user(&user_id);
    Ok(Json(Done {
        status: "password changed".into(),
    }))
}

/// `GET /api/auth/me` (auth): who the token belongs to; a client checks a kept token with it.
#[utoipa::path(get, path = "/api/auth/me", responses((status = 200, description = "the token's user", body = wire::User), (status = 401, description = "no valid bearer token", body = wire::ErrorBody)), tag = "accounts")]
pub async fn me(AuthUser(user): AuthUser) -> Json<User> {
    Json(user)
}

/// `POST /api/auth/logout` (auth): ends this session (the token), not the user's others.
/// Other processes' caches hold a token at most `session_cache::TTL` (10 s) longer.
#[utoipa::path(post, path = "/api/auth/logout", responses((status = 200, description = "the session is ended", body = wire::Done), (status = 401, description = "no valid bearer token", body = wire::ErrorBody)), tag = "accounts")]
pub async fn logout(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    request: axum::extract::Request,
) -> Result<Json<Done>, ApiError> {
    let (parts, _) = request.into_parts();
    let token = bearer_token(&parts).unwrap_or_default();
    let secret = token.split_once('.').map(|(_, secret)| secret).unwrap_or_default();
    let secret_digest = accounts::digest(secret);
    let mut tx = server.shared.db.begin_write().await?;
    crate::with_connection!(&mut tx, |c| sqlx::query(
        "DELETE FROM sessions WHERE secret_hash = $1 AND user_id = $2"
    )
    .bind(&secret_digest)
    .bind(&user.id)
    .execute(c)
    .await
    .map(|_| ()))?;
    tx.commit().await?;
    server.shared.sessions.forget(&secret_digest);
    Ok(Json(Done {
        status: "signed out".into(),
    }))
}

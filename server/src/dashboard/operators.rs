//! Signing in and out (`/api/session`) and, for admins, managing operators
//! (`/api/operators`). Who may call what is [`crate::access::auth`]'s to decide; these
//! handlers do the work.

use axum::{
    Extension, Json,
    extract::{Path, Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use wire::{AuthMode, CreatedOperator, NewOperator, OperatorList, SessionInfo, SignIn};

use super::Dashboard;
use crate::{
    access::auth::{Gate, SessionEnds, session_token},
    api_error::ApiError,
    middleware::extract::JsonBody,
    operators::{Actor, OperatorError, generate_password},
};

impl From<OperatorError> for ApiError {
    fn from(error: OperatorError) -> Self {
        match error {
            OperatorError::BadName => ApiError::invalid([("name", error.to_string())]),
            OperatorError::BadPassword => ApiError::invalid([("password", error.to_string())]),
            OperatorError::Exists(_) | OperatorError::LastAdmin(_) => ApiError::conflict(error.to_string()),
            OperatorError::Missing(_) => ApiError::not_found(error.to_string()),
            OperatorError::Throttled { .. } => ApiError::new(StatusCode::TOO_MANY_REQUESTS, error.to_string()),
            OperatorError::Hash(error) => ApiError::internal(error),
            OperatorError::Database(error) => error.into(),
        }
    }
}

fn info(mode: AuthMode, actor: &Actor, ends: Option<i64>) -> SessionInfo {
    SessionInfo {
        name: actor.name.clone(),
        role: actor.role,
        auth: mode,
        expires_at: ends.and_then(chrono::DateTime::from_timestamp_millis),
    }
}

/// `GET /api/session`: who this browser is.
#[utoipa::path(get, path = "/api/session", responses((status = 200, description = "who is signed in (everyone is `anonymous` without sign-in)", body = wire::SessionInfo), (status = 401, description = "not signed in", body = wire::ErrorBody)), tag = "operators")]
pub async fn session(State(dashboard): State<Dashboard>, request: Request) -> Result<Json<SessionInfo>, ApiError> {
    let actor = request
        .extensions()
        .get::<Actor>()
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "not signed in"))?;
    let ends = request.extensions().get::<SessionEnds>().map(|ends| ends.0);
    Ok(Json(info(dashboard.gate.mode, actor, ends)))
}

/// `POST /api/session {"name": "ada", "password": "…"}`: signs in; the answer sets an
/// HttpOnly, SameSite=Strict session cookie.
#[utoipa::path(post, path = "/api/session", request_body = wire::SignIn, responses((status = 200, description = "signed in; the session cookie is set", body = wire::SessionInfo), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 401, description = "wrong name or password", body = wire::ErrorBody), (status = 409, description = "this dashboard runs without sign-in", body = wire::ErrorBody), (status = 429, description = "too many failed sign-ins for this name lately (from this address, or from everywhere)", body = wire::ErrorBody)), tag = "operators")]
pub async fn sign_in(
    State(dashboard): State<Dashboard>,
    peer: Option<Extension<axum::extract::ConnectInfo<crate::access::Peer>>>,
    JsonBody(sign_in): JsonBody<SignIn>,
) -> Result<Response, ApiError> {
    let gate: &Gate = &dashboard.gate;
    if gate.mode == AuthMode::Anonymous {
        return Err(ApiError::conflict(
            "this dashboard runs without sign-in (--dashboard-auth anonymous)",
        ));
    }
    let source = peer.map_or_else(String::new, |Extension(axum::extract::ConnectInfo(peer))| {
        peer.0.ip().to_string()
    });
    let Some(actor) = gate
        .operators
        .sign_in(&sign_in.name, &sign_in.password, &source)
        .await?
    else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong name or password"));
    };
    let (token, ends) = gate.operators.start_session(&actor.name, gate.session_ttl_ms).await?;
    tracing::info!(operator = %actor.name, role = %actor.role, "operator signed in");
    let body = info(gate.mode, &actor, Some(ends));
    let mut response = ([(header::SET_COOKIE, gate.cookie(&token))], Json(body)).into_response();
    // For the audit log: the request was made by nobody yet; the response names who.
    response.extensions_mut().insert(actor);
    Ok(response)
}

/// `DELETE /api/session`: signs out (ends the session and clears the cookie).
#[utoipa::path(delete, path = "/api/session", responses((status = 204, description = "signed out")), tag = "operators")]
pub async fn sign_out(State(dashboard): State<Dashboard>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = session_token(&headers) {
        dashboard.gate.operators.end_session(token).await?;
    }
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, Gate::cleared_cookie())]).into_response())
}

/// `GET /api/operators`: every account and its role (admins only).
#[utoipa::path(get, path = "/api/operators", responses((status = 200, description = "the operators", body = wire::OperatorList), (status = 401, description = "not signed in", body = wire::ErrorBody), (status = 403, description = "not an admin", body = wire::ErrorBody)), tag = "operators")]
pub async fn list_operators(State(dashboard): State<Dashboard>) -> Result<Json<OperatorList>, ApiError> {
    Ok(Json(OperatorList {
        operators: dashboard.gate.operators.list().await?,
    }))
}

/// `POST /api/operators {"name", "role", "password"?}`: adds an account (admins only);
/// without a password one is generated and answered this once.
#[utoipa::path(post, path = "/api/operators", request_body = wire::NewOperator, responses((status = 201, description = "added", body = wire::CreatedOperator), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 403, description = "not an admin", body = wire::ErrorBody), (status = 409, description = "the name is taken", body = wire::ErrorBody)), tag = "operators")]
pub async fn add_operator(
    State(dashboard): State<Dashboard>,
    Extension(admin): Extension<Actor>,
    JsonBody(new): JsonBody<NewOperator>,
) -> Result<(StatusCode, Json<CreatedOperator>), ApiError> {
    let (password, generated) = match new.password {
        Some(password) => (password, None),
        None => {
            let password = generate_password();
            (password.clone(), Some(password))
        }
    };
    let operator = dashboard.gate.operators.add(&new.name, new.role, &password).await?;
    tracing::info!(operator = %operator.name, role = %operator.role, by = %admin.name, "operator added");
    Ok((
        StatusCode::CREATED,
        Json(CreatedOperator {
            operator,
            generated_password: generated,
        }),
    ))
}

/// `DELETE /api/operators/{name}`: removes an account and ends its sessions (admins
/// only; the last admin stays).
#[utoipa::path(delete, path = "/api/operators/{name}", params(("name" = String, Path, description = "the operator's name")), responses((status = 204, description = "removed"), (status = 403, description = "not an admin", body = wire::ErrorBody), (status = 404, description = "no such operator", body = wire::ErrorBody), (status = 409, description = "the last admin", body = wire::ErrorBody)), tag = "operators")]
pub async fn remove_operator(
    State(dashboard): State<Dashboard>,
    Extension(admin): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    dashboard.gate.operators.remove(&name).await?;
    tracing::info!(operator = %name, by = %admin.name, "operator removed");
    Ok(StatusCode::NO_CONTENT)
}

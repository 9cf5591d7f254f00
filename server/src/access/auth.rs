//! Who may do what on the dashboard. [`authorize`] is a layer on every dashboard request:
//! it finds who is asking — everyone is an operator with `--dashboard-auth anonymous`;
//! with `login`, the holder of a session cookie, or a scraper with `/metrics`' bearer
//! token — and lets them through only where their [`Role`] reaches:
//!
//! | request | needs |
//! |---|---|
//! | `/healthz`, `/api/openapi.json`, `/api/session`, the SPA's files | nobody |
//! | any other `GET` (`/api/…`, `/status`, `/metrics`, the live stream) | viewer |
//! | any other method (every control) | operator |
//! | `/api/operators…` | admin |
//!
//! No one signed in gets 401 (the `/status` page sends a browser to the sign-in page
//! instead); someone whose role does not reach gets 403. The [`Actor`] is left in the
//! request's extensions for the handlers and the audit log.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use sha2::{Digest, Sha256};
use wire::{AuthMode, Role};

use crate::{
    api_error::ApiError,
    operators::{Actor, Operators},
};

/// The session cookie's name.
pub const COOKIE: &str = "liveview_session";

/// When the signed-in session that made a request ends (an extension beside the
/// [`Actor`]).
#[derive(Debug, Clone, Copy)]
pub struct SessionEnds(pub i64);

/// How often a long-lived stream (the live stream) checks that its session still holds:
/// an operator signed out or removed loses the stream within this.
pub const SESSION_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The signed-in session that made a request (an extension beside the [`Actor`]), for
/// what outlives the request: the live stream ends with its session.
#[derive(Clone)]
pub struct SignedIn {
    token: String,
    ends_ms: i64,
    operators: Operators,
}

impl SignedIn {
    /// A token cancelled when the session ends: at its expiry, or at the first check
    /// (every [`SESSION_RECHECK`]) that finds it signed out or its operator removed.
    /// The watch stops when `until` is cancelled (the stream ended first). A database
    /// that cannot answer a check keeps the stream: it is not the operator's doing.
    pub fn watch(self, until: tokio_util::sync::CancellationToken) -> tokio_util::sync::CancellationToken {
        let ended = tokio_util::sync::CancellationToken::new();
        let signal = ended.clone();
        tokio::spawn(async move {
            let left = u64::try_from(self.ends_ms - crate::now_ms()).unwrap_or(0);
            let expiry = tokio::time::sleep(std::time::Duration::from_millis(left));
            tokio::pin!(expiry);
            let mut checks = tokio::time::interval(SESSION_RECHECK);
            checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = until.cancelled() => return,
                    () = &mut expiry => break,
                    _ = checks.tick() => {
                        if let Ok(None) = self.operators.session(&self.token).await {
                            break;
                        }
                    }
                }
            }
            signal.cancel();
        });
        ended
    }
}

/// A token for a stream without a session (anonymous mode): never cancelled.
pub fn watch_session(
    signed_in: Option<SignedIn>,
    until: tokio_util::sync::CancellationToken,
) -> tokio_util::sync::CancellationToken {
    signed_in.map_or_else(tokio_util::sync::CancellationToken::new, |signed_in| {
        signed_in.watch(until)
    })
}

/// How the dashboard lets people in, and the accounts it checks against.
pub struct Gate {
    pub mode: AuthMode,
    pub operators: Operators,
    pub session_ttl_ms: i64,
    /// SHA-256 of `--metrics-token`: compared digest to digest, so the comparison's time
    /// says nothing about the token.
    metrics_token: Option<[u8; 32]>,
    /// The dashboard serves TLS: its session cookie is `Secure`, never sent in the clear.
    secure: bool,
}

impl Gate {
    pub fn new(mode: AuthMode, operators: Operators, session_minutes: u64, metrics_token: Option<&str>) -> Self {
        Self {
            mode,
            operators,
            session_ttl_ms: i64::try_from(session_minutes.saturating_mul(60_000)).unwrap_or(i64::MAX),
            metrics_token: metrics_token.map(|token| Sha256::digest(token.as_bytes()).into()),
            secure: false,
        }
    }

    /// Session cookies marked `Secure` (the dashboard serves TLS).
    pub fn with_secure_cookies(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Who is asking, if anyone the dashboard knows.
    async fn identify(&self, path: &str, headers: &HeaderMap) -> Result<Option<(Actor, Option<i64>)>, ApiError> {
        if self.mode == AuthMode::Anonymous {
            return Ok(Some((Actor::anonymous(), None)));
        }
        if path == "/metrics"
            && let Some(expected) = self.metrics_token
            && let Some(given) = bearer(headers)
            && <[u8; 32]>::from(Sha256::digest(given.as_bytes())) == expected
        {
            let scraper = Actor {
                name: "metrics-scraper".into(),
                role: Role::Viewer,
            };
            return Ok(Some((scraper, None)));
        }
        let Some(token) = session_token(headers) else {
            return Ok(None);
        };
        let session = self.operators.session(token).await.map_err(|error| {
            tracing::error!(%error, "could not read operator sessions");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sign-in is unavailable; try again shortly",
            )
        })?;
        Ok(session.map(|(actor, ends)| (actor, Some(ends))))
    }

    /// The `Set-Cookie` value that starts a session.
    pub fn cookie(&self, token: &str) -> HeaderValue {
        let max_age = self.session_ttl_ms / 1000;
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        ))
        .expect("a hex token is a valid header value")
    }

    /// The `Set-Cookie` value that ends it.
    pub fn cleared_cookie() -> HeaderValue {
        HeaderValue::from_str(&format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"))
            .expect("a valid header value")
    }
}

/// What a request needs: `None` when anyone may make it.
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    if path == "/api/session" {
        return None;
    }
    if path == "/api/operators" || path.starts_with("/api/operators/") {
        return Some(Role::Admin);
    }
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Some(Role::Operator);
    }
    let reads_the_system = path == "/status"
        || path == "/metrics"
        || path.starts_with("/ws/")
        || (path.starts_with("/api/") && path != "/api/openapi.json");
    reads_the_system.then_some(Role::Viewer)
}

/// The layer.
pub async fn authorize(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let needs = required_role(request.method(), &path);
    // The SPA's files and the open routes need no one: no session lookup (a database
    // read) for each of them. `/api/session` is open but answers who is asking.
    if needs.is_none() && path != "/api/session" {
        return next.run(request).await;
    }
    let known = match gate.identify(&path, request.headers()).await {
        Ok(known) => known,
        Err(error) => return error.into_response(),
    };
    match (needs, known) {
        (None, None) => {}
        (Some(_), None) => {
            let wants_page = path == "/status"
                && !request
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|accept| accept.to_str().ok())
                    .is_some_and(|accept| accept.contains("application/json"));
            if wants_page {
                return Redirect::to("/").into_response();
            }
            return ApiError::new(StatusCode::UNAUTHORIZED, "sign in first (POST /api/session)").into_response();
        }
        (needs, Some((actor, ends))) => {
            if let Some(needs) = needs
                && actor.role < needs
            {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("this needs the {needs} role; {} is a {}", actor.name, actor.role),
                )
                .into_response();
            }
            if let Some(ends) = ends {
                request.extensions_mut().insert(SessionEnds(ends));
                if let Some(token) = session_token(request.headers()) {
                    let signed_in = SignedIn {
                        token: token.to_string(),
                        ends_ms: ends,
                        operators: gate.operators.clone(),
                    };
                    request.extensions_mut().insert(signed_in);
                }
            }
            request.extensions_mut().insert(actor);
        }
    }
    next.run(request).await
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The session cookie's value. By hand, not with a cookie crate: the only cookie read is
/// our own, a hex token, so splitting the header on `;` and `=` is all there is to it.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty() && value.len() <= 128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_needs_the_role_of_what_it_does() {
        let cases = [
            (Method::GET, "/healthz", None),
            (Method::GET, "/api/openapi.json", None),
            (Method::GET, "/", None),
            (Method::GET, "/frontend-0123456789abcdef_bg.wasm", None),
            (Method::POST, "/api/session", None),
            (Method::DELETE, "/api/session", None),
            (Method::GET, "/status", Some(Role::Viewer)),
            (Method::GET, "/metrics", Some(Role::Viewer)),
            (Method::GET, "/api/live-view/ws", Some(Role::Viewer)),
            (Method::GET, "/ws/metrics", Some(Role::Viewer)),
            (Method::GET, "/api/audit", Some(Role::Viewer)),
            (Method::POST, "/api/servers/1/stop", Some(Role::Operator)),
            (Method::PUT, "/api/live-view/controls", Some(Role::Operator)),
            (Method::POST, "/", Some(Role::Operator)),
            (Method::GET, "/api/operators", Some(Role::Admin)),
            (Method::DELETE, "/api/operators/ada", Some(Role::Admin)),
        ];
        for (method, path, needs) in cases {
            assert_eq!(required_role(&method, path), needs, "{method} {path}");
        }
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; liveview_session=abc123"),
        );
        assert_eq!(session_token(&headers), Some("abc123"));
        let mut empty = HeaderMap::new();
        empty.append(header::COOKIE, HeaderValue::from_static("liveview_session="));
        assert_eq!(session_token(&empty), None);
        assert_eq!(session_token(&HeaderMap::new()), None);
    }
}

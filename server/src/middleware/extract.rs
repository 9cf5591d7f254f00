//! Request extractors of the app servers' middleware pipeline: typed, validated JSON
//! bodies (a 400 naming each bad field), and the authenticated user behind a bearer
//! session token (a 401 otherwise).

use std::collections::BTreeMap;

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request},
    http::{StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;

use super::AppServer;
use crate::{accounts, api_error::ApiError};

/// Field-level complaints, collected so one answer names every bad field.
#[derive(Debug, Default)]
pub struct FieldErrors(BTreeMap<String, String>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.entry(field.to_string()).or_insert_with(|| message.into());
    }

    /// Checks a text field's length in characters (not bytes).
    pub fn length(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let length = value.chars().count();
        if length < min {
            self.add(
                field,
                if min == 1 {
                    "must not be empty".to_string()
                } else {
                    format!("must be at least {min} characters")
                },
            );
        } else if length > max {
            self.add(field, format!("must be at most {max} characters"));
        }
    }

    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        Err(ApiError {
            fields: self.0,
            ..ApiError::invalid::<String>([])
        })
    }
}

/// A query string of type `T`, or a 400 `{"error", "fields": {"query": why}}`.
#[derive(Debug, Clone)]
pub struct ValidQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ValidQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(query)| Self(query))
            .map_err(|rejection| ApiError::invalid([("query", rejection.body_text())]))
    }
}

/// A request body's own rules, beyond its shape.
pub trait Validate {
    fn validate(&self, errors: &mut FieldErrors);
}

/// A JSON body of type `T`, or the stable JSON error: 415 without
/// `Content-Type: application/json`, 413 over the body limit, 400 for malformed JSON or
/// a field of the wrong shape (named). The dashboard's control endpoints take it as it
/// is; the app servers' controllers through [`ValidJson`].
pub struct JsonBody<T>(pub T);

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(';')
                .next()
                .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
        })
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "expected Content-Type: application/json",
    )
}

async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))
}

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(unsupported_media_type());
        }
        let bytes = body_bytes(request, state).await?;
        Ok(Self(parse(&bytes)?))
    }
}

/// `Option<JsonBody<T>>`: `None` for an empty body, otherwise exactly as [`JsonBody`]
/// (a body that is there but not JSON is refused, never taken for "no body").
impl<T, S> OptionalFromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let json = is_json(request.headers());
        let bytes = body_bytes(request, state).await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        if !json {
            return Err(unsupported_media_type());
        }
        Ok(Some(Self(parse(&bytes)?)))
    }
}

/// A JSON body of type `T` that parsed and passed `T::validate`.
pub struct ValidJson<T>(pub T);

impl<T, S> FromRequest<S> for ValidJson<T>
where
    T: DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let JsonBody(value) = <JsonBody<T> as FromRequest<S>>::from_request(request, state).await?;
        let mut errors = FieldErrors::default();
        value.validate(&mut errors);
        errors.into_result()?;
        Ok(Self(value))
    }
}

/// Parses with the failing field's path, so "wrong type" and "missing" errors name it.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde reads a struct from an array too (by position); an API body is an object.
    if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::invalid([("body", "must be a JSON object".to_string())]));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let result = serde_path_to_error::deserialize(&mut deserializer);
    // Trailing bytes after a complete value are malformed JSON, not a field problem.
    if result.is_ok()
        && let Err(trailing) = deserializer.end()
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("malformed JSON: {trailing}"),
        ));
    }
    result.map_err(|error| {
        let inner = error.inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {inner}"));
        }
        let message = strip_position(&inner.to_string());
        let path = error.path().to_string();
        // "missing field `x`" and "unknown field `x`" are reported at the parent.
        let field = match (path.as_str(), backticked(&message)) {
            (".", Some(name)) => name,
            (".", None) => "body".to_string(),
            (path, _) => path.to_string(),
        };
        let mut errors = FieldErrors::default();
        errors.add(&field, message);
        errors
            .into_result()
            .err()
            .unwrap_or_else(|| ApiError::invalid::<String>([]))
    })
}

/// serde_json's " at line 1 column 9" helps nobody reading a field error.
fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(cut) => message[..cut].to_string(),
        None => message.to_string(),
    }
}

fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(message[start..end].to_string())
}

/// The user behind `Authorization: Bearer <token>` (or `?token=` for sockets, which
/// cannot set headers from a browser).
#[derive(Debug, Clone)]
pub struct AuthUser(pub accounts::User);

/// The `active_sessions` id of the request's session, set by [`AuthUser`].
#[derive(Debug, Clone)]
pub struct ActiveSession(pub String);

impl FromRequestParts<AppServer> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, server: &AppServer) -> Result<Self, ApiError> {
        let token =
            bearer_token(parts).ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing bearer token"))?;
        match accounts::authenticate(&server.shared.db, &server.shared.sessions, &token).await? {
            Some(user) => {
                if let Some(session) = crate::analytics::sessions::session_id(&token) {
                    server.shared.activity.touch(
                        session.clone(),
                        &user.id,
                        crate::analytics::sessions::Touch::Request,
                        client(parts, server),
                    );
                    // For the extractors after this one (the in-app socket keeps its
                    // session active while it is open).
                    parts.extensions.insert(ActiveSession(session));
                }
                Ok(Self(user))
            }
            None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid or expired token")),
        }
    }
}

/// The end user behind a request: their browser and, through the balancer, their
/// address.
pub fn client<'a>(parts: &'a Parts, server: &AppServer) -> crate::analytics::sessions::Client<'a> {
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<crate::access::Peer>>()
        .map(|info| info.0.0.ip());
    crate::analytics::sessions::Client {
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok()),
        address: peer.map(|peer| server.shared.trusted_proxies.client(peer, &parts.headers)),
    }
}

/// The request's bearer token: `Authorization: Bearer …`, or `?token=` (sockets).
pub fn bearer_token(parts: &Parts) -> Option<String> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| token.trim().to_string());
    header.or_else(|| {
        parts.uri.query().and_then(|query| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| *name == "token")
                .map(|(_, value)| value.to_string())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Sample {
        #[allow(dead_code)]
        email: String,
        #[allow(dead_code)]
        amount_cents: i64,
    }

    fn field_error(body: &str) -> (String, String) {
        let error = parse::<Sample>(body.as_bytes()).expect_err("rejected");
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        error
            .fields
            .into_iter()
            .next()
            .unwrap_or_else(|| ("<none>".into(), error.error))
    }

    #[test]
    fn each_kind_of_bad_body_names_its_field() {
        assert_eq!(
            field_error(r#"{"email":"a@b.c"}"#),
            ("amountCents".into(), "missing field `amountCents`".into())
        );
        let (field, message) = field_error(r#"{"email":5,"amountCents":1}"#);
        assert_eq!(field, "email");
        assert!(message.starts_with("invalid type: integer `5`"), "{message}");
        assert_eq!(field_error(r#"{"email":"a","amountCents":1,"admin":true}"#).0, "admin");
        assert_eq!(field_error("[1,2]").0, "body");
    }

    #[test]
    fn malformed_json_is_a_plain_400() {
        for body in ["{", "not json", r#"{"email":"a","amountCents":1} trailing"#, ""] {
            let error = parse::<Sample>(body.as_bytes()).expect_err("rejected");
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
            assert!(error.error.starts_with("malformed JSON"), "{body:?}: {}", error.error);
        }
    }

    #[test]
    fn lengths_are_counted_in_characters() {
        let mut errors = FieldErrors::default();
        errors.length("name", "ééé", 1, 3);
        errors.length("empty", "", 1, 3);
        errors.length("long", "abcd", 1, 3);
        let error = errors.into_result().expect_err("two bad fields");
        assert_eq!(error.fields.len(), 2);
        assert_eq!(error.fields["empty"], "must not be empty");
        assert_eq!(error.fields["long"], "must be at most 3 characters");
    }
}

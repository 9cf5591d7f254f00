//! The HTTP error every Live View endpoint answers with: a status and a stable JSON
//! shape, `{"error": "...", "fields": {"field": "message"}}`. Internals never reach the
//! body; the caller logs the detail before building one.

use std::collections::BTreeMap;

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// An error answer: its status, and its body as [`wire::ErrorBody`] writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub error: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            fields: BTreeMap::new(),
        }
    }

    /// A 400 naming each bad field.
    pub fn invalid<F: Into<String>>(fields: impl IntoIterator<Item = (F, String)>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "invalid request".into(),
            fields: fields
                .into_iter()
                .map(|(field, message)| (field.into(), message))
                .collect(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }

    pub fn conflict(what: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, what)
    }

    /// A failure that is ours, not the caller's: the detail goes to the log, the caller
    /// gets a generic 500.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            // Overload, not a fault: every connection stayed busy for the whole wait.
            sqlx::Error::PoolTimedOut => {
                tracing::warn!("database pool exhausted; answering 503");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "the server is busy; try again shortly")
            }
            error => Self::internal(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = wire::ErrorBody {
            error: self.error,
            fields: self.fields,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_appear_only_when_there_are_some() {
        let plain = serde_json::to_value(ApiError::not_found("no such server")).expect("json");
        assert_eq!(plain, serde_json::json!({ "error": "no such server" }));
        let invalid = serde_json::to_value(ApiError::invalid([("algorithm", "unknown".to_string())])).expect("json");
        assert_eq!(invalid["fields"]["algorithm"], "unknown");
        assert_eq!(invalid["error"], "invalid request");
    }
}

//! The app servers' middleware pipeline, outermost first: request id, error handling
//! (timeout and panics become the stable JSON error), body size limit. Authentication
//! and validation are extractors (`extract.rs`), so each handler states what it needs.

use std::time::Duration;

use axum::{
    extract::Request,
    http::{HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::api_error::ApiError;

/// The largest request body an app server reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a request may take before the caller gets a 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps the balancer's `X-Request-Id` (or mints one for direct calls) and echoes it.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = match request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
    {
        Some(id) if !id.is_empty() && id.len() <= 64 => id.to_string(),
        _ => uuid::Uuid::now_v7().to_string(),
    };
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    request.headers_mut().insert("x-request-id", value.clone());
    let mut response = next.run(request).await;
    response.headers_mut().insert("x-request-id", value);
    response
}

/// A request that overruns [`REQUEST_TIMEOUT`] gets a JSON 503 instead of hanging.
pub async fn timeout(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "request timed out").into_response(),
    }
}

/// Axum's own rejections (wrong method, body over the limit) come as plain text; give
/// them the stable JSON shape.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let status = response.status();
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => format!("request body over {MAX_BODY_BYTES} bytes"),
        other => other.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let mut json = ApiError::new(status, message).into_response();
    if let Some(allow) = response.headers().get("allow") {
        json.headers_mut().insert("allow", allow.clone());
    }
    json
}

/// A panicking handler answers with the generic JSON 500; the panic is logged.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::internal(format!("handler panicked: {detail}")).into_response()
}

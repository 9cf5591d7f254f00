//! The app servers' middleware pipeline, outermost first: request id, tracing, timeout,
//! error handling (panics and axum's own rejections become the stable JSON error), body
//! size limit ([`pipeline`]). Authentication and validation are extractors
//! ([`extract`]), so each handler states what it needs; [`AppServer`] is what handlers
//! are given. The controllers and the WebSocket service build on this module, and the
//! server pool ([`crate::servers`]) puts them together.

pub mod extract;
mod state;

pub use state::{AppServer, Shared};

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    http::{HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use wire::SystemStage;

use crate::{api_error::ApiError, controls::DelayPoint, telemetry::journeys::kind_of_route};

/// Wraps an app server's routes in the pipeline (the last layer added runs first).
pub fn pipeline(routes: axum::Router, server: AppServer) -> axum::Router {
    routes
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(server.clone(), timeout))
        .layer(axum::middleware::from_fn_with_state(server, trace))
        .layer(axum::middleware::from_fn(request_id))
}

/// Put on each request by [`trace`]: when the server received it and whether it is
/// traced as a journey.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub at: Instant,
    pub traced: bool,
}

/// Records the server's stages of a business action (received, response with its
/// status), injects the server-processing delay, and waits at step boundaries.
pub async fn trace(State(server): State<AppServer>, mut request: Request, next: Next) -> Response {
    let at = Instant::now();
    let kind = kind_of_route(request.method().as_str(), request.uri().path());
    // The balancer's health checks are not traffic: they stay out of the figures.
    let metered = request.uri().path() != "/healthz";
    let id = request_id_of(request.headers());
    let telemetry = &server.shared.telemetry;
    if let Some(kind) = kind {
        telemetry
            .stage(&id, SystemStage::ServerReceived, &server.id)
            .kind(kind)
            .done();
        server.shared.controls.boundary(&id).await;
    }
    server.shared.controls.inject(DelayPoint::ServerProcessing).await;
    request.extensions_mut().insert(Received {
        at,
        traced: kind.is_some(),
    });
    if !metered {
        return next.run(request).await;
    }
    let meters = telemetry.meters();
    let in_flight = meters.http_in_flight.with_label_values(&[server.id.as_str()]);
    in_flight.inc();
    let response = next.run(request).await;
    in_flight.dec();
    meters.request_done(&server.id, response.status().as_u16(), at.elapsed().as_secs_f64());
    if kind.is_some() {
        let status = response.status();
        let stage = telemetry
            .stage_since(&id, SystemStage::Response, &server.id, at)
            .meta("status", status.as_u16());
        if status.is_server_error() {
            stage.failed(format!("HTTP {}", status.as_u16()));
        } else {
            stage.done();
        }
        server.shared.controls.steps().responded(&id);
    }
    response
}

/// The id [`request_id`] put on the request (empty before it ran).
pub fn request_id_of(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

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

/// Put on each request by [`timeout`]; the handler marks it when it starts to commit.
/// From then on the request is never timed out: the answer must say what was committed
/// (a 503 after a stored purchase would have the caller buy twice).
#[derive(Debug, Clone, Default)]
pub struct CommitPoint(Arc<AtomicBool>);

impl CommitPoint {
    /// The handler is about to write: whatever happens, it answers itself.
    pub fn reached(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn is_reached(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for CommitPoint {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned().unwrap_or_default())
    }
}

/// A request that overruns [`REQUEST_TIMEOUT`] gets a JSON 503 instead of hanging, but
/// only for time it was working: a request in step mode is paused while it waits for
/// its steps, and that time is not counted. Once the handler has begun to commit it is
/// not timed out at all (see [`CommitPoint`]).
pub async fn timeout(State(server): State<AppServer>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id_of(request.headers());
    let commit = CommitPoint::default();
    request.extensions_mut().insert(commit.clone());
    let steps = server.shared.controls.steps();
    let handler = next.run(request);
    tokio::pin!(handler);
    loop {
        let due = started + REQUEST_TIMEOUT + steps.paused(&id);
        tokio::select! {
            response = &mut handler => return response,
            () = tokio::time::sleep_until(due.into()) => {
                if commit.is_reached() {
                    return handler.await;
                }
                // Paused meanwhile: the deadline moved on.
                if Instant::now() >= started + REQUEST_TIMEOUT + steps.paused(&id) {
                    return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "request timed out").into_response();
                }
            }
        }
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
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large".to_string(),
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

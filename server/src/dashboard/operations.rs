//! Dashboard endpoints that act on the running system: the balancer's algorithm and
//! metrics, and stopping or starting an app server.

use axum::{
    Json,
    extract::{Path, State},
};
use serde::Deserialize;
use serde_json::{Value, json};
use wire::{BalancerAlgorithm, LoadBalancerMetrics};

use super::Dashboard;
use crate::{
    api_error::ApiError,
    middleware::extract::{JsonBody, ValidQuery},
    queue::QueueName,
    servers::PoolError,
    smtp::Faults,
};

pub async fn balancer_metrics(State(dashboard): State<Dashboard>) -> Json<LoadBalancerMetrics> {
    Json(dashboard.balancer.metrics())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalancerUpdate {
    algorithm: Value,
}

/// `PUT /api/balancer {"algorithm": "least-connections"}`.
pub async fn update_balancer(
    State(dashboard): State<Dashboard>,
    JsonBody(update): JsonBody<BalancerUpdate>,
) -> Result<Json<LoadBalancerMetrics>, ApiError> {
    let algorithm: BalancerAlgorithm = serde_json::from_value(update.algorithm).map_err(|_| {
        ApiError::invalid([(
            "algorithm",
            "must be \"round-robin\" or \"least-connections\"".to_string(),
        )])
    })?;
    dashboard.balancer.set_algorithm(algorithm);
    Ok(Json(dashboard.balancer.metrics()))
}

/// `GET /api/servers`: every app server, running or not, and how the balancer sees it.
pub async fn list_servers(State(dashboard): State<Dashboard>) -> Json<Value> {
    let servers: Vec<Value> = dashboard
        .servers
        .list()
        .into_iter()
        .map(|server| {
            let healthy = dashboard
                .balancer
                .backends()
                .iter()
                .find(|backend| backend.id == server.id)
                .is_some_and(|backend| backend.is_healthy());
            json!({ "id": server.id, "address": server.addr.to_string(), "running": server.running, "healthy": healthy })
        })
        .collect();
    Json(json!({ "servers": servers }))
}

/// `POST /api/servers/{n}/stop` and `/start`; `n` is 1-based, as in `server-1`.
pub async fn server_action(
    State(dashboard): State<Dashboard>,
    Path((number, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let id = match number.parse::<u16>() {
        Ok(n) if n >= 1 => format!("server-{n}"),
        _ => {
            return Err(ApiError::invalid([(
                "server",
                format!("{number:?} is not a server number"),
            )]));
        }
    };
    let result = match action.as_str() {
        "stop" => dashboard.servers.stop(&id).await,
        "start" => dashboard.servers.start(&id).await,
        _ => {
            return Err(ApiError::not_found(format!("no action {action:?}; use stop or start")));
        }
    };
    result.map_err(|error| match error {
        PoolError::NotFound(_) => ApiError::not_found(error.to_string()),
        PoolError::AlreadyRunning(_) | PoolError::AlreadyStopped(_) => ApiError::conflict(error.to_string()),
        PoolError::Bind { .. } => {
            tracing::error!(%error, "server could not start again");
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!("{id} could not bind its address"),
            )
        }
    })?;
    let running = action == "start";
    Ok(Json(json!({ "id": id, "running": running })))
}

/// `GET /api/queues`: counts for every queue.
pub async fn queue_counts(State(dashboard): State<Dashboard>) -> Result<Json<Value>, ApiError> {
    let queues = dashboard.queues.counts().await?;
    Ok(Json(json!({ "queues": queues })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequeueFilter {
    /// Requeue just this job.
    job_id: Option<String>,
    /// Requeue every job whose last error contains this text.
    error_contains: Option<String>,
}

/// `POST /api/queues/{name}/pause`, `/resume`, and `/requeue` (dead-letter queues only,
/// body `{"jobId": ...}` or `{"errorContains": ...}` or `{}` for all) → how many moved.
pub async fn queue_action(
    State(dashboard): State<Dashboard>,
    Path((name, action)): Path<(String, String)>,
    body: Option<JsonBody<RequeueFilter>>,
) -> Result<Json<Value>, ApiError> {
    let queue: QueueName = name.parse().map_err(ApiError::not_found)?;
    match action.as_str() {
        "pause" | "resume" => {
            let paused = action == "pause";
            dashboard.queues.set_paused(queue, paused).await?;
            Ok(Json(json!({ "queue": queue, "paused": paused })))
        }
        "requeue" if queue.is_dead_letter() => {
            let filter = body.map(|JsonBody(filter)| filter).unwrap_or_default();
            let moved = dashboard
                .queues
                .requeue(queue, filter.job_id.as_deref(), filter.error_contains.as_deref())
                .await?;
            Ok(Json(
                json!({ "queue": queue, "movedTo": queue.first(), "moved": moved }),
            ))
        }
        "requeue" => Err(ApiError::invalid([(
            "queue",
            format!("{queue} is not a dead-letter queue"),
        )])),
        _ => Err(ApiError::not_found(format!(
            "no action {action:?}; use pause, resume or requeue"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobsQuery {
    limit: Option<u32>,
    error_contains: Option<String>,
}

/// `GET /api/queues/{name}/jobs?limit=50&errorContains=451`: the newest jobs and how
/// many match in all (on a dead-letter queue: how many a requeue with the same filter
/// would move).
pub async fn queue_jobs(
    State(dashboard): State<Dashboard>,
    Path(name): Path<String>,
    ValidQuery(query): ValidQuery<JobsQuery>,
) -> Result<Json<Value>, ApiError> {
    let queue: QueueName = name.parse().map_err(ApiError::not_found)?;
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let (total, jobs) = dashboard
        .queues
        .list(queue, query.error_contains.as_deref(), limit)
        .await?;
    Ok(Json(json!({ "queue": queue, "total": total, "jobs": jobs })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxQuery {
    limit: Option<u32>,
}

/// `GET /api/mailbox?limit=50`: what the embedded capture server accepted, newest first.
pub async fn mailbox(
    State(dashboard): State<Dashboard>,
    ValidQuery(query): ValidQuery<MailboxQuery>,
) -> Result<Json<Value>, ApiError> {
    let capture = dashboard.capture.as_ref().ok_or_else(capture_off)?;
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    let messages = capture.messages(limit).await?;
    let total = capture.count().await?;
    let duplicates = capture.duplicates().await?;
    Ok(Json(
        json!({ "total": total, "duplicatesIgnored": duplicates, "messages": messages }),
    ))
}

fn capture_off() -> ApiError {
    ApiError::not_found("the embedded capture SMTP server is not running (mail goes to --smtp-url)")
}

/// `GET /api/faults`.
pub async fn faults(State(dashboard): State<Dashboard>) -> Result<Json<Faults>, ApiError> {
    let capture = dashboard.capture.as_ref().ok_or_else(capture_off)?;
    Ok(Json(capture.faults()))
}

/// `PUT /api/faults {"smtp4xxRate": 0.2, "smtp5xxRate": 0.0, "smtpLatencyMs": 50}`.
pub async fn set_faults(
    State(dashboard): State<Dashboard>,
    JsonBody(faults): JsonBody<Faults>,
) -> Result<Json<Faults>, ApiError> {
    let capture = dashboard.capture.as_ref().ok_or_else(capture_off)?;
    let problems = faults.problems();
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    capture.set_faults(faults);
    Ok(Json(faults))
}

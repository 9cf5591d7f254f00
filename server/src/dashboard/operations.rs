//! Dashboard endpoints that act on the running system: the balancer's algorithm and
//! metrics, and stopping or starting an app server.

use axum::{
    Json,
    extract::{Path, State},
};
use serde::Deserialize;
use wire::{
    BalancerUpdate, Faults, JobList, LoadBalancerMetrics, Mailbox, QueueActionDone, QueueList, QueuePaused,
    RequeueFilter, Requeued, ServerList, ServerRow, ServerState,
};

use super::Dashboard;
use crate::{
    api_error::ApiError,
    middleware::extract::{JsonBody, ValidQuery},
    queue::QueueName,
    servers::PoolError,
};

#[utoipa::path(get, path = "/api/balancer", responses((status = 200, description = "the balancer's figures", body = wire::LoadBalancerMetrics)), tag = "operations")]
pub async fn balancer_metrics(State(dashboard): State<Dashboard>) -> Json<LoadBalancerMetrics> {
    Json(dashboard.balancer.metrics())
}

/// `PUT /api/balancer {"algorithm": "least-connections"}`.
#[utoipa::path(put, path = "/api/balancer", request_body = wire::BalancerUpdate, responses((status = 200, description = "switched", body = wire::LoadBalancerMetrics), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody)), tag = "operations")]
pub async fn update_balancer(
    State(dashboard): State<Dashboard>,
    JsonBody(update): JsonBody<BalancerUpdate>,
) -> Result<Json<LoadBalancerMetrics>, ApiError> {
    dashboard.balancer.set_algorithm(update.algorithm);
    Ok(Json(dashboard.balancer.metrics()))
}

/// `GET /api/servers`: every app server, running or not, and how the balancer sees it.
#[utoipa::path(get, path = "/api/servers", responses((status = 200, description = "every app server", body = wire::ServerList)), tag = "operations")]
pub async fn list_servers(State(dashboard): State<Dashboard>) -> Json<ServerList> {
    let servers = dashboard
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
            ServerRow {
                address: server.addr.to_string(),
                id: server.id,
                running: server.running,
                healthy,
            }
        })
        .collect();
    Json(ServerList { servers })
}

/// `POST /api/servers/{n}/stop` and `/start`; `n` is 1-based, as in `server-1`.
#[utoipa::path(post, path = "/api/servers/{number}/{action}", params(("number" = String, Path, description = "1-based, as in server-1"), ("action" = String, Path, description = "stop or start")), responses((status = 200, description = "done", body = wire::ServerState), (status = 400, description = "not a server number", body = wire::ErrorBody), (status = 404, description = "no such server or action", body = wire::ErrorBody), (status = 409, description = "already in that state", body = wire::ErrorBody), (status = 503, description = "could not bind its address again", body = wire::ErrorBody)), tag = "operations")]
pub async fn server_action(
    State(dashboard): State<Dashboard>,
    Path((number, action)): Path<(String, String)>,
) -> Result<Json<ServerState>, ApiError> {
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
    Ok(Json(ServerState { id, running }))
}

/// `GET /api/queues`: counts for every queue.
#[utoipa::path(get, path = "/api/queues", responses((status = 200, description = "counts per queue and state", body = wire::QueueList)), tag = "operations")]
pub async fn queue_counts(State(dashboard): State<Dashboard>) -> Result<Json<QueueList>, ApiError> {
    let queues = dashboard.queues.counts().await?;
    Ok(Json(QueueList { queues }))
}

/// `POST /api/queues/{name}/pause`, `/resume`, and `/requeue` (dead-letter queues only,
/// body `{"jobId": ...}` or `{"errorContains": ...}` or `{}` for all) → how many moved.
#[utoipa::path(post, path = "/api/queues/{name}/{action}", params(("name" = String, Path, description = "a queue: mail, mail-retry-1, mail-retry-2, mail-dlq, inapp, inapp-retry, inapp-dlq"), ("action" = String, Path, description = "pause, resume or requeue (dead-letter queues)")), request_body = Option<wire::RequeueFilter>, responses((status = 200, description = "paused or resumed (QueuePaused), or requeued (Requeued)", body = wire::QueueActionDone), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 404, description = "no such queue or action", body = wire::ErrorBody)), tag = "operations")]
pub async fn queue_action(
    State(dashboard): State<Dashboard>,
    Path((name, action)): Path<(String, String)>,
    body: Option<JsonBody<RequeueFilter>>,
) -> Result<Json<QueueActionDone>, ApiError> {
    let queue: QueueName = name.parse().map_err(ApiError::not_found)?;
    match action.as_str() {
        "pause" | "resume" => {
            let paused = action == "pause";
            dashboard.queues.set_paused(queue, paused).await?;
            Ok(Json(QueueActionDone::Paused(QueuePaused {
                queue: queue.to_string(),
                paused,
            })))
        }
        "requeue" if queue.is_dead_letter() => {
            let filter = body.map(|JsonBody(filter)| filter).unwrap_or_default();
            let moved = dashboard
                .queues
                .requeue(queue, filter.job_id.as_deref(), filter.error_contains.as_deref())
                .await?;
            Ok(Json(QueueActionDone::Requeued(Requeued {
                queue: queue.to_string(),
                moved_to: queue.first().to_string(),
                moved,
            })))
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobsQuery {
    limit: Option<u32>,
    error_contains: Option<String>,
}

/// `GET /api/queues/{name}/jobs?limit=50&errorContains=451`: the newest jobs and how
/// many match in all (on a dead-letter queue: how many a requeue with the same filter
/// would move).
#[utoipa::path(get, path = "/api/queues/{name}/jobs", params(("name" = String, Path, description = "a queue"), JobsQuery), responses((status = 200, description = "the newest jobs and how many match", body = wire::JobList), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 404, description = "no such queue", body = wire::ErrorBody)), tag = "operations")]
pub async fn queue_jobs(
    State(dashboard): State<Dashboard>,
    Path(name): Path<String>,
    ValidQuery(query): ValidQuery<JobsQuery>,
) -> Result<Json<JobList>, ApiError> {
    let queue: QueueName = name.parse().map_err(ApiError::not_found)?;
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let (total, jobs) = dashboard
        .queues
        .list(queue, query.error_contains.as_deref(), limit)
        .await?;
    Ok(Json(JobList {
        queue: queue.to_string(),
        total,
        jobs,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MailboxQuery {
    limit: Option<u32>,
}

/// `GET /api/mailbox?limit=50`: what the embedded capture server accepted, newest first.
#[utoipa::path(get, path = "/api/mailbox", params(MailboxQuery), responses((status = 200, description = "what the capture server stored, newest first", body = wire::Mailbox), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 404, description = "the capture server is not running", body = wire::ErrorBody)), tag = "operations")]
pub async fn mailbox(
    State(dashboard): State<Dashboard>,
    ValidQuery(query): ValidQuery<MailboxQuery>,
) -> Result<Json<Mailbox>, ApiError> {
    let capture = dashboard.capture.as_ref().ok_or_else(capture_off)?;
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    let messages = capture.messages(limit).await?;
    let total = capture.count().await?;
    let duplicates_ignored = capture.duplicates().await?;
    Ok(Json(Mailbox {
        total,
        duplicates_ignored,
        messages,
    }))
}

fn capture_off() -> ApiError {
    ApiError::not_found("the embedded capture SMTP server is not running (mail goes to --smtp-url)")
}

/// `GET /api/faults`.
#[utoipa::path(get, path = "/api/faults", responses((status = 200, description = "the capture server's fault knobs", body = wire::Faults), (status = 404, description = "the capture server is not running", body = wire::ErrorBody)), tag = "operations")]
pub async fn faults(State(dashboard): State<Dashboard>) -> Result<Json<Faults>, ApiError> {
    let capture = dashboard.capture.as_ref().ok_or_else(capture_off)?;
    Ok(Json(capture.faults()))
}

/// `PUT /api/faults {"smtp4xxRate": 0.2, "smtp5xxRate": 0.0, "smtpLatencyMs": 50}`.
#[utoipa::path(put, path = "/api/faults", request_body = wire::Faults, responses((status = 200, description = "set", body = wire::Faults), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 404, description = "the capture server is not running", body = wire::ErrorBody)), tag = "operations")]
pub async fn set_faults(
    State(dashboard): State<Dashboard>,
    JsonBody(faults): JsonBody<Faults>,
) -> Result<Json<Faults>, ApiError> {
    let capture = dashboard.capture.as_ref().ok_or_else(capture_off)?;
    let problems = crate::smtp::fault_problems(&faults);
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    capture.set_faults(faults);
    Ok(Json(faults))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<u32>,
}

/// `GET /api/audit?limit=50`: the newest control actions, who took them and what they got.
#[utoipa::path(get, path = "/api/audit", params(AuditQuery), responses((status = 200, description = "the newest control actions first", body = wire::AuditLog), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody)), tag = "operations")]
pub async fn audit_log(
    State(dashboard): State<Dashboard>,
    ValidQuery(query): ValidQuery<AuditQuery>,
) -> Result<Json<wire::AuditLog>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, crate::audit::MAX_LIST);
    Ok(Json(wire::AuditLog {
        entries: dashboard.audit.recent(limit).await?,
    }))
}

/// `GET /api/processes`: every process of the cluster (role, id, address, version,
/// started at, last heartbeat) and whether it is up.
#[utoipa::path(get, path = "/api/processes", responses((status = 200, description = "the processes seen in the last hour", body = wire::ProcessList)), tag = "operations")]
pub async fn processes(State(dashboard): State<Dashboard>) -> Result<Json<wire::ProcessList>, ApiError> {
    Ok(Json(wire::ProcessList {
        processes: dashboard.processes.list().await?,
    }))
}

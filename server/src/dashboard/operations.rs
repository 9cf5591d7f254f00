//! Dashboard endpoints that act on the running system: the balancer's algorithm and
//! metrics, and stopping or starting an app server.

use axum::{
    Json,
    extract::{Path, State},
};
use serde::Deserialize;
use wire::{
    BalancerUpdate, ComponentMetrics, Faults, JobList, LoadBalancerMetrics, Mailbox, QueueActionDone, QueueList,
    QueuePaused, RequeueFilter, Requeued, ServerList, ServerRow, ServerState,
};

use super::Dashboard;
use crate::{
    api_error::ApiError,
    middleware::extract::{JsonBody, ValidQuery},
    queue::QueueName,
    servers::remote::{Action, Outcome},
};

#[utoipa::path(get, path = "/api/balancer", responses((status = 200, description = "the balancer's figures", body = wire::LoadBalancerMetrics), (status = 404, description = "no balancer runs in the cluster", body = wire::ErrorBody)), tag = "operations")]
pub async fn balancer_metrics(State(dashboard): State<Dashboard>) -> Result<Json<LoadBalancerMetrics>, ApiError> {
    balancer_figures(&dashboard).map(Json)
}

/// This process's balancer's figures, or the cluster's balancer's from its latest report.
fn balancer_figures(dashboard: &Dashboard) -> Result<LoadBalancerMetrics, ApiError> {
    if let Some(balancer) = &dashboard.balancer {
        return Ok(balancer.metrics());
    }
    dashboard
        .sampler
        .latest()
        .and_then(|sample| {
            sample.components.into_iter().find_map(|component| match component {
                ComponentMetrics::LoadBalancer(metrics) => Some(metrics),
                _ => None,
            })
        })
        .ok_or_else(no_balancer)
}

fn no_balancer() -> ApiError {
    ApiError::not_found("no load balancer reports to this dashboard")
}

/// `PUT /api/balancer {"algorithm": "least-connections"}`: this process's balancer, or
/// every balancer of the cluster.
#[utoipa::path(put, path = "/api/balancer", request_body = wire::BalancerUpdate, responses((status = 200, description = "switched", body = wire::LoadBalancerMetrics), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 404, description = "no balancer runs in the cluster", body = wire::ErrorBody)), tag = "operations")]
pub async fn update_balancer(
    State(dashboard): State<Dashboard>,
    JsonBody(update): JsonBody<BalancerUpdate>,
) -> Result<Json<LoadBalancerMetrics>, ApiError> {
    if let Some(balancer) = &dashboard.balancer {
        balancer.set_algorithm(update.algorithm);
        return Ok(Json(balancer.metrics()));
    }
    match dashboard
        .remote
        .act(Action::Algorithm {
            algorithm: update.algorithm,
        })
        .await
    {
        Some(_) => {
            // The report that shows it comes within a second; answer what was set.
            let mut figures = balancer_figures(&dashboard)?;
            figures.algorithm = update.algorithm;
            Ok(Json(figures))
        }
        None => Err(no_balancer()),
    }
}

/// `GET /api/servers`: every app server, running or not, and how the balancer sees it:
/// this process's, then those the other processes of the cluster report.
#[utoipa::path(get, path = "/api/servers", responses((status = 200, description = "every app server", body = wire::ServerList)), tag = "operations")]
pub async fn list_servers(State(dashboard): State<Dashboard>) -> Json<ServerList> {
    let balancer = balancer_figures(&dashboard).ok();
    let healthy = |id: &str| {
        balancer
            .iter()
            .flat_map(|balancer| &balancer.servers)
            .any(|server| server.id == id && server.healthy)
    };
    let mut servers: Vec<ServerRow> = dashboard
        .servers
        .list()
        .into_iter()
        .map(|server| ServerRow {
            address: server.addr.to_string(),
            healthy: healthy(&server.id),
            id: server.id,
            running: server.running,
        })
        .collect();
    let reported = dashboard
        .sampler
        .latest()
        .map(|sample| sample.components)
        .unwrap_or_default();
    for component in reported {
        if let ComponentMetrics::Server(server) = component
            && !servers.iter().any(|row| row.id == server.id)
        {
            servers.push(ServerRow {
                address: server
                    .url
                    .split_once("://")
                    .map_or(server.url.as_str(), |(_, address)| address)
                    .to_string(),
                healthy: healthy(&server.id),
                id: server.id,
                running: server.running,
            });
        }
    }
    Json(ServerList { servers })
}

/// `POST /api/servers/{server}/stop` and `/start`; `server` is a number (1-based, as
/// in `server-1`) or a server's id (`app@10.0.0.2:5001`, run by another process).
#[utoipa::path(post, path = "/api/servers/{number}/{action}", params(("number" = String, Path, description = "1-based, as in server-1, or a server's id"), ("action" = String, Path, description = "stop or start")), responses((status = 200, description = "done", body = wire::ServerState), (status = 400, description = "not a server number", body = wire::ErrorBody), (status = 404, description = "no such server or action", body = wire::ErrorBody), (status = 409, description = "already in that state", body = wire::ErrorBody), (status = 503, description = "could not bind its address again", body = wire::ErrorBody)), tag = "operations")]
pub async fn server_action(
    State(dashboard): State<Dashboard>,
    Path((number, action)): Path<(String, String)>,
) -> Result<Json<ServerState>, ApiError> {
    let id = match number.parse::<u16>() {
        Ok(n) if n >= 1 => format!("server-{n}"),
        _ if number.starts_with("app@") || number.starts_with("server-") => number.clone(),
        _ => {
            return Err(ApiError::invalid([(
                "server",
                format!("{number:?} is not a server number or id"),
            )]));
        }
    };
    let act = match action.as_str() {
        "stop" => Action::Stop { server: id.clone() },
        "start" => Action::Start { server: id.clone() },
        _ => {
            return Err(ApiError::not_found(format!("no action {action:?}; use stop or start")));
        }
    };
    let outcome = crate::servers::remote::on_server(&dashboard.servers, &dashboard.remote, act)
        .await
        .ok_or_else(|| ApiError::not_found(format!("no app server named {id} runs in the cluster")))?;
    match outcome {
        Outcome::Done => Ok(Json(ServerState {
            id,
            running: action == "start",
        })),
        Outcome::AlreadyRunning => Err(ApiError::conflict(format!("{id} is already running"))),
        Outcome::AlreadyStopped => Err(ApiError::conflict(format!("{id} is already stopped"))),
        Outcome::BindFailed { reason } => {
            tracing::error!(%reason, "server could not start again");
            Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!("{id} could not bind its address"),
            ))
        }
    }
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
    let capture = running_capture(&dashboard).await?;
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

/// The capture server this dashboard shows: its own, or the cluster's if one runs.
async fn running_capture(dashboard: &Dashboard) -> Result<&crate::smtp::CaptureServer, ApiError> {
    let capture = dashboard.capture.as_ref().ok_or_else(capture_off)?;
    if capture.is_running().await? {
        Ok(capture)
    } else {
        Err(capture_off())
    }
}

/// `GET /api/faults`.
#[utoipa::path(get, path = "/api/faults", responses((status = 200, description = "the capture server's fault knobs", body = wire::Faults), (status = 404, description = "the capture server is not running", body = wire::ErrorBody)), tag = "operations")]
pub async fn faults(State(dashboard): State<Dashboard>) -> Result<Json<Faults>, ApiError> {
    let capture = running_capture(&dashboard).await?;
    Ok(Json(capture.faults()))
}

/// `PUT /api/faults {"smtp4xxRate": 0.2, "smtp5xxRate": 0.0, "smtpLatencyMs": 50}`.
#[utoipa::path(put, path = "/api/faults", request_body = wire::Faults, responses((status = 200, description = "set", body = wire::Faults), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 404, description = "the capture server is not running", body = wire::ErrorBody)), tag = "operations")]
pub async fn set_faults(
    State(dashboard): State<Dashboard>,
    JsonBody(faults): JsonBody<Faults>,
) -> Result<Json<Faults>, ApiError> {
    let capture = running_capture(&dashboard).await?;
    let problems = crate::smtp::fault_problems(&faults);
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    capture.set_faults(faults).await?;
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

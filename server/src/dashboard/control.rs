//! Dashboard endpoints that act on the running system: the balancer's algorithm and
//! metrics, and stopping or starting an app server.

use app::wire::{BalancerAlgorithm, LoadBalancerMetrics};
use axum::{
    Json,
    extract::{Path, State, rejection::JsonRejection},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Dashboard;
use crate::{api_error::ApiError, servers::PoolError};

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
    body: Result<Json<BalancerUpdate>, JsonRejection>,
) -> Result<Json<LoadBalancerMetrics>, ApiError> {
    let Json(update) =
        body.map_err(|rejection| ApiError::invalid([("body", rejection.body_text())]))?;
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
            return Err(ApiError::not_found(format!(
                "no action {action:?}; use stop or start"
            )));
        }
    };
    result.map_err(|error| match error {
        PoolError::NotFound(_) => ApiError::not_found(error.to_string()),
        PoolError::AlreadyRunning(_) | PoolError::AlreadyStopped(_) => {
            ApiError::conflict(error.to_string())
        }
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

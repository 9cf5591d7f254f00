//! The business figures on the dashboard: `GET /api/v1/analytics/realtime-metrics`.

use axum::{Json, extract::State};
use wire::{BusinessMetrics, SystemLoad};

use super::Dashboard;
use crate::{analytics::figures, api_error::ApiError};

/// The last second's traffic, from the telemetry's sample, as seed 001's `systemLoad`
/// (the queue depth is the database's, added by the figures).
pub async fn system_load(dashboard: &Dashboard) -> SystemLoad {
    let metrics = dashboard.sampler.current().await.metrics;
    SystemLoad {
        requests_per_second: metrics.requests_per_second,
        avg_response_time: metrics.average_latency,
        error_rate: (metrics.error_rate * 10_000.0).round() / 100.0,
        queue_depth: 0,
    }
}

/// `GET /api/v1/analytics/realtime-metrics`: every business figure, computed now.
#[utoipa::path(get, path = "/api/v1/analytics/realtime-metrics", responses((status = 200, description = "the business figures as of now (the README defines each)", body = wire::BusinessMetrics)), tag = "analytics")]
pub async fn realtime_metrics(State(dashboard): State<Dashboard>) -> Result<Json<BusinessMetrics>, ApiError> {
    let load = system_load(&dashboard).await;
    let snapshot = figures::snapshot(&dashboard.database, &dashboard.reporting, load, chrono::Utc::now()).await?;
    Ok(Json(snapshot))
}

//! The live-view API: recent journeys and one journey in detail, the controls (delays,
//! step mode) that act on the real system, and stepping a request.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
};
use serde::Deserialize;
use wire::{
    ControlSettings, HistoryKept, HistoryWindow, JourneySummary, LiveEvent, LiveStatus, NotificationType,
    RequestDetails, RequestMetrics, SimulateRequest, SimulationStarted, StageStatus, StepTokenIssued, Stepped,
    TelemetryHealth, TelemetryReport,
};

use super::Dashboard;
use crate::{
    api_error::ApiError,
    middleware::extract::{JsonBody, ValidQuery},
    simulate::{MAX_COUNT, MAX_INTERVAL_MS, Plan},
    telemetry::journeys::{Journey, Outcome},
};

/// Most journeys one listing returns.
const MAX_LIST: usize = 1_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestsQuery {
    limit: Option<usize>,
    #[serde(rename = "type")]
    kind: Option<NotificationType>,
    /// `in-progress`, `completed` or `failed`.
    outcome: Option<Outcome>,
    /// Only journeys that passed this app server.
    server: Option<String>,
}

/// `GET /api/live-view/status`: every component's health, the header figures and every
/// component's metrics, as of now.
#[utoipa::path(get, path = "/api/live-view/status", responses((status = 200, description = "health, header figures and component metrics", body = wire::LiveStatus)), tag = "live-view")]
pub async fn status(State(dashboard): State<Dashboard>) -> Json<LiveStatus> {
    let health = dashboard.probe.current().await;
    let sample = dashboard.sampler.current().await;
    Json(LiveStatus {
        components: health.components,
        metrics: sample.metrics,
        component_metrics: sample.components,
        timestamp: chrono::Utc::now(),
    })
}

/// `GET /api/live-view/telemetry`: the last second's figures for clients without a
/// socket, and the telemetry's own health.
#[utoipa::path(get, path = "/api/live-view/telemetry", responses((status = 200, description = "the last second's figures and the telemetry's health", body = wire::TelemetryReport)), tag = "live-view")]
pub async fn telemetry_report(State(dashboard): State<Dashboard>) -> Json<TelemetryReport> {
    let sample = dashboard.sampler.current().await;
    Json(TelemetryReport {
        metrics: sample.metrics,
        components: sample.components,
        telemetry: TelemetryHealth {
            dropped_records: dashboard.telemetry.dropped(),
            journeys_kept: dashboard.journeys.len(),
            journeys_in_progress: dashboard.journeys.in_progress(),
            viewers: dashboard.live.hub.viewer_count(),
            history_dropped: dashboard.history.dropped(),
            stream: dashboard.live.hub.stats(),
        },
        timestamp: chrono::Utc::now(),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    seconds: Option<usize>,
}

/// `GET /api/live-view/series?seconds=60`: the per-second samples kept in memory (up to
/// ten minutes), oldest first, for sparklines.
#[utoipa::path(get, path = "/api/live-view/series", params(SeriesQuery), responses((status = 200, description = "the last per-second samples, oldest first", body = Vec<wire::Sample>), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody)), tag = "live-view")]
pub async fn series(
    State(dashboard): State<Dashboard>,
    ValidQuery(query): ValidQuery<SeriesQuery>,
) -> Result<Json<Vec<crate::telemetry::sampler::Sample>>, ApiError> {
    let seconds = query
        .seconds
        .unwrap_or(60)
        .clamp(1, crate::telemetry::sampler::SERIES_LENGTH);
    Ok(Json(dashboard.sampler.series(seconds)))
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format 0.0.4")), tag = "live-view")]
pub async fn prometheus(State(dashboard): State<Dashboard>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        dashboard.telemetry.meters().encode(),
    )
}

/// `GET /api/live-view/requests?limit=&type=&outcome=&server=`: newest first.
#[utoipa::path(get, path = "/api/live-view/requests", params(RequestsQuery), responses((status = 200, description = "recent journeys, newest first", body = Vec<wire::JourneySummary>), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody)), tag = "live-view")]
pub async fn list_requests(
    State(dashboard): State<Dashboard>,
    ValidQuery(query): ValidQuery<RequestsQuery>,
) -> Result<Json<Vec<JourneySummary>>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_LIST);
    let journeys = dashboard.journeys.recent(
        limit,
        |journey| {
            query.kind.is_none_or(|kind| journey.tracker.kind == kind)
                && query.outcome.is_none_or(|outcome| journey.outcome == outcome)
                && query.server.as_deref().is_none_or(|server| passed(journey, server))
        },
        // Only the tracker and outcome: the log lines stay behind.
        |journey| JourneySummary {
            request: journey.tracker.clone(),
            outcome: journey.outcome,
        },
    );
    Ok(Json(journeys))
}

fn passed(journey: &Journey, server: &str) -> bool {
    journey.tracker.stages.iter().any(|stage| {
        stage.component == server || stage.metadata.get("server").and_then(|value| value.as_str()) == Some(server)
    })
}

/// `GET /api/live-view/requests/{id}`: the journey, its log lines and its figures.
#[utoipa::path(get, path = "/api/live-view/requests/{id}", params(("id" = String, Path, description = "the request id")), responses((status = 200, description = "one journey", body = wire::RequestDetails), (status = 404, description = "not in the journey window", body = wire::ErrorBody)), tag = "live-view")]
pub async fn request_details(
    State(dashboard): State<Dashboard>,
    Path(id): Path<String>,
) -> Result<Json<RequestDetails>, ApiError> {
    let journey = dashboard
        .journeys
        .get(&id)
        .ok_or_else(|| ApiError::not_found("no such request in the journey window"))?;
    let stages = &journey.tracker.stages;
    let mut time_by_stage = std::collections::BTreeMap::new();
    for stage in stages {
        let name = stage.stage.name().to_string();
        *time_by_stage.entry(name).or_insert(0.0) += stage.duration.unwrap_or_default();
    }
    let metrics = RequestMetrics {
        total_duration: journey.tracker.total_duration,
        stages: stages.len(),
        failed_stages: stages
            .iter()
            .filter(|stage| stage.status == StageStatus::Failed)
            .count(),
        retries: stages
            .iter()
            .filter(|stage| stage.stage == wire::SystemStage::RetryScheduled)
            .count(),
        time_by_stage,
        stepping: dashboard.controls.steps().is_stepping(&id),
    };
    Ok(Json(RequestDetails {
        logs: journey.log_lines(),
        request: journey.tracker,
        outcome: journey.outcome,
        metrics,
    }))
}

/// `POST /api/live-view/requests/{id}/step`: lets a stepped request pass one boundary.
#[utoipa::path(post, path = "/api/live-view/requests/{id}/step", params(("id" = String, Path, description = "the request id")), responses((status = 200, description = "stepped one boundary", body = wire::Stepped), (status = 404, description = "no such request", body = wire::ErrorBody), (status = 409, description = "not waiting in step mode", body = wire::ErrorBody)), tag = "live-view")]
pub async fn step_request(
    State(dashboard): State<Dashboard>,
    Path(id): Path<String>,
) -> Result<Json<Stepped>, ApiError> {
    if dashboard.controls.steps().step(&id) {
        Ok(Json(Stepped {
            request_id: id,
            stepped: true,
        }))
    } else if dashboard.journeys.get(&id).is_some() {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "that request is not waiting in step mode (finished, or never stepped)",
        ))
    } else {
        Err(ApiError::not_found(format!("no request {id}")))
    }
}

/// `POST /api/live-view/step-token`: a token that starts step mode on a request sent
/// through the balancer with `X-LiveView-Step: <token>` (for the next minute). Step mode
/// starts only from the dashboard: a public client cannot hold up the workers.
#[utoipa::path(post, path = "/api/live-view/step-token", responses((status = 200, description = "a token for X-LiveView-Step", body = wire::StepTokenIssued)), tag = "live-view")]
pub async fn step_token(State(dashboard): State<Dashboard>) -> Json<StepTokenIssued> {
    let token = dashboard.controls.steps().issue_token();
    let expires_at = chrono::DateTime::from_timestamp_millis(token.expires_at_ms).unwrap_or_default();
    Json(StepTokenIssued {
        token: token.value,
        expires_at,
    })
}

/// `POST /api/live-view/simulate {type, count, interval, step}` → 202 with the run's id
/// and the request id of each request it sends, in order.
#[utoipa::path(post, path = "/api/live-view/simulate", request_body = wire::SimulateRequest, responses((status = 202, description = "started", body = wire::SimulationStarted), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody)), tag = "live-view")]
pub async fn simulate(
    State(dashboard): State<Dashboard>,
    JsonBody(body): JsonBody<SimulateRequest>,
) -> Result<(StatusCode, Json<SimulationStarted>), ApiError> {
    let mut errors = Vec::new();
    if !(1..=MAX_COUNT).contains(&body.count) {
        errors.push(("count", format!("must be between 1 and {MAX_COUNT}")));
    }
    if body.interval > MAX_INTERVAL_MS {
        errors.push(("interval", format!("must be at most {MAX_INTERVAL_MS} ms")));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let (simulation, request_ids) = dashboard.simulator.start(Plan {
        kind: body.kind,
        count: body.count,
        interval: std::time::Duration::from_millis(body.interval),
        step: body.step,
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(SimulationStarted {
            simulation_id: simulation,
            kind: body.kind,
            count: body.count,
            interval: body.interval,
            step: body.step,
            request_ids,
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HistoryQuery {
    /// RFC 3339 or milliseconds since the epoch.
    from: String,
    to: Option<String>,
    /// Comma-separated topics or prefixes (`request:*`).
    topics: Option<String>,
    limit: Option<u32>,
}

/// Most events one history answer holds.
const MAX_HISTORY: u32 = 100_000;

fn instant_ms(field: &'static str, text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|at| at.timestamp_millis())
        })
        .ok_or_else(|| ApiError::invalid([(field, "must be RFC 3339 or milliseconds since the epoch".to_string())]))
}

/// `GET /api/live-view/history?from=&to=&topics=&limit=`: the live-stream messages of a
/// past window, in the order they went out, with their original seq and timestamps.
#[utoipa::path(get, path = "/api/live-view/history", params(HistoryQuery), responses((status = 200, description = "the stream's messages of a past window", body = wire::HistoryWindow), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody)), tag = "live-view")]
pub async fn history(
    State(dashboard): State<Dashboard>,
    ValidQuery(query): ValidQuery<HistoryQuery>,
) -> Result<axum::response::Response, ApiError> {
    let from = instant_ms("from", &query.from)?;
    let to = match &query.to {
        Some(to) => instant_ms("to", to)?,
        None => crate::now_ms(),
    };
    if to < from {
        return Err(ApiError::invalid([("to", "must not be before from".to_string())]));
    }
    let topics: Vec<String> = crate::live::comma_list(query.topics.as_deref().unwrap_or_default())
        .map(str::to_string)
        .collect();
    let limit = query.limit.unwrap_or(10_000).clamp(1, MAX_HISTORY);
    let mut events = dashboard.history.window(from, to, &topics, limit + 1).await?;
    let truncated = events.len() > limit as usize;
    events.truncate(limit as usize);
    let kept = dashboard
        .history
        .range()
        .await?
        .map(|(oldest, newest)| HistoryKept { oldest, newest });
    // A struct, not `json!`: the events are written out as they were stored.
    Ok(Json(HistoryWindow {
        from,
        to,
        truncated,
        kept,
        events,
    })
    .into_response())
}

/// `GET /api/live-view/controls`.
#[utoipa::path(get, path = "/api/live-view/controls", responses((status = 200, description = "delays and load simulation", body = wire::ControlSettings)), tag = "live-view")]
pub async fn controls(State(dashboard): State<Dashboard>) -> Json<ControlSettings> {
    Json(dashboard.controls.settings())
}

/// `PUT /api/live-view/controls`: replaces the settings (missing fields take their
/// defaults; a field out of range is a 400 naming it, and nothing changes), answers what
/// is in force, and streams `controls:changed`.
#[utoipa::path(put, path = "/api/live-view/controls", request_body = wire::ControlSettings, responses((status = 200, description = "in force now", body = wire::ControlSettings), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody)), tag = "live-view")]
pub async fn update_controls(
    State(dashboard): State<Dashboard>,
    JsonBody(wanted): JsonBody<ControlSettings>,
) -> Result<Json<ControlSettings>, ApiError> {
    let problems = crate::controls::problems(&wanted);
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let applied = dashboard.controls.change(&dashboard.bus, wanted).await;
    dashboard.telemetry.event(LiveEvent::ControlsChanged(applied.clone()));
    Ok(Json(applied))
}

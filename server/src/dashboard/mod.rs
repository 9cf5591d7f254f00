//! The dashboard listener: the SPA's files at `/`, the server-rendered `/status` page
//! (HTML, or JSON on `Accept: application/json`), the live stream (WebSocket and SSE) and
//! `/healthz`.

mod alerts;
mod announcements;
mod business;
mod live_api;
mod operations;
mod operators;

use std::{path::Path, sync::Arc};

use app::components::StatusPage;
use axum::{
    Json, Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use leptos::prelude::*;

use crate::{
    balancer::Balancer,
    controls::Controls,
    health::HealthProbe,
    history::History,
    live::{self, LiveSocketState},
    queue::Queues,
    servers::ServerPool,
    simulate::Simulator,
    smtp::CaptureServer,
    telemetry::{Journeys, Telemetry, sampler::Sampler},
};

/// The dashboard's HTTP API (`GET /api/openapi.json`). The live stream's WebSocket and
/// SSE routes are described in the README: OpenAPI has no words for them.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Live View dashboard",
        description = "Status, live-view API and control API of the Live View dashboard (--dashboard)."
    ),
    paths(
        healthz,
        status,
        operations::balancer_metrics,
        operations::update_balancer,
        announcements::announce,
        operations::list_servers,
        operations::server_action,
        operations::queue_counts,
        operations::queue_action,
        operations::queue_jobs,
        operations::mailbox,
        operations::faults,
        operations::set_faults,
        operations::audit_log,
        operations::processes,
        operators::session,
        operators::sign_in,
        operators::sign_out,
        operators::list_operators,
        operators::add_operator,
        operators::remove_operator,
        live_api::status,
        live_api::telemetry_report,
        business::realtime_metrics,
        business::series_of,
        business::compare,
        business::world,
        alerts::alert_rules,
        alerts::set_alert_rules,
        alerts::list_alerts,
        alerts::acknowledge,
        alerts::list_silences,
        alerts::add_silence,
        alerts::end_silence,
        live_api::series,
        live_api::prometheus,
        live_api::list_requests,
        live_api::request_details,
        live_api::step_request,
        live_api::step_token,
        live_api::simulate,
        live_api::history,
        live_api::controls,
        live_api::update_controls,
    )
)]
pub struct DashboardApi;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<DashboardApi as utoipa::OpenApi>::openapi())
}

#[derive(Clone)]
pub struct Dashboard {
    pub probe: Arc<HealthProbe>,
    pub live: LiveSocketState,
    /// This process's balancer, when it runs one (else the cluster's reports show it).
    pub balancer: Option<Balancer>,
    /// Controls that act in other processes (their servers, their balancers).
    pub remote: crate::servers::remote::Remote,
    pub servers: ServerPool,
    pub queues: Arc<Queues>,
    /// The embedded capture SMTP server, when it runs.
    pub capture: Option<CaptureServer>,
    pub telemetry: Telemetry,
    pub controls: Arc<Controls>,
    pub journeys: Arc<Journeys>,
    /// Where every control action is written down.
    pub audit: crate::audit::Audit,
    pub sampler: Arc<Sampler>,
    pub history: History,
    pub simulator: Arc<Simulator>,
    /// What crosses to the other processes (control changes).
    pub bus: crate::bus::Bus,
    /// The cluster's processes, this one's row among them.
    pub processes: crate::cluster::registry::ProcessRegistry,
    /// Who may do what, and the operators' accounts.
    pub gate: Arc<crate::access::auth::Gate>,
    /// The source of the business figures.
    pub database: crate::storage::Database,
    /// How the business figures are reported (`--currency`, `--timezone`).
    pub reporting: crate::analytics::Reporting,
    /// The business figures as they change, for this process's viewers.
    pub feed: Arc<crate::analytics::feed::MetricsFeed>,
    /// The alert rules' evaluator (evaluating while this process holds the lease).
    pub alerting: Arc<crate::alerts::Alerting>,
    /// End users' sockets, in every process (announcements).
    pub rooms: crate::websocket::rooms::Rooms,
}

impl Dashboard {
    /// The dashboard's routes; `site` is Trunk's output folder.
    pub fn router(self, site: &Path) -> Router {
        let origins = self.live.origins.clone();
        let gate = self.gate.clone();
        let api = Router::new()
            .route("/api/live-view/ws", get(live::live_socket))
            .route("/api/live-view/sse", get(live::live_sse))
            .with_state(self.live.clone());
        Router::new()
            .route("/status", get(status))
            .route("/healthz", get(healthz))
            .route("/api/openapi.json", get(openapi))
            .route(
                "/api/balancer",
                get(operations::balancer_metrics).put(operations::update_balancer),
            )
            .route("/api/servers", get(operations::list_servers))
            .route("/api/servers/{number}/{action}", post(operations::server_action))
            .route("/api/queues", get(operations::queue_counts))
            .route("/api/queues/{name}/jobs", get(operations::queue_jobs))
            .route("/api/queues/{name}/{action}", post(operations::queue_action))
            .route("/api/mailbox", get(operations::mailbox))
            .route("/api/announcements", post(announcements::announce))
            .route("/api/faults", get(operations::faults).put(operations::set_faults))
            .route("/api/live-view/status", get(live_api::status))
            .route("/api/live-view/history", get(live_api::history))
            .route("/api/live-view/series", get(live_api::series))
            .route("/api/live-view/simulate", post(live_api::simulate))
            .route("/api/live-view/telemetry", get(live_api::telemetry_report))
            .route("/api/v1/analytics/realtime-metrics", get(business::realtime_metrics))
            .route("/api/v1/analytics/series", get(business::series_of))
            .route("/api/v1/analytics/compare", get(business::compare))
            .route("/api/v1/analytics/world", get(business::world))
            .route(
                "/api/v1/alert-rules",
                get(alerts::alert_rules).put(alerts::set_alert_rules),
            )
            .route("/api/v1/alerts", get(alerts::list_alerts))
            .route("/api/v1/alerts/{id}/ack", axum::routing::post(alerts::acknowledge))
            .route(
                "/api/v1/alert-silences",
                get(alerts::list_silences).post(alerts::add_silence),
            )
            .route(
                "/api/v1/alert-silences/{id}",
                axum::routing::delete(alerts::end_silence),
            )
            .route("/ws/metrics", get(business::metrics_socket))
            .route("/metrics", get(live_api::prometheus))
            .route("/api/live-view/requests", get(live_api::list_requests))
            .route("/api/live-view/requests/{id}", get(live_api::request_details))
            .route("/api/live-view/requests/{id}/step", post(live_api::step_request))
            .route("/api/live-view/step-token", post(live_api::step_token))
            .route(
                "/api/live-view/controls",
                get(live_api::controls).put(live_api::update_controls),
            )
            .route("/api/audit", get(operations::audit_log))
            .route("/api/processes", get(operations::processes))
            .route(
                "/api/session",
                get(operators::session)
                    .post(operators::sign_in)
                    .delete(operators::sign_out),
            )
            .route(
                "/api/operators",
                get(operators::list_operators).post(operators::add_operator),
            )
            .route(
                "/api/operators/{name}",
                axum::routing::delete(operators::remove_operator),
            )
            .route("/api/{*rest}", axum::routing::any(api_not_found))
            .layer(axum::middleware::from_fn_with_state(
                self.audit.clone(),
                crate::audit::record,
            ))
            .with_state(self)
            .merge(api)
            // axum's own answers (wrong method, body over the limit) in the JSON shape too.
            .layer(axum::middleware::from_fn(crate::middleware::json_errors))
            .fallback_service(crate::site::spa(site, crate::site::Surface::Dashboard))
            .layer(axum::middleware::from_fn_with_state(
                gate,
                crate::access::auth::authorize,
            ))
            .layer(axum::middleware::from_fn_with_state(origins, crate::access::guard))
    }
}

/// Unknown API paths get a JSON 404, not the SPA's index.
async fn api_not_found(request: Request) -> crate::api_error::ApiError {
    crate::api_error::ApiError::not_found(format!("no endpoint {} {}", request.method(), request.uri().path()))
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "the dashboard answers", body = wire::Health)), tag = "health")]
async fn healthz() -> Json<wire::Health> {
    Json(wire::Health::ok("dashboard"))
}

/// `GET /status`: the same facts as HTML for people and JSON for programs.
#[utoipa::path(get, path = "/status", responses((status = 200, description = "every component's health: JSON with Accept: application/json, else a server-rendered page", body = wire::SystemStatus)), tag = "status")]
async fn status(State(dashboard): State<Dashboard>, headers: HeaderMap, request: Request<Body>) -> Response {
    let status = dashboard.probe.current().await;
    if wants_json(&headers) {
        return ([(header::CACHE_CONTROL, "no-store")], Json(status)).into_response();
    }
    let render =
        leptos_axum::render_app_async_with_context(|| {}, move || view! { <StatusPage status=status.clone() /> });
    let mut response = render(request).await.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// JSON when the client asks for it and does not also prefer HTML (browsers send both).
fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    accept.contains("application/json") && !accept.contains("text/html")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_only_when_asked_for_without_html() {
        let mut headers = HeaderMap::new();
        assert!(!wants_json(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(wants_json(&headers));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/json;q=0.9"),
        );
        assert!(!wants_json(&headers));
    }
}

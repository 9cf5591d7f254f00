//! The alerts on the dashboard: the rules (`GET`, `PUT /api/v1/alert-rules`), the
//! alerts (`GET /api/v1/alerts`, `POST /api/v1/alerts/{id}/ack`) and silences
//! (`/api/v1/alert-silences`). Reading needs a viewer, changing an operator; every
//! change is in the audit log (the dashboard's audit layer records every non-GET).

use axum::{
    Extension, Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Deserialize;
use wire::{AlertRules, AlertSilence, AlertSilences, Alerts, NewSilence};

use super::Dashboard;
use crate::{
    alerts::{self, Acknowledged, rules},
    api_error::ApiError,
    middleware::extract::{JsonBody, ValidQuery},
    operators::Actor,
};

/// `GET /api/v1/alert-rules`: the rules in force and, when this process evaluates them,
/// where each is.
#[utoipa::path(get, path = "/api/v1/alert-rules", responses((status = 200, description = "the rules, and each one's state at the last evaluation", body = wire::AlertRules)), tag = "alerts")]
pub async fn alert_rules(State(dashboard): State<Dashboard>) -> Result<Json<AlertRules>, ApiError> {
    Ok(Json(AlertRules {
        rules: rules::load(&dashboard.database).await?,
        status: dashboard.alerting.status(),
    }))
}

/// `PUT /api/v1/alert-rules {"rules": […]}`: replaces every rule. Open alerts of a rule
/// removed or disabled resolve at the next evaluation.
#[utoipa::path(put, path = "/api/v1/alert-rules", request_body = wire::AlertRules, responses((status = 200, description = "saved", body = wire::AlertRules), (status = 400, description = "invalid rules, naming the rule and the field", body = wire::ErrorBody), (status = 403, description = "not an operator", body = wire::ErrorBody)), tag = "alerts")]
pub async fn set_alert_rules(
    State(dashboard): State<Dashboard>,
    Extension(actor): Extension<Actor>,
    JsonBody(new): JsonBody<AlertRules>,
) -> Result<Json<AlertRules>, ApiError> {
    rules::validate(&new.rules).map_err(|problem| ApiError::invalid([("rules", problem)]))?;
    rules::save(&dashboard.database, &new.rules, &actor.name).await?;
    tracing::info!(rules = new.rules.len(), by = %actor.name, "alert rules replaced");
    Ok(Json(AlertRules {
        rules: new.rules,
        status: Vec::new(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    /// Resolved alerts listed after the open ones (default 50, at most 200).
    limit: Option<u32>,
}

/// `GET /api/v1/alerts`: open alerts (pending, firing, recovering), most severe first,
/// then the latest resolved.
#[utoipa::path(get, path = "/api/v1/alerts", params(AlertsQuery), responses((status = 200, description = "open alerts first, then resolved ones, newest first", body = wire::Alerts), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody)), tag = "alerts")]
pub async fn list_alerts(
    State(dashboard): State<Dashboard>,
    ValidQuery(query): ValidQuery<AlertsQuery>,
) -> Result<Json<Alerts>, ApiError> {
    let limit = query.limit.unwrap_or(50).min(alerts::MAX_LISTED);
    Ok(Json(Alerts {
        alerts: alerts::list(&dashboard.database, limit).await?,
    }))
}

/// `POST /api/v1/alerts/{id}/ack`: no more reminders for this alert; it still resolves
/// by itself.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/ack", params(("id" = String, Path, description = "the alert's id")), responses((status = 204, description = "acknowledged"), (status = 403, description = "not an operator", body = wire::ErrorBody), (status = 404, description = "no such alert", body = wire::ErrorBody), (status = 409, description = "already resolved", body = wire::ErrorBody)), tag = "alerts")]
pub async fn acknowledge(
    State(dashboard): State<Dashboard>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::not_found("no such alert"));
    }
    match alerts::acknowledge(&dashboard.database, &id, &actor.name).await? {
        Acknowledged::Now => Ok(StatusCode::NO_CONTENT),
        Acknowledged::NoSuchAlert => Err(ApiError::not_found("no such alert")),
        Acknowledged::AlreadyResolved => Err(ApiError::conflict("the alert has resolved")),
    }
}

/// `GET /api/v1/alert-silences`: the silences in force.
#[utoipa::path(get, path = "/api/v1/alert-silences", responses((status = 200, description = "the silences in force, ending soonest first", body = wire::AlertSilences)), tag = "alerts")]
pub async fn list_silences(State(dashboard): State<Dashboard>) -> Result<Json<AlertSilences>, ApiError> {
    Ok(Json(AlertSilences {
        silences: alerts::silences(&dashboard.database, crate::now_ms()).await?,
    }))
}

/// `POST /api/v1/alert-silences {"ruleId"?, "minutes", "reason"}`: nobody is told of the
/// rule's alerts (every rule's, without `ruleId`) for that long.
#[utoipa::path(post, path = "/api/v1/alert-silences", request_body = wire::NewSilence, responses((status = 201, description = "in force", body = wire::AlertSilence), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 403, description = "not an operator", body = wire::ErrorBody)), tag = "alerts")]
pub async fn add_silence(
    State(dashboard): State<Dashboard>,
    Extension(actor): Extension<Actor>,
    JsonBody(new): JsonBody<NewSilence>,
) -> Result<(StatusCode, Json<AlertSilence>), ApiError> {
    let mut problems = Vec::new();
    if !(1..=10_080).contains(&new.minutes) {
        problems.push(("minutes", "from 1 to 10080 (a week)".to_string()));
    }
    if new.reason.chars().count() > 200 || new.reason.chars().any(char::is_control) {
        problems.push(("reason", "at most 200 printable characters".to_string()));
    }
    if let Some(rule) = &new.rule_id {
        let known = rules::load(&dashboard.database).await?;
        if !known.iter().any(|known| &known.id == rule) {
            problems.push(("ruleId", format!("no rule {rule:?}")));
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let silence = alerts::silence(&dashboard.database, new.rule_id, new.minutes, new.reason, &actor.name).await?;
    Ok((StatusCode::CREATED, Json(silence)))
}

/// `DELETE /api/v1/alert-silences/{id}`: ends a silence now.
#[utoipa::path(delete, path = "/api/v1/alert-silences/{id}", params(("id" = String, Path, description = "the silence's id")), responses((status = 204, description = "ended"), (status = 403, description = "not an operator", body = wire::ErrorBody), (status = 404, description = "no such silence in force", body = wire::ErrorBody)), tag = "alerts")]
pub async fn end_silence(State(dashboard): State<Dashboard>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if id.len() <= 64 && alerts::end_silence(&dashboard.database, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such silence in force"))
    }
}

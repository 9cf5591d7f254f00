//! The business figures on the dashboard: `GET /api/v1/analytics/realtime-metrics`, and
//! `/ws/metrics` (seed 004's socket: the snapshot on connect and every 5 s, the activity
//! feed to who subscribes, JSON ping and pong).

use std::{collections::BTreeSet, time::Duration};

use axum::{
    Json,
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket},
    },
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use wire::{BusinessMetrics, MetricsChannel, MetricsMessage, Series, SeriesMetric, SeriesStep, TodayAgainstYesterday};

use super::Dashboard;
use crate::{
    access::auth::{SignedIn, watch_session},
    analytics::{feed, figures, series},
    api_error::ApiError,
    middleware::extract::ValidQuery,
    sockets::close,
};

/// How often `/ws/metrics` sends `ping` (seed 004: every 30 s); a client silent for
/// two of them is gone.
pub const PING_EVERY: Duration = Duration::from_secs(30);
/// The largest client message `/ws/metrics` reads (a `subscribe` is far smaller).
const MAX_CLIENT_MESSAGE: usize = 4 * 1024;

/// `GET /api/v1/analytics/realtime-metrics`: every business figure, computed now.
#[utoipa::path(get, path = "/api/v1/analytics/realtime-metrics", responses((status = 200, description = "the business figures as of now (the README defines each)", body = wire::BusinessMetrics)), tag = "analytics")]
pub async fn realtime_metrics(State(dashboard): State<Dashboard>) -> Result<Json<BusinessMetrics>, ApiError> {
    Ok(Json(snapshot_now(&dashboard).await?))
}

async fn snapshot_now(dashboard: &Dashboard) -> Result<BusinessMetrics, sqlx::Error> {
    let load = feed::system_load(&dashboard.sampler).await;
    figures::snapshot(&dashboard.database, &dashboard.reporting, load, chrono::Utc::now()).await
}

/// `GET /api/v1/analytics/world`: the countries the activity map shades, read once at
/// start from `--world-atlas` (empty without it). The same for every request, so a
/// browser may keep it for a day.
#[utoipa::path(get, path = "/api/v1/analytics/world", responses((status = 200, description = "the countries' outlines in degrees", body = wire::WorldMap)), tag = "analytics")]
pub async fn world(State(dashboard): State<Dashboard>) -> Response {
    let cache = [(axum::http::header::CACHE_CONTROL, "max-age=86400")];
    (cache, Json(dashboard.reporting.geography.world().clone())).into_response()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SeriesQuery {
    /// `revenue`, `purchases`, `signups`, `logins`, `invitations`, `passwordResets`,
    /// `views` or `activeUsers`.
    #[param(value_type = String)]
    metric: SeriesMetric,
    /// `minute` (the default), `hour` or `day`.
    #[param(value_type = Option<String>)]
    step: Option<SeriesStep>,
    /// RFC 3339; the default is one hour of minutes, a day of hours or 30 days before `to`.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// RFC 3339; now by default.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<chrono::DateTime<chrono::Utc>>,
    /// `json` (the default) or `csv`.
    format: Option<String>,
}

/// `GET /api/v1/analytics/series`: a figure per minute, hour or day over a range, every
/// bucket present, the still-filling one marked `partial`; as CSV with `format=csv`.
#[utoipa::path(get, path = "/api/v1/analytics/series", params(SeriesQuery), responses((status = 200, description = "the figure per bucket, oldest first (text/csv with format=csv)", body = wire::Series), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody)), tag = "analytics")]
pub async fn series_of(
    State(dashboard): State<Dashboard>,
    ValidQuery(query): ValidQuery<SeriesQuery>,
) -> Result<Response, ApiError> {
    let now = chrono::Utc::now();
    let step = query.step.unwrap_or(SeriesStep::Minute);
    let to = query.to.unwrap_or(now);
    let from = query.from.unwrap_or(to - series::default_span(step));
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::invalid([(
                "format",
                format!("expected json or csv, got {other:?}"),
            )]));
        }
    };
    if from >= to {
        return Err(ApiError::invalid([("from", "must be before to".to_string())]));
    }
    let reporting = &dashboard.reporting;
    let points = series::series(
        &dashboard.database,
        query.metric,
        step,
        (from, to),
        (&reporting.currency, reporting.timezone),
        now,
    )
    .await?
    .map_err(|refused| ApiError::invalid([("step", refused)]))?;
    if csv {
        let mut text = String::from("bucket,value,partial\n");
        for point in &points {
            text.push_str(&format!(
                "{},{},{}\n",
                point.t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                point.value,
                point.partial
            ));
        }
        return Ok(([(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response());
    }
    Ok(Json(Series {
        metric: query.metric,
        step,
        points,
    })
    .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CompareQuery {
    /// As for the series.
    #[param(value_type = String)]
    metric: SeriesMetric,
}

/// `GET /api/v1/analytics/compare`: today so far against yesterday to the same time.
#[utoipa::path(get, path = "/api/v1/analytics/compare", params(CompareQuery), responses((status = 200, description = "today so far and yesterday to the same time of day", body = wire::TodayAgainstYesterday), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody)), tag = "analytics")]
pub async fn compare(
    State(dashboard): State<Dashboard>,
    ValidQuery(query): ValidQuery<CompareQuery>,
) -> Result<Json<TodayAgainstYesterday>, ApiError> {
    let reporting = &dashboard.reporting;
    let (today_so_far, yesterday_to_same_time) = series::today_against_yesterday(
        &dashboard.database,
        query.metric,
        (&reporting.currency, reporting.timezone),
        chrono::Utc::now(),
    )
    .await?;
    Ok(Json(TodayAgainstYesterday {
        metric: query.metric,
        today_so_far,
        yesterday_to_same_time,
    }))
}

/// `GET /ws/metrics`: the business figures as they change.
pub async fn metrics_socket(
    State(dashboard): State<Dashboard>,
    headers: HeaderMap,
    signed_in: Option<axum::Extension<SignedIn>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Err(refused) = dashboard.live.origins.check(&headers) {
        return refused.into_response();
    }
    let upgrade = upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE);
    upgrade.on_upgrade(move |socket| async move {
        let over = tokio_util::sync::CancellationToken::new();
        let session_ended = watch_session(signed_in.map(|axum::Extension(signed_in)| signed_in), over.clone());
        let _over = over.drop_guard();
        serve_metrics(dashboard, socket, session_ended).await;
    })
}

async fn send(socket: &mut WebSocket, message: &MetricsMessage) -> Result<(), axum::Error> {
    let text = serde_json::to_string(message).expect("a metrics message serializes");
    socket.send(Message::Text(text.into())).await
}

async fn close_with(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

async fn serve_metrics(
    dashboard: Dashboard,
    mut socket: WebSocket,
    session_ended: tokio_util::sync::CancellationToken,
) {
    let mut snapshots = dashboard.feed.snapshots();
    let mut activity = dashboard.feed.activity();
    let mut channels = BTreeSet::from([MetricsChannel::Metrics]);
    // At once on connect: the feed's latest, or one computed now before its first.
    let first = snapshots.borrow_and_update().clone();
    let first = match first {
        Some(snapshot) => Some((*snapshot).clone()),
        None => snapshot_now(&dashboard).await.ok(),
    };
    if let Some(snapshot) = first
        && send(
            &mut socket,
            &MetricsMessage::Metrics {
                data: Box::new(snapshot),
            },
        )
        .await
        .is_err()
    {
        return;
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    let mut heard_since_ping = true;
    let shutdown = dashboard.live.shutdown.clone();
    loop {
        let outgoing = tokio::select! {
            () = shutdown.cancelled() => return close_with(&mut socket, close::AWAY, "server stopping").await,
            () = session_ended.cancelled() => return close_with(&mut socket, close::SESSION_ENDED, "session ended").await,
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return;
                }
                let snapshot = snapshots.borrow_and_update().clone();
                match snapshot {
                    Some(snapshot) if channels.contains(&MetricsChannel::Metrics) => {
                        Some(MetricsMessage::Metrics { data: Box::new((*snapshot).clone()) })
                    }
                    _ => None,
                }
            }
            event = activity.recv() => match event {
                Ok(event) if channels.contains(&MetricsChannel::Activity) => {
                    Some(MetricsMessage::Activity { data: Box::new((*event).clone()) })
                }
                // Lagged: this viewer misses items it was too slow for; the snapshot has the newest.
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = ping.tick() => {
                if !heard_since_ping {
                    return close_with(&mut socket, close::SILENT, "no pong").await;
                }
                heard_since_ping = false;
                Some(MetricsMessage::Ping)
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    heard_since_ping = true;
                    match serde_json::from_str::<MetricsMessage>(&text) {
                        Ok(MetricsMessage::Ping) => Some(MetricsMessage::Pong),
                        Ok(MetricsMessage::Pong) => None,
                        Ok(MetricsMessage::Subscribe { channels: asked }) => {
                            channels = asked.into_iter().collect();
                            Some(MetricsMessage::Subscribed { channels: channels.iter().copied().collect() })
                        }
                        Ok(_) => Some(MetricsMessage::Error { error: "a client sends ping, pong or subscribe".into() }),
                        Err(error) => Some(MetricsMessage::Error { error: format!("not a message of /ws/metrics: {error}") }),
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {
                    heard_since_ping = true;
                    None
                }
            },
        };
        if let Some(message) = outgoing
            && send(&mut socket, &message).await.is_err()
        {
            return;
        }
    }
}

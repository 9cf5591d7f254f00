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
use wire::{BusinessMetrics, MetricsChannel, MetricsMessage};

use super::Dashboard;
use crate::{
    access::auth::{SignedIn, watch_session},
    analytics::{feed, figures},
    api_error::ApiError,
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

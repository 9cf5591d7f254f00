//! `GET /api/live-view/ws`: one viewer's WebSocket. Sends the latest `system:status`
//! at once, then every published message; closes with 1001 when the server stops.

use std::sync::Arc;

use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket, close_code},
    },
    response::Response,
};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{LiveHub, Published};

/// What a viewer's socket needs from the dashboard.
#[derive(Clone)]
pub struct LiveSocketState {
    pub hub: Arc<LiveHub>,
    pub shutdown: CancellationToken,
}

pub async fn live_socket(State(state): State<LiveSocketState>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| serve_viewer(socket, state))
}

async fn serve_viewer(mut socket: WebSocket, state: LiveSocketState) {
    let _viewer = state.hub.viewer_joined();
    let (snapshot, mut updates) = state.hub.subscribe();
    let mut last_sent = 0;
    if let Some(snapshot) = snapshot {
        last_sent = snapshot.seq;
        if send(&mut socket, &snapshot).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => {
                let frame = CloseFrame { code: close_code::AWAY, reason: "server shutting down".into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
                return;
            }
            update = updates.recv() => match update {
                // The snapshot may already cover what was queued behind it.
                Ok(message) if message.seq <= last_sent => {}
                Ok(message) => {
                    last_sent = message.seq;
                    if send(&mut socket, &message).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    // Too slow to keep up: skip the backlog and start again from the
                    // latest state rather than buffering without bound.
                    tracing::debug!(missed, "live viewer lagged; resyncing with the latest status");
                    if let Some(snapshot) = state.hub.latest_status() {
                        last_sent = snapshot.seq;
                        if send(&mut socket, &snapshot).await.is_err() {
                            return;
                        }
                    }
                }
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                // Client messages (subscribe, resume) arrive with the telemetry work;
                // until then they are read and ignored so pings are answered.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn send(socket: &mut WebSocket, message: &Published) -> Result<(), axum::Error> {
    socket.send(Message::Text(message.json.as_ref().into())).await
}

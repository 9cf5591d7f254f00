//! The app servers behind the load balancer. Each runs on its own listener; for now they
//! answer `GET /healthz`, and the middleware and controllers of the notification system
//! mount here.

use std::{net::SocketAddr, time::Instant};

use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};

/// One app server's identity, shared by its handlers.
#[derive(Clone)]
pub struct AppServer {
    /// `server-1`, `server-2`, ... in port order.
    pub id: String,
    pub addr: SocketAddr,
    pub started: Instant,
}

impl AppServer {
    pub fn router(self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .with_state(self)
    }
}

async fn healthz(State(server): State<AppServer>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "component": "server",
        "id": server.id,
        "address": server.addr.to_string(),
        "uptimeSeconds": server.started.elapsed().as_secs(),
    }))
}

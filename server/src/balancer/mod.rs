//! The load balancer in front of the app servers. For now it answers `GET /healthz`
//! with the servers it balances over; proxying, sticky sessions and health checks mount
//! here with the notification system.

use std::net::SocketAddr;

use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};

#[derive(Clone)]
pub struct Balancer {
    pub addr: SocketAddr,
    /// The app servers it sends traffic to, in order.
    pub backends: Vec<(String, SocketAddr)>,
}

impl Balancer {
    pub fn router(self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .with_state(self)
    }
}

async fn healthz(State(balancer): State<Balancer>) -> Json<Value> {
    let backends: Vec<Value> = balancer
        .backends
        .iter()
        .map(|(id, addr)| json!({ "id": id, "address": addr.to_string() }))
        .collect();
    Json(json!({
        "status": "ok",
        "component": "load-balancer",
        "address": balancer.addr.to_string(),
        "backends": backends,
    }))
}

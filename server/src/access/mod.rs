//! Access to the dashboard: which hosts and browser origins it answers
//! ([`OriginPolicy`]), applied to every request by [`guard`]; and who may do what
//! ([`auth`]), applied after it.

pub mod auth;
mod origin;
pub mod proxies;

use std::sync::Arc;

use axum::serve::IncomingStream;

use axum::{
    extract::{Request, State},
    http::Method,
    middleware::Next,
    response::{IntoResponse, Response},
};

pub use origin::OriginPolicy;
pub use proxies::TrustedProxies;

/// The address a connection came from, as the listener saw it (a reverse proxy's, behind
/// one): every listener records it for its requests (`ConnectInfo<Peer>`), and sign-in
/// throttles failures by it.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

impl axum::extract::connect_info::Connected<IncomingStream<'_, crate::Accepting>> for Peer {
    fn connect_info(stream: IncomingStream<'_, crate::Accepting>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<IncomingStream<'_, crate::tls::TlsListener<crate::Accepting>>> for Peer {
    fn connect_info(stream: IncomingStream<'_, crate::tls::TlsListener<crate::Accepting>>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// Refuses a request naming a foreign `Host` (421), and a state-changing one (any method
/// but `GET`, `HEAD` and `OPTIONS`) from a foreign origin (403), before any handler runs.
/// A cross-origin `POST` with a form or text body is a CORS "simple request" that a
/// browser sends without asking first: this is what stops any web page from stopping a
/// server or requeueing dead letters on a dashboard it can reach.
pub async fn guard(State(policy): State<Arc<OriginPolicy>>, request: Request, next: Next) -> Response {
    if let Err(refused) = policy.check_host(request.headers()) {
        return refused.into_response();
    }
    let reads = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !reads && let Err(refused) = policy.check(request.headers()) {
        return refused.into_response();
    }
    next.run(request).await
}

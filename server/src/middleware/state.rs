//! What an app server's handlers are given: the state every app server shares, and one
//! server's identity.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use tokio_util::sync::CancellationToken;

use crate::{
    accounts::SessionCache, controls::Controls, queue::Queues, storage::Database, telemetry::Telemetry,
    websocket::Registry,
};

/// What every app server shares: the database, the queues, and the public address that
/// links in emails point at.
#[derive(Clone)]
pub struct Shared {
    pub db: Database,
    pub queues: Arc<Queues>,
    /// End users' open sockets, across every app server.
    pub registry: Arc<Registry>,
    /// Frames to rooms of end users' sockets, in every process.
    pub rooms: crate::websocket::rooms::Rooms,
    /// Conversations and their messages (stored, then sent to the members' rooms).
    pub messaging: crate::messaging::Messaging,
    /// Session tokens checked moments ago, shared by every app server.
    pub sessions: Arc<SessionCache>,
    /// The catalogue, as read at start.
    pub catalogue: Arc<crate::controllers::items::Catalogue>,
    /// End users' sessions as they are used, gathered for `active_sessions`.
    pub activity: Arc<crate::analytics::sessions::SessionActivity>,
    /// Whose `X-Forwarded-For` names the client (the balancer's address, by default
    /// loopback).
    pub trusted_proxies: Arc<crate::access::TrustedProxies>,
    /// Where stages are recorded.
    pub telemetry: Telemetry,
    /// What acts on requests: injected delays and step mode.
    pub controls: Arc<Controls>,
    /// `http://<balancer address>` (`https` with TLS).
    pub public_url: String,
    /// What the app servers serve with, when the process runs TLS.
    pub tls: Option<crate::tls::Tls>,
}

/// One app server's identity and what its handlers need.
#[derive(Clone)]
pub struct AppServer {
    /// `server-1`, `server-2`, ... in port order.
    pub id: String,
    pub addr: SocketAddr,
    pub started: Instant,
    /// Cancelled when this server stops; long-lived handlers (sockets) watch it.
    pub stopping: CancellationToken,
    pub shared: Shared,
}

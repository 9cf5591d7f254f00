//! The load balancer: a reverse proxy for HTTP and WebSocket in front of the app
//! servers. Round-robin or least-connections (switchable at runtime), sticky servers
//! for WebSocket users, active health checks with failure and recovery thresholds, and
//! passive ejection of a server that refuses a connection. Every proxied response
//! carries `X-Served-By` and `X-Request-Id`.

mod health;
mod proxy;
pub mod strategy;

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Body,
    extract::State,
    routing::{any, get},
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use wire::{ActiveState, BalancedServer, BalancerAlgorithm, LoadBalancerMetrics, StickySessions};

pub use health::HealthPolicy;
use strategy::Candidate;

use crate::{controls::Controls, telemetry::Telemetry};

/// A sticky user without an open socket keeps their server this long.
const STICKY_IDLE_TTL: Duration = Duration::from_secs(600);
/// Sticky users remembered at most (an entry is about 100 bytes).
pub const MAX_STICKY: usize = 100_000;

/// One app server as the balancer sees it.
pub struct Backend {
    pub id: String,
    pub addr: SocketAddr,
    healthy: AtomicBool,
    active: AtomicU64,
    handled: AtomicU64,
    /// Consecutive failed checks while healthy, consecutive good ones while not.
    streak: AtomicU32,
}

impl Backend {
    fn new(id: String, addr: SocketAddr) -> Self {
        Self {
            id,
            addr,
            healthy: AtomicBool::new(true),
            active: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            streak: AtomicU32::new(0),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Counts a connection as active until the guard drops.
    fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self.clone())
    }
}

struct ActiveGuard(Arc<Backend>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

struct StickyEntry {
    backend: usize,
    open_sockets: u32,
    last_seen: Instant,
}

pub struct BalancerState {
    pub addr: SocketAddr,
    algorithm: RwLock<BalancerAlgorithm>,
    backends: Vec<Arc<Backend>>,
    cursor: AtomicUsize,
    sticky: Mutex<HashMap<String, StickyEntry>>,
    /// Speaks TLS to the app servers when this process has it (`https` URLs), plain
    /// HTTP otherwise.
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>,
    /// `http` or `https`: how the app servers are reached.
    scheme: &'static str,
    health: HealthPolicy,
    shutdown: CancellationToken,
    tunnels: TaskTracker,
    telemetry: Telemetry,
    /// The balancer's injected delay, and where step mode starts.
    controls: Arc<Controls>,
    /// Whose `X-Forwarded-For` names the client the app servers are told of.
    trusted_proxies: Arc<crate::access::TrustedProxies>,
}

/// The balancer's shared state; cheap to clone.
#[derive(Clone)]
pub struct Balancer(Arc<BalancerState>);

impl std::ops::Deref for Balancer {
    type Target = BalancerState;
    fn deref(&self) -> &BalancerState {
        &self.0
    }
}

impl Balancer {
    // Each is a separate thing the balancer is handed by the process that runs it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        addr: SocketAddr,
        backends: &[(String, SocketAddr)],
        health: HealthPolicy,
        tls: Option<&crate::tls::Tls>,
        shutdown: CancellationToken,
        tunnels: TaskTracker,
        telemetry: Telemetry,
        controls: Arc<Controls>,
        trusted_proxies: Arc<crate::access::TrustedProxies>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(health.timeout));
        // The TLS connector below takes the https URLs; this one only opens the TCP.
        connector.enforce_http(false);
        // Without TLS no URL is https, so an empty trust store is never consulted.
        let trust = tls.map_or_else(
            || {
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            },
            crate::tls::Tls::client_config,
        );
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(trust)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self(Arc::new(BalancerState {
            addr,
            algorithm: RwLock::new(BalancerAlgorithm::RoundRobin),
            backends: backends
                .iter()
                .map(|(id, addr)| Arc::new(Backend::new(id.clone(), *addr)))
                .collect(),
            cursor: AtomicUsize::new(0),
            sticky: Mutex::new(HashMap::new()),
            client,
            scheme: crate::tls::scheme(tls),
            health,
            shutdown,
            tunnels,
            telemetry,
            controls,
            trusted_proxies,
        }))
    }

    /// The balancer's listener: its own `/healthz`, the API (`/api/…`, sockets included)
    /// proxied to the app servers, and everything else the end users' client from
    /// `site` ([`crate::site`]), served here at the edge without a hop to a server.
    pub fn router(self, site: &std::path::Path) -> Router {
        Router::new()
            .route("/healthz", get(own_health))
            .route("/api", any(proxy::proxy))
            .route("/api/{*path}", any(proxy::proxy))
            .with_state(self)
            .fallback_service(crate::site::spa(site, crate::site::Surface::Client))
    }

    pub fn algorithm(&self) -> BalancerAlgorithm {
        *self.algorithm.read().unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn set_algorithm(&self, algorithm: BalancerAlgorithm) {
        *self.algorithm.write().unwrap_or_else(|poison| poison.into_inner()) = algorithm;
        tracing::info!(?algorithm, "balancer algorithm changed");
    }

    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    fn candidates(&self) -> Vec<Candidate> {
        self.backends
            .iter()
            .enumerate()
            .map(|(index, backend)| Candidate {
                index,
                healthy: backend.is_healthy(),
                active_connections: backend.active.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The backend for a request: the sticky user's own server while it is healthy,
    /// else one chosen by the algorithm. Nothing is remembered here: a token is only
    /// known to be a user's once the app server has accepted it ([`hold_sticky`]).
    fn choose(&self, sticky_key: Option<&str>, exclude: &[usize]) -> Option<usize> {
        let candidates = self.candidates();
        let cursor = self.cursor.fetch_add(1, Ordering::Relaxed);
        let assigned = sticky_key.and_then(|key| {
            let sticky = self.sticky.lock().unwrap_or_else(|poison| poison.into_inner());
            sticky.get(key).map(|entry| entry.backend)
        });
        strategy::sticky(assigned, &candidates, exclude)
            .or_else(|| strategy::pick(self.algorithm(), &candidates, cursor, exclude))
    }

    /// Remembers that the user behind `key` has a socket open on `backend` (the app
    /// server accepted their token: the upgrade succeeded) and counts it until the guard
    /// drops. At [`MAX_STICKY`] users, those without an open socket are forgotten first;
    /// if every one has a socket, the new user is routed but not remembered.
    fn hold_sticky(&self, key: String, backend: usize) -> StickyGuard {
        let mut sticky = self.sticky.lock().unwrap_or_else(|poison| poison.into_inner());
        if !sticky.contains_key(&key) && sticky.len() >= MAX_STICKY {
            sticky.retain(|_, entry| entry.open_sockets > 0);
        }
        if sticky.contains_key(&key) || sticky.len() < MAX_STICKY {
            let entry = sticky.entry(key.clone()).or_insert(StickyEntry {
                backend,
                open_sockets: 0,
                last_seen: Instant::now(),
            });
            if entry.backend != backend {
                tracing::info!(
                    from = %self.backends[entry.backend].id,
                    to = %self.backends[backend].id,
                    "sticky user moved to a healthy server"
                );
                entry.backend = backend;
            }
            entry.open_sockets += 1;
            entry.last_seen = Instant::now();
        }
        StickyGuard {
            balancer: self.clone(),
            key,
        }
    }

    /// A server that refused a connection gets no traffic until health checks see it recover.
    fn eject(&self, index: usize) {
        let backend = &self.backends[index];
        if backend.healthy.swap(false, Ordering::Relaxed) {
            backend.streak.store(0, Ordering::Relaxed);
            tracing::warn!(server = %backend.id, "server refused a connection; marked unhealthy");
        }
    }

    /// Forgets sticky users who have had no socket open for [`STICKY_IDLE_TTL`].
    fn prune_sticky(&self) {
        let mut sticky = self.sticky.lock().unwrap_or_else(|poison| poison.into_inner());
        sticky.retain(|_, entry| entry.open_sockets > 0 || entry.last_seen.elapsed() < STICKY_IDLE_TTL);
    }

    /// The design's `LoadBalancerMetrics`.
    pub fn metrics(&self) -> LoadBalancerMetrics {
        let mut by_server: BTreeMap<String, u64> =
            self.backends.iter().map(|backend| (backend.id.clone(), 0)).collect();
        let total = {
            let sticky = self.sticky.lock().unwrap_or_else(|poison| poison.into_inner());
            for entry in sticky.values() {
                *by_server.entry(self.backends[entry.backend].id.clone()).or_default() += 1;
            }
            sticky.len() as u64
        };
        LoadBalancerMetrics {
            status: if self.shutdown.is_cancelled() {
                ActiveState::Inactive
            } else {
                ActiveState::Active
            },
            algorithm: self.algorithm(),
            servers: self
                .backends
                .iter()
                .map(|backend| BalancedServer {
                    id: backend.id.clone(),
                    url: format!("{}://{}", self.scheme, backend.addr),
                    healthy: backend.is_healthy(),
                    active_connections: backend.active.load(Ordering::Relaxed),
                    requests_handled: backend.handled.load(Ordering::Relaxed),
                })
                .collect(),
            sticky_sessions: StickySessions { total, by_server },
        }
    }
}

/// The balancer's own health, answered here rather than proxied: healthy while it can
/// route, i.e. while at least one backend is healthy.
async fn own_health(State(balancer): State<Balancer>) -> (axum::http::StatusCode, Json<wire::Health>) {
    let healthy = balancer.backends.iter().filter(|backend| backend.is_healthy()).count();
    let status = if healthy > 0 {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    let body = wire::Health {
        status: if healthy > 0 { "ok" } else { "no healthy backend" }.into(),
        address: Some(balancer.addr.to_string()),
        algorithm: Some(balancer.algorithm()),
        backends: Some(balancer.backends.len()),
        healthy_backends: Some(healthy),
        ..wire::Health::ok("load-balancer")
    };
    (status, Json(body))
}

struct StickyGuard {
    balancer: Balancer,
    key: String,
}

impl Drop for StickyGuard {
    fn drop(&mut self) {
        let mut sticky = self.balancer.sticky.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(entry) = sticky.get_mut(&self.key) {
            entry.open_sockets = entry.open_sockets.saturating_sub(1);
            entry.last_seen = Instant::now();
        }
    }
}

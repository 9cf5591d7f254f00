//! The app servers behind the load balancer. Each runs on its own listener with the
//! middleware pipeline and the controllers, and can be stopped and started again at
//! runtime (on the same address), so failover can be watched for real.
//!
//! [`remote`] stops and starts the servers of other processes.

pub mod remote;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Json, Router, extract::State, routing::get};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// How long a stopping server lets in-flight requests finish.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub use crate::middleware::{AppServer, Shared};
use crate::{controllers, middleware, websocket};

/// One app server's routes: its health, the controllers' and the end users' socket,
/// inside the middleware pipeline.
pub fn router(server: AppServer) -> Router {
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .merge(controllers::router())
        .merge(websocket::router())
        .fallback(not_found)
        .with_state(server.clone());
    middleware::pipeline(routes, server)
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "the app server answers", body = wire::Health)), tag = "health")]
pub(crate) async fn healthz(State(server): State<AppServer>) -> Json<wire::Health> {
    Json(wire::Health {
        id: Some(server.id),
        address: Some(server.addr.to_string()),
        uptime_seconds: Some(server.started.elapsed().as_secs()),
        ..wire::Health::ok("server")
    })
}

/// Unknown routes and methods get the stable JSON error shape, never an empty 404.
async fn not_found(request: axum::extract::Request) -> crate::api_error::ApiError {
    crate::api_error::ApiError::not_found(format!("no route {} {}", request.method(), request.uri().path()))
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no app server named {0}")]
    NotFound(String),
    #[error("{0} is already running")]
    AlreadyRunning(String),
    #[error("{0} is already stopped")]
    AlreadyStopped(String),
    #[error("cannot listen on {addr} for {id}: {source}")]
    Bind {
        id: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running server's means to stop it.
struct Run {
    stopping: CancellationToken,
    task: JoinHandle<()>,
}

struct ManagedServer {
    id: String,
    addr: SocketAddr,
    run: tokio::sync::Mutex<Option<Run>>,
    /// Mirrors `run.is_some()` for readers that must not wait on a stop in progress.
    running: AtomicBool,
}

/// Every app server, running or stopped.
#[derive(Clone)]
pub struct ServerPool {
    servers: Arc<Vec<ManagedServer>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    shared: Shared,
}

/// What the pool reports about one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub id: String,
    pub addr: SocketAddr,
    pub running: bool,
}

impl ServerPool {
    /// Starts a server on each bound listener.
    pub fn start_all(
        listeners: Vec<(String, TcpListener)>,
        shared: Shared,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        let mut servers = Vec::with_capacity(listeners.len());
        let mut runs = Vec::with_capacity(listeners.len());
        for (id, listener) in listeners {
            let addr = crate::local_addr(&listener);
            runs.push(spawn_server(&tasks, &shutdown, &shared, &id, listener));
            servers.push(ManagedServer {
                id,
                addr,
                run: tokio::sync::Mutex::new(None),
                running: AtomicBool::new(true),
            });
        }
        for (server, run) in servers.iter_mut().zip(runs) {
            *server.run.get_mut() = Some(run);
        }
        Self {
            servers: Arc::new(servers),
            shutdown,
            tasks,
            shared,
        }
    }

    /// `http`, or `https` when the servers serve TLS.
    pub fn scheme(&self) -> &'static str {
        crate::tls::scheme(self.shared.tls.as_ref())
    }

    /// True when this pool runs the server named `id`.
    pub fn has(&self, id: &str) -> bool {
        self.servers.iter().any(|server| server.id == id)
    }

    pub fn list(&self) -> Vec<ServerInfo> {
        self.servers
            .iter()
            .map(|server| ServerInfo {
                id: server.id.clone(),
                addr: server.addr,
                running: server.is_running(),
            })
            .collect()
    }

    /// Stops a server: it stops accepting, in-flight requests get [`STOP_GRACE`] to
    /// finish, and its sockets close.
    pub async fn stop(&self, id: &str) -> Result<(), PoolError> {
        let server = self.find(id)?;
        let mut run = server.run.lock().await;
        let Some(Run { stopping, task }) = run.take() else {
            return Err(PoolError::AlreadyStopped(id.to_string()));
        };
        // Reported as stopped from the moment it stops accepting, not once it has drained.
        server.set_running(false);
        stopping.cancel();
        let mut task = task;
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            task.abort();
        }
        tracing::info!(server = id, "app server stopped");
        Ok(())
    }

    /// Starts a stopped server again on its address.
    pub async fn start(&self, id: &str) -> Result<(), PoolError> {
        let server = self.find(id)?;
        let mut run = server.run.lock().await;
        if run.is_some() {
            return Err(PoolError::AlreadyRunning(id.to_string()));
        }
        let listener = TcpListener::bind(server.addr).await.map_err(|source| PoolError::Bind {
            id: id.to_string(),
            addr: server.addr,
            source,
        })?;
        *run = Some(spawn_server(&self.tasks, &self.shutdown, &self.shared, id, listener));
        server.set_running(true);
        tracing::info!(server = id, "app server started");
        Ok(())
    }

    fn find(&self, id: &str) -> Result<&ManagedServer, PoolError> {
        self.servers
            .iter()
            .find(|server| server.id == id)
            .ok_or_else(|| PoolError::NotFound(id.to_string()))
    }
}

impl ManagedServer {
    fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }
}

fn spawn_server(
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
    shared: &Shared,
    id: &str,
    listener: TcpListener,
) -> Run {
    let addr = crate::local_addr(&listener);
    // A child token: process shutdown stops every server, stopping one stops only it.
    let stopping = shutdown.child_token();
    let server = AppServer {
        id: id.to_string(),
        addr,
        started: Instant::now(),
        stopping: stopping.clone(),
        shared: shared.clone(),
    };
    let task = crate::serve(
        tasks,
        &stopping,
        id,
        crate::Accepting::new(listener),
        shared.tls.as_ref(),
        router(server),
    );
    Run { stopping, task }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{queue::Queues, storage::Database, telemetry::Telemetry, websocket::Registry};

    async fn pool_of_one() -> (ServerPool, SocketAddr, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = crate::storage::resolve_url(dir.path(), None).expect("url");
        let db = Database::open(&url).await.expect("db");
        let rooms = crate::websocket::rooms::Rooms::new(Registry::new(), crate::bus::Bus::local());
        let shared = Shared {
            queues: Queues::new(db.clone(), 1.0),
            messaging: crate::messaging::Messaging::new(db.clone(), rooms.clone()),
            rooms,
            registry: Registry::new(),
            sessions: Default::default(),
            activity: std::sync::Arc::new(crate::analytics::sessions::SessionActivity::new(Default::default())),
            trusted_proxies: std::sync::Arc::new(crate::access::TrustedProxies::new(Vec::new())),
            catalogue: Default::default(),
            telemetry: Telemetry::disabled(),
            controls: Default::default(),
            db,
            public_url: "http://127.0.0.1:8000".into(),
            tls: None,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let pool = ServerPool::start_all(
            vec![("server-1".into(), listener)],
            shared,
            CancellationToken::new(),
            TaskTracker::new(),
        );
        (pool, addr, dir)
    }

    #[tokio::test]
    async fn a_stopped_server_refuses_connections_and_starts_again_on_its_address() {
        let (pool, addr, _dir) = pool_of_one().await;
        tokio::net::TcpStream::connect(addr)
            .await
            .expect("running server accepts");

        pool.stop("server-1").await.expect("stops");
        assert!(!pool.list()[0].running);
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "stopped server refuses"
        );
        assert!(matches!(pool.stop("server-1").await, Err(PoolError::AlreadyStopped(_))));

        pool.start("server-1").await.expect("starts again");
        assert!(pool.list()[0].running);
        tokio::net::TcpStream::connect(addr)
            .await
            .expect("restarted server accepts");
        assert!(matches!(
            pool.start("server-1").await,
            Err(PoolError::AlreadyRunning(_))
        ));
    }

    #[tokio::test]
    async fn unknown_servers_are_named_in_the_error() {
        let (pool, _, _dir) = pool_of_one().await;
        let error = pool.stop("server-9").await.expect_err("unknown");
        assert_eq!(error.to_string(), "no app server named server-9");
    }
}

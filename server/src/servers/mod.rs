//! The app servers behind the load balancer. Each runs on its own listener with the
//! middleware pipeline and the controllers, and can be stopped and started again at
//! runtime (on the same address), so failover can be watched for real.

pub mod extract;
pub mod middleware;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    routing::{get, post},
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// How long a stopping server lets in-flight requests finish.
const STOP_GRACE: Duration = Duration::from_secs(5);

use crate::{
    accounts::SessionCache, controllers, queue::Queues, storage::Database, telemetry::Telemetry, websocket::Registry,
};

/// What every app server shares: the database, the queues, and the public address that
/// links in emails point at.
#[derive(Clone)]
pub struct Shared {
    pub db: Database,
    pub queues: Arc<Queues>,
    /// End users' open sockets, across every app server.
    pub registry: Arc<Registry>,
    /// Session tokens checked moments ago, shared by every app server.
    pub sessions: Arc<SessionCache>,
    /// Where stages are recorded, and the controls (delays, step mode).
    pub telemetry: Telemetry,
    /// `http://<balancer address>`.
    pub public_url: String,
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

impl AppServer {
    pub fn router(self) -> Router {
        use controllers::{auth, friends, notifications, purchases};
        Router::new()
            .route("/healthz", get(healthz))
            .route("/api/auth/signup", post(auth::signup))
            .route("/api/auth/login", post(auth::login))
            .route("/api/auth/reset-password", post(auth::reset_password))
            .route("/api/auth/reset-password/confirm", post(auth::confirm_reset))
            .route("/api/purchases", post(purchases::create))
            .route("/api/friend-requests", post(friends::create))
            .route("/api/friend-requests/{id}/accept", post(friends::accept))
            .route("/api/notifications", get(notifications::list))
            .route("/api/notifications/{id}/read", post(notifications::mark_read))
            .route("/api/notifications/ws", get(crate::websocket::user_socket))
            .fallback(not_found)
            .with_state(self.clone())
            .layer(DefaultBodyLimit::max(middleware::MAX_BODY_BYTES))
            .layer(axum::middleware::from_fn(middleware::json_errors))
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(
                middleware::panic_response,
            ))
            .layer(axum::middleware::from_fn_with_state(self.clone(), middleware::timeout))
            .layer(axum::middleware::from_fn_with_state(self, middleware::trace))
            .layer(axum::middleware::from_fn(middleware::request_id))
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
    let task = crate::serve(tasks, &stopping, id, listener, server.router());
    Run { stopping, task }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pool_of_one() -> (ServerPool, SocketAddr, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = crate::storage::resolve_url(dir.path(), None).expect("url");
        let db = Database::open(&url).await.expect("db");
        let shared = Shared {
            queues: Queues::new(db.clone(), 1.0),
            registry: Registry::new(),
            sessions: Default::default(),
            telemetry: Telemetry::disabled(),
            db,
            public_url: "http://127.0.0.1:8000".into(),
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

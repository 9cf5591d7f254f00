//! Live View's server: one process running the dashboard, the load balancer, the app
//! servers and the database. [`start`] binds everything and returns a [`Running`]
//! handle, so `main` and the integration tests start the system the same way.

pub mod access;
pub mod accounts;
pub mod alerts;
pub mod analytics;
pub mod api_error;
pub mod audit;
pub mod autoscale;
pub mod balancer;
#[cfg(feature = "bench")]
pub mod bench;
pub mod bus;
pub mod cluster;
pub mod config;
pub mod controllers;
pub mod controls;
pub mod dashboard;
pub mod health;
pub mod history;
pub mod live;
pub mod messaging;
pub mod middleware;
pub mod notify;
pub mod operators;
pub mod queue;
pub mod recent;
pub mod servers;
pub mod simulate;
pub mod site;
pub mod smtp;
pub mod sockets;
pub mod storage;
pub mod telemetry;
pub mod tls;
pub mod websocket;
pub mod workers;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, serve::Listener as _};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use wire::ProcessRole;

use crate::{
    access::OriginPolicy,
    balancer::Balancer,
    cluster::registry::ProcessRegistry,
    config::Config,
    controls::Controls,
    dashboard::Dashboard,
    health::{HealthProbe, SmtpDestination},
    history::{History, Retention},
    live::{LiveHub, LiveSocketState},
    queue::Queues,
    servers::{ServerPool, Shared},
    simulate::Simulator,
    smtp::CaptureServer,
    storage::{Database, StorageError},
    telemetry::{
        Journeys, Telemetry,
        sampler::{Sampler, Sources},
    },
    websocket::{Registry, relay::Pusher},
    workers::ledger::SentLedger,
};

/// Journeys a live viewer's snapshot carries (the newest).
const SNAPSHOT_JOURNEYS: usize = 100;

/// How long each last word at shutdown (the process list, the bus, the database) may take.
const FAREWELL: Duration = Duration::from_secs(3);

/// How long shutdown waits for open connections before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the process could not start. Each says what and where in one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} for the {role}: {reason}")]
    Bind {
        role: String,
        addr: SocketAddr,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Bus(#[from] bus::BusError),
}

/// A started system: its bound addresses and the means to stop it.
pub struct Running {
    pub role: ProcessRole,
    /// The dashboard's address, in a role that runs it.
    pub dashboard: Option<SocketAddr>,
    /// The balancer's address, in a role that runs it.
    pub balancer: Option<SocketAddr>,
    pub servers: Vec<(String, SocketAddr)>,
    pub pool: ServerPool,
    pub balancer_state: Option<Balancer>,
    pub database: Database,
    pub queues: Arc<Queues>,
    /// The live stream's hub: what publishes to every dashboard viewer.
    pub hub: Arc<LiveHub>,
    /// The handle components observe through; what it is sent reaches the hub through the
    /// aggregator (benchmarks time events from here to the viewer).
    pub telemetry: Telemetry,
    /// The embedded capture SMTP server's address, when it runs.
    pub smtp_sink: Option<SocketAddr>,
    /// Who holds an in-app socket where (benchmarks push frames through it).
    pub registry: Arc<Registry>,
    /// What crosses to the other processes of the cluster.
    pub bus: bus::Bus,
    /// Delays and step mode, as this process applies them.
    pub controls: Arc<Controls>,
    /// This process's row in the cluster's process list.
    pub process: ProcessRegistry,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Running {
    /// The balancer's address, in a process known to run one (an `all` process, as the
    /// tests and benchmarks start).
    pub fn lb(&self) -> SocketAddr {
        self.balancer
            .expect("this process runs the load balancer (--role all or lb)")
    }

    /// The dashboard's address, in a process known to run one.
    pub fn dash(&self) -> SocketAddr {
        self.dashboard.expect("this process runs the dashboard (--role all)")
    }

    /// Stops every listener and task, waiting at most [`SHUTDOWN_GRACE`].
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tasks.wait()).await.is_err() {
            tracing::warn!("some connections were still open after {SHUTDOWN_GRACE:?}; closing anyway");
        }
        // The database and Redis may be gone already (a cluster stopping around this
        // process): each farewell gets a few seconds, never the whole stop.
        match tokio::time::timeout(FAREWELL, self.process.stop()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "could not record this process's stop"),
            Err(_) => tracing::warn!("the database did not take this process's stop in time"),
        }
        if tokio::time::timeout(FAREWELL, self.bus.close()).await.is_err() {
            tracing::warn!("the bus did not close in time");
        }
        if tokio::time::timeout(FAREWELL, self.database.close()).await.is_err() {
            tracing::warn!("the database did not close in time");
        }
    }
}

/// Binds every listener, opens and migrates the database, and starts serving what
/// `--role` says this process runs. Nothing is served unless everything could be bound
/// and opened. Each part is built from the parts it needs, in that order: the types keep
/// the order.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    // Leptos' server rendering spawns through this executor; a second call is harmless.
    let _ = any_spawner::Executor::init_tokio();

    let role = config.role;
    check_role(config)?;
    let auth = config.auth_mode().map_err(StartError::Config)?;
    let backends = config.checked_backends().map_err(StartError::Config)?.to_vec();
    let tls = config.tls().map_err(StartError::Config)?;
    let listeners = Listeners::bind(config).await?;
    let url = storage::resolve_url(&config.data, config.database_url.as_deref())?;
    let database = Database::open(&url).await?;
    tracing::info!(database = %database.display_url, %role, "database ready (migrations applied)");
    let life = Lifecycle::default();
    let observer = Observer::start(config, &database, &life).await?;
    let process = ProcessRegistry::register(database.clone(), observer.bus.me().clone(), role, &listeners.address())
        .await
        .map_err(|error| StartError::Config(format!("cannot register this process: {error}")))?;
    let delivery = Delivery::start(config, &database, &observer, listeners.smtp, &life).await?;

    // Where end users reach the system: this process's balancer, or the cluster's.
    let balancer_addr = listeners.balancer.as_ref().map(local_addr);
    let geography = Arc::new(analytics::geo::Geography::open(&config.geoip_db, &config.world_atlas));
    let trusted_proxies = Arc::new(access::TrustedProxies::new(config.trusted_proxies.clone()));
    let shared = Shared {
        db: database.clone(),
        queues: delivery.queues.clone(),
        registry: delivery.registry.clone(),
        rooms: delivery.rooms.clone(),
        messaging: messaging::Messaging::new(database.clone(), delivery.rooms.clone()),
        sessions: Default::default(),
        activity: Arc::new(analytics::sessions::SessionActivity::new(geography.clone())),
        trusted_proxies: trusted_proxies.clone(),
        catalogue: Arc::new(
            controllers::items::Catalogue::load(&database)
                .await
                .map_err(|error| StartError::Config(format!("cannot read the catalogue: {error}")))?,
        ),
        telemetry: observer.telemetry.clone(),
        controls: observer.controls.clone(),
        public_url: format!("{}://{}", tls::scheme(tls.as_ref()), balancer_addr.unwrap_or(config.lb)),
        tls: tls.clone(),
    };
    if role.serves() {
        life.tasks
            .spawn(shared.activity.clone().run(database.clone(), life.shutdown.clone()));
    }
    let pool = ServerPool::start_all(listeners.servers, shared, life.shutdown.clone(), life.tasks.clone());
    let servers: Vec<(String, SocketAddr)> = pool.list().into_iter().map(|info| (info.id, info.addr)).collect();

    let balancer = listeners.balancer.map(|listener| {
        let targets = match role {
            ProcessRole::All => servers.clone(),
            // Named as each app process names itself.
            _ => backends.iter().map(|addr| (format!("app@{addr}"), *addr)).collect(),
        };
        let balancer = Balancer::new(
            local_addr(&listener),
            &targets,
            config.health_policy(),
            tls.as_ref(),
            life.shutdown.clone(),
            life.tasks.clone(),
            observer.telemetry.clone(),
            observer.controls.clone(),
            trusted_proxies.clone(),
        );
        serve(
            &life.tasks,
            &life.shutdown,
            "load balancer",
            Accepting::new(listener),
            tls.as_ref(),
            balancer.clone().router(&config.site),
        );
        life.tasks
            .spawn(balancer.clone().run_health_checks(life.shutdown.clone()));
        balancer
    });

    if observer.bus.crosses_processes() && (role.serves() || role.balances()) {
        life.tasks.spawn(servers::remote::obey(
            pool.clone(),
            balancer.clone(),
            observer.bus.clone(),
            life.shutdown.clone(),
        ));
    }
    let dashboard_addr = match listeners.dashboard {
        Some(listener) => Some(start_dashboard(
            config,
            listener,
            &database,
            &observer,
            &delivery,
            balancer.as_ref(),
            &pool,
            &life,
            auth,
            process.clone(),
            tls.as_ref(),
            config.reporting(geography.clone()),
        )),
        None => {
            // No dashboard here: this process's figures go to the cluster's dashboards.
            let sampler = Sampler::new(Sources {
                telemetry: observer.telemetry.clone(),
                journeys: observer.journeys.clone(),
                balancer: balancer.clone(),
                pool: pool.clone(),
                queues: delivery.queues.clone(),
                registry: delivery.registry.clone(),
                hub: observer.hub.clone(),
                probe: None,
                reports: None,
                mail_workers: if role.works() { config.mail_workers } else { 0 },
                inapp_workers: if role.works() { config.inapp_workers } else { 0 },
            });
            life.tasks.spawn(telemetry::reports::report(
                sampler,
                observer.bus.clone(),
                life.shutdown.clone(),
            ));
            None
        }
    };
    if role.works() {
        let keep = Duration::from_secs(config.keep_completed_jobs * 60);
        life.tasks
            .spawn(delivery.queues.clone().run_retention(keep, life.shutdown.clone()));
    }
    life.tasks.spawn(process.clone().run(life.shutdown.clone()));

    Ok(Running {
        role,
        dashboard: dashboard_addr,
        balancer: balancer_addr,
        servers,
        pool,
        balancer_state: balancer,
        database,
        queues: delivery.queues,
        hub: observer.hub,
        telemetry: observer.telemetry,
        smtp_sink: delivery.capture.map(|(_, addr)| addr),
        registry: delivery.registry,
        bus: observer.bus,
        controls: observer.controls,
        process,
        shutdown: life.shutdown,
        tasks: life.tasks,
    })
}

/// A process in a role of a cluster shares the database and the bus with the others,
/// or it is a cluster of one that cannot do its part.
fn check_role(config: &Config) -> Result<(), StartError> {
    let role = config.role;
    if role == ProcessRole::All {
        return Ok(());
    }
    if config.autoscale.is_some() && role != ProcessRole::Dashboard {
        return Err(StartError::Config(format!(
            "--autoscale decides in a process with a dashboard: --role all or dashboard, not {role}"
        )));
    }
    let shared = config
        .database_url
        .as_deref()
        .and_then(storage::Engine::of_url)
        .is_some_and(storage::Engine::is_shared);
    if !shared {
        return Err(StartError::Config(format!(
            "--role {role} shares its work with other processes: give --database-url postgres://… (SQLite is one process's)"
        )));
    }
    if config.bus_url.is_none() {
        return Err(StartError::Config(format!(
            "--role {role} needs --bus-url redis://… (and --cluster-secret): what crosses processes goes there"
        )));
    }
    Ok(())
}

/// Every listener this process's role needs, bound before anything starts, so a taken
/// port fails the start at once.
struct Listeners {
    dashboard: Option<TcpListener>,
    balancer: Option<TcpListener>,
    servers: Vec<(String, TcpListener)>,
    /// The embedded capture SMTP server's, when it runs.
    smtp: Option<TcpListener>,
}

impl Listeners {
    async fn bind(config: &Config) -> Result<Self, StartError> {
        let role = config.role;
        let server_addrs = config.server_addrs().map_err(StartError::Config)?;
        let dashboard = match role.watches() {
            true => Some(bind("dashboard", config.dashboard).await?),
            false => None,
        };
        let balancer = match role.balances() {
            true => Some(bind("load balancer", config.lb).await?),
            false => None,
        };
        let mut servers = Vec::with_capacity(server_addrs.len());
        for (index, addr) in server_addrs.into_iter().enumerate() {
            let listener = bind("app server", addr).await?;
            let id = match role {
                // One per process, named by where it serves: the name the balancers
                // give it too.
                ProcessRole::App => format!("app@{}", local_addr(&listener)),
                _ => format!("server-{}", index + 1),
            };
            servers.push((id, listener));
        }
        let smtp = match config.smtp_sink_addr() {
            Some(addr) => Some(bind("capture SMTP server", addr).await?),
            None => None,
        };
        Ok(Self {
            dashboard,
            balancer,
            servers,
            smtp,
        })
    }

    /// Where this process serves, as the process list shows it: its dashboard, else its
    /// balancer, else its app server (nothing for a worker).
    fn address(&self) -> String {
        self.dashboard
            .as_ref()
            .or(self.balancer.as_ref())
            .or(self.servers.first().map(|(_, listener)| listener))
            .map(|listener| local_addr(listener).to_string())
            .unwrap_or_default()
    }
}

/// What stops every task, and what tracks them until they have.
#[derive(Default)]
struct Lifecycle {
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// The live window: the controls it offers, the telemetry components record into, the
/// journeys folded from it, the history that keeps its frames and the hub that streams
/// them, with the aggregator between them running.
struct Observer {
    bus: bus::Bus,
    controls: Arc<Controls>,
    telemetry: Telemetry,
    journeys: Arc<Journeys>,
    history: History,
    hub: Arc<LiveHub>,
}

impl Observer {
    async fn start(config: &Config, database: &Database, life: &Lifecycle) -> Result<Self, StartError> {
        let secret = config.cluster_secret().map_err(StartError::Config)?;
        let bus = bus::Bus::open(config.bus_url.as_deref(), secret.as_ref()).await?;
        tracing::info!(bus = bus.describe(), process = %bus.me().0, "bus ready");
        let controls = Arc::new(
            Controls::new(secret.as_ref(), database.clone())
                .await
                .map_err(|error| StartError::Config(format!("cannot read the control settings: {error}")))?,
        );
        let (telemetry, observations) = if config.without_live_telemetry {
            tracing::warn!("running without the live window's telemetry (--without-live-telemetry)");
            Telemetry::off()
        } else {
            Telemetry::new()
        };
        let journeys = Arc::new(Journeys::new(config.journeys));
        let history = History::open(
            &config.data,
            Retention {
                keep: Duration::from_secs(config.history_minutes * 60),
                full_detail: Duration::from_secs(config.history_full_minutes * 60),
                max_bytes: config.history_max_mb.saturating_mul(1_000_000),
            },
            &life.tasks,
            life.shutdown.clone(),
        )
        .await
        .map_err(|error| StartError::Config(format!("cannot open the live history: {error}")))?;
        let hub = {
            let history = history.clone();
            let journeys = journeys.clone();
            Arc::new(LiveHub::recording(
                config.live_history_len(),
                Arc::new(move |published| history.record_frame(published)),
                Arc::new(move || journeys.recent(SNAPSHOT_JOURNEYS, |_| true, |journey| journey.tracker.clone())),
            ))
        };
        // On a cluster every process sends its telemetry over the bus, and every
        // dashboard folds what the bus brings, its own process's included; alone, the
        // aggregator reads this process's records directly.
        let folded = if bus.crosses_processes() {
            life.tasks
                .spawn(telemetry::forward(observations, bus.clone(), life.shutdown.clone()));
            config.role.watches().then(|| {
                let (fold, folded) = tokio::sync::mpsc::channel(telemetry::CHANNEL_CAPACITY);
                life.tasks.spawn(telemetry::gather(
                    bus.clone(),
                    fold,
                    telemetry.clone(),
                    life.shutdown.clone(),
                ));
                folded
            })
        } else {
            config.role.watches().then_some(observations)
        };
        if let Some(folded) = folded {
            life.tasks.spawn(telemetry::aggregate(
                folded,
                journeys.clone(),
                hub.clone(),
                controls.clone(),
                life.shutdown.clone(),
            ));
        }
        life.tasks.spawn(controls::follow(
            bus.clone(),
            controls.clone(),
            telemetry.clone(),
            life.shutdown.clone(),
        ));
        life.tasks.spawn(controls::refresh(
            controls.clone(),
            telemetry.clone(),
            life.shutdown.clone(),
        ));
        if bus.crosses_processes() {
            life.tasks.spawn(controls::share_steps(
                bus.clone(),
                controls.clone(),
                life.shutdown.clone(),
            ));
        }
        Ok(Self {
            bus,
            controls,
            telemetry,
            journeys,
            history,
            hub,
        })
    }
}

/// The notification system's delivery side: the queues, who holds which socket, the
/// embedded capture SMTP server (when it runs), and the mail and in-app workers, started
/// after what an unclean stop left behind has been recovered.
struct Delivery {
    queues: Arc<Queues>,
    registry: Arc<Registry>,
    rooms: websocket::rooms::Rooms,
    capture: Option<(CaptureServer, SocketAddr)>,
    smtp_url: String,
}

impl Delivery {
    async fn start(
        config: &Config,
        database: &Database,
        observer: &Observer,
        smtp_listener: Option<TcpListener>,
        life: &Lifecycle,
    ) -> Result<Self, StartError> {
        let queues = Queues::with_telemetry(
            database.clone(),
            config.time_scale,
            observer.telemetry.clone(),
            observer.bus.me().clone(),
        );
        let registry = Registry::new();
        let rooms = websocket::rooms::Rooms::new(registry.clone(), observer.bus.clone());
        if config.role.serves() && observer.bus.crosses_processes() {
            life.tasks.spawn(websocket::relay::relay(
                registry.clone(),
                observer.bus.clone(),
                life.shutdown.clone(),
            ));
            life.tasks.spawn(rooms.clone().follow(life.shutdown.clone()));
        }
        if config.role.serves() {
            life.tasks.spawn(controllers::notifications::return_snoozed(
                database.clone(),
                rooms.clone(),
                life.shutdown.clone(),
            ));
        }
        let capture = smtp_listener.map(|listener| {
            let addr = local_addr(&listener);
            tracing::info!("capture SMTP server listening on smtp://{addr}");
            let capture = CaptureServer::new(database.clone());
            capture.spawn(listener, &life.tasks, life.shutdown.clone());
            life.tasks.spawn(capture.clone().follow_faults(life.shutdown.clone()));
            life.tasks.spawn(
                capture
                    .clone()
                    .run_retention(config.mailbox_keep, life.shutdown.clone()),
            );
            (capture, addr)
        });
        let smtp_url = config
            .smtp_url
            .clone()
            .or_else(|| capture.as_ref().map(|(_, addr)| format!("smtp://{addr}")));
        if !config.role.works() {
            return Ok(Self {
                queues,
                registry,
                rooms,
                capture,
                smtp_url: smtp_url.unwrap_or_default(),
            });
        }
        let smtp_url =
            smtp_url.ok_or_else(|| StartError::Config("no SMTP server: give --smtp-url or --smtp-sink".into()))?;
        let ledger_path = config.data.join("sent.ledger");
        let ledger = std::fs::create_dir_all(&config.data)
            .and_then(|()| SentLedger::open(&ledger_path))
            .map_err(|source| StorageError::DataDir {
                path: config.data.clone(),
                source,
            })
            .map(Arc::new)?;
        let settled = ledger
            .replay(database)
            .await
            .map_err(|error| StartError::Config(error.to_string()))?;
        let released = queues
            .release_abandoned()
            .await
            .map_err(|error| StartError::Config(format!("queue recovery: {error}")))?;
        if settled > 0 || released > 0 {
            tracing::warn!(
                settled,
                released,
                "recovered from an unclean stop: sent emails settled, abandoned jobs due again"
            );
        }
        workers::mail::spawn_pool(
            config.mail_workers,
            &smtp_url,
            database.clone(),
            queues.clone(),
            ledger,
            observer.controls.clone(),
            // Real time, not --time-scale's: it waits for a server to come back.
            Arc::default(),
            &life.tasks,
            life.shutdown.clone(),
        )
        .map_err(|error| StartError::Config(format!("unusable --smtp-url: {error}")))?;
        let pusher = Pusher::new(registry.clone(), observer.bus.clone());
        if observer.bus.crosses_processes() {
            life.tasks.spawn(pusher.clone().answers(life.shutdown.clone()));
        }
        workers::inapp::spawn_pool(
            config.inapp_workers,
            database.clone(),
            queues.clone(),
            pusher,
            observer.controls.clone(),
            &life.tasks,
            life.shutdown.clone(),
        );
        tracing::info!(workers = config.mail_workers, smtp = %storage::redact_url(&smtp_url), "mail workers started");
        Ok(Self {
            queues,
            registry,
            rooms,
            capture,
            smtp_url,
        })
    }
}

/// Starts the dashboard's listener with what it shows and controls: the status probe,
/// the sampler, the load simulator; returns its address.
#[allow(clippy::too_many_arguments)]
fn start_dashboard(
    config: &Config,
    listener: TcpListener,
    database: &Database,
    observer: &Observer,
    delivery: &Delivery,
    balancer: Option<&Balancer>,
    pool: &ServerPool,
    life: &Lifecycle,
    auth: wire::AuthMode,
    process: ProcessRegistry,
    tls: Option<&tls::Tls>,
    reporting: analytics::Reporting,
) -> SocketAddr {
    // Where end users reach the system: this process's balancer, or the cluster's
    // (`--lb`), which the probe checks and the simulator sends its load to.
    let balancer_addr = balancer.map_or(config.lb, |balancer| balancer.addr);
    let reports = observer.bus.crosses_processes().then(|| {
        let reports = Arc::new(telemetry::reports::Reports::default());
        life.tasks
            .spawn(reports.clone().gather(observer.bus.clone(), life.shutdown.clone()));
        reports
    });
    let remote = servers::remote::Remote::new(observer.bus.clone());
    if remote.reaches_others() {
        life.tasks.spawn(remote.clone().answers(life.shutdown.clone()));
    }
    let dashboard_addr = local_addr(&listener);
    let mut probe = HealthProbe::new(
        dashboard_addr,
        balancer_addr,
        pool.clone(),
        database.clone(),
        observer.hub.clone(),
        SmtpDestination {
            url: delivery.smtp_url.clone(),
            capture: delivery.capture.as_ref().map(|(capture, _)| capture.clone()),
        },
        tls,
    );
    if observer.bus.crosses_processes() {
        probe.processes = Some(process.clone());
    }
    let probe = Arc::new(probe);
    let sampler = Sampler::new(Sources {
        telemetry: observer.telemetry.clone(),
        journeys: observer.journeys.clone(),
        balancer: balancer.cloned(),
        pool: pool.clone(),
        queues: delivery.queues.clone(),
        registry: delivery.registry.clone(),
        hub: observer.hub.clone(),
        probe: Some(probe.clone()),
        reports,
        mail_workers: if config.role.works() { config.mail_workers } else { 0 },
        inapp_workers: if config.role.works() { config.inapp_workers } else { 0 },
    });
    life.tasks.spawn(sampler.clone().run(life.shutdown.clone()));
    if let Some(range) = config.autoscale {
        let scaler = autoscale::Autoscaler::new(
            pool.clone(),
            remote.clone(),
            sampler.clone(),
            database.clone(),
            observer.telemetry.clone(),
            range,
            process.me().0.clone(),
        );
        life.tasks
            .spawn(scaler.run(Duration::from_millis(config.autoscale_every_ms), life.shutdown.clone()));
    }
    let simulator = Simulator::new(
        balancer_addr,
        tls,
        observer.controls.clone(),
        life.tasks.clone(),
        life.shutdown.clone(),
    );
    life.tasks.spawn(simulator.clone().run_continuous());
    let alerting = alerts::Alerting::new(
        database.clone(),
        observer.telemetry.clone(),
        sampler.clone(),
        process.me().0.clone(),
        alerts::Destinations {
            emails: config.alert_email.iter().filter(|to| !to.is_empty()).cloned().collect(),
            webhook: config.alert_webhook.clone(),
        },
    );
    let dashboard = Dashboard {
        history: observer.history.clone(),
        sampler,
        simulator,
        probe: probe.clone(),
        live: LiveSocketState {
            hub: observer.hub.clone(),
            shutdown: life.shutdown.clone(),
            origins: Arc::new(OriginPolicy::new(
                dashboard_addr,
                &config.dashboard_names,
                &config.allowed_origins,
            )),
        },
        balancer: balancer.cloned(),
        rooms: delivery.rooms.clone(),
        remote,
        servers: pool.clone(),
        queues: delivery.queues.clone(),
        // A dashboard without a capture server of its own, on a cluster's database,
        // shows (and sets the faults of) the one another process runs.
        capture: match &delivery.capture {
            Some((capture, _)) => Some(capture.clone()),
            None if database.engine().is_shared() => {
                let view = CaptureServer::view(database.clone());
                life.tasks.spawn(view.clone().follow_faults(life.shutdown.clone()));
                Some(view)
            }
            None => None,
        },
        telemetry: observer.telemetry.clone(),
        controls: observer.controls.clone(),
        journeys: observer.journeys.clone(),
        audit: crate::audit::Audit::new(database.clone()),
        bus: observer.bus.clone(),
        processes: process,
        database: database.clone(),
        reporting: reporting.clone(),
        alerting,
        feed: analytics::feed::MetricsFeed::new(),
        gate: Arc::new(
            crate::access::auth::Gate::new(
                auth,
                crate::operators::Operators::new(database.clone()),
                config.session_minutes,
                config.metrics_token.as_deref(),
            )
            .with_secure_cookies(tls.is_some()),
        ),
    };
    life.tasks.spawn(
        dashboard
            .alerting
            .clone()
            .run(Duration::from_millis(config.alert_interval_ms), life.shutdown.clone()),
    );
    let (dashboard_feed, dashboard_sampler, dashboard_hub) = (
        dashboard.feed.clone(),
        dashboard.sampler.clone(),
        dashboard.live.hub.clone(),
    );
    serve(
        &life.tasks,
        &life.shutdown,
        "dashboard",
        Accepting::tapped(listener, live::cap_send_buffer),
        tls,
        dashboard.router(&config.site),
    );
    life.tasks.spawn(probe.run(life.shutdown.clone()));
    life.tasks
        .spawn(analytics::figures::keep_clean(database.clone(), life.shutdown.clone()));
    life.tasks.spawn(dashboard_feed.run(
        database.clone(),
        reporting,
        dashboard_sampler,
        dashboard_hub,
        life.shutdown.clone(),
    ));
    dashboard_addr
}

async fn bind(role: &str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|error| StartError::Bind {
        role: role.to_string(),
        addr,
        reason: describe_io(&error),
    })
}

/// `Address already in use` rather than `Address already in use (os error 98)`.
fn describe_io(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_lowercase(),
        None => text,
    }
}

pub(crate) fn local_addr(listener: &TcpListener) -> SocketAddr {
    // A bound TCP listener always has a local address.
    listener.local_addr().expect("bound listener has an address")
}

/// A bound listener as [`serve`] takes it: each accepted connection first handed to
/// `tap` (the dashboard caps its send buffers), its peer recorded for the requests
/// ([`access::Peer`]).
pub struct Accepting {
    listener: TcpListener,
    tap: Option<fn(&mut tokio::net::TcpStream)>,
}

impl Accepting {
    pub(crate) fn new(listener: TcpListener) -> Self {
        Self { listener, tap: None }
    }

    pub(crate) fn tapped(listener: TcpListener, tap: fn(&mut tokio::net::TcpStream)) -> Self {
        Self {
            listener,
            tap: Some(tap),
        }
    }
}

impl axum::serve::Listener for Accepting {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (mut stream, addr) = axum::serve::Listener::accept(&mut self.listener).await;
        if let Some(tap) = self.tap {
            tap(&mut stream);
        }
        (stream, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled; in-flight requests finish.
pub(crate) fn serve(
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
    role: &str,
    listener: Accepting,
    tls: Option<&tls::Tls>,
    router: Router,
) -> JoinHandle<()> {
    // A bound TCP listener always has a local address.
    let addr = listener.local_addr().expect("bound listener has an address");
    tracing::info!("{role} listening on {}://{addr}", tls::scheme(tls));
    let role = role.to_string();
    let stop = shutdown.clone();
    let tls = tls.cloned();
    tasks.spawn(async move {
        let stopped = async move { stop.cancelled().await };
        let served = match tls {
            Some(tls) => {
                axum::serve(
                    tls.listen(listener),
                    router.into_make_service_with_connect_info::<access::Peer>(),
                )
                .with_graceful_shutdown(stopped)
                .await
            }
            None => {
                axum::serve(listener, router.into_make_service_with_connect_info::<access::Peer>())
                    .with_graceful_shutdown(stopped)
                    .await
            }
        };
        if let Err(error) = served {
            tracing::error!(%error, "{role} stopped serving");
        }
    })
}

/// Milliseconds since the Unix epoch: how every row stores time.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Runs `tick` every `period` (the first at once) until `shutdown`. A tick that overruns
/// delays the next rather than bunching them up.
pub(crate) async fn every<F, Fut>(period: Duration, shutdown: CancellationToken, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // The tick races shutdown too: a tick waiting on another task that has already
        // stopped (the sampler waiting for the probe's first status) held shutdown for
        // its whole grace period. Every tick is maintenance or observation, safe to drop.
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tick() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Regression: a tick waiting for something that never comes (the sampler waiting for
    // the probe's first status, after the probe had stopped) held shutdown for its grace.
    #[tokio::test]
    async fn every_stops_at_shutdown_even_inside_a_tick_that_never_ends() {
        let shutdown = CancellationToken::new();
        let started = Arc::new(tokio::sync::Notify::new());
        let running = tokio::spawn(every(Duration::from_secs(1), shutdown.clone(), {
            let started = started.clone();
            move || {
                let started = started.clone();
                async move {
                    started.notify_one();
                    std::future::pending::<()>().await;
                }
            }
        }));
        started.notified().await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(1), running)
            .await
            .expect("stops at once")
            .expect("no panic");
    }
}

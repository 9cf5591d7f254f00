//! The system's health, checked for real once a second: an HTTP round trip to the load
//! balancer's and every app server's `/healthz`, a query to the database. The result is
//! the `/status` page and the `system:status` event.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;
use wire::{
    ComponentHealth, ComponentKind, ComponentStatus, LiveEvent, OverallHealth, ProcessRole, SystemStatus, Timestamp,
    format_uptime,
};

use crate::{
    cluster::registry::ProcessRegistry, live::LiveHub, servers::ServerPool, smtp::CaptureServer, storage::Database,
    workers::mail::SmtpTarget,
};

/// How often status is gathered and published.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// A probe slower than this counts as a failure.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// Everything the status check looks at.
pub struct HealthProbe {
    pub started_at: Timestamp,
    pub started: Instant,
    pub dashboard: SocketAddr,
    pub balancer: SocketAddr,
    pub servers: ServerPool,
    pub database: Database,
    pub hub: Arc<LiveHub>,
    /// Where mail goes, and the embedded capture server when that is where.
    pub smtp: SmtpDestination,
    /// The cluster's process list, whose app servers and workers in other processes are
    /// checked too (set on a cluster's bus).
    pub processes: Option<ProcessRegistry>,
    client: reqwest::Client,
    /// `http` or `https`: how the app servers are reached.
    scheme: &'static str,
    latest: RwLock<Option<SystemStatus>>,
    /// Woken when a check is done and kept.
    refreshed: tokio::sync::Notify,
}

impl HealthProbe {
    pub fn new(
        dashboard: SocketAddr,
        balancer: SocketAddr,
        servers: ServerPool,
        database: Database,
        hub: Arc<LiveHub>,
        smtp: SmtpDestination,
        tls: Option<&crate::tls::Tls>,
    ) -> Self {
        let mut client = reqwest::Client::builder()
            .timeout(PROBE_TIMEOUT)
            // Probes must measure our listeners, never a proxy from the environment.
            .no_proxy();
        if let Some(tls) = tls {
            client = client.use_preconfigured_tls(tls.client_config());
        }
        let client = client.build().unwrap_or_default();
        Self {
            started_at: chrono::Utc::now(),
            started: Instant::now(),
            dashboard,
            balancer,
            servers,
            database,
            hub,
            smtp,
            processes: None,
            scheme: crate::tls::scheme(tls),
            client,
            latest: RwLock::new(None),
            refreshed: tokio::sync::Notify::new(),
        }
    }

    /// The last gathered status, or a fresh one if none was gathered yet.
    /// The latest status; in the first instant after start, the first one once
    /// [`run`](Self::run) has it. Never checked here: a check of its own would publish a
    /// second `system:status` a few milliseconds after the first.
    pub async fn current(&self) -> SystemStatus {
        loop {
            // Registered before the check, so a refresh in between still wakes it.
            let refreshed = self.refreshed.notified();
            if let Some(status) = self.latest.read().unwrap_or_else(|poison| poison.into_inner()).clone() {
                return status;
            }
            refreshed.await;
        }
    }

    /// Checks every component now, keeps the result and publishes `system:status`.
    pub async fn refresh(&self) -> SystemStatus {
        let status = self.gather().await;
        *self.latest.write().unwrap_or_else(|poison| poison.into_inner()) = Some(status.clone());
        self.refreshed.notify_waiters();
        self.hub.publish(LiveEvent::SystemStatus(status.clone()));
        status
    }

    /// Refreshes every [`STATUS_INTERVAL`] until shutdown.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        crate::every(STATUS_INTERVAL, shutdown, || async {
            self.refresh().await;
        })
        .await;
    }

    async fn gather(&self) -> SystemStatus {
        let dashboard = self.dashboard_status();
        let balancer = self.http_status(
            "load-balancer",
            "Load balancer",
            ComponentKind::LoadBalancer,
            self.balancer,
        );
        let servers = futures_util::future::join_all(self.servers.list().into_iter().map(|server| async move {
            let name = server.id.replacen("server-", "Server ", 1);
            if !server.running {
                return ComponentStatus {
                    id: server.id,
                    name,
                    kind: ComponentKind::Server,
                    health: ComponentHealth::Stopped,
                    address: server.addr.to_string(),
                    figure: "stopped from the dashboard".into(),
                    latency_ms: None,
                    detail: None,
                };
            }
            self.http_status(&server.id, &name, ComponentKind::Server, server.addr)
                .await
        }));
        let (balancer, servers, others, database, smtp) = tokio::join!(
            balancer,
            servers,
            self.cluster_status(),
            self.database_status(),
            self.smtp_status()
        );
        let mut components = vec![dashboard, balancer];
        components.extend(servers);
        components.extend(others);
        components.push(database);
        // A dashboard that sends no mail itself shows an SMTP server only if told one.
        components.extend(smtp);

        let uptime_seconds = self.started.elapsed().as_secs();
        SystemStatus {
            status: OverallHealth::from_components(&components),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started_at,
            uptime_seconds,
            uptime: format_uptime(uptime_seconds),
            timestamp: chrono::Utc::now(),
            components,
        }
    }

    fn dashboard_status(&self) -> ComponentStatus {
        let viewers = self.hub.viewer_count();
        ComponentStatus {
            id: "dashboard".into(),
            name: "Dashboard".into(),
            kind: ComponentKind::Dashboard,
            // It is answering this very check.
            health: ComponentHealth::Healthy,
            address: self.dashboard.to_string(),
            figure: format!("{viewers} live viewer{}", if viewers == 1 { "" } else { "s" }),
            latency_ms: None,
            detail: None,
        }
    }

    /// `GET http://ADDR/healthz` (`https` with TLS), timed.
    async fn http_status(&self, id: &str, name: &str, kind: ComponentKind, addr: SocketAddr) -> ComponentStatus {
        let url = format!("{}://{}/healthz", self.scheme, reachable(addr));
        let started = Instant::now();
        let outcome = match self.client.get(&url).send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("healthz answered {}", response.status())),
            Err(error) if error.is_timeout() => Err(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
            Err(error) if error.is_connect() => Err("connection refused".to_string()),
            Err(_) => Err("healthz request failed".to_string()),
        };
        let latency = millis(started.elapsed());
        let (health, figure, latency_ms, detail) = match outcome {
            Ok(()) => (
                ComponentHealth::Healthy,
                format!("healthz in {latency:.1} ms"),
                Some(latency),
                None,
            ),
            Err(reason) => (
                ComponentHealth::Unhealthy,
                "not answering".to_string(),
                None,
                Some(reason),
            ),
        };
        ComponentStatus {
            id: id.into(),
            name: name.into(),
            kind,
            health,
            address: addr.to_string(),
            figure,
            latency_ms,
            detail,
        }
    }

    async fn database_status(&self) -> ComponentStatus {
        let ping = tokio::time::timeout(PROBE_TIMEOUT, self.database.ping()).await;
        let (health, figure, latency_ms, detail) = match ping {
            Ok(Ok(elapsed)) => {
                let latency = millis(elapsed);
                let boots = self.database.boot_count().await.unwrap_or(0);
                (
                    ComponentHealth::Healthy,
                    format!("SELECT 1 in {latency:.2} ms · start #{boots}"),
                    Some(latency),
                    None,
                )
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "database health check failed");
                (
                    ComponentHealth::Unhealthy,
                    "not answering".into(),
                    None,
                    Some("query failed".into()),
                )
            }
            Err(_) => (
                ComponentHealth::Unhealthy,
                "not answering".into(),
                None,
                Some(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
            ),
        };
        ComponentStatus {
            id: "database".into(),
            name: "Database".into(),
            kind: ComponentKind::Database,
            health,
            address: self.database.display_url.clone(),
            figure,
            latency_ms,
            detail,
        }
    }
}

/// Where the mail workers send: the URL (shown without credentials) and, when it is the
/// embedded capture server, that server (for its message count).
#[derive(Clone)]
pub struct SmtpDestination {
    pub url: String,
    pub capture: Option<CaptureServer>,
}

impl HealthProbe {
    /// The app servers and worker processes that other processes of the cluster run: an
    /// app server's `/healthz` is checked like this process's own; a worker process is
    /// healthy while it heartbeats.
    async fn cluster_status(&self) -> Vec<ComponentStatus> {
        let Some(processes) = &self.processes else {
            return Vec::new();
        };
        let listed = match processes.list().await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(%error, "could not read the process list");
                return Vec::new();
            }
        };
        let local: Vec<String> = self.servers.list().into_iter().map(|server| server.id).collect();
        let checks = listed.into_iter().filter_map(|process| {
            let kind = match process.role {
                ProcessRole::App => ComponentKind::Server,
                ProcessRole::Worker => ComponentKind::Worker,
                _ => return None,
            };
            let id = match kind {
                ComponentKind::Server => format!("app@{}", process.address),
                _ => format!("worker@{}", process.id),
            };
            // A process gone for good stays listed for an hour; after a minute it is
            // history, not a component.
            let silent = (chrono::Utc::now() - process.last_heartbeat).num_seconds();
            if local.contains(&id) || (!process.up && silent > 60) {
                return None;
            }
            Some(async move {
                let down = ComponentStatus {
                    id: id.clone(),
                    name: id.clone(),
                    kind,
                    health: ComponentHealth::Unhealthy,
                    address: process.address.clone(),
                    figure: format!("no heartbeat for {silent} s"),
                    latency_ms: None,
                    detail: Some(format!("process {}", process.id)),
                };
                match (process.up, kind) {
                    (false, _) => down,
                    (true, ComponentKind::Server) => match process.address.parse() {
                        Ok(addr) => self.http_status(&id, &id, kind, addr).await,
                        Err(_) => down,
                    },
                    (true, _) => ComponentStatus {
                        health: ComponentHealth::Healthy,
                        figure: format!("heartbeat {silent} s ago · version {}", process.version),
                        ..down
                    },
                }
            })
        });
        futures_util::future::join_all(checks).await
    }

    /// Connects to the SMTP server the mail workers use and reads its 220 greeting,
    /// timed; nothing when this process knows of none.
    async fn smtp_status(&self) -> Option<ComponentStatus> {
        if self.smtp.url.is_empty() {
            return None;
        }
        let started = Instant::now();
        let outcome = tokio::time::timeout(PROBE_TIMEOUT, greeting(&self.smtp.url)).await;
        let latency = millis(started.elapsed());
        let (health, figure, latency_ms, detail) = match outcome {
            Ok(Ok(())) => {
                let stored = match &self.smtp.capture {
                    Some(capture) => format!(" · {} messages captured", capture.count().await.unwrap_or(0)),
                    None => String::new(),
                };
                (
                    ComponentHealth::Healthy,
                    format!("220 greeting in {latency:.1} ms{stored}"),
                    Some(latency),
                    None,
                )
            }
            Ok(Err(reason)) => (ComponentHealth::Unhealthy, "not answering".into(), None, Some(reason)),
            Err(_) => (
                ComponentHealth::Unhealthy,
                "not answering".into(),
                None,
                Some(format!("no greeting within {} ms", PROBE_TIMEOUT.as_millis())),
            ),
        };
        let name = if self.smtp.capture.is_some() {
            "Capture SMTP server"
        } else {
            "SMTP server"
        };
        Some(ComponentStatus {
            id: "smtp".into(),
            name: name.into(),
            kind: ComponentKind::Smtp,
            health,
            address: crate::storage::redact_url(&self.smtp.url),
            figure,
            latency_ms,
            detail,
        })
    }
}

/// Opens an SMTP connection, expects `220`, and says QUIT.
async fn greeting(url: &str) -> Result<(), String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let target = SmtpTarget::parse(url)?;
    let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|_| "connection refused".to_string())?;
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    stream.read_line(&mut line).await.map_err(|error| error.to_string())?;
    let _ = stream.get_mut().write_all(b"QUIT\r\n").await;
    if line.starts_with("220") {
        Ok(())
    } else {
        Err(format!("greeted with {:?}", line.trim_end()))
    }
}

/// A listener bound to 0.0.0.0 or [::] is reached through loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_probed_on_loopback() {
        let any: SocketAddr = "0.0.0.0:5001".parse().expect("addr");
        assert_eq!(reachable(any).to_string(), "127.0.0.1:5001");
        let specific: SocketAddr = "10.1.2.3:5001".parse().expect("addr");
        assert_eq!(reachable(specific), specific);
    }
}

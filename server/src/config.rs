//! Command-line flags, each with a `LIVEVIEW_*` environment fallback.

use std::{
    net::{SocketAddr, ToSocketAddrs},
    path::PathBuf,
};

use clap::Parser;

/// What the system runs with: every flag of `liveview` (parsed with the command line in
/// `main.rs`), or built in code for tests and benchmarks ([`Config::ephemeral`]).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// What this process runs: `all` (everything, the embedded default), `lb` (the load
    /// balancer over --backends), `app` (one app server on --listen), `worker` (the mail
    /// and in-app workers) or `dashboard` (the SPA, /status, the live stream, the control
    /// API, /metrics). Any number of each share one --database-url and one --bus-url.
    #[arg(long, env = "LIVEVIEW_ROLE", value_name = "ROLE", default_value = "all", value_parser = parse_role)]
    pub role: wire::ProcessRole,

    /// The app servers a `--role lb` balances over: `HOST:PORT,HOST:PORT,…`
    /// (health-checked, sticky by user). Each is named `app@HOST:PORT`, as the app
    /// process names itself.
    #[arg(long, env = "LIVEVIEW_BACKENDS", value_name = "ADDRS", value_delimiter = ',', value_parser = parse_backend)]
    pub backends: Vec<SocketAddr>,

    /// Where a `--role app` serves the notification system's API and end users' sockets.
    #[arg(long, env = "LIVEVIEW_LISTEN", value_name = "ADDR", value_parser = parse_addr)]
    pub listen: Option<SocketAddr>,

    /// Where the dashboard listens (SPA, /status, live-view API).
    #[arg(long, env = "LIVEVIEW_DASHBOARD", value_name = "ADDR", default_value = "127.0.0.1:3000", value_parser = parse_addr)]
    pub dashboard: SocketAddr,

    /// Where the load balancer listens for end users. For a `--role app` or `dashboard`:
    /// where the cluster's balancer is (the links it writes, the dashboard's status
    /// probe and load simulator).
    #[arg(long, env = "LIVEVIEW_LB", value_name = "ADDR", default_value = "127.0.0.1:8000", value_parser = parse_addr)]
    pub lb: SocketAddr,

    /// How many app servers to run behind the load balancer.
    #[arg(long, env = "LIVEVIEW_SERVERS", value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub servers: u16,

    /// Port of the first app server; the others take the next ports. 0 gives each an
    /// ephemeral port.
    #[arg(long, env = "LIVEVIEW_SERVER_PORT_BASE", value_name = "PORT", default_value_t = 5001)]
    pub server_port_base: u16,

    /// The IP address the app servers bind to.
    #[arg(long, env = "LIVEVIEW_SERVER_HOST", value_name = "IP", default_value = "127.0.0.1")]
    pub server_host: std::net::IpAddr,

    /// Data directory, created if absent; holds the SQLite file.
    #[arg(
        long,
        env = "LIVEVIEW_DATA",
        value_name = "DIR",
        default_value = "./data",
        global = true
    )]
    pub data: PathBuf,

    /// Database URL: `sqlite://path/to/file.db`, or `postgres://user:password@host/db`
    /// for several processes sharing one database. Overrides --data for the database
    /// (the data directory still holds this process's own files).
    #[arg(
        long,
        env = "LIVEVIEW_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,

    /// The bus that carries what crosses processes (control changes, and the live
    /// events, in-app routing and presence of a cluster): `redis://host:port`. Without
    /// it, the in-process bus: this process is the whole cluster.
    #[arg(long, env = "LIVEVIEW_BUS_URL", value_name = "URL", hide_env_values = true)]
    pub bus_url: Option<String>,

    /// What the processes of one cluster share to trust each other (at least 16
    /// characters): every bus message is signed with it and one signed otherwise is
    /// dropped; step tokens made by any dashboard are good at every balancer. Required
    /// with --bus-url.
    #[arg(long, env = "LIVEVIEW_CLUSTER_SECRET", value_name = "SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,

    /// Serve TLS on every HTTP listener (balancer, app servers, dashboard) with this
    /// certificate chain (PEM), and call the other processes over TLS. With --tls-key.
    #[arg(long, env = "LIVEVIEW_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "LIVEVIEW_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The certificates (PEM) this process trusts when it calls the others over TLS
    /// [default: the --tls-cert chain itself, for one certificate shared by the cluster].
    #[arg(long, env = "LIVEVIEW_TLS_CA", value_name = "FILE", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,

    /// The SMTP server the mail workers send to (`smtp://host:port`, optionally with
    /// `user:password@`). Without it they send to the embedded capture server.
    #[arg(long, env = "LIVEVIEW_SMTP_URL", value_name = "URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// Where the embedded capture SMTP server listens [default: 127.0.0.1:2525]. It runs
    /// unless --smtp-url points elsewhere; give both to run it anyway.
    #[arg(long, env = "LIVEVIEW_SMTP_SINK", value_name = "ADDR", value_parser = parse_addr)]
    pub smtp_sink: Option<SocketAddr>,

    /// How often the balancer checks each app server's `/healthz`, in milliseconds.
    #[arg(long, env = "LIVEVIEW_HEALTH_INTERVAL_MS", value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub health_interval_ms: u64,

    /// Failed checks in a row that take a healthy app server out.
    #[arg(long, env = "LIVEVIEW_HEALTH_FAILURES", value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub health_failures: u32,

    /// Passed checks in a row that put an unhealthy app server back.
    #[arg(long, env = "LIVEVIEW_HEALTH_RECOVERIES", value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub health_recoveries: u32,

    /// Start and stop app servers with the load, between MIN and MAX running (`1..4`):
    /// the process binds MAX servers and runs MIN at first (replaces --servers).
    #[arg(long, env = "LIVEVIEW_AUTOSCALE", value_name = "MIN..MAX")]
    pub autoscale: Option<crate::autoscale::ScaleRange>,

    /// How often the autoscaler evaluates the load, in milliseconds.
    #[arg(long, env = "LIVEVIEW_AUTOSCALE_EVERY_MS", value_name = "MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub autoscale_every_ms: u64,

    /// The proxies whose `X-Forwarded-For` names the client (networks or addresses,
    /// comma-separated): the balancer's own peers, and for an app server the balancer
    /// hosts. A header from any other peer is ignored.
    #[arg(long, env = "LIVEVIEW_TRUSTED_PROXIES", value_name = "NETS", value_delimiter = ',', default_value = "127.0.0.0/8,::1", value_parser = crate::access::proxies::parse_network)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// The IP-to-country database (MaxMind DB format) that places active users on the
    /// map. Without it their country is unknown.
    #[arg(
        long,
        env = "LIVEVIEW_GEOIP_DB",
        value_name = "FILE",
        default_value = "tools/node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb"
    )]
    pub geoip_db: PathBuf,

    /// The countries' shapes (a Natural Earth TopoJSON such as world-atlas's
    /// countries-110m.json) the monitoring page's map is drawn from.
    #[arg(
        long,
        env = "LIVEVIEW_WORLD_ATLAS",
        value_name = "FILE",
        default_value = "tools/node_modules/world-atlas/countries-110m.json"
    )]
    pub world_atlas: PathBuf,

    /// Who is emailed `error` and `critical` alerts, through the system's own mail queue
    /// (comma-separated; none: no email). The default reaches the embedded capture
    /// server's mailbox; with a real --smtp-url give your team's address.
    #[arg(long, env = "LIVEVIEW_ALERT_EMAIL", value_name = "ADDRS", value_delimiter = ',', default_value = "operators@liveview.example", value_parser = parse_email)]
    pub alert_email: Vec<String>,

    /// Where every alert notification is POSTed as Slack-compatible JSON (`{"text": …}`).
    #[arg(long, env = "LIVEVIEW_ALERT_WEBHOOK", value_name = "URL", hide_env_values = true, value_parser = parse_http_url)]
    pub alert_webhook: Option<String>,

    /// How often the alert rules are evaluated, in milliseconds.
    #[arg(long, env = "LIVEVIEW_ALERT_INTERVAL_MS", value_name = "MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub alert_interval_ms: u64,

    /// The currency the business figures report revenue in (ISO 4217); purchases in
    /// other currencies are reported beside it, never converted.
    #[arg(long, env = "LIVEVIEW_CURRENCY", value_name = "CODE", default_value = "EUR", value_parser = parse_currency)]
    pub currency: String,

    /// The time zone of the business figures' days, weeks and months (IANA, such as
    /// `Europe/Berlin`).
    #[arg(long, env = "LIVEVIEW_TIMEZONE", value_name = "ZONE", default_value = "UTC", value_parser = parse_timezone)]
    pub timezone: chrono_tz::Tz,

    /// How many messages the embedded capture server keeps (the newest).
    #[arg(long, env = "LIVEVIEW_MAILBOX_KEEP", value_name = "N", default_value_t = 50_000)]
    pub mailbox_keep: u64,

    /// How many mail workers claim and send mail; each sends a claimed batch over four
    /// SMTP connections side by side.
    #[arg(long, env = "LIVEVIEW_MAIL_WORKERS", value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub mail_workers: u16,

    /// How many in-app workers push to users' sockets concurrently.
    #[arg(long, env = "LIVEVIEW_INAPP_WORKERS", value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub inapp_workers: u16,

    /// Minutes a completed job is kept (for the queue counts and inspection) before it
    /// is pruned. Its notification and email rows are kept regardless.
    #[arg(
        long,
        env = "LIVEVIEW_KEEP_COMPLETED_JOBS",
        value_name = "MINUTES",
        default_value_t = 60
    )]
    pub keep_completed_jobs: u64,

    /// Benchmarks only: run without the live window's telemetry (no stage records or
    /// live events are made; component metrics still count), to measure what it costs.
    #[arg(long, hide = true)]
    pub without_live_telemetry: bool,

    /// Request journeys kept in memory for the live view and its API.
    #[arg(long, env = "LIVEVIEW_JOURNEYS", value_name = "COUNT", default_value_t = 1_000)]
    pub journeys: usize,

    /// Minutes of live-stream history kept for replay (in `DATA/history-frames/` and
    /// `DATA/history.db`).
    #[arg(long, env = "LIVEVIEW_HISTORY_MINUTES", value_name = "MINUTES", default_value_t = 60)]
    pub history_minutes: u64,

    /// Minutes of history with every metric sample; older ones keep one per minute.
    #[arg(
        long,
        env = "LIVEVIEW_HISTORY_FULL_MINUTES",
        value_name = "MINUTES",
        default_value_t = 10
    )]
    pub history_full_minutes: u64,

    /// Megabytes the history may take on disk; beyond it the oldest frames go first,
    /// whatever `--history-minutes` says (under heavy load the stream is tens of MB/s).
    #[arg(long, env = "LIVEVIEW_HISTORY_MAX_MB", value_name = "MB", default_value_t = 2048)]
    pub history_max_mb: u64,

    /// Multiplies every delay of the system (retry tiers, windows): 0.01 turns the
    /// 5-minute retry tier into 3 seconds.
    #[arg(long, env = "LIVEVIEW_TIME_SCALE", value_name = "F", default_value_t = 1.0, value_parser = parse_time_scale)]
    pub time_scale: f64,

    /// How many live-stream events are kept so a viewer that reconnects gets exactly what
    /// it missed; one that missed more gets a gap and a fresh snapshot.
    #[arg(long, env = "LIVEVIEW_LIVE_HISTORY", value_name = "N", default_value_t = crate::live::DEFAULT_HISTORY as u64, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub live_history: u64,

    /// Origins (`https://ops.example.com`), comma-separated, allowed to open the live
    /// stream and use the control API from a browser besides the dashboard's own; `*`
    /// allows any. Requests without an Origin header (non-browser clients) are allowed.
    #[arg(
        long,
        env = "LIVEVIEW_ALLOWED_ORIGINS",
        value_name = "ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Host names (`ops.example.com`, or with `:port`), comma-separated, that the
    /// dashboard is reached by besides its own address (behind a reverse proxy, say).
    /// A request naming any other host is refused (421), which defeats DNS rebinding.
    #[arg(long, env = "LIVEVIEW_DASHBOARD_NAMES", value_name = "NAMES", value_delimiter = ',')]
    pub dashboard_names: Vec<String>,

    /// How people get into the dashboard: `anonymous` (no sign-in; everyone who reaches
    /// it is an operator) or `login` (operators sign in; see `liveview operators`).
    /// [default: anonymous on a loopback address; on any other address the dashboard
    /// refuses to start without `login`]
    #[arg(long, env = "LIVEVIEW_DASHBOARD_AUTH", value_name = "MODE", value_parser = parse_auth_mode)]
    pub dashboard_auth: Option<wire::AuthMode>,

    /// How long an operator's sign-in lasts, in minutes.
    #[arg(long, env = "LIVEVIEW_SESSION_MINUTES", value_name = "MINUTES", default_value_t = 720, value_parser = clap::value_parser!(u64).range(1..=525_600))]
    pub session_minutes: u64,

    /// A bearer token that lets a scraper (Prometheus) read `/metrics` without signing in
    /// (`Authorization: Bearer TOKEN`). Only with `--dashboard-auth login`; without it,
    /// `/metrics` needs a signed-in session like every other page.
    #[arg(long, env = "LIVEVIEW_METRICS_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Directory holding the built SPA (Trunk's output).
    #[arg(long, env = "LIVEVIEW_SITE", value_name = "DIR", default_value = "dist")]
    pub site: PathBuf,
}

/// The command line: the system's flags, or a tool beside it.
#[derive(Debug, Clone, Parser)]
// A flag given twice takes its last value, as with most command lines.
#[command(name = "liveview", version, about, long_about = None, max_term_width = 100, args_override_self = true)]
/// Live View: a real notification system and a live window onto it.
///
/// With no arguments it starts, in one process, the dashboard, the load balancer and
/// three app servers on the embedded defaults (an SQLite file under ./data). Every
/// address takes port 0 to mean "pick a free one"; bound addresses are logged.
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Tools beside the system itself.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// The dashboard's operator accounts (for `--dashboard-auth login`).
    #[command(subcommand)]
    Operators(crate::operators::cli::OperatorsCommand),
    /// Benchmarks (print numbers; see BENCHMARKS.md).
    #[cfg(feature = "bench")]
    #[command(subcommand)]
    Bench(crate::bench::Bench),
}

/// The embedded capture server's default address.
pub const DEFAULT_SMTP_SINK: &str = "127.0.0.1:2525";

impl Config {
    /// The defaults of every flag (as `liveview` with none, environment aside).
    pub fn defaults() -> Self {
        // Every flag has a default, so an empty command line always parses.
        Cli::try_parse_from(["liveview"]).expect("the defaults parse").config
    }

    /// The whole system on loopback with every port picked by the system (the capture
    /// SMTP server's too), its data in `dir/data` and no SPA (`dir/no-site`): what tests
    /// and benchmarks start.
    pub fn ephemeral(dir: &std::path::Path) -> Self {
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Self {
            dashboard: loopback(0),
            lb: loopback(0),
            server_port_base: 0,
            smtp_sink: Some(loopback(0)),
            data: dir.join("data"),
            site: dir.join("no-site"),
            ..Self::defaults()
        }
    }

    /// The balancer's health-check policy from the flags.
    pub fn health_policy(&self) -> crate::balancer::HealthPolicy {
        let interval = std::time::Duration::from_millis(self.health_interval_ms);
        crate::balancer::HealthPolicy {
            interval,
            // A check must answer within half an interval (and never more than 500 ms).
            timeout: (interval / 2).min(std::time::Duration::from_millis(500)),
            failure_threshold: self.health_failures,
            recovery_threshold: self.health_recoveries,
        }
    }

    /// How the business figures are reported (`--currency`, `--timezone`), countries
    /// named by `geography` (read once, from `--geoip-db` and `--world-atlas`).
    pub fn reporting(
        &self,
        geography: std::sync::Arc<crate::analytics::geo::Geography>,
    ) -> crate::analytics::Reporting {
        crate::analytics::Reporting {
            currency: self.currency.clone(),
            timezone: self.timezone,
            geography,
        }
    }

    /// `--dashboard-auth`, or its default for the dashboard's address: `anonymous` is
    /// allowed only on loopback, since it makes everyone who can reach the dashboard an
    /// operator.
    pub fn auth_mode(&self) -> Result<wire::AuthMode, String> {
        let loopback = self.dashboard.ip().is_loopback();
        match self.dashboard_auth {
            Some(wire::AuthMode::Login) => Ok(wire::AuthMode::Login),
            None | Some(wire::AuthMode::Anonymous) if loopback => Ok(wire::AuthMode::Anonymous),
            _ => Err(format!(
                "the dashboard listens on {}, beyond loopback: start it with --dashboard-auth login \
                 (and add operators with `liveview operators add`), or listen on 127.0.0.1",
                self.dashboard
            )),
        }
    }

    /// `--tls-cert` and `--tls-key` (and `--tls-ca`), loaded; none without them.
    pub fn tls(&self) -> Result<Option<crate::tls::Tls>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => crate::tls::Tls::load(cert, key, self.tls_ca.as_deref()).map(Some),
            (None, None) if self.tls_ca.is_none() => Ok(None),
            _ => Err("TLS needs both --tls-cert and --tls-key (and --tls-ca only with them)".into()),
        }
    }

    /// `--cluster-secret`, checked; required with `--bus-url`, since anyone who can reach
    /// the Redis could otherwise speak for the cluster.
    pub fn cluster_secret(&self) -> Result<Option<crate::cluster::ClusterSecret>, String> {
        let secret = self
            .cluster_secret
            .as_deref()
            .map(crate::cluster::ClusterSecret::new)
            .transpose()?;
        if self.bus_url.is_some() && secret.is_none() {
            return Err(
                "--bus-url needs --cluster-secret: every process of the cluster signs what it sends with it".into(),
            );
        }
        Ok(secret)
    }

    /// The backends the balancer starts with, for a `--role lb` (its own app servers'
    /// otherwise).
    pub fn checked_backends(&self) -> Result<&[SocketAddr], String> {
        match self.role {
            wire::ProcessRole::Lb if self.backends.is_empty() => {
                Err("--role lb needs --backends HOST:PORT,…: the app servers it balances over".into())
            }
            _ => Ok(&self.backends),
        }
    }

    /// `--live-history` as a length.
    pub fn live_history_len(&self) -> usize {
        usize::try_from(self.live_history).unwrap_or(usize::MAX)
    }

    /// Where the embedded capture server listens, if it runs.
    /// Where the embedded capture server listens, if it runs: by default with the
    /// workers that send to it (`all`, `worker`) when no --smtp-url is given; in any
    /// role with an explicit --smtp-sink.
    pub fn smtp_sink_addr(&self) -> Option<SocketAddr> {
        match (&self.smtp_url, self.smtp_sink) {
            (None, sink) if self.role.works() => {
                Some(sink.unwrap_or_else(|| DEFAULT_SMTP_SINK.parse().expect("valid default")))
            }
            (_, sink) => sink,
        }
    }

    /// The addresses the app servers ask for: consecutive ports from the base, or all
    /// ephemeral when the base is 0.
    pub fn server_addrs(&self) -> Result<Vec<SocketAddr>, String> {
        match (self.role, self.listen) {
            (wire::ProcessRole::App, Some(listen)) => return Ok(vec![listen]),
            (wire::ProcessRole::App, None) => {
                return Err("--role app needs --listen ADDR: where its app server serves".into());
            }
            (role, _) if !role.serves() => return Ok(Vec::new()),
            _ => {}
        }
        let count = self.autoscale.map_or(self.servers, |range| range.max);
        (0..count)
            .map(|index| {
                let port = if self.server_port_base == 0 {
                    Some(0)
                } else {
                    self.server_port_base.checked_add(index)
                };
                port.map(|port| SocketAddr::new(self.server_host, port)).ok_or_else(|| {
                    format!(
                        "--server-port-base {} with --servers {} runs past port 65535",
                        self.server_port_base, self.servers
                    )
                })
            })
            .collect()
    }
}

fn parse_auth_mode(text: &str) -> Result<wire::AuthMode, String> {
    match text {
        "anonymous" => Ok(wire::AuthMode::Anonymous),
        "login" => Ok(wire::AuthMode::Login),
        _ => Err("expected anonymous or login".into()),
    }
}

fn parse_time_scale(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(scale) if scale.is_finite() && scale > 0.0 && scale <= 100.0 => Ok(scale),
        _ => Err("expected a number above 0 and at most 100".into()),
    }
}

fn parse_email(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        // `--alert-email ''`: nobody.
        return Ok(String::new());
    }
    match text.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && domain.contains('.')
                && text.len() <= 254
                && !text.contains(char::is_whitespace) =>
        {
            Ok(text.to_string())
        }
        _ => Err(format!("{text:?} is not an email address")),
    }
}

fn parse_http_url(text: &str) -> Result<String, String> {
    if (text.starts_with("http://") || text.starts_with("https://")) && text.len() <= 2048 {
        Ok(text.to_string())
    } else {
        Err("expected an http:// or https:// URL".into())
    }
}

fn parse_currency(text: &str) -> Result<String, String> {
    (text.len() == 3 && text.chars().all(|c| c.is_ascii_uppercase()))
        .then(|| text.to_string())
        .ok_or_else(|| "expected a three-letter ISO 4217 code such as EUR".into())
}

fn parse_timezone(text: &str) -> Result<chrono_tz::Tz, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an IANA time zone (such as UTC or Europe/Berlin)"))
}

/// Accepts `IP:PORT` or `HOST:PORT` (resolved once, first address wins).
fn parse_role(text: &str) -> Result<wire::ProcessRole, String> {
    wire::ProcessRole::parse(text).ok_or_else(|| "expected all, lb, app, worker or dashboard".into())
}

/// A backend as `HOST:PORT`, or as the `http://HOST:PORT` (`https://`) URL an operator
/// may paste; whether it is reached over TLS is the process's `--tls-cert`.
fn parse_backend(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let bare = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .unwrap_or(text)
        .trim_end_matches('/');
    parse_addr(bare)
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .map_err(|error| format!("expected HOST:PORT ({error})"))?
        .next()
        .ok_or_else(|| "resolves to no address".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Cli::try_parse_from(std::iter::once("liveview").chain(args.iter().copied())).map(|cli| cli.config)
    }

    #[test]
    fn defaults_match_the_design() {
        let config = parse(&[]).expect("defaults parse");
        assert_eq!(config.dashboard.to_string(), "127.0.0.1:3000");
        assert_eq!(config.lb.to_string(), "127.0.0.1:8000");
        let servers: Vec<String> = config
            .server_addrs()
            .expect("fits")
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(servers, ["127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:5003"]);
    }

    #[test]
    fn port_base_zero_makes_every_server_ephemeral() {
        let config = parse(&["--servers", "2", "--server-port-base", "0"]).expect("parses");
        assert!(config.server_addrs().expect("fits").iter().all(|addr| addr.port() == 0));
    }

    #[test]
    fn port_range_overflow_is_an_error_not_a_wrap() {
        let config = parse(&["--servers", "3", "--server-port-base", "65534"]).expect("parses");
        assert!(config.server_addrs().expect_err("overflows").contains("65535"));
    }

    #[test]
    fn the_capture_server_runs_unless_mail_goes_elsewhere() {
        assert_eq!(
            parse(&[]).expect("parses").smtp_sink_addr(),
            Some(DEFAULT_SMTP_SINK.parse().expect("addr"))
        );
        let elsewhere = parse(&["--smtp-url", "smtp://10.0.0.5:25"]).expect("parses");
        assert_eq!(elsewhere.smtp_sink_addr(), None);
        let both = parse(&["--smtp-url", "smtp://10.0.0.5:25", "--smtp-sink", "127.0.0.1:0"]).expect("parses");
        assert!(both.smtp_sink_addr().is_some());
    }

    #[test]
    fn health_flags_make_the_balancer_policy() {
        let policy = parse(&[
            "--health-interval-ms",
            "200",
            "--health-failures",
            "3",
            "--health-recoveries",
            "1",
        ])
        .expect("parses")
        .health_policy();
        assert_eq!(policy.interval.as_millis(), 200);
        assert_eq!(policy.timeout.as_millis(), 100, "half the interval");
        assert_eq!((policy.failure_threshold, policy.recovery_threshold), (3, 1));
        assert_eq!(
            parse(&[]).expect("parses").health_policy().timeout.as_millis(),
            500,
            "capped"
        );
        assert!(parse(&["--health-failures", "0"]).is_err());
    }

    #[test]
    fn live_stream_flags() {
        let defaults = parse(&[]).expect("parses");
        assert_eq!(defaults.live_history_len(), 10_000);
        assert!(defaults.allowed_origins.is_empty());
        let config = parse(&[
            "--live-history",
            "50",
            "--allowed-origins",
            "https://a.example,http://b.example:8080",
        ])
        .expect("parses");
        assert_eq!(config.live_history_len(), 50);
        assert_eq!(config.allowed_origins, ["https://a.example", "http://b.example:8080"]);
        assert!(parse(&["--live-history", "-1"]).is_err());
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(parse(&["--servers", "0"]).is_err());
        assert!(parse(&["--servers", "many"]).is_err());
        assert!(parse(&["--dashboard", "not an address"]).is_err());
        assert!(parse(&["--frobnicate"]).is_err());
    }

    #[test]
    fn host_names_resolve() {
        let config = parse(&["--lb", "localhost:0"]).expect("localhost resolves");
        assert!(config.lb.ip().is_loopback());
    }
}

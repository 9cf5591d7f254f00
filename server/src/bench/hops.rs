//! `liveview bench hops`: what a purchase's network hops cost on this machine with
//! nothing behind them, to tell how much of the pipeline's CPU the wire alone takes.
//!
//! Every purchase crosses three conversations that must be real:
//!
//! - **http**: the client's POST through the balancer to an app server and back. Here the
//!   body asks for an amount of 0, so the full middleware chain runs (request id, session
//!   token from the cache, body parsing) and validation answers 400 before any query.
//! - **smtp**: one email over one of the mail workers' own SMTP conversations (lettre on
//!   a `TCP_NODELAY` stream, as many conversations as 16 workers × 4 lanes hold) to the
//!   embedded capture server, which stores it as it does in the pipeline.
//! - **ws**: one in-app frame handed to the user's connection (the in-app worker's
//!   [`Registry::push`]), sent through the balancer to the user's socket client, and its
//!   ack back the same way, with no query (the frame is the next in order).
//!
//! `all` runs the three together, one of each per tick: the CPU of a purchase's hops with
//! nothing else — no outbox, no queue claims, no telemetry unless asked for. The whole
//! system runs in this process as for `bench pipeline`, its workers idle.
//!
//! [`Registry::push`]: crate::websocket::Registry::push

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;

use super::{Arrivals, BenchUser, Latencies, MAX_IN_FLIGHT, client, cores, cpu_seconds, sign_up_users, start_system};
use crate::{
    Running, now_ms,
    websocket::{Frame, Registry},
    workers::mail::{SmtpClient, compose},
};

#[derive(Debug, Clone, clap::Args)]
pub struct HopsArgs {
    /// Rates to run each hop at, per second.
    #[arg(long, value_delimiter = ',', default_value = "1000,2400")]
    pub rates: Vec<u32>,
    /// Seconds each hop runs at each rate.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Users holding an in-app socket through the balancer, as in `bench pipeline`.
    #[arg(long, default_value_t = 40)]
    pub users: usize,
    /// SMTP conversations open side by side (the 16 mail workers' 4 lanes each).
    #[arg(long, default_value_t = 64)]
    pub smtp_conversations: usize,
    /// Keeps the live window's telemetry on (journeys and the live stream of the
    /// requests' stages); by default only the hops run.
    #[arg(long)]
    pub with_live_telemetry: bool,
}

/// A hop, or all three at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Hop {
    Http,
    Smtp,
    Ws,
    All,
}

impl Hop {
    fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Smtp => "smtp",
            Self::Ws => "ws",
            Self::All => "all",
        }
    }

    fn includes(self, hop: Hop) -> bool {
        self == hop || self == Self::All
    }
}

/// An answer must come within this, or the operation counts as failed.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// The pipeline's aim, purchases per second: what CPU per purchase the machine allows.
const AIM_PER_SECOND: f64 = 7000.0;

/// What the hops share: the system, its users, and the SMTP conversations.
struct Bench {
    http: reqwest::Client,
    lb: String,
    users: Vec<BenchUser>,
    registry: Arc<Registry>,
    /// The highest seq each user's connection has been handed, by user index.
    seqs: Mutex<Vec<i64>>,
    smtp: Mutex<Vec<SmtpClient>>,
    smtp_free: Semaphore,
}

/// Microseconds each completed operation took, and how many failed.
#[derive(Default)]
struct Outcome {
    micros: Vec<u32>,
    failed: usize,
}

type Outcomes = Arc<Mutex<HashMap<Hop, Outcome>>>;

pub async fn hops(args: HopsArgs) -> anyhow::Result<()> {
    let telemetry = if args.with_live_telemetry { "on" } else { "off" };
    let (running, dir) = start_system(16, 8, !args.with_live_telemetry).await?;
    let result = run(&args, &running, telemetry).await;
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(args: &HopsArgs, running: &Running, telemetry: &str) -> anyhow::Result<()> {
    anyhow::ensure!(args.users > 0, "--users must be at least 1");
    anyhow::ensure!(args.smtp_conversations > 0, "--smtp-conversations must be at least 1");
    let lb = running.lb().to_string();
    let http = client()?;
    let arrivals: Arrivals = Arc::default();
    let users = sign_up_users(&http, &lb, args.users, &arrivals).await?;
    let seqs = newest_seqs(running, &users).await?;
    let smtp_url = format!(
        "smtp://{}",
        running
            .smtp_sink
            .ok_or_else(|| anyhow::anyhow!("the embedded capture server is not running"))?
    );
    let conversations = (0..args.smtp_conversations)
        .map(|_| SmtpClient::new(&smtp_url))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let bench = Arc::new(Bench {
        http,
        lb,
        users,
        registry: running.registry.clone(),
        seqs: Mutex::new(seqs),
        smtp: Mutex::new(conversations),
        smtp_free: Semaphore::new(args.smtp_conversations),
    });

    let idle_before = cpu_seconds(std::process::id());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = (cpu_seconds(std::process::id()) - idle_before) / 2.0;
    println!(
        "liveview bench hops: users={} smtp-conversations={} telemetry={telemetry} cores={}; the idle system uses {:.1}% of a core",
        args.users,
        args.smtp_conversations,
        cores(),
        idle * 100.0
    );
    println!(
        "{:>7} {:>8} {:>8} {:>7} {:>8} {:>9} {:>9} {:>8}",
        "rate/s", "hop", "done", "failed", "done/s", "p50", "p99", "cpu/op"
    );
    let mut serial = 0usize;
    let mut failed = 0usize;
    for &rate in &args.rates {
        for hop in [Hop::Http, Hop::Smtp, Hop::Ws, Hop::All] {
            let cpu_before = cpu_seconds(std::process::id());
            let started = Instant::now();
            let outcomes = drive(&bench, hop, rate, args.seconds, &mut serial).await;
            let elapsed = started.elapsed().as_secs_f64();
            let cpu = cpu_seconds(std::process::id()) - cpu_before;
            let mut outcomes = std::mem::take(&mut *outcomes.lock().unwrap_or_else(|poison| poison.into_inner()));
            let mut done_all = usize::MAX;
            for part in [Hop::Http, Hop::Smtp, Hop::Ws] {
                if !hop.includes(part) {
                    continue;
                }
                let Outcome {
                    micros,
                    failed: part_failed,
                } = outcomes.remove(&part).unwrap_or_default();
                let done = micros.len();
                done_all = done_all.min(done);
                failed += part_failed;
                let latencies = Latencies::of(micros);
                let label = if hop == Hop::All {
                    format!("{}:{}", hop.name(), part.name())
                } else {
                    part.name().into()
                };
                print!(
                    "{:>7} {:>8} {:>8} {:>7} {:>8.0} {:>9} {:>9}",
                    rate,
                    label,
                    done,
                    part_failed,
                    done as f64 / elapsed,
                    latencies.p50(),
                    latencies.p99()
                );
                if hop == Hop::All {
                    println!();
                } else {
                    println!(" {:>5.0} µs", cpu * 1e6 / done.max(1) as f64);
                }
            }
            if hop == Hop::All {
                println!(
                    "{:>7} {:>8} {:>8} {:>7} {:>8.0} {:>9} {:>9} {:>5.0} µs  (one of each: a purchase's hops)",
                    rate,
                    "all",
                    done_all,
                    "",
                    done_all as f64 / elapsed,
                    "",
                    "",
                    cpu * 1e6 / done_all.max(1) as f64
                );
            }
        }
    }
    println!(
        "on {} cores, {AIM_PER_SECOND} purchases/s leave {:.0} µs of CPU per purchase for everything",
        cores(),
        cores() as f64 * 1e6 / AIM_PER_SECOND
    );
    // A hop that failed did less work than it should have: its figures would flatter.
    anyhow::ensure!(
        failed == 0,
        "{failed} operations failed or went unanswered; the figures above do not count"
    );
    Ok(())
}

/// Runs `hop` at `rate` per second for `seconds` (open loop) and waits for every answer.
async fn drive(bench: &Arc<Bench>, hop: Hop, rate: u32, seconds: u64, serial: &mut usize) -> Outcomes {
    let outcomes: Outcomes = Arc::default();
    let total = (u64::from(rate) * seconds) as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = Vec::with_capacity(total * 2);
    for _ in 0..total {
        ticker.tick().await;
        *serial += 1;
        let serial = *serial;
        if hop.includes(Hop::Ws) {
            // Handed over here, in tick order, so each user's frames arrive in seq order.
            let acked = bench.push(serial);
            let outcomes = outcomes.clone();
            let pushed = Instant::now();
            tasks.push(tokio::spawn(async move {
                let acked = match acked {
                    Some(acked) => matches!(tokio::time::timeout(ANSWER_WITHIN, acked).await, Ok(Ok(()))),
                    None => false,
                };
                record(&outcomes, Hop::Ws, acked.then(|| pushed.elapsed()));
            }));
        }
        for part in [Hop::Http, Hop::Smtp] {
            if !hop.includes(part) {
                continue;
            }
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                record(&outcomes, part, None);
                continue;
            };
            let (bench, outcomes) = (bench.clone(), outcomes.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                let started = Instant::now();
                let ok = match part {
                    Hop::Http => bench.http_hop(serial).await,
                    _ => bench.smtp_hop(serial).await,
                };
                record(&outcomes, part, ok.then(|| started.elapsed()));
            }));
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    outcomes
}

fn record(outcomes: &Outcomes, hop: Hop, took: Option<Duration>) {
    let mut outcomes = outcomes.lock().unwrap_or_else(|poison| poison.into_inner());
    let outcome = outcomes.entry(hop).or_default();
    match took {
        Some(took) => outcome.micros.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX)),
        None => outcome.failed += 1,
    }
}

impl Bench {
    /// A purchase that validation refuses: 400 naming `amountCents`, through the balancer.
    async fn http_hop(&self, serial: usize) -> bool {
        let user = &self.users[serial % self.users.len()];
        let body = wire::NewPurchase {
            item: format!("item {serial}"),
            amount_cents: 0,
            currency: "EUR".into(),
            item_id: None,
        };
        let Ok(response) = self
            .http
            .post(format!("http://{}/api/purchases", self.lb))
            .bearer_auth(&user.token)
            .json(&body)
            .send()
            .await
        else {
            return false;
        };
        let refused =
            response.status() == reqwest::StatusCode::BAD_REQUEST && response.headers().contains_key("x-served-by");
        let named = response
            .json::<wire::ErrorBody>()
            .await
            .is_ok_and(|error| error.fields.contains_key("amountCents"));
        refused && named
    }

    /// One receipt over a free SMTP conversation; true on the server's 250.
    async fn smtp_hop(&self, serial: usize) -> bool {
        let Ok(_free) = self.smtp_free.acquire().await else {
            return false;
        };
        let Some(mut conversation) = self.smtp.lock().unwrap_or_else(|poison| poison.into_inner()).pop() else {
            return false;
        };
        let to = format!("bench{}@example.com", serial % self.users.len());
        let body = format!("Hello Bench,\n\nthank you for buying item {serial} for 9.99 EUR.\nOrder: hop-{serial}\n");
        let sent = match compose(&format!("hop-{serial}"), &to, "Your receipt", &body) {
            Ok(message) => tokio::time::timeout(ANSWER_WITHIN, conversation.send(&message))
                .await
                .is_ok_and(|reply| reply.is_ok_and(|accepted| accepted.code == 250)),
            Err(_) => false,
        };
        self.smtp
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(conversation);
        sent
    }

    /// Hands the next frame in order to a user's connection, as the in-app worker does;
    /// the receiver resolves on the client's ack.
    fn push(&self, serial: usize) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let index = serial % self.users.len();
        let mut seqs = self.seqs.lock().unwrap_or_else(|poison| poison.into_inner());
        let seq = seqs[index] + 1;
        let frame = Frame {
            id: format!("hop-{serial}"),
            seq,
            kind: "purchase".into(),
            title: "Purchase confirmed".into(),
            body: format!("item {serial} for 9.99 EUR"),
            created_at: now_ms(),
        };
        let (acked, _server) = self.registry.push(&self.users[index].id, frame).ok()?;
        // Only a frame handed over takes its seq, so the next one is again next in order.
        seqs[index] = seq;
        Some(acked)
    }
}

/// Each user's highest notification seq: their connection has pushed up to it once
/// their signup and login notifications are delivered.
async fn newest_seqs(running: &Running, users: &[BenchUser]) -> anyhow::Result<Vec<i64>> {
    let mut seqs = Vec::with_capacity(users.len());
    for user in users {
        let (newest, undelivered): (i64, i64) = crate::with_connection!(&mut running.database.read().await?, |c| {
            sqlx::query_as(
            "SELECT COALESCE(MAX(seq), 0), COUNT(*) FILTER (WHERE delivered_at_ms IS NULL) FROM notifications WHERE user_id = $1",
        )
        .bind(&user.id)
        .fetch_one(c)
        .await
        })?;
        anyhow::ensure!(
            undelivered == 0,
            "user {} still has {undelivered} notifications undelivered",
            user.id
        );
        seqs.push(newest);
    }
    Ok(seqs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_includes_every_hop_and_each_hop_only_itself() {
        for hop in [Hop::Http, Hop::Smtp, Hop::Ws] {
            assert!(Hop::All.includes(hop));
            assert!(hop.includes(hop));
        }
        assert!(!Hop::Http.includes(Hop::Ws));
        assert!(!Hop::Smtp.includes(Hop::All));
    }

    #[test]
    fn the_flags_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Command {
            #[command(flatten)]
            args: HopsArgs,
        }
        let command = Command::parse_from(["hops", "--rates", "100,200", "--seconds", "3"]);
        assert_eq!(command.args.rates, vec![100, 200]);
        assert_eq!((command.args.seconds, command.args.smtp_conversations), (3, 64));
    }
}

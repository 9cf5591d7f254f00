//! Scaling that acts (`--autoscale MIN..MAX`). Every evaluation reads the load — the
//! CPU and memory of the busiest process that runs app servers, the balancer's response
//! time and error rate (seed 001's thresholds: 70 %, 80 %, 2 s, 2 %) and a prediction
//! from the stored rollups (the usual active users of the coming hour, same weekday,
//! against now) — and may change the count of servers to run by one; then it starts or
//! stops servers until that many run. In `--role all` they are this process's own (it
//! binds MAX and runs MIN at first); in a cluster, the `dashboard` that holds the
//! autoscale lease asks the `app` processes that run them, over the bus.
//!
//! It never oscillates: scaling up needs a reason held for [`UP_AFTER`] evaluations,
//! scaling down needs every figure well under its threshold (a band of its own, not just
//! under the up threshold) for [`DOWN_AFTER`] evaluations, and after any change nothing
//! changes for [`COOLDOWN`] evaluations. Each start and stop is in the activity feed
//! (type `autoscale`, with its reason) and the log; the canvas shows the server start or
//! stop.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;
use wire::ActivityType;

use crate::{
    cluster::lease::Lease,
    servers::{
        ServerPool,
        remote::{Action, Outcome, Remote},
    },
    storage::{Database, WriteBatch},
    telemetry::{Telemetry, sampler::Sampler},
};

/// Evaluations a reason to scale up must hold.
pub const UP_AFTER: u32 = 3;
/// Evaluations everything must stay low before scaling down.
pub const DOWN_AFTER: u32 = 12;
/// Evaluations after a change before the next.
pub const COOLDOWN: u32 = 6;

/// `--autoscale MIN..MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleRange {
    pub min: u16,
    pub max: u16,
}

impl std::str::FromStr for ScaleRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (min, max) = text
            .split_once("..")
            .ok_or_else(|| format!("{text:?}: expected MIN..MAX, such as 1..4"))?;
        let parse = |part: &str| {
            part.trim()
                .parse::<u16>()
                .map_err(|_| format!("{part:?} is not a count of servers"))
        };
        let (min, max) = (parse(min)?, parse(max)?);
        if min == 0 || min > max || max > 64 {
            return Err("expected 1 ≤ MIN ≤ MAX ≤ 64".into());
        }
        Ok(Self { min, max })
    }
}

/// What one evaluation sees.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    /// This process's CPU, percent of the machine.
    pub cpu: f64,
    /// This process's resident memory, percent of the machine's.
    pub memory: f64,
    /// The balancer's mean response time over the last second, ms.
    pub latency_ms: f64,
    /// Percent of the last second's requests answered 5xx.
    pub error_rate: f64,
    /// The usual active users of the coming hour against now (none without history).
    pub predicted: Option<f64>,
}

/// Seed 001's thresholds, and the band under which scaling down is allowed.
const UP: Load = Load {
    cpu: 70.0,
    memory: 80.0,
    latency_ms: 2_000.0,
    error_rate: 2.0,
    predicted: Some(1.5),
};
const DOWN: Load = Load {
    cpu: 30.0,
    memory: 60.0,
    latency_ms: 500.0,
    error_rate: 0.5,
    predicted: Some(1.0),
};

/// Why to scale up, if anything is over its threshold.
pub fn pressure(load: &Load) -> Option<String> {
    if load.cpu > UP.cpu {
        return Some(format!("CPU {:.0} % above {:.0} %", load.cpu, UP.cpu));
    }
    if load.memory > UP.memory {
        return Some(format!("memory {:.0} % above {:.0} %", load.memory, UP.memory));
    }
    if load.latency_ms > UP.latency_ms {
        return Some(format!(
            "response time {:.0} ms above {:.0} ms",
            load.latency_ms, UP.latency_ms
        ));
    }
    if load.error_rate > UP.error_rate {
        return Some(format!(
            "error rate {:.1} % above {:.0} %",
            load.error_rate, UP.error_rate
        ));
    }
    match (load.predicted, UP.predicted) {
        (Some(ratio), Some(limit)) if ratio > limit => Some(format!(
            "a peak predicted: this hour usually has {ratio:.1}× today's active users"
        )),
        _ => None,
    }
}

/// Whether everything is low enough to give a server back.
pub fn quiet(load: &Load) -> bool {
    load.cpu < DOWN.cpu
        && load.memory < DOWN.memory
        && load.latency_ms < DOWN.latency_ms
        && load.error_rate < DOWN.error_rate
        && load
            .predicted
            .is_none_or(|ratio| ratio <= DOWN.predicted.unwrap_or(1.0))
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Up(String),
    Down(String),
    Hold,
}

/// The memory between evaluations that makes the decisions stable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hysteresis {
    pressed: u32,
    calm: u32,
    cooling: u32,
}

impl Hysteresis {
    /// One evaluation with `running` servers up.
    pub fn decide(&mut self, load: &Load, running: u16, range: ScaleRange) -> Verdict {
        let reason = pressure(load);
        self.pressed = if reason.is_some() { self.pressed + 1 } else { 0 };
        self.calm = if quiet(load) { self.calm + 1 } else { 0 };
        if self.cooling > 0 {
            self.cooling -= 1;
            return Verdict::Hold;
        }
        if let Some(reason) = reason
            && self.pressed >= UP_AFTER
            && running < range.max
        {
            self.changed();
            return Verdict::Up(reason);
        }
        if self.calm >= DOWN_AFTER && running > range.min {
            self.changed();
            return Verdict::Down(format!(
                "quiet for {DOWN_AFTER} evaluations: CPU {:.0} %, response time {:.0} ms, error rate {:.1} %",
                load.cpu, load.latency_ms, load.error_rate
            ));
        }
        Verdict::Hold
    }

    fn changed(&mut self) {
        self.pressed = 0;
        self.calm = 0;
        self.cooling = COOLDOWN;
    }
}

/// How long an action's effect is taken for granted before the sample shows it (the
/// samples, the cluster's reports among them, are up to a second or two behind).
const EXPECT_FOR: Duration = Duration::from_secs(10);
/// The lease that makes one dashboard of a cluster the autoscaler.
const LEASE: &str = "autoscale";
const LEASE_FOR: Duration = Duration::from_secs(15);

/// The autoscaler of a dashboard process (`--role all`, or `dashboard` in a cluster,
/// where the app servers it starts and stops run in `app` processes it asks over the
/// bus). It keeps a count of servers to run, in the database: hysteresis changes the
/// count, and every evaluation brings the running servers to it — so a process that
/// comes back with all its servers up, or a server stopped by hand, is corrected too.
pub struct Autoscaler {
    pool: ServerPool,
    remote: Remote,
    sampler: Arc<Sampler>,
    db: Database,
    telemetry: Telemetry,
    range: ScaleRange,
    /// This process, as the lease's holder.
    holder: String,
}

/// The app servers as the autoscaler sees them: id and whether it runs.
type Fleet = Vec<(String, bool)>;

impl Autoscaler {
    pub fn new(
        pool: ServerPool,
        remote: Remote,
        sampler: Arc<Sampler>,
        db: Database,
        telemetry: Telemetry,
        range: ScaleRange,
        holder: String,
    ) -> Self {
        Self {
            pool,
            remote,
            sampler,
            db,
            telemetry,
            range,
            holder,
        }
    }

    /// Evaluates every `every`, while this process holds the autoscale lease, until
    /// shutdown.
    pub async fn run(self, every: Duration, shutdown: CancellationToken) {
        let mut hysteresis = Hysteresis::default();
        let mut expected: HashMap<String, (bool, Instant)> = HashMap::new();
        let mut lease = Lease::new(LEASE, self.holder.clone(), LEASE_FOR.max(every * 3));
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            match lease.held(&self.db).await {
                Ok(true) => {}
                Ok(false) => {
                    hysteresis = Hysteresis::default();
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "the autoscale lease could not be read");
                    continue;
                }
            }
            if let Err(error) = self.evaluate(&mut hysteresis, &mut expected).await {
                tracing::warn!(%error, "the autoscaler could not evaluate");
            }
        }
        let _ = lease.release(&self.db).await;
    }

    async fn evaluate(
        &self,
        hysteresis: &mut Hysteresis,
        expected: &mut HashMap<String, (bool, Instant)>,
    ) -> Result<(), sqlx::Error> {
        let sample = self.sampler.current().await;
        let fleet = fleet(&sample, expected);
        if fleet.is_empty() {
            // No app process has reported yet.
            return Ok(());
        }
        let count = running(&fleet);
        let load = Load {
            cpu: sample.load.cpu,
            memory: sample.load.memory,
            latency_ms: sample.metrics.average_latency,
            error_rate: sample.metrics.error_rate * 100.0,
            predicted: self.predicted().await,
        };
        let stored = self.wanted().await?;
        let mut want = stored.unwrap_or(self.range.min).clamp(self.range.min, self.range.max);
        let reason = match hysteresis.decide(&load, count, self.range) {
            Verdict::Hold => None,
            Verdict::Up(reason) => {
                want = (count + 1).min(self.range.max);
                Some(reason)
            }
            Verdict::Down(reason) => {
                want = count.saturating_sub(1).max(self.range.min);
                Some(reason)
            }
        };
        if stored != Some(want) {
            self.want(want).await?;
        }
        self.reconcile(fleet, want, reason, expected).await;
        Ok(())
    }

    /// Starts or stops servers until `want` run; each change is announced with
    /// `reason` (the decision's), or as keeping the count.
    async fn reconcile(
        &self,
        mut fleet: Fleet,
        want: u16,
        reason: Option<String>,
        expected: &mut HashMap<String, (bool, Instant)>,
    ) {
        let why = |count: u16| {
            reason
                .clone()
                .unwrap_or_else(|| format!("keeping the autoscaler's count of {want}, not {count}"))
        };
        loop {
            let count = running(&fleet);
            let (start, pick) = match count.cmp(&want) {
                std::cmp::Ordering::Equal => return,
                // The first stopped one, or the last running one.
                std::cmp::Ordering::Less => (true, fleet.iter().position(|(_, up)| !up)),
                std::cmp::Ordering::Greater => (false, fleet.iter().rposition(|(_, up)| *up)),
            };
            let Some(index) = pick else {
                return;
            };
            let server = fleet[index].0.clone();
            let action = if start {
                Action::Start { server: server.clone() }
            } else {
                Action::Stop { server: server.clone() }
            };
            match crate::servers::remote::on_server(&self.pool, &self.remote, action).await {
                Some(Outcome::Done) => {
                    let (verb, after) = if start {
                        ("Started", count + 1)
                    } else {
                        ("Stopped", count - 1)
                    };
                    self.announce(
                        &format!("{verb} {server} ({count} → {after} servers): {}", why(count)),
                        &server,
                    )
                    .await;
                }
                // Already so: the sample was behind.
                Some(Outcome::AlreadyRunning | Outcome::AlreadyStopped) => {}
                Some(Outcome::BindFailed { reason }) => {
                    tracing::warn!(%server, %reason, "the autoscaler could not start a server");
                    return;
                }
                None => {
                    tracing::warn!(%server, "no process answered the autoscaler");
                    return;
                }
            }
            fleet[index].1 = start;
            expected.insert(server, (start, Instant::now()));
        }
    }

    /// The count of servers to run, as last decided.
    async fn wanted(&self) -> Result<Option<u16>, sqlx::Error> {
        let servers: Option<i64> = crate::with_connection!(&mut self.db.read().await?, |c| {
            sqlx::query_scalar("SELECT servers FROM autoscale WHERE id = 1")
                .fetch_optional(c)
                .await
        })?;
        Ok(servers.and_then(|servers| u16::try_from(servers).ok()))
    }

    async fn want(&self, servers: u16) -> Result<(), sqlx::Error> {
        crate::with_connection!(&mut self.db.writing().await?, |c| {
            sqlx::query(
                "INSERT INTO autoscale (id, servers, decided_at_ms) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET servers = excluded.servers, decided_at_ms = excluded.decided_at_ms",
            )
            .bind(i64::from(servers))
            .bind(crate::now_ms())
            .execute(c)
            .await
            .map(drop)
        })
    }

    /// The usual active users of the coming hour (the mean of the same weekday and hour
    /// of the four weeks before) against the current ones.
    async fn predicted(&self) -> Option<f64> {
        let now = crate::now_ms();
        let next_hour = now - now.rem_euclid(3_600_000) + 3_600_000;
        let current = crate::analytics::figures::active_now(&self.db, now).await.ok()? as f64;
        let usual = crate::alerts::usual_active_users(&self.db, next_hour).await.ok()??;
        (current >= 1.0).then(|| usual / current)
    }

    /// A decision, into the activity feed and the log.
    async fn announce(&self, description: &str, server: &str) {
        tracing::info!(server, "autoscale: {description}");
        let event = crate::analytics::activity::event(
            ActivityType::Autoscale,
            ("", "autoscaler"),
            description.to_string(),
            [("server", server.to_string())],
        );
        let mut batch = WriteBatch::default();
        crate::analytics::activity::record(&mut batch, &event);
        if let Err(error) = self.db.commit(batch).await {
            tracing::warn!(%error, "the autoscale decision could not be recorded");
            return;
        }
        crate::analytics::activity::announce(&self.telemetry, event);
    }
}

/// The servers of the sample (every process's, in a cluster), with what was just done
/// to them taken as true until the sample shows it or [`EXPECT_FOR`] has passed.
fn fleet(sample: &wire::Sample, expected: &mut HashMap<String, (bool, Instant)>) -> Fleet {
    let fleet: Fleet = sample
        .components
        .iter()
        .filter_map(|component| match component {
            wire::ComponentMetrics::Server(server) => Some((server.id.clone(), server.running)),
            _ => None,
        })
        .collect();
    expected.retain(|server, (running, at)| {
        at.elapsed() < EXPECT_FOR && fleet.iter().any(|(id, up)| id == server && up != running)
    });
    fleet
        .into_iter()
        .map(|(id, up)| {
            let up = expected.get(&id).map_or(up, |(running, _)| *running);
            (id, up)
        })
        .collect()
}

fn running(fleet: &Fleet) -> u16 {
    u16::try_from(fleet.iter().filter(|(_, up)| *up).count()).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANGE: ScaleRange = ScaleRange { min: 1, max: 3 };

    fn busy() -> Load {
        Load {
            cpu: 85.0,
            ..Load::default()
        }
    }

    #[test]
    fn ranges_parse() {
        assert_eq!("1..4".parse(), Ok(ScaleRange { min: 1, max: 4 }));
        assert!("0..4".parse::<ScaleRange>().is_err());
        assert!("4..2".parse::<ScaleRange>().is_err());
        assert!("3".parse::<ScaleRange>().is_err());
    }

    #[test]
    fn scales_up_only_after_the_pressure_holds_and_never_past_max() {
        let mut hysteresis = Hysteresis::default();
        assert_eq!(hysteresis.decide(&busy(), 1, RANGE), Verdict::Hold);
        assert_eq!(hysteresis.decide(&busy(), 1, RANGE), Verdict::Hold);
        let Verdict::Up(reason) = hysteresis.decide(&busy(), 1, RANGE) else {
            panic!("up after {UP_AFTER}");
        };
        assert!(reason.contains("CPU 85 %"), "{reason}");
        // Cooling down: busy still, nothing changes for COOLDOWN evaluations; the
        // pressure held all along, so the next one adds a server.
        for _ in 0..COOLDOWN {
            assert_eq!(hysteresis.decide(&busy(), 2, RANGE), Verdict::Hold);
        }
        assert!(matches!(hysteresis.decide(&busy(), 2, RANGE), Verdict::Up(_)));
        // Pressure that stops during the cooldown must hold UP_AFTER times again.
        for _ in 0..COOLDOWN {
            assert_eq!(
                hysteresis.decide(&Load::default(), 3, ScaleRange { min: 1, max: 4 }),
                Verdict::Hold
            );
        }
        for _ in 0..UP_AFTER - 1 {
            assert_eq!(
                hysteresis.decide(&busy(), 3, ScaleRange { min: 1, max: 4 }),
                Verdict::Hold
            );
        }
        assert!(matches!(
            hysteresis.decide(&busy(), 3, ScaleRange { min: 1, max: 4 }),
            Verdict::Up(_)
        ));
        let mut at_max = Hysteresis::default();
        for _ in 0..10 {
            assert_eq!(at_max.decide(&busy(), 3, RANGE), Verdict::Hold);
        }
    }

    #[test]
    fn a_load_between_the_bands_neither_adds_nor_removes() {
        // Under the up threshold, over the down band: hold forever, at any count.
        let middle = Load {
            cpu: 50.0,
            latency_ms: 800.0,
            ..Load::default()
        };
        let mut hysteresis = Hysteresis::default();
        for _ in 0..100 {
            assert_eq!(hysteresis.decide(&middle, 2, RANGE), Verdict::Hold);
        }
    }

    #[test]
    fn scales_down_after_a_long_quiet_and_never_under_min() {
        let mut hysteresis = Hysteresis::default();
        let idle = Load::default();
        for _ in 0..DOWN_AFTER - 1 {
            assert_eq!(hysteresis.decide(&idle, 3, RANGE), Verdict::Hold);
        }
        assert!(matches!(hysteresis.decide(&idle, 3, RANGE), Verdict::Down(_)));
        // One busy evaluation in the quiet starts the count again.
        let mut interrupted = Hysteresis::default();
        for n in 0..DOWN_AFTER + DOWN_AFTER / 2 {
            let load = if n == DOWN_AFTER - 2 { busy() } else { idle };
            assert_eq!(interrupted.decide(&load, 3, RANGE), Verdict::Hold, "at {n}");
        }
        let mut at_min = Hysteresis::default();
        for _ in 0..DOWN_AFTER * 2 {
            assert_eq!(at_min.decide(&idle, 1, RANGE), Verdict::Hold);
        }
    }

    #[test]
    fn a_predicted_peak_is_a_reason() {
        let peak = Load {
            predicted: Some(2.0),
            ..Load::default()
        };
        assert!(pressure(&peak).expect("a reason").contains("peak predicted"));
        assert!(!quiet(&peak));
    }
}

//! Scaling that acts (`--autoscale MIN..MAX`): the process binds MAX app servers, runs
//! MIN, and every evaluation reads the load — this process's CPU and memory, the
//! balancer's response time and error rate (seed 001's thresholds: 70 %, 80 %, 2 s,
//! 2 %) and a prediction from the stored rollups (the usual active users of the coming
//! hour, same weekday, against now) — and starts or stops one server.
//!
//! It never oscillates: scaling up needs a reason held for [`UP_AFTER`] evaluations,
//! scaling down needs every figure well under its threshold (a band of its own, not just
//! under the up threshold) for [`DOWN_AFTER`] evaluations, and after any change nothing
//! changes for [`COOLDOWN`] evaluations. Each decision is in the activity feed (type
//! `autoscale`, with its reason) and the log; the canvas shows the server start or stop.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use wire::ActivityType;

use crate::{
    servers::ServerPool,
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

/// This process's CPU time so far, from `/proc/self/stat` (Linux; clock ticks of 1/100 s).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command may hold spaces: the fields after it start past the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// This process's resident memory as a percent of the machine's.
fn memory_percent() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total_kb: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(resident_pages * 4.0 / total_kb * 100.0)
}

pub struct Autoscaler {
    pool: ServerPool,
    sampler: Arc<Sampler>,
    db: Database,
    telemetry: Telemetry,
    range: ScaleRange,
}

impl Autoscaler {
    pub fn new(pool: ServerPool, sampler: Arc<Sampler>, db: Database, telemetry: Telemetry, range: ScaleRange) -> Self {
        Self {
            pool,
            sampler,
            db,
            telemetry,
            range,
        }
    }

    fn running(&self) -> Vec<String> {
        self.pool
            .list()
            .into_iter()
            .filter(|server| server.running)
            .map(|server| server.id)
            .collect()
    }

    /// Stops the servers beyond MIN at once, then evaluates every `every` until shutdown.
    pub async fn run(self, every: Duration, shutdown: CancellationToken) {
        let running = self.running();
        for id in running.iter().skip(usize::from(self.range.min)) {
            let _ = self.pool.stop(id).await;
        }
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let mut hysteresis = Hysteresis::default();
        let mut before = (std::time::Instant::now(), cpu_seconds().unwrap_or(0.0));
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let elapsed = before.0.elapsed().as_secs_f64().max(0.001);
            let cpu_now = cpu_seconds().unwrap_or(before.1);
            let cpu = (cpu_now - before.1) / elapsed / cores * 100.0;
            before = (std::time::Instant::now(), cpu_now);
            let metrics = self.sampler.current().await.metrics;
            let load = Load {
                cpu,
                memory: memory_percent().unwrap_or(0.0),
                latency_ms: metrics.average_latency,
                error_rate: metrics.error_rate * 100.0,
                predicted: self.predicted().await,
            };
            let running = self.running();
            let count = u16::try_from(running.len()).unwrap_or(u16::MAX);
            match hysteresis.decide(&load, count, self.range) {
                Verdict::Hold => {}
                Verdict::Up(reason) => {
                    let stopped = self.pool.list().into_iter().find(|server| !server.running);
                    if let Some(server) = stopped
                        && self.pool.start(&server.id).await.is_ok()
                    {
                        let what = format!("Started {} ({count} → {} servers): {reason}", server.id, count + 1);
                        self.announce(&what, &server.id).await;
                    }
                }
                Verdict::Down(reason) => {
                    if let Some(id) = running.last()
                        && self.pool.stop(id).await.is_ok()
                    {
                        let what = format!("Stopped {id} ({count} → {} servers): {reason}", count - 1);
                        self.announce(&what, id).await;
                    }
                }
            }
        }
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
    fn a_predicted_peak_is_a_reason_and_the_machine_readings_work() {
        let peak = Load {
            predicted: Some(2.0),
            ..Load::default()
        };
        assert!(pressure(&peak).expect("a reason").contains("peak predicted"));
        assert!(!quiet(&peak));
        assert!(cpu_seconds().is_some_and(|seconds| seconds >= 0.0));
        assert!(memory_percent().is_some_and(|percent| percent > 0.0 && percent < 100.0));
    }
}

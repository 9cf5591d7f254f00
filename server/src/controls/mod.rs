//! Controls that act on the real system: delays injected into the real stages, and step
//! mode ([`step`]), where a traced request waits at every stage boundary until someone
//! steps it. The pipeline calls these; telemetry only records what they did.
//!
//! The settings are the wire's [`ControlSettings`]; changing them publishes
//! `controls:changed` to every viewer (done by the dashboard's handler) and, over the
//! [`Bus`], to every process of the cluster ([`follow`]). Each change is stamped with its
//! time and process, and a process keeps the newest stamp it has seen, so concurrent
//! changes from two dashboards end in the same settings everywhere, whatever order the
//! bus delivered them in. The database keeps the newest too (`control_settings`): every
//! process reads it at start and every [`REFRESH_EVERY`] ([`refresh`]), so one that
//! starts after a change, or missed it on the bus, acts on it all the same.

pub mod step;

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use tokio_util::sync::CancellationToken;
use wire::{ControlSettings, Delays, LiveEvent};

use crate::{
    bus::{Bus, Channel, ProcessId},
    storage::Database,
    telemetry::Telemetry,
};

pub use step::{StepChange, StepToken, Stepping};

/// How often a process reads the settings in force from the database, for a change the
/// bus did not bring it.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// The longest delay that can be injected into one stage.
pub const MAX_DELAY_MS: u64 = 30_000;
/// The highest rate (requests per second) the continuous load generator may be set to.
pub const MAX_SIMULATION_RATE: f64 = 1_000.0;

/// Each delay with where it is injected and its name on the wire.
fn delays_by_point(delays: &Delays) -> [(DelayPoint, &'static str, u64); 7] {
    let Delays {
        load_balancer,
        server_processing,
        database_operation,
        queueing,
        worker_processing,
        email_delivery,
        websocket_delivery,
    } = *delays;
    [
        (DelayPoint::LoadBalancer, "loadBalancer", load_balancer),
        (DelayPoint::ServerProcessing, "serverProcessing", server_processing),
        (DelayPoint::Database, "databaseOperation", database_operation),
        (DelayPoint::Queueing, "queueing", queueing),
        (DelayPoint::WorkerProcessing, "workerProcessing", worker_processing),
        (DelayPoint::EmailDelivery, "emailDelivery", email_delivery),
        (DelayPoint::WebSocketDelivery, "websocketDelivery", websocket_delivery),
    ]
}

/// The fields of `settings` that are out of range, for a 400 (nothing is applied then).
pub fn problems(settings: &ControlSettings) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let speed = settings.playback_speed;
    if !(ControlSettings::MIN_SPEED..=ControlSettings::MAX_SPEED).contains(&speed) {
        problems.push((
            "playbackSpeed".to_string(),
            format!(
                "must be between {} and {}",
                ControlSettings::MIN_SPEED,
                ControlSettings::MAX_SPEED
            ),
        ));
    }
    for (_, field, delay) in delays_by_point(&settings.delays) {
        if delay > MAX_DELAY_MS {
            problems.push((format!("delays.{field}"), format!("must be at most {MAX_DELAY_MS} ms")));
        }
    }
    if !(0.0..=MAX_SIMULATION_RATE).contains(&settings.simulation_rate) {
        problems.push((
            "simulationRate".to_string(),
            format!("must be between 0 and {MAX_SIMULATION_RATE} requests per second"),
        ));
    }
    problems
}

/// Where a delay is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayPoint {
    LoadBalancer,
    ServerProcessing,
    Database,
    Queueing,
    WorkerProcessing,
    EmailDelivery,
    WebSocketDelivery,
}

/// When and where a change of the settings was made: the newer wins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Stamp {
    pub at_ms: i64,
    pub process: ProcessId,
}

/// A change of the settings, as the bus carries it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub stamp: Stamp,
    pub settings: ControlSettings,
}

#[derive(Default)]
pub struct Controls {
    settings: RwLock<(Option<Stamp>, ControlSettings)>,
    /// Requests in step mode.
    steps: Stepping,
    /// Where the settings in force are kept (none in unit tests).
    store: Option<Database>,
}

impl Controls {
    /// With the cluster's secret, step tokens are signed with its key and good at every
    /// process; without, with a key of this process's own. The settings start as the
    /// database keeps them.
    pub async fn new(secret: Option<&crate::cluster::ClusterSecret>, store: Database) -> Result<Self, sqlx::Error> {
        let controls = Self {
            settings: RwLock::default(),
            steps: secret.map_or_else(Stepping::default, |secret| Stepping::with_key(secret.key("step-token"))),
            store: Some(store),
        };
        controls.reload().await?;
        Ok(controls)
    }

    /// Applies the settings the database keeps, if newer than those in force; answers
    /// them if so.
    async fn reload(&self) -> Result<Option<ControlSettings>, sqlx::Error> {
        let Some(store) = &self.store else { return Ok(None) };
        let row: Option<(i64, String, String)> = crate::with_connection!(&mut store.read().await?, |c| {
            sqlx::query_as("SELECT at_ms, process, settings FROM control_settings WHERE id = 1")
                .fetch_optional(c)
                .await
        })?;
        let Some((at_ms, process, settings)) = row else {
            return Ok(None);
        };
        let Ok(settings) = serde_json::from_str::<ControlSettings>(&settings) else {
            tracing::warn!("the stored control settings do not decode (another version?); ignored");
            return Ok(None);
        };
        let stamp = Stamp {
            at_ms,
            process: ProcessId(process),
        };
        Ok(self.apply(Some(stamp), settings))
    }

    /// Keeps `change` as the settings in force, unless the database has a newer one.
    async fn store(&self, change: &Change) -> Result<(), sqlx::Error> {
        let Some(store) = &self.store else { return Ok(()) };
        let settings = serde_json::to_string(&change.settings).expect("settings serialize");
        crate::with_connection!(&mut store.writing().await?, |c| {
            sqlx::query(
                "INSERT INTO control_settings (id, at_ms, process, settings) VALUES (1, $1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms, process = excluded.process, settings = excluded.settings \
                 WHERE excluded.at_ms > control_settings.at_ms \
                 OR (excluded.at_ms = control_settings.at_ms AND excluded.process > control_settings.process)",
            )
            .bind(change.stamp.at_ms)
            .bind(&change.stamp.process.0)
            .bind(settings)
            .execute(c)
            .await
            .map(drop)
        })
    }

    pub fn settings(&self) -> ControlSettings {
        self.settings
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .1
            .clone()
    }

    /// Applies a change made here, keeps it in the database and publishes it to every
    /// other process; returns what is now in force. A database or bus that cannot take
    /// it is logged: the change holds here.
    pub async fn change(&self, bus: &Bus, settings: ControlSettings) -> ControlSettings {
        let stamp = Stamp {
            at_ms: crate::now_ms(),
            process: bus.me().clone(),
        };
        let applied = self
            .apply(Some(stamp.clone()), settings)
            .unwrap_or_else(|| self.settings());
        let change = Change {
            stamp,
            settings: applied.clone(),
        };
        if let Err(error) = self.store(&change).await {
            tracing::warn!(%error, "a controls change could not be kept in the database");
        }
        if let Err(error) = bus.publish(Channel::Controls, &change).await {
            tracing::warn!(%error, "a controls change could not reach the other processes");
        }
        applied
    }

    /// Sets the settings, clamped to what is allowed, if `stamp` is newer than the one in
    /// force (always, without one); answers what was set, or `None` when a newer change
    /// had already won.
    fn apply(&self, stamp: Option<Stamp>, mut settings: ControlSettings) -> Option<ControlSettings> {
        settings.playback_speed = if settings.playback_speed.is_finite() {
            settings
                .playback_speed
                .clamp(ControlSettings::MIN_SPEED, ControlSettings::MAX_SPEED)
        } else {
            1.0
        };
        let delays = &mut settings.delays;
        for delay in [
            &mut delays.load_balancer,
            &mut delays.server_processing,
            &mut delays.database_operation,
            &mut delays.queueing,
            &mut delays.worker_processing,
            &mut delays.email_delivery,
            &mut delays.websocket_delivery,
        ] {
            *delay = (*delay).min(MAX_DELAY_MS);
        }
        settings.simulation_rate = if settings.simulation_rate.is_finite() {
            settings.simulation_rate.clamp(0.0, MAX_SIMULATION_RATE)
        } else {
            0.0
        };
        let mut current = self.settings.write().unwrap_or_else(|poison| poison.into_inner());
        if let (Some(new), Some(old)) = (&stamp, &current.0)
            && new <= old
        {
            return None;
        }
        *current = (stamp.or_else(|| current.0.clone()), settings.clone());
        Some(settings)
    }

    pub fn delay(&self, point: DelayPoint) -> Duration {
        let settings = self.settings.read().unwrap_or_else(|poison| poison.into_inner());
        let millis = delays_by_point(&settings.1.delays)
            .into_iter()
            .find(|(at, _, _)| *at == point)
            .map_or(0, |(_, _, millis)| millis);
        Duration::from_millis(millis)
    }

    /// Waits the delay injected at `point`, if any: a real wait in the real stage.
    pub async fn inject(&self, point: DelayPoint) {
        let delay = self.delay(point);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    pub fn steps(&self) -> &Stepping {
        &self.steps
    }

    /// Waits at a stage boundary if `request_id` runs in step mode; returns at once
    /// otherwise (one atomic load when nothing is being stepped).
    pub async fn boundary(&self, request_id: &str) {
        self.steps.boundary(request_id).await;
    }

    /// A boundary inside a worker, holding a claimed job: it waits for the request's
    /// response first (so a stepped journey shows its queue adds and response before any
    /// delivery), and passes by itself after [`step::WORKER_STEP_WAIT`], well inside the
    /// job's lease, so a person who stops stepping never makes a delivery run twice.
    pub async fn worker_boundary(&self, request_id: &str) {
        self.steps
            .worker_boundary_within(request_id, step::WORKER_STEP_WAIT)
            .await;
    }
}

/// Applies the changes other processes publish, and tells this process's viewers. Runs
/// until shutdown.
pub async fn follow(bus: Bus, controls: Arc<Controls>, telemetry: Telemetry, shutdown: CancellationToken) {
    bus.from_others(Channel::Controls, "control changes", shutdown, |change: Change| {
        if let Some(applied) = controls.apply(Some(change.stamp), change.settings) {
            telemetry.event(LiveEvent::ControlsChanged(applied));
        }
        std::future::ready(())
    })
    .await;
}

/// Reads the settings in force from the database every [`REFRESH_EVERY`], and tells this
/// process's viewers when they were newer than what it had (a change the bus did not
/// bring). Runs until shutdown.
pub async fn refresh(controls: Arc<Controls>, telemetry: Telemetry, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(REFRESH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match controls.reload().await {
            Ok(Some(applied)) => telemetry.event(LiveEvent::ControlsChanged(applied)),
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "the control settings could not be read"),
        }
    }
}

/// On a cluster: sends this process's step changes to the others and applies theirs
/// (see [`step`]), until shutdown.
pub async fn share_steps(bus: Bus, controls: Arc<Controls>, shutdown: CancellationToken) {
    let Some(mut changes) = controls.steps().share() else {
        return;
    };
    let sending = {
        let (bus, shutdown) = (bus.clone(), shutdown.clone());
        async move {
            loop {
                let change = tokio::select! {
                    () = shutdown.cancelled() => return,
                    change = changes.recv() => change,
                };
                let Some(change) = change else { return };
                if let Err(error) = bus.publish(Channel::Steps, &change).await {
                    tracing::warn!(%error, ?change, "a step change did not reach the other processes");
                }
            }
        }
    };
    let applying = bus.from_others(Channel::Steps, "step changes", shutdown, |change: StepChange| {
        controls.steps().apply(change);
        std::future::ready(())
    });
    tokio::join!(sending, applying);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_change_wins_whatever_order_it_arrives_in() {
        let stamp = |at_ms, process: &str| Stamp {
            at_ms,
            process: ProcessId(process.into()),
        };
        let with_delay = |ms| ControlSettings {
            delays: Delays {
                queueing: ms,
                ..Delays::default()
            },
            ..ControlSettings::default()
        };
        let (here, there) = (Controls::default(), Controls::default());
        let changes = [
            (stamp(10, "a"), with_delay(100)),
            (stamp(10, "b"), with_delay(200)),
            (stamp(5, "c"), with_delay(300)),
        ];
        for (stamp, settings) in changes.iter().cloned() {
            here.apply(Some(stamp), settings);
        }
        for (stamp, settings) in changes.iter().rev().cloned() {
            there.apply(Some(stamp), settings);
        }
        assert_eq!(here.settings(), there.settings());
        assert_eq!(
            here.settings().delays.queueing,
            200,
            "the latest time, then the higher process id"
        );
    }

    #[test]
    fn settings_are_clamped() {
        let controls = Controls::default();
        let mut wanted = ControlSettings {
            playback_speed: 50.0,
            ..Default::default()
        };
        wanted.delays.database_operation = 10_000_000;
        let applied = controls.apply(None, wanted).expect("no stamp always applies");
        assert_eq!(applied.playback_speed, ControlSettings::MAX_SPEED);
        assert_eq!(applied.delays.database_operation, MAX_DELAY_MS);
        assert_eq!(
            controls.delay(DelayPoint::Database),
            Duration::from_millis(MAX_DELAY_MS)
        );
        assert_eq!(controls.delay(DelayPoint::LoadBalancer), Duration::ZERO);
    }
}

//! Controls that act on the real system: delays injected into the real stages, and step
//! mode, where a traced request waits at every stage boundary until someone steps it.
//!
//! The settings are the wire's [`ControlSettings`]; changing them publishes
//! `controls:changed` to every viewer (done by the dashboard's handler).

use std::{
    collections::HashMap,
    sync::{
        Mutex, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use app::wire::{ControlSettings, Delays};
use tokio::sync::{Semaphore, watch};

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
/// A stepped request left waiting this long continues on its own, so a forgotten step
/// never holds a request (and its connection) forever.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(300);

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

/// One request in step mode.
struct Stepped {
    /// Steps granted and not yet taken: one boundary each, to whoever waited first.
    gate: Semaphore,
    /// Whether the request has had its HTTP response. Its jobs are in the queues from the
    /// commit on, but workers wait for this before taking steps, so the journey steps
    /// through the request's own stages (queue adds, response) before any delivery's.
    responded: watch::Sender<bool>,
}

#[derive(Default)]
pub struct Controls {
    settings: RwLock<ControlSettings>,
    /// Requests in step mode.
    stepped: Mutex<HashMap<String, std::sync::Arc<Stepped>>>,
    /// How many requests are in step mode: the fast path reads only this.
    stepped_count: AtomicUsize,
}

impl Controls {
    pub fn settings(&self) -> ControlSettings {
        self.settings
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Replaces the settings after clamping them to what is allowed; returns what is now
    /// in force.
    pub fn update(&self, mut settings: ControlSettings) -> ControlSettings {
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
        *self.settings.write().unwrap_or_else(|poison| poison.into_inner()) = settings.clone();
        settings
    }

    pub fn delay(&self, point: DelayPoint) -> Duration {
        let settings = self.settings.read().unwrap_or_else(|poison| poison.into_inner());
        let millis = delays_by_point(&settings.delays)
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

    /// Puts a request in step mode: from now on it waits at every stage boundary.
    pub fn start_stepping(&self, request_id: &str) {
        let mut stepped = self.stepped.lock().unwrap_or_else(|poison| poison.into_inner());
        let fresh = Stepped {
            gate: Semaphore::new(0),
            responded: watch::Sender::new(false),
        };
        if stepped
            .insert(request_id.to_string(), std::sync::Arc::new(fresh))
            .is_none()
        {
            self.stepped_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lets a stepped request pass one boundary. False if it is not in step mode.
    pub fn step(&self, request_id: &str) -> bool {
        let stepped = self.stepped.lock().unwrap_or_else(|poison| poison.into_inner());
        match stepped.get(request_id) {
            Some(stepped) => {
                stepped.gate.add_permits(1);
                true
            }
            None => false,
        }
    }

    /// Takes a request out of step mode (it finished); a waiting boundary is released.
    pub fn stop_stepping(&self, request_id: &str) {
        let removed = self
            .stepped
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(request_id);
        if let Some(stepped) = removed {
            self.stepped_count.fetch_sub(1, Ordering::Relaxed);
            stepped.gate.close();
            stepped.responded.send_replace(true);
        }
    }

    /// The stepped request has had its response: its workers may take steps now.
    pub fn responded(&self, request_id: &str) {
        if self.stepped_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(stepped) = self
            .stepped
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(request_id)
        {
            stepped.responded.send_replace(true);
        }
    }

    pub fn is_stepping(&self, request_id: &str) -> bool {
        self.stepped_count.load(Ordering::Relaxed) > 0
            && self
                .stepped
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .contains_key(request_id)
    }

    /// Waits for one step if the request is in step mode.
    pub async fn boundary(&self, request_id: &str) {
        self.boundary_within(request_id, STEP_TIMEOUT).await;
    }

    /// [`boundary`](Self::boundary), giving up after `limit`: a worker waits on a claimed
    /// job, and must not wait past the job's lease, or another worker would claim and
    /// deliver it again.
    pub async fn boundary_within(&self, request_id: &str, limit: Duration) {
        self.pass(request_id, limit, false).await;
    }

    /// A worker's boundary: [`boundary_within`](Self::boundary_within), but first the
    /// request must have had its response (see [`Stepped::responded`]); both within `limit`.
    pub async fn worker_boundary_within(&self, request_id: &str, limit: Duration) {
        self.pass(request_id, limit, true).await;
    }

    async fn pass(&self, request_id: &str, limit: Duration, after_response: bool) {
        if self.stepped_count.load(Ordering::Relaxed) == 0 || request_id.is_empty() {
            return;
        }
        let stepped = self
            .stepped
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(request_id)
            .cloned();
        let Some(stepped) = stepped else {
            return;
        };
        let step = async {
            if after_response {
                let _ = stepped.responded.subscribe().wait_for(|responded| *responded).await;
            }
            // Closed (no longer stepped): go on without a permit.
            if let Ok(permit) = stepped.gate.acquire().await {
                permit.forget();
            }
        };
        // Forgotten (timed out): go on.
        let _ = tokio::time::timeout(limit, step).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn settings_are_clamped() {
        let controls = Controls::default();
        let mut wanted = ControlSettings {
            playback_speed: 50.0,
            ..Default::default()
        };
        wanted.delays.database_operation = 10_000_000;
        let applied = controls.update(wanted);
        assert_eq!(applied.playback_speed, ControlSettings::MAX_SPEED);
        assert_eq!(applied.delays.database_operation, MAX_DELAY_MS);
        assert_eq!(
            controls.delay(DelayPoint::Database),
            Duration::from_millis(MAX_DELAY_MS)
        );
        assert_eq!(controls.delay(DelayPoint::LoadBalancer), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_stepped_request_passes_exactly_one_boundary_per_step() {
        let controls = Arc::new(Controls::default());
        controls.start_stepping("r1");
        let passed = Arc::new(AtomicUsize::new(0));
        let walker = {
            let (controls, passed) = (controls.clone(), passed.clone());
            tokio::spawn(async move {
                for _ in 0..3 {
                    controls.boundary("r1").await;
                    passed.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        controls.boundary("other").await; // not stepped: passes at once
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(passed.load(Ordering::SeqCst), 0, "waits for a step");
        assert!(controls.step("r1"));
        wait_for(|| passed.load(Ordering::SeqCst) == 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(passed.load(Ordering::SeqCst), 1, "one step, one boundary");
        controls.stop_stepping("r1");
        walker.await.expect("released when stepping stops");
        assert!(!controls.step("r1"));
    }

    #[tokio::test]
    async fn a_bounded_boundary_gives_up_without_a_step() {
        let controls = Controls::default();
        controls.start_stepping("r1");
        let started = std::time::Instant::now();
        tokio::time::timeout(
            Duration::from_secs(5),
            controls.boundary_within("r1", Duration::from_millis(100)),
        )
        .await
        .expect("passes by itself after its limit");
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "but waits that long first"
        );
        assert!(controls.step("r1"), "still stepped: the next boundary waits again");
    }

    async fn wait_for(condition: impl Fn() -> bool) {
        for _ in 0..200 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached");
    }
}

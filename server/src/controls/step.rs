//! Step mode: a traced request waits at every stage boundary until an operator steps it
//! (`POST /api/live-view/requests/{id}/step`), one stage per step, while all other
//! traffic flows on.
//!
//! Only the dashboard starts it. It hands out short-lived [`StepToken`]s (and the load
//! simulator uses one for `"step": true`); the balancer puts a request in step mode only
//! when its `X-LiveView-Step` header carries a valid one, and strips the header
//! otherwise. At most [`MAX_STEPPED`] requests are stepped at once: the oldest is let go
//! when another starts. The time a request spends waiting at its boundaries is kept, so
//! the app servers' request timeout counts only the time it was not paused.
//!
//! On a cluster a request's stages run in several processes (the balancer, an app
//! server, the workers), and so do its boundaries: each process has its own table, and
//! what changes one — a request entering step mode, a step, its response, its end — is
//! sent to the others as a [`StepChange`] over the bus ([`super::share_steps`]). A step
//! is granted in every process, as it is here when it comes before the request reaches
//! its next boundary; the process whose boundary takes it says so ([`StepChange::Took`]),
//! and the others withdraw theirs, so one step moves the request one boundary wherever
//! it is. Only two boundaries waiting at the same moment in two processes (a purchase's
//! email and in-app jobs) may both pass on one step.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hmac::{KeyInit, Mac};
use tokio::sync::{Semaphore, mpsc, watch};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// A stepped request left waiting this long at one boundary continues on its own, so a
/// forgotten step never holds a request (and its connection) forever.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest a worker waits at one step boundary. A job passes at most three of them
/// per claim (pickup, the delivery attempt and, in-app, the ack), so 3 × this stays under
/// [`crate::workers::LEASE`] (60 s).
pub const WORKER_STEP_WAIT: Duration = Duration::from_secs(15);
/// Requests in step mode at once; a person steps one or two, a flood must not grow this.
pub const MAX_STEPPED: usize = 64;
/// How long a step token may be used after the dashboard issued it.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

/// `X-LiveView-Step: <token>`: `<expiry, ms since the epoch>.<HMAC-SHA256 of it, hex>`,
/// signed with this process's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepToken {
    pub value: String,
    pub expires_at_ms: i64,
}

/// Step changes waiting to go out on the bus; step mode is for a person's few requests.
const SHARE_BACKLOG: usize = 1_024;

/// A change of step mode made in one process, as the bus carries it to the others.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", tag = "change", content = "requestId")]
pub enum StepChange {
    /// The balancer put the request in step mode.
    Start(String),
    /// An operator stepped it once.
    Step(String),
    /// A boundary of this process took the step: the others withdraw it.
    Took(String),
    /// Its app server answered it: its workers may take steps.
    Responded(String),
    /// Its journey ended (or the table was full): no boundary waits for it any more.
    Stop(String),
}

/// One request in step mode.
struct Stepped {
    /// Steps granted and not yet taken: one boundary each, to whoever waited first.
    gate: Semaphore,
    /// Whether the request has had its HTTP response. Its jobs are in the queues from the
    /// commit on, but workers wait for this before taking steps, so the journey steps
    /// through the request's own stages (queue adds, response) before any delivery's.
    responded: watch::Sender<bool>,
    /// When it entered step mode, to let the oldest go when the table is full.
    since: Instant,
    paused: Mutex<PauseClock>,
}

/// Time spent waiting at boundaries: while at least one wait is on, the clock runs.
#[derive(Default)]
struct PauseClock {
    waiting: usize,
    since: Option<Instant>,
    total: Duration,
}

impl PauseClock {
    fn begin(&mut self) {
        if self.waiting == 0 {
            self.since = Some(Instant::now());
        }
        self.waiting += 1;
    }

    fn end(&mut self) {
        self.waiting = self.waiting.saturating_sub(1);
        if self.waiting == 0
            && let Some(since) = self.since.take()
        {
            self.total += since.elapsed();
        }
    }

    fn paused(&self) -> Duration {
        self.total + self.since.map_or(Duration::ZERO, |since| since.elapsed())
    }
}

/// Ends one wait on the clock however the wait ends (stepped, released, timed out, or
/// its future dropped).
struct Waiting<'a>(&'a Mutex<PauseClock>);

impl<'a> Waiting<'a> {
    fn begin(clock: &'a Mutex<PauseClock>) -> Self {
        clock.lock().unwrap_or_else(|poison| poison.into_inner()).begin();
        Self(clock)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner()).end();
    }
}

/// The requests in step mode and the secret their tokens are signed with.
pub struct Stepping {
    secret: [u8; 32],
    requests: Mutex<HashMap<String, Arc<Stepped>>>,
    /// How many requests are in step mode: the fast path reads only this.
    count: AtomicUsize,
    /// On a cluster: where this process's changes go, to be sent to the others.
    shared: OnceLock<mpsc::Sender<StepChange>>,
}

impl Default for Stepping {
    /// A secret of this process's own: its tokens are good here only.
    fn default() -> Self {
        let mut secret = [0u8; 32];
        // The OS random source failing is not something the process can recover from.
        getrandom::fill(&mut secret).expect("the OS random source works");
        Self::with_key(secret)
    }
}

impl Stepping {
    /// Tokens signed with `secret` (the cluster's step-token key): good at every process
    /// that holds it.
    pub fn with_key(secret: [u8; 32]) -> Self {
        Self {
            secret,
            requests: Mutex::default(),
            count: AtomicUsize::new(0),
            shared: OnceLock::new(),
        }
    }

    /// From now on this process's changes are also handed to the receiver, for the other
    /// processes of the cluster. Once: a second call gets `None`.
    pub fn share(&self) -> Option<mpsc::Receiver<StepChange>> {
        let (sender, receiver) = mpsc::channel(SHARE_BACKLOG);
        self.shared.set(sender).ok().map(|()| receiver)
    }

    fn tell_others(&self, change: StepChange) {
        if let Some(shared) = self.shared.get()
            && shared.try_send(change).is_err()
        {
            tracing::warn!("a step change was not sent to the other processes: too many at once");
        }
    }

    /// Applies a change another process made.
    pub fn apply(&self, change: StepChange) {
        match change {
            StepChange::Start(id) => {
                self.start_here(&id);
            }
            StepChange::Step(id) => {
                if let Some(stepped) = self.get(&id) {
                    stepped.gate.add_permits(1);
                }
            }
            StepChange::Took(id) => {
                if let Some(stepped) = self.get(&id) {
                    stepped.gate.forget_permits(1);
                }
            }
            StepChange::Responded(id) => {
                self.responded_here(&id);
            }
            StepChange::Stop(id) => {
                self.stop_here(&id);
            }
        }
    }

    fn mac(&self, expires_at_ms: i64) -> HmacSha256 {
        // HMAC takes a key of any length.
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("any key length");
        mac.update(b"liveview-step:");
        mac.update(expires_at_ms.to_string().as_bytes());
        mac
    }

    /// A token that starts step mode on requests sent with it for [`TOKEN_TTL`].
    pub fn issue_token(&self) -> StepToken {
        let expires_at_ms = crate::now_ms() + TOKEN_TTL.as_millis() as i64;
        let signature = hex::encode(self.mac(expires_at_ms).finalize().into_bytes());
        StepToken {
            value: format!("{expires_at_ms}.{signature}"),
            expires_at_ms,
        }
    }

    /// Whether `token` was issued here and has not expired.
    pub fn token_valid(&self, token: &str) -> bool {
        let Some((expires, signature)) = token.split_once('.') else {
            return false;
        };
        let (Ok(expires_at_ms), Ok(signature)) = (expires.parse::<i64>(), hex::decode(signature)) else {
            return false;
        };
        let now = crate::now_ms();
        let live = now <= expires_at_ms && expires_at_ms <= now + TOKEN_TTL.as_millis() as i64;
        live && self.mac(expires_at_ms).verify_slice(&signature).is_ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Stepped>>> {
        self.requests.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Puts a request in step mode: from now on it waits at every stage boundary. With
    /// [`MAX_STEPPED`] already stepped, the oldest is let go first.
    pub fn start(&self, request_id: &str) {
        if let Some(oldest) = self.start_here(request_id) {
            self.tell_others(StepChange::Stop(oldest));
        }
        self.tell_others(StepChange::Start(request_id.to_string()));
    }

    /// [`start`](Self::start) in this process only; the id of the oldest request if it
    /// was let go to make room.
    fn start_here(&self, request_id: &str) -> Option<String> {
        let mut requests = self.lock();
        let mut let_go = None;
        if !requests.contains_key(request_id)
            && requests.len() >= MAX_STEPPED
            && let Some(oldest) = requests
                .iter()
                .min_by_key(|(_, stepped)| stepped.since)
                .map(|(id, _)| id.clone())
            && let Some(released) = requests.remove(&oldest)
        {
            tracing::info!(request = %oldest, "step mode table full: the oldest stepped request goes on by itself");
            release(&released);
            let_go = Some(oldest);
        }
        let fresh = Stepped {
            gate: Semaphore::new(0),
            responded: watch::Sender::new(false),
            since: Instant::now(),
            paused: Mutex::default(),
        };
        if let Some(replaced) = requests.insert(request_id.to_string(), Arc::new(fresh)) {
            release(&replaced);
        }
        self.count.store(requests.len(), Ordering::Relaxed);
        let_go
    }

    /// Lets a stepped request pass one boundary. False if it is not in step mode.
    pub fn step(&self, request_id: &str) -> bool {
        let stepping = match self.lock().get(request_id) {
            Some(stepped) => {
                stepped.gate.add_permits(1);
                true
            }
            None => false,
        };
        if stepping {
            self.tell_others(StepChange::Step(request_id.to_string()));
        }
        stepping
    }

    /// Takes a request out of step mode (it finished); a waiting boundary is released.
    pub fn stop(&self, request_id: &str) {
        if self.stop_here(request_id) {
            self.tell_others(StepChange::Stop(request_id.to_string()));
        }
    }

    /// [`stop`](Self::stop) in this process only; whether it was in step mode here.
    fn stop_here(&self, request_id: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        let mut requests = self.lock();
        let removed = requests.remove(request_id);
        if let Some(stepped) = &removed {
            release(stepped);
        }
        self.count.store(requests.len(), Ordering::Relaxed);
        removed.is_some()
    }

    /// The stepped request has had its response: its workers may take steps now.
    pub fn responded(&self, request_id: &str) {
        if self.responded_here(request_id) {
            self.tell_others(StepChange::Responded(request_id.to_string()));
        }
    }

    fn responded_here(&self, request_id: &str) -> bool {
        match self.get(request_id) {
            Some(stepped) => {
                stepped.responded.send_replace(true);
                true
            }
            None => false,
        }
    }

    pub fn is_stepping(&self, request_id: &str) -> bool {
        self.get(request_id).is_some()
    }

    /// How many requests are in step mode.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long a stepped request has waited at its boundaries so far (zero for one not
    /// in step mode): time its request timeout does not count.
    pub fn paused(&self, request_id: &str) -> Duration {
        self.get(request_id).map_or(Duration::ZERO, |stepped| {
            stepped
                .paused
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .paused()
        })
    }

    fn get(&self, request_id: &str) -> Option<Arc<Stepped>> {
        if self.is_empty() || request_id.is_empty() {
            return None;
        }
        self.lock().get(request_id).cloned()
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
        let Some(stepped) = self.get(request_id) else {
            return;
        };
        let step = async {
            if after_response {
                let _ = stepped.responded.subscribe().wait_for(|responded| *responded).await;
            }
            // Paused from here: the wait for the response above is not the request's pause.
            let _waiting = Waiting::begin(&stepped.paused);
            // Closed (no longer stepped): go on without a permit.
            if let Ok(permit) = stepped.gate.acquire().await {
                permit.forget();
                self.tell_others(StepChange::Took(request_id.to_string()));
            }
        };
        // Forgotten (timed out): go on.
        let _ = tokio::time::timeout(limit, step).await;
    }
}

/// Lets every boundary of a request that leaves step mode go on.
fn release(stepped: &Stepped) {
    stepped.gate.close();
    stepped.responded.send_replace(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stepped_request_passes_exactly_one_boundary_per_step() {
        let stepping = Arc::new(Stepping::default());
        stepping.start("r1");
        let passed = Arc::new(AtomicUsize::new(0));
        let walker = {
            let (stepping, passed) = (stepping.clone(), passed.clone());
            tokio::spawn(async move {
                for _ in 0..3 {
                    stepping.boundary("r1").await;
                    passed.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        stepping.boundary("other").await; // not stepped: passes at once
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(passed.load(Ordering::SeqCst), 0, "waits for a step");
        assert!(stepping.step("r1"));
        wait_for(|| passed.load(Ordering::SeqCst) == 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(passed.load(Ordering::SeqCst), 1, "one step, one boundary");
        stepping.stop("r1");
        walker.await.expect("released when stepping stops");
        assert!(!stepping.step("r1"));
    }

    // Three processes of a cluster, their changes carried by hand as the bus would: the
    // step the dashboard grants is taken by the process where the request waits, and
    // the others withdraw theirs, so it cannot skip a boundary elsewhere later.
    #[tokio::test]
    async fn a_step_is_taken_once_across_processes() {
        let processes: Vec<Stepping> = (0..3).map(|_| Stepping::default()).collect();
        let mut outboxes: Vec<mpsc::Receiver<StepChange>> =
            processes.iter().map(|process| process.share().expect("once")).collect();
        let carry = |outboxes: &mut Vec<mpsc::Receiver<StepChange>>| {
            for (from, outbox) in outboxes.iter_mut().enumerate() {
                while let Ok(change) = outbox.try_recv() {
                    for (to, process) in processes.iter().enumerate() {
                        if to != from {
                            process.apply(change.clone());
                        }
                    }
                }
            }
        };
        let [lb, app, dashboard] = &processes[..] else {
            unreachable!()
        };
        lb.start("r1");
        carry(&mut outboxes);
        assert!(app.is_stepping("r1") && dashboard.is_stepping("r1"));
        // The request is at the app: the dashboard steps it; the app's boundary takes it.
        assert!(dashboard.step("r1"));
        carry(&mut outboxes);
        tokio::time::timeout(Duration::from_secs(1), app.boundary("r1"))
            .await
            .expect("the step passes the app's boundary");
        carry(&mut outboxes);
        for elsewhere in [lb, dashboard] {
            assert!(
                tokio::time::timeout(Duration::from_millis(50), elsewhere.boundary("r1"))
                    .await
                    .is_err(),
                "withdrawn: no other boundary passes on the same step"
            );
        }
        // Its app server answered, its journey ended: everywhere.
        app.responded("r1");
        dashboard.stop("r1");
        carry(&mut outboxes);
        assert!(processes.iter().all(|process| process.is_empty()));
        assert!(
            outboxes.iter_mut().all(|outbox| outbox.try_recv().is_err()),
            "nothing echoes"
        );
    }

    #[tokio::test]
    async fn a_bounded_boundary_gives_up_without_a_step() {
        let stepping = Stepping::default();
        stepping.start("r1");
        let started = Instant::now();
        tokio::time::timeout(
            Duration::from_secs(5),
            stepping.boundary_within("r1", Duration::from_millis(100)),
        )
        .await
        .expect("passes by itself after its limit");
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "but waits that long first"
        );
        assert!(stepping.step("r1"), "still stepped: the next boundary waits again");
    }

    #[tokio::test]
    async fn time_at_a_boundary_is_counted_as_paused() {
        let stepping = Arc::new(Stepping::default());
        stepping.start("r1");
        assert_eq!(stepping.paused("r1"), Duration::ZERO);
        let waiting = {
            let stepping = stepping.clone();
            tokio::spawn(async move { stepping.boundary("r1").await })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            stepping.paused("r1") >= Duration::from_millis(100),
            "counts while waiting"
        );
        stepping.step("r1");
        waiting.await.expect("stepped");
        let paused = stepping.paused("r1");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(stepping.paused("r1"), paused, "and stops when it passes");
        assert_eq!(stepping.paused("never-stepped"), Duration::ZERO);
    }

    #[test]
    fn tokens_are_accepted_only_when_issued_here_and_unexpired() {
        let stepping = Stepping::default();
        let token = stepping.issue_token();
        assert!(stepping.token_valid(&token.value));
        assert!(!stepping.token_valid("1"), "the old `1` no longer starts step mode");
        assert!(!stepping.token_valid(""));
        assert!(
            !Stepping::default().token_valid(&token.value),
            "another process's secret"
        );
        let (expires, signature) = token.value.split_once('.').expect("two parts");
        let later = format!("{}.{signature}", expires.parse::<i64>().expect("ms") + 1);
        assert!(!stepping.token_valid(&later), "the expiry is signed");
        let expired = token.expires_at_ms - 2 * TOKEN_TTL.as_millis() as i64;
        let signature = hex::encode(stepping.mac(expired).finalize().into_bytes());
        assert!(!stepping.token_valid(&format!("{expired}.{signature}")), "expired");
    }

    // Regression: the table was keyed by client-chosen request ids and grew without end.
    #[tokio::test]
    async fn a_flood_of_stepped_requests_keeps_the_table_bounded_and_lets_the_oldest_go() {
        let stepping = Arc::new(Stepping::default());
        stepping.start("first");
        let first = {
            let stepping = stepping.clone();
            tokio::spawn(async move { stepping.boundary("first").await })
        };
        for n in 0..10_000 {
            stepping.start(&format!("flood-{n}"));
        }
        assert_eq!(stepping.len(), MAX_STEPPED);
        assert!(!stepping.is_stepping("first"));
        tokio::time::timeout(Duration::from_secs(5), first)
            .await
            .expect("the evicted request goes on")
            .expect("task");
        assert!(stepping.is_stepping("flood-9999"));
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

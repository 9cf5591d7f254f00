//! The circuit breaker in front of the SMTP server, shared by a process's mail workers:
//! after [`OPENS_AFTER`] transient failures in a row (refused, timed out, 4xx) it
//! *opens* and nobody sends — the mail waits in its queue, its attempts untouched,
//! instead of every worker burning retry tiers on a server that is down. After the open
//! time one send is let through (*half-open*): if it is accepted the breaker closes, if
//! not it opens again for twice as long (at most [`MAX_OPEN`]). Any answer from the
//! server, even a 5xx, shows it is up and counts as a success here.
//!
//! Hand-written, not a crate: it is a dozen lines of state whose every transition the
//! live view shows (`component:metrics` of the SMTP server), and the crates in this
//! space wrap calls in their own futures and error types rather than gating a queue.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use wire::CircuitState;

/// Transient failures in a row that open the breaker.
pub const OPENS_AFTER: u32 = 5;
/// The first open time.
pub const FIRST_OPEN: Duration = Duration::from_secs(5);
/// The longest open time.
pub const MAX_OPEN: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Inner {
    failures: u32,
    open_until: Option<Instant>,
    open_for: Duration,
    probing: bool,
    opened_times: u64,
}

/// What a worker may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Closed: send.
    Send,
    /// Half-open, and this worker's send is the one probe.
    Probe,
    /// Open (or another worker probes): do not send for about this long.
    Wait(Duration),
}

#[derive(Debug)]
pub struct SmtpBreaker {
    inner: Mutex<Inner>,
    first_open: Duration,
}

impl Default for SmtpBreaker {
    fn default() -> Self {
        Self::new(FIRST_OPEN)
    }
}

impl SmtpBreaker {
    /// A closed breaker whose first open time is `first_open`.
    pub fn new(first_open: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                failures: 0,
                open_until: None,
                open_for: first_open,
                probing: false,
                opened_times: 0,
            }),
            first_open,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Whether a send may go now.
    pub fn permit(&self) -> Permit {
        let mut inner = self.lock();
        match inner.open_until {
            None => Permit::Send,
            Some(until) => {
                let now = Instant::now();
                if now < until {
                    Permit::Wait(until - now)
                } else if inner.probing {
                    Permit::Wait(Duration::from_millis(100))
                } else {
                    inner.probing = true;
                    Permit::Probe
                }
            }
        }
    }

    /// How long to wait before claiming mail: none while closed or when the probe is
    /// free to take; else until the open time ends (or the probe returns).
    pub fn waiting(&self) -> Option<Duration> {
        let inner = self.lock();
        let until = inner.open_until?;
        let now = Instant::now();
        if now < until {
            Some(until - now)
        } else if inner.probing {
            Some(Duration::from_millis(100))
        } else {
            None
        }
    }

    /// The server answered (accepted, or refused for good): closed.
    pub fn succeeded(&self) {
        let mut inner = self.lock();
        if inner.open_until.is_some() {
            tracing::info!("SMTP circuit closed: the server answers again");
        }
        inner.failures = 0;
        inner.open_until = None;
        inner.open_for = self.first_open;
        inner.probing = false;
    }

    /// A transient failure: counted; the breaker opens at [`OPENS_AFTER`] in a row, and
    /// again (for longer) when its probe fails.
    pub fn failed(&self) {
        let mut inner = self.lock();
        inner.failures = inner.failures.saturating_add(1);
        let reopen = inner.probing;
        if reopen || (inner.open_until.is_none() && inner.failures >= OPENS_AFTER) {
            if reopen {
                inner.open_for = (inner.open_for * 2).min(MAX_OPEN);
            }
            inner.open_until = Some(Instant::now() + inner.open_for);
            inner.probing = false;
            inner.opened_times += 1;
            tracing::warn!(
                failures = inner.failures,
                open_for_ms = inner.open_for.as_millis() as u64,
                "SMTP circuit open: mail waits in its queue"
            );
        }
    }

    /// Where the breaker is, for the live view.
    pub fn state(&self) -> CircuitState {
        let inner = self.lock();
        match inner.open_until {
            None => CircuitState::Closed,
            Some(until) if Instant::now() < until => CircuitState::Open,
            Some(_) => CircuitState::HalfOpen,
        }
    }

    /// How many times it has opened.
    pub fn opened_times(&self) -> u64 {
        self.lock().opened_times
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_probes_once_and_closes_on_success() {
        let breaker = SmtpBreaker::new(Duration::from_millis(30));
        for _ in 0..OPENS_AFTER - 1 {
            breaker.failed();
            assert_eq!(breaker.permit(), Permit::Send);
        }
        breaker.succeeded();
        for _ in 0..OPENS_AFTER - 1 {
            breaker.failed();
        }
        assert_eq!(
            breaker.state(),
            CircuitState::Closed,
            "a success in between starts the count again"
        );
        breaker.failed();
        assert_eq!(breaker.state(), CircuitState::Open);
        assert!(matches!(breaker.permit(), Permit::Wait(_)));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert_eq!(breaker.permit(), Permit::Probe);
        assert!(matches!(breaker.permit(), Permit::Wait(_)), "one probe at a time");
        breaker.succeeded();
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert_eq!(breaker.permit(), Permit::Send);
        assert_eq!(breaker.opened_times(), 1);
    }

    #[test]
    fn a_failed_probe_opens_it_again_for_longer() {
        let breaker = SmtpBreaker::new(Duration::from_millis(20));
        for _ in 0..OPENS_AFTER {
            breaker.failed();
        }
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(breaker.permit(), Permit::Probe);
        breaker.failed();
        assert_eq!(breaker.state(), CircuitState::Open);
        // Twice as long now: still open after the first open time.
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(breaker.state(), CircuitState::Open);
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert_eq!(breaker.opened_times(), 2);
    }
}

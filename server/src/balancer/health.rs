//! Active health checks: `GET /healthz` on every backend each interval. A healthy
//! server that fails `failure_threshold` checks in a row is taken out; an unhealthy one
//! that passes `recovery_threshold` in a row is put back.

use std::{sync::atomic::Ordering, time::Duration};

use axum::body::Body;
use hyper::{Method, Request};
use tokio_util::sync::CancellationToken;

use super::{Backend, Balancer};

#[derive(Debug, Clone, Copy)]
pub struct HealthPolicy {
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub recovery_threshold: u32,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            failure_threshold: 2,
            recovery_threshold: 2,
        }
    }
}

/// What one check changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    WentDown,
    CameBack,
}

impl Backend {
    /// Applies one check's outcome to the streak and returns the transition it caused.
    pub fn record_check(&self, passed: bool, policy: &HealthPolicy) -> Transition {
        let healthy = self.is_healthy();
        if passed == healthy {
            // Confirms the current state: any streak towards the other one is broken.
            self.streak.store(0, Ordering::Relaxed);
            return Transition::None;
        }
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        let threshold = if healthy {
            policy.failure_threshold
        } else {
            policy.recovery_threshold
        };
        if streak < threshold {
            return Transition::None;
        }
        self.streak.store(0, Ordering::Relaxed);
        self.healthy.store(passed, Ordering::Relaxed);
        if passed {
            Transition::CameBack
        } else {
            Transition::WentDown
        }
    }
}

impl Balancer {
    /// Checks every backend each interval until shutdown.
    pub async fn run_health_checks(self, shutdown: CancellationToken) {
        crate::every(self.health.interval, shutdown, || self.check_all()).await;
    }

    async fn check_all(&self) {
        let checks = self.backends.iter().map(|backend| async move {
            let passed = self.check(backend).await;
            match backend.record_check(passed, &self.health) {
                Transition::WentDown => tracing::warn!(server = %backend.id, "health checks failing; server taken out"),
                Transition::CameBack => tracing::info!(server = %backend.id, "health checks passing; server back in"),
                Transition::None => {}
            }
        });
        futures_util::future::join_all(checks).await;
        self.prune_sticky();
    }

    async fn check(&self, backend: &Backend) -> bool {
        let Ok(request) = Request::builder()
            .method(Method::GET)
            .uri(format!("{}://{}/healthz", self.scheme, backend.addr))
            .header("user-agent", "liveview-balancer-health")
            .body(Body::empty())
        else {
            return false;
        };
        matches!(
            tokio::time::timeout(self.health.timeout, self.client.request(request)).await,
            Ok(Ok(response)) if response.status().is_success()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HealthPolicy {
        HealthPolicy {
            failure_threshold: 3,
            recovery_threshold: 2,
            ..HealthPolicy::default()
        }
    }

    #[test]
    fn goes_down_only_after_the_failure_threshold_in_a_row() {
        let backend = Backend::new("server-1".into(), "127.0.0.1:1".parse().expect("addr"));
        let policy = policy();
        assert_eq!(backend.record_check(false, &policy), Transition::None);
        assert_eq!(backend.record_check(false, &policy), Transition::None);
        assert_eq!(
            backend.record_check(true, &policy),
            Transition::None,
            "a pass breaks the streak"
        );
        assert_eq!(backend.record_check(false, &policy), Transition::None);
        assert_eq!(backend.record_check(false, &policy), Transition::None);
        assert_eq!(backend.record_check(false, &policy), Transition::WentDown);
        assert!(!backend.is_healthy());
    }

    #[test]
    fn comes_back_only_after_the_recovery_threshold_in_a_row() {
        let backend = Backend::new("server-1".into(), "127.0.0.1:1".parse().expect("addr"));
        backend.healthy.store(false, Ordering::Relaxed);
        let policy = policy();
        assert_eq!(backend.record_check(true, &policy), Transition::None);
        assert_eq!(
            backend.record_check(false, &policy),
            Transition::None,
            "a failure breaks the streak"
        );
        assert_eq!(backend.record_check(true, &policy), Transition::None);
        assert_eq!(backend.record_check(true, &policy), Transition::CameBack);
        assert!(backend.is_healthy());
    }
}

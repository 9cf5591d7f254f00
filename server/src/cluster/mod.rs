//! What the processes of one cluster share to trust each other: `--cluster-secret`.
//! Each use takes a key of its own, derived from the secret with HMAC-SHA256 and the
//! use's name, so a key that leaks from one use opens nothing else: the bus signs every
//! message with one ([`crate::bus`]), step-mode tokens are signed with another
//! ([`crate::controls::step`]), so a token the dashboard issues is good at every
//! balancer.
//!
//! [`registry`] keeps which processes the cluster has; [`lease`] gives a duty to one of
//! them at a time.

pub mod lease;
pub mod registry;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The shortest secret accepted: 128 bits as hex, say.
pub const MIN_SECRET: usize = 16;

#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(…)")
    }
}

impl ClusterSecret {
    pub fn new(secret: &str) -> Result<Self, String> {
        if secret.len() < MIN_SECRET {
            return Err(format!("--cluster-secret must be at least {MIN_SECRET} characters"));
        }
        Ok(Self(secret.as_bytes().to_vec()))
    }

    /// The key for one use (`"bus"`, `"step-token"`).
    pub fn key(&self, purpose: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("any key length");
        mac.update(b"liveview-cluster:");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_use_has_its_own_key_and_short_secrets_are_refused() {
        let secret = ClusterSecret::new("correct horse battery").expect("long enough");
        assert_ne!(secret.key("bus"), secret.key("step-token"));
        assert_eq!(
            secret.key("bus"),
            ClusterSecret::new("correct horse battery").expect("ok").key("bus")
        );
        assert_ne!(
            secret.key("bus"),
            ClusterSecret::new("another long secret").expect("ok").key("bus")
        );
        assert!(ClusterSecret::new("short").is_err());
        assert_eq!(format!("{secret:?}"), "ClusterSecret(…)");
    }
}

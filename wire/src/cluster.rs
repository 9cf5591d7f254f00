//! The processes of a cluster (`GET /api/processes`): what each runs, where, and
//! whether it is still heartbeating.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// What one `liveview` process runs (`--role`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessRole {
    /// Everything in one process: the embedded default.
    All,
    /// The load balancer over `--backends`.
    Lb,
    /// One app server: the notification system's API and end users' sockets.
    App,
    /// The mail and in-app workers.
    Worker,
    /// The SPA, `/status`, the live stream, the control API and `/metrics`.
    Dashboard,
}

impl ProcessRole {
    pub const ALL: [ProcessRole; 5] = [
        ProcessRole::All,
        ProcessRole::Lb,
        ProcessRole::App,
        ProcessRole::Worker,
        ProcessRole::Dashboard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProcessRole::All => "all",
            ProcessRole::Lb => "lb",
            ProcessRole::App => "app",
            ProcessRole::Worker => "worker",
            ProcessRole::Dashboard => "dashboard",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// Runs the load balancer.
    pub fn balances(self) -> bool {
        matches!(self, Self::All | Self::Lb)
    }

    /// Runs app servers.
    pub fn serves(self) -> bool {
        matches!(self, Self::All | Self::App)
    }

    /// Runs the mail and in-app workers.
    pub fn works(self) -> bool {
        matches!(self, Self::All | Self::Worker)
    }

    /// Runs the dashboard (and the live window's aggregation behind it).
    pub fn watches(self) -> bool {
        matches!(self, Self::All | Self::Dashboard)
    }
}

impl std::fmt::Display for ProcessRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One process as it registered, and whether it still heartbeats.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessInfo {
    /// Made at start (UUIDv7); a restarted process is a new one.
    pub id: String,
    pub role: ProcessRole,
    /// Where it serves: the app server's, the balancer's or the dashboard's address
    /// (empty for a worker, which listens nowhere).
    pub address: String,
    pub version: String,
    #[serde(deserialize_with = "crate::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "crate::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub started_at: Timestamp,
    #[serde(deserialize_with = "crate::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "crate::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub last_heartbeat: Timestamp,
    /// False once it has missed its heartbeats, or said it stopped.
    pub up: bool,
}

/// `GET /api/processes`: every process of the cluster seen in the last hour, newest
/// first within each role.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessList {
    pub processes: Vec<ProcessInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::round_trip;

    #[test]
    fn roles_and_processes_keep_their_wire_names() {
        for role in ProcessRole::ALL {
            assert_eq!(ProcessRole::parse(role.as_str()), Some(role));
        }
        let json = round_trip(&ProcessList {
            processes: vec![ProcessInfo {
                id: "p1".into(),
                role: ProcessRole::App,
                address: "10.0.0.2:5001".into(),
                version: "0.1.0".into(),
                started_at: chrono::DateTime::from_timestamp_millis(1_000).expect("valid"),
                last_heartbeat: chrono::DateTime::from_timestamp_millis(2_000).expect("valid"),
                up: true,
            }],
        });
        assert_eq!(json["processes"][0]["role"], "app");
        assert_eq!(json["processes"][0]["lastHeartbeat"], "1970-01-01T00:00:02Z");
    }
}

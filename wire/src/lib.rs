//! Types that cross the wire: the live-stream envelope and every payload it carries, and
//! every REST body: the dashboard's and the notification system's public API's.
//!
//! JSON names follow the design's interfaces: camelCase fields and the design's event
//! names as `topic` tags (`system:status`, `queue:job:retry`, ...). A change here is a
//! change for both the server and the SPA, and the round-trip tests prove both still read it.

mod alerts;
mod analytics;
mod client;
mod cluster;
mod components;
mod controls;
mod dashboard;
mod events;
mod frame;
mod inbox;
mod journey;
mod messaging;
mod operators;
pub mod rfc3339;
mod status;
mod users;

pub use alerts::*;
pub use analytics::*;
pub use client::*;
pub use cluster::*;
pub use components::*;
pub use controls::*;
pub use dashboard::*;
pub use events::*;
pub use frame::parse_frame;
pub use inbox::*;
pub use journey::*;
pub use messaging::*;
pub use operators::*;
pub use status::*;
pub use users::*;

/// Timestamps on the wire: RFC 3339 in UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

#[cfg(test)]
pub(crate) mod test_support {
    use serde::{Serialize, de::DeserializeOwned};
    use std::fmt::Debug;

    /// Serializes to JSON and back, asserting nothing was lost; returns the JSON value so a
    /// test can also pin the exact wire names.
    pub fn round_trip<T>(value: &T) -> serde_json::Value
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug,
    {
        let text = serde_json::to_string(value).expect("serializes");
        let back: T = serde_json::from_str(&text).expect("deserializes");
        assert_eq!(&back, value, "round trip changed the value: {text}");
        serde_json::from_str(&text).expect("is JSON")
    }

    pub fn at(secs: i64) -> super::Timestamp {
        chrono::DateTime::from_timestamp(1_790_000_000 + secs, 250_000_000).expect("valid time")
    }
}

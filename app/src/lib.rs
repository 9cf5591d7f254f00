//! Live View's views.
//!
//! `components` holds the Leptos views rendered both on the server (the `/status` page)
//! and in the browser; the `spa` module is the browser application itself. What they
//! show crosses the wire in the types of the `wire` crate (re-exported here as `wire`).
//! Features `csr` (browser) and `ssr` (server) are never enabled together.

pub mod backoff;
pub mod clock;
pub mod components;
pub mod flow;
pub mod inbox;
pub mod messages;
pub use wire;

#[cfg(feature = "csr")]
pub mod client;
#[cfg(feature = "csr")]
pub mod spa;

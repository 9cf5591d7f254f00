//! Live View's shared language.
//!
//! `wire` holds every type that crosses the wire between the server and the SPA, once;
//! `components` holds the Leptos views rendered both on the server (the `/status` page)
//! and in the browser. The `spa` module is the browser application itself.
//! Features `csr` (browser) and `ssr` (server) are never enabled together.

pub mod backoff;
pub mod clock;
pub mod components;
pub mod flow;
pub mod wire;

#[cfg(feature = "csr")]
pub mod spa;

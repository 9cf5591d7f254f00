//! What the two WebSocket services share: the end users' in-app sockets
//! ([`crate::websocket`], on the app servers) and the dashboard's live stream
//! ([`crate::live`]). Both ping on one schedule and close with one set of codes, so a
//! proxy's idle timeout or a client's reconnect logic meets the same behaviour on both;
//! each keeps what is its own (the live stream's fragments, silence limit and too-slow
//! rule; the in-app acks and the cap on a user's sockets).

use std::time::Duration;

/// How often a server pings a quiet peer.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);

/// The close codes either service sends.
pub mod close {
    /// The server is shutting down, or the app server holding the socket stopped.
    pub const AWAY: u16 = 1001;
    /// The peer broke a rule (malformed messages; too many sockets for one user).
    pub const POLICY: u16 = 1008;
    /// A client message over the service's limit.
    pub const TOO_BIG: u16 = 1009;
    /// Nothing heard from the peer, not even a pong, for the live stream's silence limit.
    pub const SILENT: u16 = 4000;
    /// The operator's session ended (expired, signed out, removed): sign in again.
    pub const SESSION_ENDED: u16 = 4001;
    /// The peer could not keep up with the live stream.
    pub const TOO_SLOW: u16 = 4008;
}

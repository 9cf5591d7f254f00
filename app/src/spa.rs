//! The browser application: keeps one live WebSocket to the dashboard, shows the latest
//! `system:status` and says at all times whether the connection is live.
//!
//! Each text frame of the stream is one Envelope or a JSON array of Envelopes in seq order
//! (the server batches under load); both are read with [`crate::wire::parse_frame`]. The
//! first frame is a `stream:snapshot`; a `stream:gap` is always followed by one.

use futures_util::{
    StreamExt,
    future::{Either, select},
};
use gloo_net::websocket::{Message, futures::WebSocket};
use gloo_timers::future::TimeoutFuture;
use leptos::{prelude::*, task::spawn_local};

use crate::{
    backoff,
    components::StatusReport,
    wire::{Envelope, LiveEvent, SystemStatus, parse_frame},
};

/// Where the live stream is, relative to the page's own origin.
const LIVE_PATH: &str = "/api/live-view/ws";
/// The server sends `system:status` every second; this much silence means the
/// connection is dead even if the socket has not noticed yet.
const SILENCE_LIMIT_MS: u32 = 5_000;

/// The connection indicator's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// First attempt, nothing received yet.
    Connecting,
    /// Messages are arriving.
    Live,
    /// The connection was lost; the next attempt starts after `retry_in_ms`.
    Reconnecting { attempt: u32, retry_in_ms: u32 },
}

impl Connection {
    fn state(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Live => "live",
            Self::Reconnecting { .. } => "reconnecting",
        }
    }

    fn describe(self) -> String {
        match self {
            Self::Connecting => "Connecting…".into(),
            Self::Live => "Live".into(),
            Self::Reconnecting { attempt, retry_in_ms } => format!(
                "Connection lost — reconnecting (attempt {attempt}, next try in {:.1} s)",
                f64::from(retry_in_ms) / 1000.0
            ),
        }
    }
}

/// Signals the connection task writes and the views read.
#[derive(Clone, Copy)]
struct LiveState {
    status: RwSignal<Option<SystemStatus>>,
    connection: RwSignal<Connection>,
    last_seq: RwSignal<u64>,
}

/// The SPA's root component, mounted by the `frontend` crate.
#[component]
pub fn App() -> impl IntoView {
    let live = LiveState {
        status: RwSignal::new(None),
        connection: RwSignal::new(Connection::Connecting),
        last_seq: RwSignal::new(0),
    };
    spawn_local(stay_connected(live));

    let connection = live.connection;
    view! {
        <header class="topbar">
            <h1>"Live View"</h1>
            <span class="subtitle">"notification system, live"</span>
            <a class="nav" href="/status">"Status page"</a>
            <div
                class=move || format!("connection connection-{}", connection.get().state())
                data-testid="connection"
                data-state=move || connection.get().state()
                role="status"
                aria-live="polite"
            >
                <span class="dot" aria-hidden="true"></span>
                <span data-testid="connection-text">{move || connection.get().describe()}</span>
            </div>
        </header>
        <main class=move || if connection.get() == Connection::Live { "" } else { "stale" }>
            {move || match live.status.get() {
                Some(status) => view! { <StatusReport status /> }.into_any(),
                None => view! {
                    <p class="waiting" data-testid="waiting">"Waiting for the first system:status…"</p>
                }.into_any(),
            }}
        </main>
        <footer>
            "Last message: #"
            <span data-testid="last-seq">{move || live.last_seq.get()}</span>
        </footer>
    }
}

/// Opens the live stream and keeps it open: reads messages until the socket fails or
/// goes silent, then waits a capped, jittered, growing delay and tries again. Never returns.
async fn stay_connected(live: LiveState) {
    let url = live_url();
    let mut attempt = 0u32;
    loop {
        if read_until_lost(&url, live).await {
            // Something arrived on that connection: the next failure starts a fresh series.
            attempt = 0;
        }
        attempt = attempt.saturating_add(1);
        let retry_in_ms = backoff::delay_ms(attempt, js_sys::Math::random());
        live.connection.set(Connection::Reconnecting { attempt, retry_in_ms });
        TimeoutFuture::new(retry_in_ms).await;
    }
}

/// Reads one connection until it is lost. Returns whether any message arrived.
async fn read_until_lost(url: &str, live: LiveState) -> bool {
    let Ok(socket) = WebSocket::open(url) else {
        return false;
    };
    let (_sink, mut stream) = socket.split();
    let mut received = false;
    loop {
        let next = stream.next();
        let silence = TimeoutFuture::new(SILENCE_LIMIT_MS);
        let message = match select(next, silence).await {
            Either::Left((Some(Ok(message)), _)) => message,
            // Closed, failed, or silent for too long.
            _ => return received,
        };
        let Message::Text(text) = message else {
            continue;
        };
        match parse_frame(&text) {
            Ok(envelopes) => {
                if !received {
                    received = true;
                    live.connection.set(Connection::Live);
                }
                for envelope in envelopes {
                    apply(live, envelope);
                }
            }
            Err(error) => leptos::logging::warn!("unreadable live message: {error}"),
        }
    }
}

fn apply(live: LiveState, envelope: Envelope) {
    live.last_seq.set(envelope.seq);
    match envelope.event {
        LiveEvent::SystemStatus(status) => live.status.set(Some(status)),
        LiveEvent::Snapshot(snapshot) => {
            if let Some(status) = snapshot.status {
                live.status.set(Some(status));
            }
        }
        LiveEvent::Gap(gap) => leptos::logging::log!("live stream gap: missed {}..={}", gap.from, gap.to),
        LiveEvent::StreamError(error) => leptos::logging::warn!("live stream error: {}", error.error),
        _ => {}
    }
}

/// `ws://host/api/live-view/ws` on the page's own origin (`wss://` under https).
fn live_url() -> String {
    let location = window().location();
    let scheme = match location.protocol().as_deref() {
        Ok("https:") => "wss",
        _ => "ws",
    };
    let host = location.host().unwrap_or_default();
    format!("{scheme}://{host}{LIVE_PATH}")
}

//! The live stream's connection: a WebSocket that resumes where it stopped, or server-sent
//! events when a WebSocket cannot be opened at all.
//!
//! Messages are parsed as they arrive and pushed into an inbox; the animation frame drains
//! it and applies everything at once, so a burst never runs the views once per event.
//! On every reconnect the URL carries `afterSeq` (the last seq applied): the server sends
//! exactly what was missed, or a `stream:gap` and a fresh `stream:snapshot` when that is
//! no longer kept. Two WebSocket attempts that never open (a proxy that refuses upgrades)
//! switch the page to SSE, and the connection indicator says so.

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
};

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use wasm_bindgen::{JsCast, closure::Closure};
use web_sys::{EventSource, MessageEvent, WebSocket};

use super::state::{Connection, Live, Transport};
use crate::{
    backoff,
    wire::{ClientMessage, Envelope, LiveEvent, StreamFilters, parse_frame},
};

const WS_PATH: &str = "/api/live-view/ws";
const SSE_PATH: &str = "/api/live-view/sse";
/// The server sends `system:status` every second; this much silence means the
/// connection is dead even if the socket has not noticed yet.
const SILENCE_LIMIT_MS: f64 = 5_000.0;
/// How often the connection task looks at its socket.
const POLL_MS: u32 = 250;
/// Envelopes buffered for the next frame beyond which the page resyncs instead.
const MAX_INBOX: usize = 20_000;
/// WebSocket attempts that never open before the page falls back to SSE.
const FALLBACK_AFTER: u32 = 2;

/// The stream's shared half: the inbox the frame loop drains, the open WebSocket (for
/// subscription changes) and the filters to subscribe with.
#[derive(Clone, Default)]
pub struct Stream {
    inbox: Rc<RefCell<Vec<Envelope>>>,
    socket: Rc<RefCell<Option<WebSocket>>>,
    filters: Rc<RefCell<Option<StreamFilters>>>,
    /// The last seq received (what a reconnect resumes after).
    last_seq: Rc<Cell<u64>>,
    /// Set to make the current connection close and reconnect (SSE filter changes).
    restart: Rc<Cell<bool>>,
    /// An SSE connection is open (its filters can only change by reconnecting).
    sse_open: Rc<Cell<bool>>,
}

impl Stream {
    /// Everything received since the last call, in order.
    pub fn drain(&self) -> Vec<Envelope> {
        std::mem::take(&mut *self.inbox.borrow_mut())
    }

    /// Narrows the stream to these filters (flows, types, servers), now and on reconnects.
    pub fn set_filters(&self, filters: StreamFilters) {
        let unchanged = self.filters.borrow().as_ref() == Some(&filters);
        if unchanged {
            return;
        }
        *self.filters.borrow_mut() = Some(filters);
        // An open WebSocket is told now; one still connecting is told when it opens; SSE
        // reconnects with the filters in its URL; with no connection the next one has them.
        if let Some(socket) = self.socket.borrow().as_ref() {
            if socket.ready_state() == WebSocket::OPEN {
                self.send_filters(socket);
            }
        } else if self.sse_open.get() {
            self.restart.set(true);
        }
    }

    fn send_filters(&self, socket: &WebSocket) {
        let Some(filters) = self.filters.borrow().clone() else {
            return;
        };
        let message = ClientMessage::Subscribe {
            topics: Vec::new(),
            filters: Some(filters),
        };
        if let Ok(text) = serde_json::to_string(&message) {
            let _ = socket.send_with_str(&text);
        }
    }

    fn receive(&self, text: &str) -> bool {
        if self.inbox.borrow().len() > MAX_INBOX {
            // Nobody is draining (a hidden tab gets no animation frames): rather than grow
            // without end, drop what is buffered and start over from a fresh snapshot.
            self.inbox.borrow_mut().clear();
            self.last_seq.set(0);
            self.restart.set(true);
            return false;
        }
        match parse_frame(text) {
            Ok(envelopes) => {
                for envelope in &envelopes {
                    match envelope.event {
                        // A snapshot restarts the count: after a server restart seqs begin
                        // again, and resuming must ask from the new numbering.
                        LiveEvent::Snapshot(_) => self.last_seq.set(envelope.seq),
                        LiveEvent::StreamError(_) => {}
                        _ => self.last_seq.set(self.last_seq.get().max(envelope.seq)),
                    }
                }
                self.inbox.borrow_mut().extend(envelopes);
                true
            }
            Err(error) => {
                leptos::logging::warn!("unreadable live message: {error}");
                false
            }
        }
    }

    fn query(&self) -> String {
        let mut parts = Vec::new();
        if self.last_seq.get() > 0 {
            parts.push(format!("afterSeq={}", self.last_seq.get()));
        }
        if let Some(filters) = self.filters.borrow().as_ref() {
            if let Some(flows) = &filters.flows {
                let names: Vec<&str> = flows.iter().map(|flow| flow.name()).collect();
                parts.push(format!("flows={}", names.join(",")));
            }
            if let Some(types) = &filters.types {
                let names: Vec<&str> = types.iter().map(|kind| kind.name()).collect();
                parts.push(format!("types={}", names.join(",")));
            }
            if let Some(servers) = &filters.servers {
                parts.push(format!("servers={}", servers.join(",")));
            }
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// What one connection attempt came to.
struct Attempt {
    opened: bool,
    received: bool,
}

/// Keeps the stream connected for as long as the page lives. Never returns.
pub async fn stay_connected(live: Live, stream: Stream) {
    let mut attempt = 0u32;
    let mut unopened = 0u32;
    loop {
        let transport = live.transport.get_untracked();
        let outcome = match transport {
            Transport::WebSocket => run_websocket(&live, &stream).await,
            Transport::Sse => run_sse(&live, &stream).await,
        };
        if outcome.received {
            // Something arrived on that connection: the next failure starts a fresh series.
            attempt = 0;
            unopened = 0;
        } else if transport == Transport::WebSocket && !outcome.opened {
            unopened += 1;
            if unopened >= FALLBACK_AFTER {
                live.transport.set(Transport::Sse);
                continue;
            }
        }
        if stream.restart.replace(false) && outcome.received {
            continue;
        }
        attempt = attempt.saturating_add(1);
        let retry_in_ms = backoff::delay_ms(attempt, js_sys::Math::random());
        live.connection.set(Connection::Reconnecting { attempt, retry_in_ms });
        TimeoutFuture::new(retry_in_ms).await;
    }
}

/// Flags the socket callbacks set and the connection task reads.
#[derive(Default)]
struct Flags {
    opened: Cell<bool>,
    closed: Cell<bool>,
    received: Cell<bool>,
    heard_at: Cell<f64>,
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Marks the connection live the first time something arrives on it.
fn on_text(live: &Live, stream: &Stream, flags: &Flags, text: &str) {
    flags.heard_at.set(now_ms());
    if stream.receive(text) && !flags.received.replace(true) {
        live.connection.set(Connection::Live);
    }
}

/// Waits until the connection closes, goes silent, or is asked to restart.
async fn watch(flags: &Flags, stream: &Stream) {
    flags.heard_at.set(now_ms());
    loop {
        TimeoutFuture::new(POLL_MS).await;
        let silent = now_ms() - flags.heard_at.get() > SILENCE_LIMIT_MS;
        if flags.closed.get() || silent || stream.restart.get() {
            return;
        }
    }
}

/// The callbacks one connection needs, sharing its flags: opened, a message (parsed into
/// the inbox), closed or failed. Dropped when the attempt ends.
/// The live stream's close code for an operator's session that ended.
const SESSION_ENDED: u16 = 4001;

struct Callbacks {
    flags: Rc<Flags>,
    open: Closure<dyn FnMut()>,
    message: Closure<dyn FnMut(MessageEvent)>,
    close: Closure<dyn FnMut(wasm_bindgen::JsValue)>,
}

impl Callbacks {
    fn new(live: &Live, stream: &Stream) -> Self {
        let flags = Rc::new(Flags::default());
        let opened = flags.clone();
        let closed = flags.clone();
        let (heard, stream, live) = (flags.clone(), stream.clone(), *live);
        Self {
            open: Closure::new(move || opened.opened.set(true)),
            message: Closure::new(move |event: MessageEvent| {
                if let Some(text) = event.data().as_string() {
                    on_text(&live, &stream, &heard, &text);
                }
            }),
            close: Closure::new(move |event: wasm_bindgen::JsValue| {
                closed.closed.set(true);
                // The dashboard closed the stream because the session ended: back to
                // the sign-in page rather than reconnecting into a 401.
                if event
                    .dyn_ref::<web_sys::CloseEvent>()
                    .is_some_and(|close| close.code() == SESSION_ENDED)
                {
                    super::sign_in::reload();
                }
            }),
            flags,
        }
    }

    fn attempt(&self) -> Attempt {
        Attempt {
            opened: self.flags.opened.get(),
            received: self.flags.received.get(),
        }
    }
}

const NOT_OPENED: Attempt = Attempt {
    opened: false,
    received: false,
};

async fn run_websocket(live: &Live, stream: &Stream) -> Attempt {
    let url = format!("{}{WS_PATH}{}", origin("ws"), stream.query());
    let Ok(socket) = WebSocket::new(&url) else {
        return NOT_OPENED;
    };
    let callbacks = Callbacks::new(live, stream);
    // Once open, the socket is told the current filters (they may have changed while it
    // was connecting; the same ones again are harmless).
    let on_open = {
        let (flags, stream, socket) = (callbacks.flags.clone(), stream.clone(), socket.clone());
        Closure::<dyn FnMut()>::new(move || {
            flags.opened.set(true);
            stream.send_filters(&socket);
        })
    };
    socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    socket.set_onmessage(Some(callbacks.message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(callbacks.close.as_ref().unchecked_ref()));
    socket.set_onerror(Some(callbacks.close.as_ref().unchecked_ref()));
    *stream.socket.borrow_mut() = Some(socket.clone());
    watch(&callbacks.flags, stream).await;
    *stream.socket.borrow_mut() = None;
    socket.set_onopen(None);
    socket.set_onmessage(None);
    socket.set_onclose(None);
    socket.set_onerror(None);
    let _ = socket.close();
    callbacks.attempt()
}

async fn run_sse(live: &Live, stream: &Stream) -> Attempt {
    let url = format!("{}{SSE_PATH}{}", origin("http"), stream.query());
    let Ok(source) = EventSource::new(&url) else {
        return NOT_OPENED;
    };
    let callbacks = Callbacks::new(live, stream);
    // The browser would reconnect by itself, but with our own backoff and `afterSeq`
    // the behaviour is the same as for the WebSocket.
    source.set_onopen(Some(callbacks.open.as_ref().unchecked_ref()));
    source.set_onerror(Some(callbacks.close.as_ref().unchecked_ref()));
    let message = callbacks.message.as_ref().unchecked_ref();
    for topic in LiveEvent::TOPICS {
        let _ = source.add_event_listener_with_callback(topic, message);
    }
    stream.sse_open.set(true);
    watch(&callbacks.flags, stream).await;
    stream.sse_open.set(false);
    source.close();
    for topic in LiveEvent::TOPICS {
        let _ = source.remove_event_listener_with_callback(topic, message);
    }
    source.set_onopen(None);
    source.set_onerror(None);
    callbacks.attempt()
}

/// `ws://host` (or `wss://`, `http://`, `https://`) for the page's own origin.
fn origin(scheme: &str) -> String {
    let location = window().location();
    let secure = location.protocol().as_deref() == Ok("https:");
    let scheme = match (scheme, secure) {
        ("ws", true) => "wss",
        ("http", true) => "https",
        (other, _) => other,
    };
    format!("{scheme}://{}", location.host().unwrap_or_default())
}

//! `/ws/metrics` for the monitoring page (seed 004's protocol): subscribe to the figures
//! and the activity, answer `ping` with `pong`, reconnect with exponential backoff and
//! jitter; after [`FALLBACK_AFTER`] sockets that never opened, poll the REST snapshot
//! for a minute before trying again.

use std::{cell::Cell, rc::Rc};

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use wasm_bindgen::{JsCast, closure::Closure};
use web_sys::{MessageEvent, WebSocket};

use super::{Business, Link};
use crate::{
    backoff,
    wire::{BusinessMetrics, MetricsChannel, MetricsMessage},
};

/// Sockets in a row that never opened before the page polls instead.
const FALLBACK_AFTER: u32 = 3;
/// How long the page polls before it tries a socket again.
const POLL_FOR_MS: f64 = 60_000.0;
const POLL_EVERY_MS: u32 = 5_000;
/// The server pings every 30 s and sends figures every 5 s: this much silence is a dead
/// connection.
const SILENCE_LIMIT_MS: f64 = 65_000.0;

pub async fn stay_connected(business: Business) {
    let mut attempt = 0u32;
    let mut unopened = 0u32;
    loop {
        if unopened >= FALLBACK_AFTER {
            poll(business).await;
            unopened = 0;
            attempt = 0;
            continue;
        }
        let (opened, received) = run_socket(business).await;
        if received {
            attempt = 0;
            unopened = 0;
        } else if !opened {
            unopened += 1;
        }
        attempt = attempt.saturating_add(1);
        let retry_in_ms = backoff::delay_ms(attempt, js_sys::Math::random());
        business.link.set(Link::Reconnecting { attempt, retry_in_ms });
        TimeoutFuture::new(retry_in_ms).await;
    }
}

/// The REST fallback: the snapshot every 5 s for a minute.
async fn poll(business: Business) {
    business.link.set(Link::Polling);
    let until = js_sys::Date::now() + POLL_FOR_MS;
    while js_sys::Date::now() < until {
        if let Ok(metrics) = crate::spa::api::get::<BusinessMetrics>("/api/v1/analytics/realtime-metrics").await {
            business.apply_metrics(metrics);
        }
        TimeoutFuture::new(POLL_EVERY_MS).await;
    }
}

#[derive(Default)]
struct Flags {
    opened: Cell<bool>,
    received: Cell<bool>,
    closed: Cell<bool>,
    heard_at: Cell<f64>,
}

/// One connection, until it closes or goes silent: whether it opened, and whether
/// anything arrived.
async fn run_socket(business: Business) -> (bool, bool) {
    let location = window().location();
    let scheme = if location.protocol().as_deref() == Ok("https:") {
        "wss"
    } else {
        "ws"
    };
    let url = format!("{scheme}://{}/ws/metrics", location.host().unwrap_or_default());
    let Ok(socket) = WebSocket::new(&url) else {
        return (false, false);
    };
    let flags = Rc::new(Flags::default());
    flags.heard_at.set(js_sys::Date::now());
    let on_open = {
        let (flags, socket) = (flags.clone(), socket.clone());
        Closure::<dyn FnMut()>::new(move || {
            flags.opened.set(true);
            let subscribe = MetricsMessage::Subscribe {
                channels: vec![MetricsChannel::Metrics, MetricsChannel::Activity],
            };
            if let Ok(text) = serde_json::to_string(&subscribe) {
                let _ = socket.send_with_str(&text);
            }
        })
    };
    let on_message = {
        let (flags, socket) = (flags.clone(), socket.clone());
        Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let Some(text) = event.data().as_string() else {
                return;
            };
            flags.heard_at.set(js_sys::Date::now());
            match serde_json::from_str::<MetricsMessage>(&text) {
                Ok(MetricsMessage::Metrics { data }) => {
                    if !flags.received.replace(true) {
                        business.link.set(Link::Live);
                    }
                    business.apply_metrics(*data);
                }
                Ok(MetricsMessage::Activity { data }) => business.buffer(*data),
                Ok(MetricsMessage::Ping) => {
                    if let Ok(pong) = serde_json::to_string(&MetricsMessage::Pong) {
                        let _ = socket.send_with_str(&pong);
                    }
                }
                Ok(_) => {}
                Err(error) => leptos::logging::warn!("unreadable /ws/metrics message: {error}"),
            }
        })
    };
    let on_close = {
        let flags = flags.clone();
        Closure::<dyn FnMut(wasm_bindgen::JsValue)>::new(move |event: wasm_bindgen::JsValue| {
            flags.closed.set(true);
            if event
                .dyn_ref::<web_sys::CloseEvent>()
                .is_some_and(|close| close.code() == 4001)
            {
                crate::spa::sign_in::reload();
            }
        })
    };
    socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    socket.set_onerror(Some(on_close.as_ref().unchecked_ref()));
    loop {
        TimeoutFuture::new(250).await;
        let silent = js_sys::Date::now() - flags.heard_at.get() > SILENCE_LIMIT_MS;
        if flags.closed.get() || silent {
            break;
        }
    }
    socket.set_onopen(None);
    socket.set_onmessage(None);
    socket.set_onclose(None);
    socket.set_onerror(None);
    let _ = socket.close();
    (flags.opened.get(), flags.received.get())
}

//! The client's one socket, `/api/notifications/ws` through the balancer (sticky to one
//! app server), kept open for as long as the user is signed in.
//!
//! Before each connection the center asks for its list again, then the socket opens with
//! `lastSeq` set to the newest seq that list knew of: the server pushes exactly what
//! came after, in order (store and forward), and nothing twice. Every
//! `notification:new` is acked (`{"ack": id}`), which is what makes it delivered.
//! A closed socket is reopened after an exponential delay with jitter
//! ([`crate::backoff`]); a 401 on the list ends the session (see `api`).

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
};

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use wasm_bindgen::{JsCast, closure::Closure};
use web_sys::{MessageEvent, WebSocket};

use super::{center::Center, chat::Chat};
use crate::{
    backoff,
    wire::{Ack, ClientFrame, UserFrame},
};

thread_local! {
    /// The socket while it is open: what [`send`] writes to.
    static OPEN: RefCell<Option<WebSocket>> = const { RefCell::new(None) };
}

/// Sends a frame on the open socket; false when there is none (it is not kept: what
/// must not be lost goes through the outbox and the REST API).
pub fn send(frame: &ClientFrame) -> bool {
    let text = serde_json::to_string(frame).unwrap_or_default();
    OPEN.with(|open| {
        open.borrow()
            .as_ref()
            .filter(|socket| socket.ready_state() == WebSocket::OPEN)
            .is_some_and(|socket| socket.send_with_str(&text).is_ok())
    })
}

/// Whether the socket is open now.
pub fn is_open() -> bool {
    OPEN.with(|open| {
        open.borrow()
            .as_ref()
            .is_some_and(|socket| socket.ready_state() == WebSocket::OPEN)
    })
}

/// The socket as the connection indicator shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Link {
    Connecting,
    Live,
    /// Closed; the next attempt in `retry_in_ms`.
    Reconnecting {
        attempt: u32,
        retry_in_ms: u32,
    },
}

impl Link {
    pub fn state(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Live => "live",
            Self::Reconnecting { .. } => "reconnecting",
        }
    }

    pub fn label(self) -> String {
        match self {
            Self::Connecting => "Connecting…".into(),
            Self::Live => "Live".into(),
            Self::Reconnecting { attempt, retry_in_ms } => {
                format!(
                    "Reconnecting in {:.1} s (attempt {attempt})",
                    f64::from(retry_in_ms) / 1000.0
                )
            }
        }
    }
}

/// How often the connection task looks at its socket.
const POLL_MS: u32 = 200;

/// Keeps the socket open while the page lives.
pub async fn stay_connected(center: Center, chat: Chat, link: RwSignal<Link>) {
    let mut attempt = 0u32;
    loop {
        link.set(Link::Connecting);
        let reloaded = match center.reload().await {
            Ok(()) => chat.reload().await,
            Err(error) => Err(error),
        };
        let opened = match reloaded {
            Ok(()) => run(&center, chat, link).await,
            Err(_) => false,
        };
        attempt = if opened { 1 } else { attempt.saturating_add(1) };
        let retry_in_ms = backoff::delay_ms(attempt, js_sys::Math::random());
        link.set(Link::Reconnecting { attempt, retry_in_ms });
        TimeoutFuture::new(retry_in_ms).await;
    }
}

/// One connection, until it closes. Whether it opened.
async fn run(center: &Center, chat: Chat, link: RwSignal<Link>) -> bool {
    let Some(token) = super::api::token() else {
        return false;
    };
    let url = format!(
        "{}/api/notifications/ws?token={}&lastSeq={}",
        origin(),
        crate::spa::api::encode(&token),
        center.newest_seq()
    );
    let Ok(socket) = WebSocket::new(&url) else {
        return false;
    };
    let opened = Rc::new(Cell::new(false));
    let closed = Rc::new(Cell::new(false));
    let on_open = {
        let (opened, socket) = (opened.clone(), socket.clone());
        Closure::<dyn FnMut()>::new(move || {
            opened.set(true);
            OPEN.with(|open| *open.borrow_mut() = Some(socket.clone()));
            link.set(Link::Live);
            // What was composed while offline goes now, in order.
            chat.flush();
        })
    };
    let on_close = {
        let closed = closed.clone();
        Closure::<dyn FnMut(wasm_bindgen::JsValue)>::new(move |_| closed.set(true))
    };
    let on_message = {
        let (center, socket) = (*center, socket.clone());
        Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(text) = event.data().as_string() {
                receive(&center, chat, &socket, &text);
            }
        })
    };
    socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    socket.set_onerror(Some(on_close.as_ref().unchecked_ref()));
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    while !closed.get() {
        TimeoutFuture::new(POLL_MS).await;
    }
    OPEN.with(|open| *open.borrow_mut() = None);
    socket.set_onopen(None);
    socket.set_onclose(None);
    socket.set_onerror(None);
    socket.set_onmessage(None);
    let _ = socket.close();
    opened.get()
}

fn receive(center: &Center, chat: Chat, socket: &WebSocket, text: &str) {
    match serde_json::from_str::<UserFrame>(text) {
        Ok(UserFrame::NotificationNew(frame)) => {
            let ack = serde_json::to_string(&Ack { ack: frame.id.clone() }).unwrap_or_default();
            let _ = socket.send_with_str(&ack);
            center.on_new(&frame);
        }
        Ok(UserFrame::NotificationUpdate(update)) => center.on_update(&update),
        Ok(UserFrame::MessageNew(message)) => chat.on_message(message),
        Ok(UserFrame::MessageUpdate(message)) => chat.chats.update(|chats| chats.on_amended(message)),
        Ok(UserFrame::StateUpdate(update)) => chat.chats.update(|chats| chats.on_state(&update)),
        Ok(UserFrame::Typing(typing)) => chat
            .chats
            .update(|chats| chats.on_typing(&typing, js_sys::Date::now() as i64)),
        Ok(UserFrame::ConversationChange(change)) => chat.chats.update(|chats| chats.upsert(change.conversation)),
        Ok(UserFrame::Announcement(announcement)) => center.on_announcement(announcement),
        Ok(UserFrame::Error(error)) => leptos::logging::warn!("the server refused a message: {}", error.message),
        Err(error) => leptos::logging::warn!("unreadable frame: {error}"),
    }
}

/// `ws://host` (`wss://` on https) for the page's own origin: the balancer.
fn origin() -> String {
    let location = window().location();
    let scheme = if location.protocol().as_deref() == Ok("https:") {
        "wss"
    } else {
        "ws"
    };
    format!("{scheme}://{}", location.host().unwrap_or_default())
}

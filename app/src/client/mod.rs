//! The end users' web client, served by the balancer at `/` (README, "The end users'
//! client"): sign up, sign in, reset a password; then the notification center with its
//! bell, toasts and preferences, and friends. It is the same wasm as the Live View;
//! [`is_client_surface`] tells them apart by the `<meta>` the balancer's `index.html`
//! carries.

mod account;
mod api;
mod center;
mod chat;
mod friends;
mod socket;

use leptos::{prelude::*, task::spawn_local};

use crate::wire::User;
use center::Center;
use socket::Link;

/// Whether this page is the end users' client rather than the Live View.
pub fn is_client_surface() -> bool {
    document()
        .query_selector(r#"meta[name="liveview-surface"][content="client"]"#)
        .ok()
        .flatten()
        .is_some()
}

/// Who the page is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Signed {
    Checking,
    Out,
    In(User),
}

/// The client's root, mounted instead of the Live View on the balancer's pages.
#[component]
pub fn ClientApp() -> impl IntoView {
    let signed = RwSignal::new(Signed::Checking);
    spawn_local(account::restore(signed));
    move || match signed.get() {
        Signed::Checking => view! { <p class="waiting">"Connecting…"</p> }.into_any(),
        Signed::Out => view! { <account::AccountPage signed /> }.into_any(),
        Signed::In(user) => view! { <Home user /> }.into_any(),
    }
}

/// A tab that shows `which` when clicked and looks chosen while `current` is it.
fn tab<T: Copy + PartialEq + Send + Sync + 'static>(
    current: RwSignal<T>,
    which: T,
    label: &'static str,
    testid: &'static str,
) -> impl IntoView {
    view! {
        <button
            type="button"
            role="tab"
            data-testid=testid
            class:active=move || current.get() == which
            aria-selected=move || (current.get() == which).to_string()
            on:click=move |_| current.set(which)
        >
            {label}
        </button>
    }
}

/// A form's refusal, when there is one.
fn error_line(error: RwSignal<Option<String>>) -> impl IntoView {
    move || {
        error
            .get()
            .map(|message| view! { <p class="error" role="alert" data-testid="account-error">{message}</p> })
    }
}

/// Which panel the signed-in page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Notifications,
    Messages,
    Friends,
    Preferences,
}

#[component]
fn Home(user: User) -> impl IntoView {
    let center = Center::new();
    let chat = chat::Chat::new(&user);
    let link = RwSignal::new(Link::Connecting);
    spawn_local(socket::stay_connected(center, chat, link));
    let panel = RwSignal::new(Panel::Notifications);
    let tab = move |which: Panel, label: &'static str, id: &'static str| tab(panel, which, label, id);
    Effect::new(move |_| center.in_chat.set(panel.get() == Panel::Messages));
    let unread = move || center.inbox.with(|inbox| inbox.unread());
    view! {
        <header class="client-bar">
            <h1>"Live View"</h1>
            <span
                class=move || format!("connection connection-{}", link.get().state())
                data-testid="client-connection"
                data-state=move || link.get().state()
                title=move || link.get().label()
            >
                <span class="dot"></span>
                <span class="connection-label">{move || link.get().label()}</span>
            </span>
            <button
                type="button"
                class="bell"
                data-testid="bell"
                aria-label=move || format!("Notifications, {} unread", unread())
                on:click=move |_| {
                    panel.set(Panel::Notifications);
                    center.seen_all();
                }
            >
                <svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true">
                    <path fill="currentColor" d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3a1.5 1.5 0 0 0-3 0v1.16A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2Z"/>
                </svg>
                <span class="badge" data-testid="unread-count" class:hidden=move || unread() == 0>{unread}</span>
            </button>
            <span class="who" data-testid="who">{user.name.clone()}</span>
            <button type="button" data-testid="sign-out" on:click=move |_| account::sign_out()>"Sign out"</button>
        </header>
        <main class="client">
            <center::AnnouncementBanner center />
            <nav class="tabs panels" role="tablist">
                {tab(Panel::Notifications, "Notifications", "panel-notifications")}
                {tab(Panel::Messages, "Messages", "panel-messages")}
                {tab(Panel::Friends, "Friends", "panel-friends")}
                {tab(Panel::Preferences, "Preferences", "panel-preferences")}
            </nav>
            {move || match panel.get() {
                Panel::Notifications => view! { <center::NotificationList center /> }.into_any(),
                Panel::Messages => view! { <chat::ChatPanel chat /> }.into_any(),
                Panel::Friends => view! { <friends::FriendsPanel center chat panel /> }.into_any(),
                Panel::Preferences => view! { <center::PreferencesPanel /> }.into_any(),
            }}
        </main>
        <center::Toasts center />
    }
}

//! The browser application: on `/analytics/realtime` the business monitoring page
//! ([`monitoring`]); everywhere else the live view — the header, the flow canvas with its toolbar and component
//! list, the side panel (component card, request inspector, recent requests), the control
//! panel and the component health table.
//!
//! [`stream`] keeps the live stream connected and buffers what arrives; [`canvas`] runs the
//! one animation-frame loop that applies it ([`state::Live::apply_batch`]) and draws.
//! Keyboard: space pauses, → steps the stepped request, + and − change speed, f fits.

pub(crate) mod api;
mod canvas;
mod cards;
mod controls;
mod header;
mod inspector;
mod monitoring;
pub(crate) mod sign_in;
mod state;
mod stream;

use leptos::{prelude::*, task::spawn_local};

use crate::{
    components::StatusReport,
    flow::{Layout, NodeId},
    wire::{Flow, StreamFilters},
};
use canvas::{FlowCanvas, with_engine};
use state::Live;
use stream::Stream;

/// The SPA's root component, mounted by the `frontend` crate: the dashboard once the
/// page knows who it is, or the sign-in page.
#[component]
pub fn App() -> impl IntoView {
    if crate::client::is_client_surface() {
        return view! { <crate::client::ClientApp /> }.into_any();
    }
    let who = RwSignal::new(sign_in::Who::Asking);
    spawn_local(sign_in::ask(who));
    (move || {
        match who.get() {
        sign_in::Who::Asking => view! { <p class="waiting">"Connecting…"</p> }.into_any(),
        sign_in::Who::Nobody => view! { <sign_in::SignInPage who /> }.into_any(),
        sign_in::Who::Unreachable(error) => {
            view! { <p class="waiting" data-testid="unreachable">{format!("The dashboard does not answer ({error}); trying again…")}</p> }
                .into_any()
        }
        sign_in::Who::Known(session) if monitoring::is_monitoring_path() => {
            view! { <monitoring::MonitoringPage session /> }.into_any()
        }
        sign_in::Who::Known(session) => view! { <Dashboard session /> }.into_any(),
    }
    })
    .into_any()
}

/// Everything the signed-in (or anonymous) person sees.
#[component]
fn Dashboard(session: crate::wire::SessionInfo) -> impl IntoView {
    let live = Live::new();
    live.session.set(Some(session));
    let stream = Stream::default();
    spawn_local(stream::stay_connected(live, stream.clone()));
    live.selected_request.set(inspector::request_from_location());

    // The control panel's filters narrow this viewer's subscription too.
    {
        let stream = stream.clone();
        Effect::new(move |_| {
            let filters = live.controls.with(|controls| controls.filters.clone());
            let mut flows = Vec::new();
            if filters.show_email_flow {
                flows.push(Flow::Email);
            }
            if filters.show_in_app_flow {
                flows.push(Flow::InApp);
            }
            stream.set_filters(StreamFilters {
                flows: (flows.len() < 2).then_some(flows),
                types: (!filters.notification_types.is_empty()).then_some(filters.notification_types),
                servers: (!filters.server_filter.is_empty()).then_some(filters.server_filter),
            });
        });
    }
    // A notice fades after a few seconds.
    Effect::new(move |_| {
        if live.notice.get().is_some() {
            set_timeout(move || live.notice.set(None), std::time::Duration::from_secs(6));
        }
    });
    let keys = window_event_listener(leptos::ev::keydown, move |event| on_key(live, &event));
    // A link to a component or a window of history (an alert's) once the canvas runs.
    set_timeout(move || follow_link(live), std::time::Duration::from_millis(300));
    // A pasted or followed link to a request opens it without a reload.
    let links = window_event_listener(leptos::ev::hashchange, move |_| {
        if let Some(id) = inspector::request_from_location() {
            live.selected_request.set(Some(id));
        }
        follow_link(live);
    });
    on_cleanup(move || {
        keys.remove();
        links.remove();
    });

    view! {
        <header::Header live />
        <div class=move || if live.connection.get() == state::Connection::Live { "workspace" } else { "workspace stale" }>
            <section class="flow-stage" aria-label="Flow canvas">
                <Toolbar live />
                <div class="canvas-frame">
                    <FlowCanvas live stream />
                    <ReplayBadge live />
                </div>
                <ComponentList live />
            </section>
            <aside class="side" aria-label="Details">
                <cards::CardPanel live />
                <inspector::Inspector live />
                <inspector::RequestList live />
            </aside>
        </div>
        <controls::ControlPanel live />
        <details class="health" open>
            <summary>"Component health"</summary>
            {move || match live.status.get() {
                Some(status) => view! { <StatusReport status /> }.into_any(),
                None => view! {
                    <p class="waiting" data-testid="waiting">"Waiting for the first system:status…"</p>
                }
                .into_any(),
            }}
        </details>
        <footer>
            "Last message: #"
            <span data-testid="last-seq">{move || live.last_seq.get()}</span>
        </footer>
        <div class="notice" role="status" aria-live="polite" data-testid="notice">
            {move || live.notice.get()}
        </div>
    }
}

/// `#component=KEY` opens that component's card and brings it into view;
/// `#replay=FROM-TO` (Unix milliseconds) replays that window of history.
fn follow_link(live: Live) {
    let hash = window().location().hash().unwrap_or_default();
    if let Some(key) = hash.strip_prefix("#component=") {
        let key: String = js_sys::decode_uri_component(key).map(String::from).unwrap_or_default();
        if let Some(node) = NodeId::from_key(&key) {
            with_engine(|engine| engine.focus(&node));
            live.selected_node.set(Some(node));
        }
    } else if let Some(window) = hash.strip_prefix("#replay=") {
        let ends = window
            .split_once('-')
            .and_then(|(from, to)| Some((from.parse::<i64>().ok()?, to.parse::<i64>().ok()?)));
        if let Some((from, to)) = ends
            && from < to
            && let (Some(from), Some(to)) = (
                chrono::DateTime::from_timestamp_millis(from),
                chrono::DateTime::from_timestamp_millis(to),
            )
        {
            controls::load_replay(live, from, to);
        }
    }
}

fn on_key(live: Live, event: &web_sys::KeyboardEvent) {
    let typing = event
        .target()
        .and_then(|target| wasm_bindgen::JsCast::dyn_into::<web_sys::Element>(target).ok())
        .is_some_and(|element| matches!(element.tag_name().as_str(), "INPUT" | "SELECT" | "TEXTAREA" | "BUTTON"));
    if typing || event.ctrl_key() || event.meta_key() || event.alt_key() {
        return;
    }
    match event.key().as_str() {
        " " => {
            event.prevent_default();
            live.paused.update(|paused| *paused = !*paused);
        }
        "ArrowRight" => {
            if let Some(id) = live.stepping.get_untracked() {
                event.prevent_default();
                controls::step(live, id);
            }
        }
        "+" | "=" => controls::nudge_speed(live, true),
        "-" | "_" => controls::nudge_speed(live, false),
        "f" | "F" => with_engine(|engine| engine.fit()),
        _ => {}
    }
}

/// Zoom buttons, fit, zoom to a component, and the current speed.
#[component]
fn Toolbar(live: Live) -> impl IntoView {
    let focus = move |event: leptos::ev::Event| {
        let key = event_target_value(&event);
        if let Some(node) = NodeId::from_key(&key) {
            with_engine(|engine| engine.focus(&node));
        }
    };
    let keys = Layout::new(&[])
        .nodes
        .into_iter()
        .map(|node| (node.id.key(), node.label))
        .collect::<Vec<_>>();
    view! {
        <div class="toolbar" role="toolbar" aria-label="Canvas view">
            <button aria-label="Zoom in" data-testid="zoom-in" on:click=move |_| with_engine(|engine| engine.zoom(1.25))>"+"</button>
            <button aria-label="Zoom out" data-testid="zoom-out" on:click=move |_| with_engine(|engine| engine.zoom(0.8))>"−"</button>
            <button aria-label="Fit to screen (f)" data-testid="fit" on:click=move |_| with_engine(|engine| engine.fit())>"Fit"</button>
            <select aria-label="Zoom to a component" data-testid="zoom-to" on:change=focus>
                <option value="">"Zoom to…"</option>
                {keys.into_iter().map(|(key, label)| view! { <option value=key>{label}</option> }).collect_view()}
            </select>
            <span class="speed-badge" data-testid="speed-badge">
                {move || format!("{}×", live.controls.with(|controls| controls.playback_speed))}
            </span>
            {move || live.paused.get().then(|| view! { <span class="paused-badge" data-testid="paused">"paused"</span> })}
            <span class="legend" aria-label="Bubble colors">
                <i class="swatch message"></i>"message"
                <i class="swatch email"></i>"email"
                <i class="swatch inapp"></i>"in-app"
                <i class="swatch retry"></i>"retry"
                <i class="swatch failed"></i>"failed"
            </span>
        </div>
    }
}

/// Shown over the canvas while a past window plays.
#[component]
fn ReplayBadge(live: Live) -> impl IntoView {
    view! {
        {move || live.replaying.get().then(|| view! { <div class="replay-badge" data-testid="replay-badge">"REPLAY"</div> })}
    }
}

/// Every canvas node as a button: the keyboard's (and a screen reader's) way to the cards.
#[component]
fn ComponentList(live: Live) -> impl IntoView {
    // Redrawn only when the set of servers changes, so keyboard focus stays put.
    let servers = live.server_ids();
    let nodes = move || {
        Layout::new(&servers.get())
            .nodes
            .into_iter()
            .map(|node| (node.id, node.label))
            .collect::<Vec<_>>()
    };
    view! {
        <nav class="component-list" aria-label="Components">
            {move || nodes().into_iter().map(|node| {
                    let (id, label) = node;
                    let key = id.key();
                    let selected = {
                        let id = id.clone();
                        move || live.selected_node.get().as_ref() == Some(&id)
                    };
                    view! {
                        <button
                            class=move || if selected() { "chip selected" } else { "chip" }
                            data-testid=format!("node-{key}")
                            aria-label=format!("Open the {label} card")
                            on:click=move |_| live.selected_node.set(Some(id.clone()))
                        >
                            {label.clone()}
                        </button>
                    }
                }).collect_view()}
        </nav>
    }
}

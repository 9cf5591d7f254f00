//! The control panel: playback speed, pause and animation switches, step mode, delay
//! injection per component, filters, load simulation, and replay of a past window.
//!
//! Speed, delays, filters and load simulation are the server's shared `ControlSettings`:
//! a change is a `PUT /api/live-view/controls` and comes back to every viewer as
//! `controls:changed`. Delays are real waits inside the real stages. A viewer (who may
//! not change what everyone sees) gets speed and filters for this page only; the rest is
//! disabled for them.

use leptos::{prelude::*, task::spawn_local};

use super::{api, canvas::with_engine, state::Live};
use crate::{
    flow::Replay,
    wire::{ControlSettings, Envelope, HistoryWindow, NotificationType, Timestamp, parse_frame},
};

/// Changes the shared settings: applies `change` to the current ones and sends them.
pub fn change_controls(live: Live, change: impl FnOnce(&mut ControlSettings)) {
    let mut next = live.controls.get_untracked();
    change(&mut next);
    live.controls.set(next.clone());
    if !live.can_act() {
        return;
    }
    spawn_local(async move {
        match api::put::<ControlSettings>("/api/live-view/controls", &next).await {
            Ok(applied) => live.controls.set(applied),
            Err(error) => live.notice.set(Some(format!("Controls not saved: {error}"))),
        }
    });
}

/// The speeds `+` and `−` step through.
const SPEEDS: [f64; 8] = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0];

/// One notch faster (`up`) or slower.
pub fn nudge_speed(live: Live, up: bool) {
    let current = live.controls.get_untracked().playback_speed;
    let next = if up {
        SPEEDS
            .iter()
            .copied()
            .find(|speed| *speed > current + 1e-9)
            .unwrap_or(ControlSettings::MAX_SPEED)
    } else {
        SPEEDS
            .iter()
            .rev()
            .copied()
            .find(|speed| *speed < current - 1e-9)
            .unwrap_or(ControlSettings::MIN_SPEED)
    };
    change_controls(live, |controls| controls.playback_speed = next);
}

/// Lets the stepped request pass one more stage.
pub fn step(live: Live, id: String) {
    spawn_local(async move {
        let path = format!("/api/live-view/requests/{}/step", api::encode(&id));
        if let Err(error) = api::post_empty::<crate::wire::Stepped>(&path).await {
            live.notice.set(Some(format!("Step failed: {error}")));
        }
    });
}

#[component]
pub fn ControlPanel(live: Live) -> impl IntoView {
    let controls = live.controls;
    let speed = move || controls.with(|controls| controls.playback_speed);
    let step_type = RwSignal::new(NotificationType::Signup);
    let start_stepped = move |_| {
        let kind = step_type.get_untracked();
        spawn_local(async move {
            let body = crate::wire::SimulateRequest {
                kind,
                count: 1,
                interval: 0,
                step: true,
            };
            match api::post::<crate::wire::SimulationStarted>("/api/live-view/simulate", &body).await {
                Ok(started) => {
                    if let Some(id) = started.request_ids.first() {
                        live.stepping.set(Some(id.clone()));
                        live.selected_request.set(Some(id.clone()));
                    }
                }
                Err(error) => live.notice.set(Some(format!("Could not start: {error}"))),
            }
        });
    };
    let step_now = move |_| {
        if let Some(id) = live.stepping.get_untracked() {
            step(live, id);
        }
    };
    view! {
        <section class="controls" aria-label="Controls">
            <div class="control-group">
                <h3>"Playback"</h3>
                <label class="control slider">
                    <span>"Speed"</span>
                    <input
                        type="range"
                        min=ControlSettings::MIN_SPEED
                        max=ControlSettings::MAX_SPEED
                        step="0.25"
                        aria-label="Playback speed"
                        data-testid="speed"
                        prop:value=speed
                        on:change=move |event| {
                            let value: f64 = event_target_value(&event).parse().unwrap_or(1.0);
                            change_controls(live, |controls| controls.playback_speed = value);
                        }
                    />
                    <output data-testid="speed-value">{move || format!("{}×", speed())}</output>
                </label>
                <div class="row">
                    <button
                        data-testid="pause"
                        aria-pressed=move || live.paused.get().to_string()
                        aria-label="Pause or resume the animation (space)"
                        on:click=move |_| live.paused.update(|paused| *paused = !*paused)
                    >
                        {move || if live.paused.get() { "Resume" } else { "Pause" }}
                    </button>
                    <Toggle label="Animation" signal=live.animate testid="toggle-animation" />
                    <Toggle label="Trails" signal=live.trails testid="toggle-trails" />
                    <Toggle label="Glow" signal=live.glow testid="toggle-glow" />
                </div>
            </div>
            <fieldset class="control-group" prop:disabled=move || !live.can_act()>
                <h3>"Step mode"</h3>
                <div class="row">
                    <TypeSelect selected=step_type label="Type of the stepped request" />
                    <button data-testid="start-stepped" on:click=start_stepped>"Start stepped request"</button>
                    <button
                        class="primary"
                        data-testid="step"
                        aria-label="Advance the stepped request one stage (→)"
                        disabled=move || live.stepping.get().is_none()
                        on:click=step_now
                    >
                        "Step →"
                    </button>
                </div>
                <p class="hint" data-testid="stepping">
                    {move || live.stepping.get().map(|id| format!("stepping {id}")).unwrap_or_default()}
                </p>
            </fieldset>
            <Delays live />
            <Filters live />
            <Simulation live />
            <ReplayPanel live />
            <Announce live />
            <AuditPanel live />
        </section>
    }
}

#[component]
fn Toggle(label: &'static str, signal: RwSignal<bool>, testid: &'static str) -> impl IntoView {
    view! {
        <label class="toggle">
            <input
                type="checkbox"
                data-testid=testid
                aria-label=label
                prop:checked=move || signal.get()
                on:change=move |event| signal.set(event_target_checked(&event))
            />
            {label}
        </label>
    }
}

#[component]
fn TypeSelect(selected: RwSignal<NotificationType>, label: &'static str) -> impl IntoView {
    view! {
        <select
            aria-label=label
            data-testid="step-type"
            on:change=move |event| {
                let name = event_target_value(&event);
                if let Some(kind) = NotificationType::ALL.into_iter().find(|kind| kind.name() == name) {
                    selected.set(kind);
                }
            }
        >
            {NotificationType::ALL
                .into_iter()
                .map(|kind| view! { <option value=kind.name() selected=move || selected.get() == kind>{kind.name()}</option> })
                .collect_view()}
        </select>
    }
}

#[component]
fn Delays(live: Live) -> impl IntoView {
    type Field = fn(&mut crate::wire::Delays) -> &mut u64;
    let sliders: [(&'static str, &'static str, Field); 7] = [
        ("Load balancer", "loadBalancer", |d| &mut d.load_balancer),
        ("Server processing", "serverProcessing", |d| &mut d.server_processing),
        ("Database", "databaseOperation", |d| &mut d.database_operation),
        ("Queueing", "queueing", |d| &mut d.queueing),
        ("Worker", "workerProcessing", |d| &mut d.worker_processing),
        ("Email delivery", "emailDelivery", |d| &mut d.email_delivery),
        ("WebSocket delivery", "websocketDelivery", |d| &mut d.websocket_delivery),
    ];
    view! {
        <fieldset class="control-group" prop:disabled=move || !live.can_act()>
            <h3>"Delay injection (ms)"</h3>
            {sliders
                .into_iter()
                .map(|(label, name, field)| {
                    view! {
                        <Slider
                            label=label.to_string()
                            description=format!("{label} delay in milliseconds")
                            testid=format!("delay-{name}")
                            min=0.0
                            max=2000.0
                            step=50.0
                            value=Signal::derive(move || live.controls.with(|controls| *field(&mut controls.delays.clone()) as f64))
                            set=Callback::new(move |ms: f64| change_controls(live, |controls| *field(&mut controls.delays) = ms as u64))
                        />
                    }
                })
                .collect_view()}
        </fieldset>
    }
}

#[component]
fn Filters(live: Live) -> impl IntoView {
    let servers = live.server_ids();
    let flow = |label: &'static str, testid: &'static str, email: bool| {
        view! {
            <label class="toggle">
                <input
                    type="checkbox"
                    data-testid=testid
                    aria-label=format!("Show the {label} flow")
                    prop:checked=move || live.controls.with(|c| if email { c.filters.show_email_flow } else { c.filters.show_in_app_flow })
                    on:change=move |event| {
                        let on = event_target_checked(&event);
                        change_controls(live, |controls| {
                            if email { controls.filters.show_email_flow = on } else { controls.filters.show_in_app_flow = on }
                        });
                    }
                />
                {label}
            </label>
        }
    };
    view! {
        <div class="control-group">
            <h3>"Filters"</h3>
            <div class="row">{flow("email", "filter-email", true)}{flow("in-app", "filter-inapp", false)}</div>
            <TypeChips live label="Notification types (none checked: all)" verb="Only" testid="filter-type"
                list=|controls| &mut controls.filters.notification_types />
            <div class="row chips" aria-label="Servers (none checked: all)">
                {move || servers.get().into_iter().map(|server| {
                        let id = server.clone();
                        let checked = server.clone();
                        view! {
                            <label class="toggle">
                                <input
                                    type="checkbox"
                                    aria-label=format!("Only requests through {server}")
                                    data-testid=format!("filter-server-{server}")
                                    prop:checked=move || live.controls.with(|c| c.filters.server_filter.contains(&checked))
                                    on:change=move |event| {
                                        let on = event_target_checked(&event);
                                        let id = id.clone();
                                        change_controls(live, move |controls| {
                                            let servers = &mut controls.filters.server_filter;
                                            servers.retain(|other| *other != id);
                                            if on { servers.push(id) }
                                        });
                                    }
                                />
                                {server.clone()}
                            </label>
                        }
                    }).collect_view()}
            </div>
        </div>
    }
}

#[component]
fn Simulation(live: Live) -> impl IntoView {
    let on = move || live.controls.with(|controls| controls.simulate_load);
    let rate = move || live.controls.with(|controls| controls.simulation_rate);
    view! {
        <fieldset class="control-group" prop:disabled=move || !live.can_act()>
            <h3>"Load simulation"</h3>
            <div class="row">
                <label class="toggle">
                    <input
                        type="checkbox"
                        data-testid="simulate"
                        aria-label="Simulate load"
                        prop:checked=on
                        on:change=move |event| {
                            let on = event_target_checked(&event);
                            change_controls(live, |controls| controls.simulate_load = on);
                        }
                    />
                    "virtual users on"
                </label>
            </div>
            <Slider
                label="Rate (req/s)".to_string()
                testid="simulation-rate".to_string()
                min=0.5
                max=50.0
                step=0.5
                value=Signal::derive(rate)
                set=Callback::new(move |value: f64| change_controls(live, |controls| controls.simulation_rate = value))
            />
            <TypeChips live label="Mix of request types" verb="Simulate" testid="mix"
                list=|controls| &mut controls.simulation_mix />
        </fieldset>
    }
}

/// Which of the settings' type lists a row of type checkboxes edits.
type TypeList = fn(&mut ControlSettings) -> &mut Vec<NotificationType>;

/// One checkbox per notification type, editing one list of the shared settings.
#[component]
fn TypeChips(
    live: Live,
    label: &'static str,
    verb: &'static str,
    testid: &'static str,
    list: TypeList,
) -> impl IntoView {
    view! {
        <div class="row chips" aria-label=label>
            {NotificationType::ALL
                .into_iter()
                .map(|kind| view! {
                    <label class="toggle">
                        <input
                            type="checkbox"
                            aria-label=format!("{verb} {} requests", kind.name())
                            data-testid=format!("{testid}-{}", kind.name())
                            prop:checked=move || live.controls.with(|controls| list(&mut controls.clone()).contains(&kind))
                            on:change=move |event| {
                                let on = event_target_checked(&event);
                                change_controls(live, |controls| {
                                    let kinds = list(controls);
                                    kinds.retain(|other| *other != kind);
                                    if on { kinds.push(kind) }
                                });
                            }
                        />
                        {kind.name()}
                    </label>
                })
                .collect_view()}
        </div>
    }
}

/// A labelled range input showing its value; `set` runs when the person lets go.
#[component]
pub fn Slider(
    label: String,
    /// What a screen reader says, when the visible label leans on its group's heading.
    #[prop(optional)]
    description: Option<String>,
    testid: String,
    min: f64,
    max: f64,
    step: f64,
    #[prop(into)] value: Signal<f64>,
    set: Callback<f64>,
) -> impl IntoView {
    view! {
        <label class="control slider">
            <span>{label.clone()}</span>
            <input
                type="range"
                min=min
                max=max
                step=step
                aria-label=description.unwrap_or(label)
                data-testid=testid.clone()
                prop:value=move || value.get()
                on:change=move |event| {
                    if let Ok(next) = event_target_value(&event).parse::<f64>() {
                        set.run(next);
                    }
                }
            />
            <output data-testid=format!("{testid}-value")>{move || value.get()}</output>
        </label>
    }
}

/// Each event of a history window, kept as raw JSON, is read by [`parse_frame`] like
/// the live stream's frames.
fn envelopes(history: &HistoryWindow) -> Vec<Envelope> {
    history
        .events
        .iter()
        .filter_map(|event| parse_frame(event.get()).ok())
        .flatten()
        .collect()
}

/// What the replay panel shows, copied from the engine a few times a second.
#[derive(Debug, Clone, PartialEq)]
struct ReplayView {
    from: Timestamp,
    to: Timestamp,
    /// The moment shown, as it really was.
    now: Timestamp,
    position_ms: f64,
    duration_ms: f64,
    playing: bool,
    events: usize,
}

/// A minute of the replay window, typed as a UTC date and time.
#[component]
fn MinuteInput(
    text: &'static str,
    label: &'static str,
    testid: &'static str,
    value: RwSignal<String>,
) -> impl IntoView {
    view! {
        <label class="control">
            {text}
            <input
                type="datetime-local"
                aria-label=label
                data-testid=testid
                prop:value=move || value.get()
                on:change=move |event| value.set(event_target_value(&event))
            />
        </label>
    }
}

/// Loads the live view's history from `from` to `to` and plays it on the canvas (the
/// replay panel's Load, and a `#replay=FROM-TO` link, as an alert's "the minute before").
pub(super) fn load_replay(live: Live, from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>) {
    spawn_local(async move {
        let path = format!(
            "/api/live-view/history?from={}&to={}&topics=request:progress&limit=50000",
            from.timestamp_millis(),
            to.timestamp_millis()
        );
        match api::get::<HistoryWindow>(&path).await {
            Ok(history) => {
                with_engine(|engine| {
                    engine.scene.clear();
                    engine.replay = Some(Replay::new(envelopes(&history), from, to));
                });
                live.replaying.set(true);
            }
            Err(error) => live.notice.set(Some(format!("History not loaded: {error}"))),
        }
    });
}

#[component]
fn ReplayPanel(live: Live) -> impl IntoView {
    let minutes = RwSignal::new(5u32);
    let view_state = RwSignal::new(None::<ReplayView>);
    set_interval(
        move || {
            let next = with_engine(|engine| {
                engine.replay.as_ref().map(|replay| ReplayView {
                    from: replay.from,
                    now: replay.now(),
                    to: replay.to,
                    position_ms: replay.position_ms,
                    duration_ms: replay.duration_ms(),
                    playing: replay.playing,
                    events: replay.len(),
                })
            });
            if view_state.get_untracked() != next {
                view_state.set(next);
            }
        },
        std::time::Duration::from_millis(200),
    );
    let window_from = RwSignal::new(String::new());
    let window_to = RwSignal::new(String::new());
    let load = move |_| {
        // A chosen window, or else the last N minutes.
        let chosen = (
            crate::clock::parse_minute(&window_from.get_untracked()),
            crate::clock::parse_minute(&window_to.get_untracked()),
        );
        let (from, to) = match chosen {
            (Some(from), Some(to)) if from < to => (from, to),
            (Some(_), Some(_)) => {
                live.notice.set(Some("The window must end after it starts".into()));
                return;
            }
            _ => {
                let to = chrono::Utc::now();
                (to - chrono::Duration::minutes(i64::from(minutes.get_untracked())), to)
            }
        };
        load_replay(live, from, to);
    };
    // Runs an action on the loaded replay, if any.
    let with_replay = |action: fn(&mut Replay, &mut crate::flow::Scene, &crate::flow::Layout)| {
        with_engine(|engine| {
            let super::canvas::Engine {
                replay, scene, layout, ..
            } = engine;
            if let Some(replay) = replay.as_mut() {
                action(replay, scene, layout);
            }
        })
    };
    let exit = move |_| {
        with_engine(|engine| {
            engine.replay = None;
            engine.scene.clear();
        });
        live.replaying.set(false);
    };
    view! {
        <div class="control-group">
            <h3>"Replay"</h3>
            <div class="row">
                <label class="control">
                    "Last "
                    <select
                        aria-label="Replay window"
                        data-testid="replay-window"
                        on:change=move |event| minutes.set(event_target_value(&event).parse().unwrap_or(5))
                    >
                        <option value="1">"1 minute"</option>
                        <option value="5" selected>"5 minutes"</option>
                        <option value="15">"15 minutes"</option>
                        <option value="60">"60 minutes"</option>
                    </select>
                </label>
                <button data-testid="replay-load" on:click=load>"Replay"</button>
            </div>
            <div class="row">
                <MinuteInput text="or from " label="Replay window start, UTC" testid="replay-from" value=window_from />
                <MinuteInput text="to " label="Replay window end, UTC" testid="replay-to" value=window_to />
                " UTC"
            </div>
            {move || view_state.get().map(|state| {
                view! {
                    <div class="replay" data-testid="replay" data-playing=state.playing.to_string()>
                        <p>
                            <time data-testid="replay-time">{crate::clock::date_time_millis(state.now)}</time>
                            {format!(" · {} stage events · {} – {}", state.events, crate::clock::hms(state.from), crate::clock::hms(state.to))}
                        </p>
                        <input
                            type="range"
                            class="scrubber"
                            min="0"
                            max=state.duration_ms
                            step="100"
                            aria-label="Replay position"
                            data-testid="replay-scrubber"
                            prop:value=state.position_ms
                            on:change=move |event| {
                                let position: f64 = event_target_value(&event).parse().unwrap_or(0.0);
                                with_engine(|engine| {
                                    let super::canvas::Engine { replay, scene, layout, .. } = engine;
                                    if let Some(replay) = replay.as_mut() {
                                        replay.seek(position, scene, layout);
                                    }
                                });
                            }
                        />
                        <div class="row">
                            <button data-testid="replay-toggle" on:click=move |_| with_replay(|replay, _, _| replay.playing = !replay.playing)>
                                {if state.playing { "Pause" } else { "Play" }}
                            </button>
                            <button data-testid="replay-rewind" on:click=move |_| with_replay(|replay, scene, layout| replay.seek(0.0, scene, layout))>
                                "Rewind"
                            </button>
                            <button data-testid="replay-exit" on:click=exit>"Back to live"</button>
                        </div>
                    </div>
                }
            })}
        </div>
    }
}

/// Says something to every end user (`POST /api/announcements`): a banner in their
/// client, live, and for a week to those who come later.
#[component]
fn Announce(live: Live) -> impl IntoView {
    let title = RwSignal::new(String::new());
    let body = RwSignal::new(String::new());
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let announcement = crate::wire::NewAnnouncement {
            title: title.get_untracked(),
            body: body.get_untracked(),
        };
        spawn_local(async move {
            match api::post::<crate::wire::Announcement>("/api/announcements", &announcement).await {
                Ok(sent) => {
                    title.set(String::new());
                    body.set(String::new());
                    live.notice.set(Some(format!("Announced: {}", sent.title)));
                }
                Err(error) => live.notice.set(Some(format!("Could not announce: {error}"))),
            }
        });
    };
    view! {
        <form class="control-group announce" data-testid="announce" on:submit=submit>
            <fieldset prop:disabled=move || !live.can_act()>
                <h3>"Announce to end users"</h3>
                <input placeholder="Title" maxlength="100" required data-testid="announce-title"
                    prop:value=move || title.get() on:input=move |event| title.set(event_target_value(&event)) />
                <input placeholder="What to say" maxlength="1000" required data-testid="announce-body"
                    prop:value=move || body.get() on:input=move |event| body.set(event_target_value(&event)) />
                <button type="submit" data-testid="announce-send">"Announce"</button>
            </fieldset>
        </form>
    }
}

/// The newest control actions (`GET /api/audit`): who did what, and what it got. Read
/// again after each action this page takes (its notice changes) and every few seconds,
/// for the actions of other pages and programs.
#[component]
fn AuditPanel(live: Live) -> impl IntoView {
    let entries = RwSignal::new(Vec::<crate::wire::AuditEntry>::new());
    let load = move || {
        spawn_local(async move {
            if let Ok(log) = api::get::<crate::wire::AuditLog>("/api/audit?limit=8").await {
                entries.set(log.entries);
            }
        });
    };
    Effect::new(move |_| {
        live.notice.track();
        load();
    });
    set_interval(load, std::time::Duration::from_secs(5));
    view! {
        <div class="control-group" data-testid="audit">
            <h3>"Audit log"</h3>
            <ul class="mini-list">
                {move || {
                    entries
                        .get()
                        .into_iter()
                        .map(|entry| {
                            view! {
                                <li data-testid="audit-entry">
                                    <time>{crate::clock::hms(entry.at)}</time>
                                    {format!(" {} {} {} → {}", entry.actor, entry.method, entry.path, entry.status)}
                                </li>
                            }
                        })
                        .collect_view()
                }}
            </ul>
        </div>
    }
}

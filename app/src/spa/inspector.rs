//! The request inspector: recent requests (filtered like the canvas), find by id, and one
//! request's journey as a list and as a Gantt-style timeline of its stages, with the
//! current stage highlighted, metadata, redacted log lines, retries and dead-lettering
//! marked, export as JSON and CSV, and a link that opens the app on that request.

use leptos::{prelude::*, task::spawn_local};
use wasm_bindgen::JsCast;

use super::{api, state::Live};
use crate::wire::{Outcome, RequestDetails, RequestTracker, Stage, StageStatus, SystemStage};

/// The link that opens the app on one request.
pub fn request_link(id: &str) -> String {
    let location = window().location();
    format!(
        "{}{}#request={}",
        location.origin().unwrap_or_default(),
        location.pathname().unwrap_or_default(),
        api::encode(id)
    )
}

/// The request named in the page's `#request=` fragment, if any.
pub fn request_from_location() -> Option<String> {
    let hash = window().location().hash().ok()?;
    let id = hash.strip_prefix("#request=")?;
    let decoded: String = js_sys::decode_uri_component(id).ok()?.into();
    (!decoded.is_empty()).then_some(decoded)
}

#[component]
pub fn RequestList(live: Live) -> impl IntoView {
    let search = RwSignal::new(String::new());
    let rows = move || {
        let controls = live.controls.get();
        let filters = controls.filters;
        let query = search.get();
        live.requests.with(|rows| {
            rows.iter()
                .filter(|row| filters.notification_types.is_empty() || filters.notification_types.contains(&row.kind))
                .filter(|row| {
                    filters.server_filter.is_empty()
                        || row
                            .server
                            .as_ref()
                            .is_none_or(|server| filters.server_filter.contains(server))
                })
                .filter(|row| query.is_empty() || row.request_id.contains(query.trim()))
                .take(50)
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    let open = move || {
        let id = search.get_untracked().trim().to_string();
        if !id.is_empty() {
            live.selected_request.set(Some(id));
        }
    };
    view! {
        <section class="requests" aria-label="Recent requests">
            <div class="find">
                <input
                    type="search"
                    placeholder="Find a request by id"
                    aria-label="Find a request by id"
                    data-testid="find-request"
                    prop:value=move || search.get()
                    on:input=move |event| search.set(event_target_value(&event))
                    on:keydown=move |event: web_sys::KeyboardEvent| {
                        if event.key() == "Enter" {
                            open();
                        }
                    }
                />
                <button on:click=move |_| open() aria-label="Open the request with this id">"Open"</button>
            </div>
            <ul class="request-list" data-testid="request-list">
                {move || rows().into_iter().map(|row| {
                        let id = row.request_id.clone();
                        let selected = {
                            let id = id.clone();
                            move || live.selected_request.get().as_deref() == Some(id.as_str())
                        };
                        view! {
                            <li
                                class=move || format!("request outcome-{}{}", row.outcome.label(), if selected() { " selected" } else { "" })
                                data-testid=format!("request-{}", row.request_id)
                            >
                                <button class="link" on:click=move |_| live.selected_request.set(Some(id.clone()))>
                                    <span class="kind">{row.kind.name()}</span>
                                    <code>{short(&row.request_id)}</code>
                                    <span class="stage">{row.stage.name()}</span>
                                    <span class="outcome">{row.outcome.label()}</span>
                                </button>
                            </li>
                        }
                    }).collect_view()}
            </ul>
        </section>
    }
}

fn short(id: &str) -> String {
    let tail: String = id.chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
    if tail.len() < id.len() {
        format!("…{tail}")
    } else {
        tail
    }
}

#[component]
pub fn Inspector(live: Live) -> impl IntoView {
    let details = RwSignal::new(None::<Result<RequestDetails, String>>);
    // Fetches the selected request, and again whenever an event about it arrives.
    Effect::new(move |_| {
        let Some(id) = live.selected_request.get() else {
            details.set(None);
            return;
        };
        let touched = live
            .touched
            .with(|touched| touched.iter().any(|touched| touched == &id));
        let shown =
            details.with_untracked(|details| matches!(details, Some(Ok(current)) if current.request.request_id == id));
        if shown && !touched {
            return;
        }
        spawn_local(async move {
            let path = format!("/api/live-view/requests/{}", api::encode(&id));
            let answer = api::get::<RequestDetails>(&path).await;
            // Only if it is still the one selected.
            if live.selected_request.get_untracked().as_deref() == Some(id.as_str()) {
                details.set(Some(answer));
            }
        });
    });
    move || match (live.selected_request.get(), details.get()) {
        (None, _) => {
            view! { <p class="hint">"Pick a request from the list, or click a bubble on the canvas."</p> }.into_any()
        }
        (Some(_), None) => view! { <p class="hint">"Loading…"</p> }.into_any(),
        (Some(id), Some(Err(error))) => view! {
            <p class="error" data-testid="inspector-error">{format!("{id}: {error}")}</p>
        }
        .into_any(),
        (Some(_), Some(Ok(details))) => view! { <Journey live details /> }.into_any(),
    }
}

#[component]
fn Journey(live: Live, details: RequestDetails) -> impl IntoView {
    let request = details.request.clone();
    let id = request.request_id.clone();
    let outcome = details.outcome.label();
    let timeline = timeline(&request);
    let stages = request
        .stages
        .iter()
        .enumerate()
        .map(|(index, stage)| {
            stage_row(
                index,
                stage,
                index + 1 == request.stages.len() && details.outcome == Outcome::InProgress,
            )
        })
        .collect_view();
    let logs = details
        .logs
        .iter()
        .map(|line| {
            view! {
                <li class=format!("log log-{}", line.level)>
                    <time>{crate::clock::hms_millis(line.timestamp)}</time>
                    {format!(" {} {}: {}", line.level, line.component, line.message)}
                </li>
            }
        })
        .collect_view();
    let json_details = details.clone();
    let csv_request = request.clone();
    let link_id = id.clone();
    let copy_id = id.clone();
    let stepping = move || live.stepping.get().is_some_and(|stepping| stepping == link_id);
    let step_id = id.clone();
    view! {
        <section class="inspector" data-testid="inspector" data-request=id.clone() aria-label="Request inspector">
            <header class="card-head">
                <h2>{format!("{} request", request.kind.name())}</h2>
                <button class="close" aria-label="Close the inspector" on:click=move |_| live.selected_request.set(None)>"×"</button>
            </header>
            <p class="mono" data-testid="inspector-id">{id.clone()}</p>
            <p>
                <span class=format!("pill outcome-{outcome}") data-testid="inspector-outcome">{outcome}</span>
                {format!(" · {:.1} ms · {} stages · started {}", request.total_duration, request.stages.len(), crate::clock::hms_millis(request.start_time))}
            </p>
            <div class="actions">
                <button data-testid="export-json" on:click=move |_| {
                    let text = serde_json::to_string_pretty(&json_details).unwrap_or_default();
                    download(&format!("request-{}.json", json_details.request.request_id), "application/json", &text);
                }>"Export JSON"</button>
                <button data-testid="export-csv" on:click=move |_| {
                    download(&format!("request-{}.csv", csv_request.request_id), "text/csv", &journey_csv(&csv_request));
                }>"Export CSV"</button>
                <button data-testid="copy-link" on:click=move |_| {
                    let link = request_link(&copy_id);
                    let _ = window().navigator().clipboard().write_text(&link);
                    let _ = window().location().set_hash(&format!("request={}", api::encode(&copy_id)));
                    live.notice.set(Some(format!("Link copied: {link}")));
                }>"Copy link"</button>
                {move || stepping().then(|| {
                    let step_id = step_id.clone();
                    view! { <button class="primary" data-testid="inspector-step" on:click=move |_| super::controls::step(live, step_id.clone())>"Step →"</button> }
                })}
            </div>
            <h3>"Timeline"</h3>
            <div class="gantt" data-testid="timeline">{timeline}</div>
            <h3>"Stages"</h3>
            <ol class="stages" data-testid="stages">{stages}</ol>
            <h3>"Log"</h3>
            <ul class="logs" data-testid="logs">{logs}</ul>
        </section>
    }
}

fn stage_row(index: usize, stage: &Stage, current: bool) -> impl IntoView + use<> {
    let status = status_label(stage.status);
    let note = match stage.stage {
        SystemStage::RetryScheduled => " (retry)",
        SystemStage::DeadLetter => " (dead-lettered)",
        SystemStage::Skipped => " (not sent: the user's preference)",
        _ => "",
    };
    let metadata = stage
        .metadata
        .iter()
        .map(|(key, value)| {
            let value = value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(" · ");
    view! {
        <li
            class=format!("stage stage-{status}{}", if current { " current" } else { "" })
            data-testid="stage"
            data-stage=stage.stage.name()
            data-index=index
        >
            <span class="stage-name">{format!("{}{note}", stage.stage.name())}</span>
            <span class="stage-component">{stage.component.clone()}</span>
            <span class="stage-duration" data-testid="stage-duration">
                {stage.duration.map(|ms| format!("{ms:.1} ms")).unwrap_or_else(|| status.to_string())}
            </span>
            {(!metadata.is_empty()).then(|| view! { <span class="stage-meta">{metadata}</span> })}
        </li>
    }
}

fn status_label(status: StageStatus) -> &'static str {
    match status {
        StageStatus::Pending => "pending",
        StageStatus::Processing => "processing",
        StageStatus::Completed => "completed",
        StageStatus::Failed => "failed",
    }
}

/// Bars placed by start time and sized by duration, relative to the whole journey.
fn timeline(request: &RequestTracker) -> impl IntoView + use<> {
    let start = request.start_time;
    let end = request
        .stages
        .iter()
        .map(|stage| stage.end_time.unwrap_or(stage.start_time))
        .max()
        .unwrap_or(start);
    let span = ((end - start).num_microseconds().unwrap_or(0) as f64 / 1000.0).max(1.0);
    request
        .stages
        .iter()
        .map(|stage| {
            let offset = (stage.start_time - start).num_microseconds().unwrap_or(0) as f64 / 1000.0;
            let duration = stage.duration.unwrap_or(0.0);
            // A bar is at least visible (0.4%) and never runs past the track's end.
            let left = (offset / span * 100.0).clamp(0.0, 99.6);
            let width = (duration / span * 100.0).min(100.0 - left).max(0.4);
            let status = status_label(stage.status);
            view! {
                <div class="gantt-row">
                    <span class="gantt-label">{stage.stage.name()}</span>
                    <span class="gantt-track">
                        <span
                            class=format!("gantt-bar stage-{status} flow-{}", flow_class(stage.stage))
                            style=format!("left:{left:.2}%;width:{width:.2}%")
                            title=format!("{} {:.1} ms", stage.stage.name(), duration)
                        ></span>
                    </span>
                </div>
            }
        })
        .collect_view()
}

fn flow_class(stage: SystemStage) -> &'static str {
    match stage {
        SystemStage::SmtpAttempt => "email",
        SystemStage::InappPush | SystemStage::ClientAck | SystemStage::Read => "inapp",
        SystemStage::RetryScheduled => "retry",
        SystemStage::DeadLetter => "failed",
        _ => "request",
    }
}

/// One line per stage: stage, component, status, start, end, duration and metadata.
pub fn journey_csv(request: &RequestTracker) -> String {
    let quote = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
    let mut out = String::from("requestId,type,stage,component,status,startTime,endTime,durationMs,metadata\n");
    for stage in &request.stages {
        let metadata = serde_json::to_string(&stage.metadata).unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\n",
            quote(&request.request_id),
            request.kind.name(),
            stage.stage.name(),
            quote(&stage.component),
            status_label(stage.status),
            stage.start_time.to_rfc3339(),
            stage.end_time.map(|at| at.to_rfc3339()).unwrap_or_default(),
            stage.duration.map(|ms| format!("{ms:.3}")).unwrap_or_default(),
            quote(&metadata),
        ));
    }
    out
}

/// Saves `text` as a file through a temporary object URL.
fn download(name: &str, mime: &str, text: &str) {
    let parts = js_sys::Array::of1(&text.into());
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let Ok(blob) = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options) else {
        return;
    };
    let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) else {
        return;
    };
    let document = document();
    if let Some(anchor) = document
        .create_element("a")
        .ok()
        .and_then(|element| element.dyn_into::<web_sys::HtmlAnchorElement>().ok())
    {
        anchor.set_href(&url);
        anchor.set_download(name);
        let _ = document.body().map(|body| body.append_child(&anchor));
        anchor.click();
        anchor.remove();
    }
    // Revoked a little later: the download reads the URL after the click returns.
    gloo_timers::callback::Timeout::new(10_000, move || {
        let _ = web_sys::Url::revoke_object_url(&url);
    })
    .forget();
}

//! The header: overall status, active requests, requests per second, average latency,
//! error rate, uptime, and the connection indicator (which also says when the page fell
//! back to server-sent events). A figure that changes flashes once.

use leptos::prelude::*;

use super::state::{Connection, Live, Transport};

/// One header figure. When its text changes the flash animation is replayed (the class
/// taken off, a reflow, the class put back): the text node itself is updated in place.
/// `data-flashes` counts the replays.
#[component]
fn Figure(label: &'static str, testid: &'static str, #[prop(into)] value: Signal<String>) -> impl IntoView {
    let node = NodeRef::<leptos::html::Span>::new();
    let flashes = StoredValue::new(0u32);
    Effect::new(move |previous: Option<String>| {
        let text = value.get();
        if let (Some(previous), Some(element)) = (previous.as_ref(), node.get_untracked())
            && previous != &text
        {
            let classes = element.class_list();
            let _ = classes.remove_1("flash");
            let _ = element.offset_width();
            let _ = classes.add_1("flash");
            flashes.update_value(|count| *count += 1);
            let _ = element.set_attribute("data-flashes", &flashes.get_value().to_string());
        }
        text
    });
    view! {
        <div class="figure">
            <span class="figure-label">{label}</span>
            <span class="figure-value" node_ref=node data-testid=testid data-flashes="0">
                {move || value.get()}
            </span>
        </div>
    }
}

/// Who is signed in, their role, and signing out (with sign-in on).
#[component]
fn Who(live: Live) -> impl IntoView {
    move || {
        live.session.get().map(|session| {
            let login = session.auth == crate::wire::AuthMode::Login;
            view! {
                <div class="who" data-testid="who">
                    <span data-testid="who-name">{session.name.clone()}</span>
                    <span class="role" data-testid="who-role">{session.role.as_str()}</span>
                    {login.then(|| view! {
                        <button class="small" data-testid="sign-out" on:click=move |_| super::sign_in::sign_out()>"Sign out"</button>
                    })}
                </div>
            }
        })
    }
}

#[component]
pub fn Header(live: Live) -> impl IntoView {
    let metrics = live.metrics;
    // A memo, not a derived signal: it wakes the view only when the text really changes,
    // so only changed figures flash.
    let figure = move |pick: fn(&crate::wire::SystemMetrics) -> String| {
        Signal::<String>::from(Memo::new(move |_| {
            metrics.with(|metrics| metrics.as_ref().map(pick).unwrap_or_else(|| "–".into()))
        }))
    };
    let health = move || {
        metrics.with(|metrics| {
            metrics
                .as_ref()
                .map(|metrics| metrics.system_status.label())
                .unwrap_or("unknown")
        })
    };
    let connection = live.connection;
    let transport = live.transport;
    let describe = move || {
        let over = match transport.get() {
            Transport::WebSocket => "",
            Transport::Sse => " (server-sent events: WebSockets are refused on the way)",
        };
        match connection.get() {
            Connection::Connecting => "Connecting…".to_string(),
            Connection::Live => format!("Live{over}"),
            Connection::Reconnecting { attempt, retry_in_ms } => format!(
                "Connection lost — reconnecting (attempt {attempt}, next try in {:.1} s)",
                f64::from(retry_in_ms) / 1000.0
            ),
        }
    };
    view! {
        <header class="topbar">
            <h1>"Live View"</h1>
            <div class=move || format!("overall health-{}", health()) data-testid="header-health" role="status">
                <span class="dot" aria-hidden="true"></span>
                {health}
            </div>
            <div class="figures" aria-label="System figures">
                <Figure label="active" testid="active-requests" value=figure(|m| m.active_requests.to_string()) />
                <Figure label="req/s" testid="requests-per-second" value=figure(|m| format!("{:.1}", m.requests_per_second)) />
                <Figure label="avg latency" testid="average-latency" value=figure(|m| format!("{:.0} ms", m.average_latency)) />
                <Figure label="errors" testid="error-rate" value=figure(|m| format!("{:.1}%", m.error_rate * 100.0)) />
                <Figure label="uptime" testid="uptime-header" value=figure(|m| m.uptime.clone()) />
            </div>
            <a class="nav" href="/analytics/realtime" data-testid="to-monitoring">"Business"</a>
            <a class="nav-plain" href="/status">"Status page"</a>
            <Who live />
            <div
                class=move || format!("connection connection-{}", connection.get().state())
                data-testid="connection"
                data-state=move || connection.get().state()
                data-transport=move || match transport.get() { Transport::WebSocket => "websocket", Transport::Sse => "sse" }
                role="status"
                aria-live="polite"
            >
                <span class="dot" aria-hidden="true"></span>
                <span data-testid="connection-text">{describe}</span>
            </div>
        </header>
    }
}

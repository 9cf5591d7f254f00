//! Leptos views shared by the SPA and the server-rendered pages. They take plain data,
//! not signals, so the server renders them once per request and the SPA re-renders
//! them when a new `system:status` arrives.

use leptos::prelude::*;

use crate::wire::{ComponentStatus, SystemStatus};

/// The stylesheet both the SPA and the status page use; inlined into the status page so
/// it needs no second request and works with curl and with JavaScript disabled.
pub const STYLESHEET: &str = include_str!("../../../style/main.css");

/// Overall health, uptime and version, then one row per component.
#[component]
pub fn StatusReport(status: SystemStatus) -> impl IntoView {
    let overall = status.status.label();
    let checked = crate::clock::date_time(status.timestamp);
    let started = crate::clock::date_time(status.started_at);
    let rows = status
        .components
        .into_iter()
        .map(|component| view! { <ComponentRow component /> })
        .collect_view();
    view! {
        <section class="summary" aria-label="System summary">
            <div class=format!("overall health-{overall}") data-testid="overall-status">
                <span class="dot" aria-hidden="true"></span>
                {overall}
            </div>
            <dl class="facts">
                <div>
                    <dt>"Uptime"</dt>
                    <dd data-testid="uptime">{status.uptime}</dd>
                </div>
                <div>
                    <dt>"Version"</dt>
                    <dd data-testid="version">{status.version}</dd>
                </div>
                <div>
                    <dt>"Started"</dt>
                    <dd>{started}</dd>
                </div>
                <div>
                    <dt>"Checked"</dt>
                    <dd data-testid="checked-at">{checked}</dd>
                </div>
            </dl>
        </section>
        <table class="components" aria-label="Components">
            <thead>
                <tr>
                    <th scope="col">"Component"</th>
                    <th scope="col">"Health"</th>
                    <th scope="col">"Address"</th>
                    <th scope="col">"Figure"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

#[component]
fn ComponentRow(component: ComponentStatus) -> impl IntoView {
    let health = component.health.label();
    let kind = component.kind.label();
    let figure = match component.detail {
        Some(detail) => format!("{} — {detail}", component.figure),
        None => component.figure,
    };
    view! {
        <tr data-testid=format!("component-{}", component.id) data-health=health>
            <th scope="row">
                <span class=format!("kind kind-{}", kind.replace(' ', "-"))>{kind}</span>
                {component.name}
            </th>
            <td>
                <span class=format!("pill health-{health}")>{health}</span>
            </td>
            <td class="mono">{component.address}</td>
            <td>{figure}</td>
        </tr>
    }
}

/// The whole `/status` document, rendered on the server. No script: it is complete as sent.
#[component]
pub fn StatusPage(status: SystemStatus) -> impl IntoView {
    let title = format!("Live View status: {}", status.status.label());
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta http-equiv="refresh" content="5" />
                <title>{title}</title>
                <style>{STYLESHEET}</style>
            </head>
            <body>
                <header class="topbar">
                    <h1>"Live View"</h1>
                    <span class="subtitle">"status"</span>
                    <a class="nav" href="/">"Open the dashboard"</a>
                </header>
                <main>
                    <StatusReport status />
                </main>
                <footer>
                    "This page refreshes every 5 seconds. JSON: "
                    <code>"curl -H 'Accept: application/json' /status"</code>
                </footer>
            </body>
        </html>
    }
}

//! Component cards: the selected canvas node's live figures, a sparkline of its main
//! figure (drawn with plotters on a canvas), and its actions — switch the balancer's
//! algorithm, stop and start servers, pause and resume queues, requeue dead letters (one,
//! or all that match a filter, after a count preview and a confirmation), and the SMTP
//! fault knobs.

use leptos::{html::Canvas, prelude::*, task::spawn_local};
use plotters::prelude::*;
use plotters_canvas::CanvasBackend;

use super::{api, controls::Slider, state::Live};
use crate::{
    flow::NodeId,
    wire::{
        BalancerAlgorithm, BalancerUpdate, ComponentMetrics, Faults, JobList, LoadBalancerMetrics, QueueMetrics,
        QueuePaused, RequeueFilter, Requeued, ServerState,
    },
};

/// Runs an action and shows its outcome (or error) in the notice line.
fn act<T, F>(live: Live, done: &'static str, action: F)
where
    F: std::future::Future<Output = api::ApiResult<T>> + 'static,
{
    spawn_local(async move {
        let message = match action.await {
            Ok(_) => done.to_string(),
            Err(error) => format!("Failed: {error}"),
        };
        live.notice.set(Some(message));
    });
}

/// The card of whichever node is selected, or a hint when none is.
#[component]
pub fn CardPanel(live: Live) -> impl IntoView {
    move || match live.selected_node.get() {
        None => view! {
            <p class="hint">"Click a component on the canvas (or pick one below) to open its card."</p>
        }
        .into_any(),
        Some(node) => view! { <Card live node /> }.into_any(),
    }
}

#[component]
fn Card(live: Live, node: NodeId) -> impl IntoView {
    let key = node.key();
    let title = title(&node);
    let body = match &node {
        NodeId::Balancer => view! { <BalancerCard live /> }.into_any(),
        NodeId::Server(id) => view! { <ServerCard live id=id.clone() /> }.into_any(),
        NodeId::Queue(name) => view! { <QueueCard live name=name.clone() /> }.into_any(),
        NodeId::EmailService => view! { <SmtpCard live /> }.into_any(),
        NodeId::Database | NodeId::WebSocketService => view! { <FiguresCard live key=key.clone() /> }.into_any(),
        other => view! { <p class="about">{about(other)}</p> }.into_any(),
    };
    let spark_key = key.clone();
    let label = format!("{title} card");
    view! {
        <section class="card" data-testid=format!("card-{key}") aria-label=label>
            <header class="card-head">
                <h2>{title}</h2>
                <button class="close" aria-label="Close the card" on:click=move |_| live.selected_node.set(None)>
                    "×"
                </button>
            </header>
            <Sparkline live key=spark_key />
            {body}
        </section>
    }
}

fn title(node: &NodeId) -> String {
    match node {
        NodeId::Users => "Users".into(),
        NodeId::Balancer => "Load balancer".into(),
        NodeId::Server(id) => format!("App server {id}"),
        NodeId::Middleware => "Middleware".into(),
        NodeId::Controllers => "Controllers".into(),
        NodeId::Database => "Database".into(),
        NodeId::NotificationService => "Notification service".into(),
        NodeId::QueueManager => "Queue manager".into(),
        NodeId::Queue(name) => format!("Queue {name}"),
        NodeId::MailWorker => "Mail worker".into(),
        NodeId::InAppWorker => "In-app worker".into(),
        NodeId::EmailService => "SMTP server".into(),
        NodeId::WebSocketService => "WebSocket service".into(),
        NodeId::Client => "Client delivery".into(),
    }
}

fn about(node: &NodeId) -> &'static str {
    match node {
        NodeId::Users => {
            "Everyone sending requests: people, the load simulator's virtual users, tests. Requests enter through the load balancer."
        }
        NodeId::Middleware => {
            "Request id, authentication (bearer sessions), validation, error handling, body size limit and timeout, on every app server."
        }
        NodeId::Controllers => {
            "Signup, login, reset password, purchase and friend requests: each writes its rows and its notifications in one transaction."
        }
        NodeId::NotificationService => {
            "Fans each business event out into deliveries: an email, an in-app notification, or both."
        }
        NodeId::QueueManager => {
            "Adds each delivery's job to its queue in the same transaction (the outbox), so an accepted request never loses one."
        }
        NodeId::MailWorker => {
            "Claims mail jobs, speaks SMTP to the mail server, retries after 5 and 30 minutes, then dead-letters."
        }
        NodeId::InAppWorker => {
            "Claims in-app jobs and pushes them to the user's socket; the client's ack marks them delivered."
        }
        NodeId::Client => "The end user's browser: it acknowledges each in-app notification and may mark it read.",
        _ => "",
    }
}

/// Rows of label and value.
fn facts(rows: Vec<(&'static str, String)>) -> impl IntoView {
    view! {
        <dl class="facts card-facts">
            {rows
                .into_iter()
                .map(|(label, value)| view! { <div><dt>{label}</dt><dd>{value}</dd></div> })
                .collect_view()}
        </dl>
    }
}

/// A signal of one component's latest metrics.
/// A memo: the card is redrawn when this component's figures change, not any component's.
fn metrics_of(live: Live, key: String) -> Memo<Option<ComponentMetrics>> {
    Memo::new(move |_| live.components.with(|components| components.get(&key).cloned()))
}

#[component]
fn Sparkline(live: Live, key: String) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    let samples = Memo::new(move |_| live.sparks.with(|sparks| sparks.get(&key).cloned().unwrap_or_default()));
    Effect::new(move |_| {
        let samples = samples.get();
        if let Some(canvas) = canvas.get() {
            draw_sparkline(canvas, samples.iter().copied().collect::<Vec<_>>().as_slice());
        }
    });
    view! { <canvas class="sparkline" node_ref=canvas width="300" height="56" aria-hidden="true"></canvas> }
}

/// A sparkline of `samples`, oldest first (also the monitoring page's).
pub(super) fn draw_sparkline(canvas: web_sys::HtmlCanvasElement, samples: &[f64]) {
    let Some(backend) = CanvasBackend::with_canvas_object(canvas) else {
        return;
    };
    let root = backend.into_drawing_area();
    let _ = root.fill(&RGBColor(15, 23, 42));
    if samples.len() < 2 {
        return;
    }
    let top = samples.iter().copied().fold(1.0_f64, f64::max) * 1.15;
    let Ok(mut chart) = ChartBuilder::on(&root)
        .margin(4)
        .build_cartesian_2d(0..samples.len() - 1, 0.0..top)
    else {
        return;
    };
    let line = RGBColor(56, 189, 248);
    let _ = chart.draw_series(AreaSeries::new(samples.iter().copied().enumerate(), 0.0, line.mix(0.2)));
    let _ = chart.draw_series(LineSeries::new(
        samples.iter().copied().enumerate(),
        line.stroke_width(2),
    ));
    let _ = root.present();
}

#[component]
fn BalancerCard(live: Live) -> impl IntoView {
    let metrics = metrics_of(live, NodeId::Balancer.key());
    let switch = move |event: leptos::ev::Event| {
        let algorithm = match event_target_value(&event).as_str() {
            "least-connections" => BalancerAlgorithm::LeastConnections,
            _ => BalancerAlgorithm::RoundRobin,
        };
        act(live, "Algorithm switched", async move {
            api::put::<LoadBalancerMetrics>("/api/balancer", &BalancerUpdate { algorithm }).await
        });
    };
    move || {
        let Some(ComponentMetrics::LoadBalancer(balancer)) = metrics.get() else {
            return view! { <p class="hint">"Waiting for the balancer's figures…"</p> }.into_any();
        };
        let algorithm = balancer.algorithm.name();
        let rows = balancer
            .servers
            .iter()
            .map(|server| {
                let sticky = balancer.sticky_sessions.by_server.get(&server.id).copied().unwrap_or(0);
                let running = live
                    .components
                    .with(|components| super::state::server_running(components, server));
                view! {
                    <tr data-testid=format!("balancer-{}", server.id)>
                        <th scope="row">{server.id.clone()}</th>
                        <td><span class=format!("pill health-{}", if server.healthy { "healthy" } else { "critical" })>
                            {if server.healthy { "healthy" } else { "unhealthy" }}
                        </span></td>
                        <td>{server.active_connections}</td>
                        <td>{server.requests_handled}</td>
                        <td>{sticky}</td>
                        <td><ServerSwitch live id=server.id.clone() running /></td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <label class="control">
                "Algorithm "
                <select aria-label="Balancing algorithm" data-testid="algorithm" on:change=switch prop:value=algorithm prop:disabled=move || !live.can_act()>
                    <option value="round-robin" selected=algorithm == "round-robin">"round-robin"</option>
                    <option value="least-connections" selected=algorithm == "least-connections">"least-connections"</option>
                </select>
            </label>
            <table class="mini">
                <thead><tr><th>"server"</th><th>"health"</th><th>"conns"</th><th>"handled"</th><th>"sticky"</th><th></th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
            <p class="hint">{format!("{} sticky sessions in all", balancer.sticky_sessions.total)}</p>
        }
        .into_any()
    }
}

/// Stop or start one app server, for real.
#[component]
fn ServerSwitch(live: Live, id: String, running: bool) -> impl IntoView {
    let number = id.trim_start_matches("server-").to_string();
    let action = if running { "stop" } else { "start" };
    let label = format!("{} {id}", if running { "Stop" } else { "Start" });
    view! {
        <button
            class="small"
            aria-label=label
            data-testid=format!("{action}-{id}")
            prop:disabled=move || !live.can_act()
            on:click=move |_| {
                let path = format!("/api/servers/{number}/{action}");
                act(live, if running { "Server stopped" } else { "Server started" }, async move {
                    api::post_empty::<ServerState>(&path).await
                });
            }
        >
            {action}
        </button>
    }
}

#[component]
fn ServerCard(live: Live, id: String) -> impl IntoView {
    let metrics = metrics_of(live, id.clone());
    move || match metrics.get() {
        Some(ComponentMetrics::Server(server)) => view! {
            {facts(vec![
                ("state", if server.running { "running".into() } else { "stopped".into() }),
                ("requests/s", format!("{:.1}", server.requests_per_second)),
                ("in flight", server.in_flight.to_string()),
                ("latency p50", format!("{:.1} ms", server.latency_p50)),
                ("latency p99", format!("{:.1} ms", server.latency_p99)),
                ("errors", server.errors.to_string()),
                ("handled", server.requests_handled.to_string()),
            ])}
            <ServerSwitch live id=server.id.clone() running=server.running />
        }
        .into_any(),
        _ => view! { <p class="hint">"Waiting for this server's figures…"</p> }.into_any(),
    }
}

#[component]
fn FiguresCard(live: Live, key: String) -> impl IntoView {
    let metrics = metrics_of(live, key);
    move || {
        match metrics.get() {
        Some(ComponentMetrics::Database(database)) => facts(vec![
            ("backend", database.backend),
            ("reads/s", format!("{:.1}", database.reads_per_second)),
            ("writes/s", format!("{:.1}", database.writes_per_second)),
            ("commit p50", format!("{:.2} ms", database.commit_latency_p50)),
            ("commit p99", format!("{:.2} ms", database.commit_latency_p99)),
        ])
        .into_any(),
        Some(ComponentMetrics::Websocket(socket)) => view! {
            {facts(vec![
                ("connections", socket.total_connections.to_string()),
                ("users", socket.authenticated_users.to_string()),
                ("messages/s", format!("{:.1}", socket.messages_per_second)),
            ])}
            <h3>"Rooms"</h3>
            <ul class="mini-list">
                {socket.rooms.into_iter().map(|room| view! { <li>{format!("{}: {} users", room.name, room.users)}</li> }).collect_view()}
            </ul>
            <h3>"Recent events"</h3>
            <ul class="mini-list">
                {socket
                    .recent_events
                    .into_iter()
                    .rev()
                    .take(8)
                    .map(|event| view! {
                        <li>{format!("{} {} {}", crate::clock::hms(event.timestamp), event.kind, event.user_id)}</li>
                    })
                    .collect_view()}
            </ul>
        }
        .into_any(),
        _ => view! { <p class="hint">"Waiting for figures…"</p> }.into_any(),
    }
    }
}

#[component]
fn QueueCard(live: Live, name: String) -> impl IntoView {
    let metrics = metrics_of(live, NodeId::Queue(name.clone()).key());
    let dead_letter = name.ends_with("-dlq");
    let queue_name = name.clone();
    let figures = move || match metrics.get() {
        Some(ComponentMetrics::Queue(queue)) => queue_facts(live, &queue_name, queue).into_any(),
        _ => view! { <p class="hint">"Waiting for this queue's figures…"</p> }.into_any(),
    };
    view! {
        {figures}
        {dead_letter.then(|| view! { <DeadLetters live name=name.clone() /> })}
    }
}

fn queue_facts(live: Live, name: &str, queue: QueueMetrics) -> impl IntoView {
    let paused = queue.counts.paused;
    let action = if paused { "resume" } else { "pause" };
    let path = format!("/api/queues/{name}/{action}");
    view! {
        {facts(vec![
            ("waiting", queue.counts.waiting.to_string()),
            ("active", queue.counts.active.to_string()),
            ("delayed", queue.counts.delayed.to_string()),
            ("completed", queue.counts.completed.to_string()),
            ("failed", queue.counts.failed.to_string()),
            ("processed/s", format!("{:.1}", queue.processing_rate)),
            ("average wait", format!("{:.0} ms", queue.average_wait_time)),
            ("workers", format!("{} busy, {} idle", queue.workers.active, queue.workers.idle)),
        ])}
        <button
            data-testid=format!("queue-{action}")
            prop:disabled=move || !live.can_act()
            aria-label=format!("{action} the {name} queue")
            on:click=move |_| {
                let path = path.clone();
                act(live, if paused { "Queue resumed" } else { "Queue paused" }, async move {
                    api::post_empty::<QueuePaused>(&path).await
                });
            }
        >
            {if paused { "Resume" } else { "Pause" }}
        </button>
    }
}

/// A dead-letter queue's jobs, filtered by their last error, with requeue one and requeue
/// all that match (the count is previewed and confirmed first).
#[component]
fn DeadLetters(live: Live, name: String) -> impl IntoView {
    let filter = RwSignal::new(String::new());
    let refresh = RwSignal::new(0u32);
    let list_name = name.clone();
    let jobs = RwSignal::new(None::<api::ApiResult<JobList>>);
    // Lists again when the filter changes, after a requeue, and when this queue's figures
    // change (jobs arrive or leave), not at every metrics update of any component.
    let figures = metrics_of(live, NodeId::Queue(name.clone()).key());
    Effect::new(move |_| {
        let filter = filter.get();
        refresh.track();
        figures.track();
        let name = list_name.clone();
        spawn_local(async move {
            let mut path = format!("/api/queues/{name}/jobs?limit=20");
            if !filter.is_empty() {
                path.push_str(&format!("&errorContains={}", api::encode(&filter)));
            }
            jobs.set(Some(api::get::<JobList>(&path).await));
        });
    });
    let requeue = move |name: String, body: RequeueFilter, count: u64| {
        spawn_local(async move {
            let result = api::post::<Requeued>(&format!("/api/queues/{name}/requeue"), &body).await;
            live.notice.set(Some(match result {
                Ok(answer) => format!("Requeued {} of {count}", answer.moved),
                Err(error) => format!("Failed: {error}"),
            }));
            refresh.update(|n| *n += 1);
        });
    };
    let all_name = name.clone();
    let requeue_all = move |_| {
        let total = jobs
            .get_untracked()
            .and_then(|list| list.ok())
            .map(|list| list.total)
            .unwrap_or(0);
        let matching = filter.get_untracked();
        let what = if matching.is_empty() {
            "every job".to_string()
        } else {
            format!("the jobs whose error contains “{matching}”")
        };
        let question = format!("Requeue {total} job(s) from {all_name} — {what}?");
        if !window().confirm_with_message(&question).unwrap_or(false) {
            return;
        }
        let body = RequeueFilter {
            error_contains: (!matching.is_empty()).then_some(matching),
            ..RequeueFilter::default()
        };
        requeue(all_name.clone(), body, total);
    };
    view! {
        <h3>"Dead letters"</h3>
        <label class="control">
            "Last error contains "
            <input
                type="search"
                aria-label="Filter dead letters by their last error"
                data-testid="dlq-filter"
                prop:value=move || filter.get()
                on:input=move |event| filter.set(event_target_value(&event))
            />
        </label>
            {move || {
                let name = name.clone();
                let Some(list) = jobs.get() else {
                    return view! { <p class="hint">"Loading…"</p> }.into_any();
                };
                match list {
                    Err(error) => view! { <p class="error">{error}</p> }.into_any(),
                    Ok(list) => {
                        let total = list.total;
                        let rows = list
                            .jobs
                            .into_iter()
                            .map(|job| {
                                let name = name.clone();
                                let id = job.id.clone();
                                view! {
                                    <li>
                                        <code>{job.request_id.clone().unwrap_or_else(|| job.id.clone())}</code>
                                        {format!(" · {} attempts · {}", job.attempts, job.last_error.unwrap_or_default())}
                                        <button class="small" aria-label=format!("Requeue job {}", job.id) prop:disabled=move || !live.can_act()
                                            on:click=move |_| requeue(name.clone(), RequeueFilter { job_id: Some(id.clone()), ..RequeueFilter::default() }, 1)>
                                            "requeue"
                                        </button>
                                    </li>
                                }
                            })
                            .collect_view();
                        view! {
                            <p data-testid="dlq-count">{format!("{total} matching")}</p>
                            <ul class="mini-list">{rows}</ul>
                        }
                        .into_any()
                    }
                }
            }}
        <button data-testid="requeue-all" prop:disabled=move || !live.can_act() on:click=requeue_all aria-label="Requeue every matching dead letter">
            "Requeue all matching…"
        </button>
    }
}

#[component]
fn SmtpCard(live: Live) -> impl IntoView {
    let metrics = metrics_of(live, NodeId::EmailService.key());
    let faults = RwSignal::new(None::<Faults>);
    spawn_local(async move {
        if let Ok(current) = api::get::<Faults>("/api/faults").await {
            faults.set(Some(current));
        }
    });
    let save = move |next: Faults| {
        faults.set(Some(next));
        act(live, "SMTP faults set", async move {
            api::put::<Faults>("/api/faults", &next).await
        });
    };
    let figures = move || match metrics.get() {
        Some(ComponentMetrics::Smtp(smtp)) => facts(vec![
            ("sent/s", format!("{:.1}", smtp.sent_per_second)),
            ("circuit", smtp.circuit.label().to_string()),
            ("success", percent(smtp.success_rate)),
            ("failure", percent(smtp.failure_rate)),
            ("sent", smtp.sent.to_string()),
            ("failed", smtp.failed.to_string()),
            (
                "last reply",
                smtp.last_reply
                    .map(|reply| format!("{} {} ({})", reply.code, reply.message, crate::clock::hms(reply.at)))
                    .unwrap_or_else(|| "–".into()),
            ),
        ])
        .into_any(),
        _ => view! { <p class="hint">"Waiting for SMTP figures…"</p> }.into_any(),
    };
    let knob = move |label: &'static str,
                     testid: &'static str,
                     max: f64,
                     step: f64,
                     get: fn(&Faults) -> f64,
                     set: fn(&mut Faults, f64)| {
        view! {
            <Slider
                label=label.to_string()
                testid=testid.to_string()
                min=0.0
                max=max
                step=step
                value=Signal::derive(move || faults.get().map(|faults| get(&faults)).unwrap_or(0.0))
                set=Callback::new(move |value: f64| {
                    let mut next = faults.get_untracked().unwrap_or_default();
                    set(&mut next, value);
                    save(next);
                })
            />
        }
    };
    view! {
        {figures}
        <h3>"Fault knobs (embedded capture server)"</h3>
        <fieldset class="acts" prop:disabled=move || !live.can_act()>
            {knob("451 rate", "fault-4xx", 1.0, 0.05, |f| f.smtp_4xx_rate, |f, v| f.smtp_4xx_rate = v)}
            {knob("554 rate", "fault-5xx", 1.0, 0.05, |f| f.smtp_5xx_rate, |f, v| f.smtp_5xx_rate = v)}
            {knob("latency ms", "fault-latency", 2000.0, 50.0, |f| f.smtp_latency_ms as f64, |f, v| f.smtp_latency_ms = v as u64)}
        </fieldset>
    }
}

/// A fraction as a percentage, or a dash when there was nothing to count.
fn percent(fraction: Option<f64>) -> String {
    fraction.map_or_else(|| "—".to_string(), |fraction| format!("{:.1}%", fraction * 100.0))
}

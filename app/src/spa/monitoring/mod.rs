//! The business monitoring page (`/analytics/realtime`): live counters, metric cards with
//! sparklines and thresholds, the revenue and active-user trends, the activity feed and
//! signup ticker, the activity map, the system health bar, toasts, and the connection
//! indicator.
//!
//! Everything comes from `/ws/metrics` (the snapshot on connect and every 5 s, each
//! activity item as it happens); when no socket opens three times running, the page
//! polls `GET /api/v1/analytics/realtime-metrics` every 5 s instead and tries the socket
//! again every minute. Activity is not applied as it arrives but in one batch every
//! [`APPLY_EVERY_MS`], so a burst costs one update, not one per item.

mod charts;
mod map;
mod socket;

use std::{
    cell::RefCell,
    collections::{HashSet, VecDeque},
    rc::Rc,
};

use leptos::{prelude::*, task::spawn_local};

use crate::wire::{ActivityEvent, ActivityType, AlertSeverity, BusinessMetrics, SeriesMetric, TodayAgainstYesterday};

/// Items the feed keeps.
pub const FEED_KEPT: usize = 100;
/// Snapshots kept for sparklines and the live trend (one every 5 s).
pub const HISTORY_KEPT: usize = 20;
/// How often buffered activity is applied.
pub const APPLY_EVERY_MS: u32 = 250;
/// A payment at least this large (in major units) gets a toast.
pub const LARGE_PAYMENT: f64 = 100.0;
/// How long a toast stays.
const TOAST_MS: u64 = 6_000;

/// Whether the page's address is the monitoring page's.
pub fn is_monitoring_path() -> bool {
    window()
        .location()
        .pathname()
        .is_ok_and(|path| path.starts_with("/analytics/realtime"))
}

/// How the page hears of the figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Link {
    Connecting,
    Live,
    Reconnecting {
        attempt: u32,
        retry_in_ms: u32,
    },
    /// No socket would open: polling the REST snapshot.
    Polling,
}

impl Link {
    fn state(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Live => "live",
            Self::Reconnecting { .. } => "reconnecting",
            Self::Polling => "polling",
        }
    }

    fn describe(self) -> String {
        match self {
            Self::Connecting => "Connecting…".into(),
            Self::Live => "Live".into(),
            Self::Reconnecting { attempt, retry_in_ms } => format!(
                "Connection lost — reconnecting (attempt {attempt}, next try in {:.1} s)",
                f64::from(retry_in_ms) / 1000.0
            ),
            Self::Polling => "Polling every 5 s (WebSockets are refused on the way)".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Toast {
    id: u64,
    kind: &'static str,
    text: String,
}

/// Today's counts the snapshot does not carry (from `/api/v1/analytics/compare`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Today {
    signups: f64,
    invitations: f64,
}

/// What the page knows, as signals.
#[derive(Clone, Copy)]
pub struct Business {
    pub metrics: RwSignal<Option<BusinessMetrics>>,
    pub history: RwSignal<VecDeque<BusinessMetrics>>,
    pub feed: RwSignal<VecDeque<ActivityEvent>>,
    /// Arrived while the feed was paused (hovered); shown when it resumes.
    held: RwSignal<Vec<ActivityEvent>>,
    paused: RwSignal<bool>,
    filter: RwSignal<Option<ActivityType>>,
    pub link: RwSignal<Link>,
    toasts: RwSignal<Vec<Toast>>,
    today: RwSignal<Today>,
    /// Ids of the activity already shown, and of the critical alerts already toasted.
    seen: StoredValue<HashSet<String>>,
    /// Activity received and not yet applied.
    inbox: StoredValue<Rc<RefCell<Vec<ActivityEvent>>>, LocalStorage>,
    next_toast: StoredValue<u64>,
}

impl Business {
    fn new() -> Self {
        Self {
            metrics: RwSignal::new(None),
            history: RwSignal::new(VecDeque::new()),
            feed: RwSignal::new(VecDeque::new()),
            held: RwSignal::new(Vec::new()),
            paused: RwSignal::new(false),
            filter: RwSignal::new(None),
            link: RwSignal::new(Link::Connecting),
            toasts: RwSignal::new(Vec::new()),
            today: RwSignal::new(Today::default()),
            seen: StoredValue::new(HashSet::new()),
            inbox: StoredValue::new_local(Rc::default()),
            next_toast: StoredValue::new(0),
        }
    }

    /// A snapshot arrived (socket or poll).
    pub fn apply_metrics(&self, metrics: BusinessMetrics) {
        // The snapshot's recent activity: what the feed has not shown yet (the first
        // snapshot fills it; while polling, it is the only source).
        let mut recent: Vec<ActivityEvent> = [
            &metrics.live_activity.signups,
            &metrics.live_activity.payments,
            &metrics.live_activity.invitations,
            &metrics.live_activity.logins,
            &metrics.live_activity.password_resets,
            &metrics.live_activity.system,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        recent.sort_by_key(|item| item.timestamp);
        let first = self.metrics.with_untracked(Option::is_none);
        self.receive(recent, !first);
        for alert in &metrics.alerts {
            let new = self
                .seen
                .try_update_value(|seen| seen.insert(format!("alert:{}", alert.id)))
                == Some(true);
            if new && alert.severity == AlertSeverity::Critical {
                self.toast("critical", format!("Critical alert: {}", alert.message));
            }
        }
        self.history.update(|history| {
            history.push_back(metrics.clone());
            while history.len() > HISTORY_KEPT {
                history.pop_front();
            }
        });
        self.metrics.set(Some(metrics));
        let today = self.today;
        spawn_local(async move {
            let signups = count_today(SeriesMetric::Signups).await;
            let invitations = count_today(SeriesMetric::Invitations).await;
            if let (Some(signups), Some(invitations)) = (signups, invitations) {
                today.set(Today { signups, invitations });
            }
        });
    }

    /// Activity to show (oldest first), toasting what deserves it when `announce`.
    fn receive(&self, items: Vec<ActivityEvent>, announce: bool) {
        let fresh: Vec<ActivityEvent> = items
            .into_iter()
            .filter(|item| self.seen.try_update_value(|seen| seen.insert(item.id.clone())) == Some(true))
            .collect();
        if fresh.is_empty() {
            return;
        }
        if announce {
            for item in &fresh {
                match item.kind {
                    ActivityType::Signup => self.toast("signup", format!("New signup: {}", item.user_name)),
                    ActivityType::Payment if item.value.is_some_and(|value| value >= LARGE_PAYMENT) => self.toast(
                        "payment",
                        format!(
                            "Payment of {:.2} {} by {}",
                            item.value.unwrap_or_default(),
                            item.metadata.get("currency").map_or("", String::as_str),
                            item.user_name
                        ),
                    ),
                    _ => {}
                }
            }
        }
        if self.paused.get_untracked() {
            self.held.update(|held| held.extend(fresh));
        } else {
            self.show(fresh);
        }
    }

    fn show(&self, items: Vec<ActivityEvent>) {
        self.feed.update(|feed| {
            for item in items {
                feed.push_front(item);
            }
            // Newest first, whichever way an item came (the snapshot's recent ones may
            // arrive after the socket's newer ones).
            feed.make_contiguous()
                .sort_by_key(|item| std::cmp::Reverse(item.timestamp));
            while feed.len() > FEED_KEPT {
                feed.pop_back();
            }
        });
    }

    /// Applies the activity buffered since the last call.
    fn apply_inbox(&self) {
        let items = self.inbox.with_value(|inbox| std::mem::take(&mut *inbox.borrow_mut()));
        if !items.is_empty() {
            self.receive(items, true);
        }
    }

    pub fn buffer(&self, item: ActivityEvent) {
        self.inbox.with_value(|inbox| inbox.borrow_mut().push(item));
    }

    fn toast(&self, kind: &'static str, text: String) {
        let id = self.next_toast.get_value();
        self.next_toast.set_value(id + 1);
        self.toasts.update(|toasts| {
            toasts.push(Toast { id, kind, text });
            // A burst shows the newest few, not a wall.
            while toasts.len() > 5 {
                toasts.remove(0);
            }
        });
        let toasts = self.toasts;
        set_timeout(
            move || toasts.update(|toasts| toasts.retain(|toast| toast.id != id)),
            std::time::Duration::from_millis(TOAST_MS),
        );
    }
}

async fn count_today(metric: SeriesMetric) -> Option<f64> {
    let name = serde_json::to_value(metric).ok()?.as_str()?.to_string();
    let compared: TodayAgainstYesterday = super::api::get(&format!("/api/v1/analytics/compare?metric={name}"))
        .await
        .ok()?;
    Some(compared.today_so_far)
}

/// The page.
#[component]
pub fn MonitoringPage(session: crate::wire::SessionInfo) -> impl IntoView {
    let business = Business::new();
    spawn_local(socket::stay_connected(business));
    set_interval(
        move || business.apply_inbox(),
        std::time::Duration::from_millis(u64::from(APPLY_EVERY_MS)),
    );
    let link = business.link;
    view! {
        <header class="topbar">
            <h1>"Business, live"</h1>
            <a class="nav" href="/" data-testid="to-live-view">"Live view"</a>
            <a class="nav-plain" href="/status">"Status page"</a>
            <div class="who" data-testid="who"><span>{session.name.clone()}</span><span class="role">{session.role.as_str()}</span></div>
            <div
                class=move || format!("connection connection-{}", link.get().state())
                data-testid="metrics-connection"
                data-state=move || link.get().state()
                role="status"
                aria-live="polite"
            >
                <span class="dot" aria-hidden="true"></span>
                <span>{move || link.get().describe()}</span>
            </div>
        </header>
        <main class=move || if link.get() == Link::Live || link.get() == Link::Polling { "monitoring" } else { "monitoring stale" } data-testid="monitoring">
            <HealthBar business />
            <Counters business />
            <Ticker business />
            <Cards business />
            <div class="monitoring-grid">
                <charts::TrendChart business title="Revenue" metric=SeriesMetric::Revenue testid="chart-revenue"
                    live=|metrics: &BusinessMetrics| metrics.revenue.figures.today />
                <charts::TrendChart business title="Active users" metric=SeriesMetric::ActiveUsers testid="chart-active-users"
                    live=|metrics: &BusinessMetrics| metrics.active_users.current as f64 />
            </div>
            <AlertList business />
            <div class="monitoring-grid">
                <Feed business />
                <map::ActivityMap business />
            </div>
        </main>
        <Toasts business />
    }
}

/// Seed 001's system health: each figure coloured by its threshold (response time 2 s,
/// error rate 2 %).
#[component]
fn HealthBar(business: Business) -> impl IntoView {
    let load = move || {
        business
            .metrics
            .with(|metrics| metrics.as_ref().map(|metrics| metrics.system_load))
    };
    let part = move |label: &'static str,
                     testid: &'static str,
                     show: fn(&crate::wire::SystemLoad) -> (String, &'static str)| {
        view! {
            <div class=move || format!("health-part {}", load().map_or("idle", |load| show(&load).1)) data-testid=testid>
                <span class="figure-label">{label}</span>
                <span class="figure-value">{move || load().map_or_else(|| "–".to_string(), |load| show(&load).0)}</span>
            </div>
        }
    };
    view! {
        <section class="health-bar" aria-label="System health" data-testid="health-bar">
            {part("requests/s", "health-rps", |load| (format!("{:.1}", load.requests_per_second), "ok"))}
            {part("avg response", "health-latency", |load| {
                let level = if load.avg_response_time >= 2_000.0 { "bad" } else if load.avg_response_time >= 1_000.0 { "warn" } else { "ok" };
                (format!("{:.0} ms", load.avg_response_time), level)
            })}
            {part("errors", "health-errors", |load| {
                let level = if load.error_rate >= 2.0 { "bad" } else if load.error_rate >= 1.0 { "warn" } else { "ok" };
                (format!("{:.2} %", load.error_rate), level)
            })}
            {part("queue depth", "health-queue", |load| {
                let level = if load.queue_depth >= 10_000 { "bad" } else if load.queue_depth >= 1_000 { "warn" } else { "ok" };
                (load.queue_depth.to_string(), level)
            })}
            {move || {
                let alerts = business.metrics.with(|metrics| metrics.as_ref().map(|metrics| metrics.alerts.clone()).unwrap_or_default());
                let worst = alerts.iter().map(|alert| alert.severity).max();
                view! {
                    <div class={format!("health-part {}", match worst { Some(AlertSeverity::Critical | AlertSeverity::Error) => "bad", Some(_) => "warn", None => "ok" })} data-testid="health-alerts"
                        title={alerts.iter().map(|alert| alert.message.clone()).collect::<Vec<_>>().join("\n")}>
                        <span class="figure-label">"alerts"</span>
                        <span class="figure-value">{alerts.len()}</span>
                    </div>
                }
            }}
        </section>
    }
}

/// A number that counts up (or down) to its new value.
#[component]
fn Counter(
    label: &'static str,
    testid: &'static str,
    #[prop(into)] target: Signal<f64>,
    decimals: usize,
    unit: Signal<String>,
) -> impl IntoView {
    let shown = RwSignal::new(0.0_f64);
    let generation = StoredValue::new(0u64);
    Effect::new(move |_| {
        let to = target.get();
        let from = shown.get_untracked();
        generation.update_value(|generation| *generation += 1);
        let mine = generation.get_value();
        spawn_local(async move {
            const STEPS: u32 = 20;
            for step in 1..=STEPS {
                if generation.get_value() != mine {
                    return;
                }
                let progress = f64::from(step) / f64::from(STEPS);
                // Ease out: fast at first, settling on the value.
                let eased = 1.0 - (1.0 - progress).powi(3);
                shown.set(from + (to - from) * eased);
                gloo_timers::future::TimeoutFuture::new(30).await;
            }
        });
    });
    view! {
        <div class="counter">
            <span class="counter-value" data-testid=testid data-value=move || format!("{:.*}", decimals, target.get())>
                {move || format!("{:.*}", decimals, shown.get())}
                <small>{move || unit.get()}</small>
            </span>
            <span class="figure-label">{label}</span>
        </div>
    }
}

#[component]
fn Counters(business: Business) -> impl IntoView {
    let revenue = Signal::derive(move || {
        business
            .metrics
            .with(|metrics| metrics.as_ref().map_or(0.0, |m| m.revenue.figures.today))
    });
    let currency = Signal::derive(move || {
        business.metrics.with(|metrics| {
            metrics
                .as_ref()
                .map(|m| format!(" {}", m.revenue.currency))
                .unwrap_or_default()
        })
    });
    let signups = Signal::derive(move || business.today.get().signups);
    let invitations = Signal::derive(move || business.today.get().invitations);
    let none = Signal::derive(String::new);
    view! {
        <section class="counters" aria-label="Today so far">
            <Counter label="revenue today" testid="counter-revenue-today" target=revenue decimals=2 unit=currency />
            <Counter label="signups today" testid="counter-signups" target=signups decimals=0 unit=none />
            <Counter label="invitations today" testid="counter-invitations" target=invitations decimals=0 unit=none />
        </section>
    }
}

/// The newest signups, scrolling by.
#[component]
fn Ticker(business: Business) -> impl IntoView {
    let names = move || {
        business.feed.with(|feed| {
            feed.iter()
                .filter(|item| item.kind == ActivityType::Signup)
                .take(12)
                .map(|item| item.user_name.clone())
                .collect::<Vec<_>>()
        })
    };
    view! {
        <div class="ticker" aria-label="Newest signups" data-testid="ticker">
            <span class="ticker-label">"New:"</span>
            <div class="ticker-window">
                <div class="ticker-track">
                    {move || {
                        let names = names();
                        if names.is_empty() {
                            view! { <span class="hint">"no signups yet"</span> }.into_any()
                        } else {
                            names.into_iter().map(|name| view! { <span class="ticker-item">{name}</span> }).collect_view().into_any()
                        }
                    }}
                </div>
            </div>
        </div>
    }
}

/// One figure with its sparkline over the last snapshots; `warn` says when it crosses
/// its threshold.
#[component]
fn Card(
    business: Business,
    title: &'static str,
    testid: &'static str,
    value: fn(&BusinessMetrics) -> f64,
    show: fn(f64) -> String,
    warn: fn(f64) -> bool,
) -> impl IntoView {
    let current = move || business.metrics.with(|metrics| metrics.as_ref().map(value));
    let samples = Signal::derive(move || {
        business
            .history
            .with(|history| history.iter().map(value).collect::<Vec<_>>())
    });
    view! {
        <div class=move || if current().is_some_and(warn) { "metric-card warn" } else { "metric-card" } data-testid=testid>
            <span class="figure-label">{title}</span>
            <span class="metric-value">{move || current().map_or_else(|| "–".to_string(), show)}</span>
            <charts::Sparkline samples />
        </div>
    }
}

#[component]
fn Cards(business: Business) -> impl IntoView {
    view! {
        <section class="metric-cards" aria-label="Figures">
            <Card business title="active users" testid="card-active-users" value={|m| m.active_users.current as f64} show={|v| format!("{v:.0}")} warn={|_| false} />
            <Card business title="revenue this month" testid="card-revenue-month" value={|m| m.revenue.figures.this_month} show={|v| format!("{v:.2}")} warn={|_| false} />
            <Card business title="pending transactions" testid="card-pending" value={|m| m.transactions.pending as f64} show={|v| format!("{v:.0}")} warn={|v| v >= 100.0} />
            <Card business title="failed transactions" testid="card-failed" value={|m| m.transactions.failed as f64} show={|v| format!("{v:.0}")} warn={|v| v >= 1.0} />
            <Card business title="conversion" testid="card-conversion" value={|m| m.content.conversion_rate} show={|v| format!("{v:.2} %")} warn={|_| false} />
            <Card business title="requests/s" testid="card-rps" value={|m| m.system_load.requests_per_second} show={|v| format!("{v:.1}")} warn={|_| false} />
            <Card business title="error rate" testid="card-errors" value={|m| m.system_load.error_rate} show={|v| format!("{v:.2} %")} warn={|v| v >= 2.0} />
        </section>
    }
}

fn kind_label(kind: ActivityType) -> &'static str {
    match kind {
        ActivityType::Signup => "signup",
        ActivityType::Payment => "payment",
        ActivityType::Invitation => "invitation",
        ActivityType::InvitationAccepted => "accepted",
        ActivityType::Login => "login",
        ActivityType::PasswordReset => "password reset",
        ActivityType::Autoscale => "autoscale",
    }
}

/// The activity feed: newest first, filtered by type, paused while the pointer is on it.
#[component]
fn Feed(business: Business) -> impl IntoView {
    let choose = move |event: leptos::ev::Event| {
        business.filter.set(ActivityType::parse(&event_target_value(&event)));
    };
    let resume = move |_| {
        business.paused.set(false);
        let held = std::mem::take(&mut *business.held.write());
        business.show(held);
    };
    let items = move || {
        let filter = business.filter.get();
        business.feed.with(|feed| {
            feed.iter()
                .filter(|item| filter.is_none_or(|kind| item.kind == kind))
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    view! {
        <section class="panel feed" aria-label="Live activity">
            <div class="panel-head">
                <h2>"Live activity"</h2>
                <select aria-label="Show only" data-testid="feed-filter" on:change=choose>
                    <option value="">"everything"</option>
                    {ActivityType::ALL.into_iter().map(|kind| view! { <option value=kind.as_str()>{kind_label(kind)}</option> }).collect_view()}
                </select>
                {move || business.paused.get().then(|| view! {
                    <span class="paused-badge" data-testid="feed-paused">{move || format!("paused, {} waiting", business.held.with(Vec::len))}</span>
                })}
            </div>
            <ol class="feed-list" data-testid="feed" on:mouseenter=move |_| business.paused.set(true) on:mouseleave=resume>
                <For each=items key=|item| item.id.clone() let:item>
                    {
                        let href = item.request_id.as_ref().map(|id| format!("/#request={}", super::api::encode(id)));
                        let time = item.timestamp.format("%H:%M:%S").to_string();
                        let kind = item.kind.as_str();
                        view! {
                            <li class=format!("feed-item kind-{kind}") data-testid="feed-item" data-kind=kind>
                                <span class="feed-time mono">{time}</span>
                                <span class=format!("feed-kind kind-{kind}")>{kind_label(item.kind)}</span>
                                {match href {
                                    Some(href) => view! { <a class="feed-text" href=href title="Open this request's journey in the live view">{item.description.clone()}</a> }.into_any(),
                                    None => view! { <span class="feed-text">{item.description.clone()}</span> }.into_any(),
                                }}
                            </li>
                        }
                    }
                </For>
            </ol>
        </section>
    }
}

/// The alerts firing or recovering, most severe first: each links to its component on
/// the canvas and to a replay of the minute before it fired, and may be acknowledged.
#[component]
fn AlertList(business: Business) -> impl IntoView {
    let alerts = move || {
        business.metrics.with(|metrics| {
            metrics
                .as_ref()
                .map(|metrics| metrics.alerts.clone())
                .unwrap_or_default()
        })
    };
    let acknowledged = RwSignal::new(HashSet::<String>::new());
    view! {
        <section class="panel alert-list" aria-label="Alerts" data-testid="alert-list">
            <div class="panel-head"><h2>"Alerts"</h2><a class="small-link" href="/api/v1/alerts">"history (JSON)"</a></div>
            {move || {
                let alerts = alerts();
                if alerts.is_empty() {
                    return view! { <p class="hint">"Nothing is firing."</p> }.into_any();
                }
                view! {
                    <ul class="alerts">
                        {alerts.into_iter().map(|alert| {
                            let fired = alert.timestamp.timestamp_millis();
                            let replay = format!("/#replay={}-{}", fired - 60_000, fired);
                            let component = format!("/#component={}", super::api::encode(&alert.component));
                            let id = alert.id.clone();
                            let acked = alert.acknowledged_by.is_some() || acknowledged.with(|acked| acked.contains(&id));
                            let ack = {
                                let id = id.clone();
                                move |_| {
                                    let id = id.clone();
                                    spawn_local(async move {
                                        let path = format!("/api/v1/alerts/{}/ack", super::api::encode(&id));
                                        // 204: no body to read, so the answer is read as text.
                                        let answer = gloo_net::http::Request::post(&path).send().await;
                                        match answer {
                                            Ok(response) if response.ok() => acknowledged.update(|acked| {
                                                acked.insert(id);
                                            }),
                                            Ok(response) => business.toast("critical", format!("Not acknowledged: HTTP {}", response.status())),
                                            Err(error) => business.toast("critical", format!("Not acknowledged: {error}")),
                                        }
                                    });
                                }
                            };
                            let severity = alert.severity.name();
                            view! {
                                <li class=format!("alert severity-{severity}") data-testid="alert" data-severity=severity data-state=format!("{:?}", alert.state).to_lowercase()>
                                    <span class=format!("feed-kind severity-{severity}")>{severity}</span>
                                    <span class="alert-text">{alert.message.clone()}</span>
                                    <a href=component data-testid="alert-component">"on the canvas"</a>
                                    <a href=replay data-testid="alert-replay">"the minute before"</a>
                                    {if acked {
                                        view! { <span class="hint">"acknowledged"</span> }.into_any()
                                    } else {
                                        view! { <button class="small" data-testid="alert-ack" on:click=ack>"Acknowledge"</button> }.into_any()
                                    }}
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                }
                .into_any()
            }}
        </section>
    }
}

#[component]
fn Toasts(business: Business) -> impl IntoView {
    view! {
        <div class="toasts" role="status" aria-live="polite">
            <For each=move || business.toasts.get() key=|toast| toast.id let:toast>
                <div class=format!("toast toast-{}", toast.kind) data-testid="toast" data-kind=toast.kind>{toast.text.clone()}</div>
            </For>
        </div>
    }
}

//! What the dashboard knows, as signals the views read: the header figures, each
//! component's latest metrics (with a short history for sparklines), the shared control
//! settings, the recent requests, and what the person has selected.
//!
//! Envelopes are not applied as they arrive: the stream buffers them and the animation
//! frame applies the whole batch at once ([`Live::apply_batch`]), so a burst of events costs
//! one update of each signal, not one per event.

use std::collections::{BTreeMap, VecDeque};

use leptos::prelude::*;

use crate::{
    flow::NodeId,
    wire::{
        ComponentMetrics, ControlSettings, Envelope, LiveEvent, NotificationType, RequestTracker, StageStatus,
        SystemMetrics, SystemStage, SystemStatus, Timestamp,
    },
};

/// How many recent requests the list keeps.
pub const RECENT_REQUESTS: usize = 200;
/// Samples kept per component for sparklines (one a second).
pub const SPARK_SAMPLES: usize = 60;

/// The connection indicator's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// First attempt, nothing received yet.
    Connecting,
    /// Messages are arriving.
    Live,
    /// The connection was lost; the next attempt starts after `retry_in_ms`.
    Reconnecting { attempt: u32, retry_in_ms: u32 },
}

impl Connection {
    pub fn state(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Live => "live",
            Self::Reconnecting { .. } => "reconnecting",
        }
    }
}

/// How the live stream reaches the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    /// Server-sent events, when a WebSocket could not be opened at all.
    Sse,
}

/// One row of the request list.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRow {
    pub request_id: String,
    pub kind: NotificationType,
    pub stage: SystemStage,
    pub started: Timestamp,
    pub outcome: Outcome,
    pub duration_ms: f64,
    pub server: Option<String>,
}

pub use crate::wire::Outcome;

impl RequestRow {
    fn from_tracker(tracker: &RequestTracker) -> Self {
        let failed = tracker.stages.iter().any(|stage| stage.status == StageStatus::Failed);
        Self {
            request_id: tracker.request_id.clone(),
            kind: tracker.kind,
            stage: tracker.current_stage,
            started: tracker.start_time,
            outcome: if failed { Outcome::Failed } else { Outcome::InProgress },
            duration_ms: tracker.total_duration,
            server: tracker.stages.iter().find_map(|stage| {
                stage
                    .metadata
                    .get("server")
                    .and_then(|value| value.as_str())
                    .map(String::from)
            }),
        }
    }
}

/// The key a component's metrics are kept under, the same as its canvas node's key.
pub fn metrics_key(metrics: &ComponentMetrics) -> String {
    match metrics {
        ComponentMetrics::LoadBalancer(_) => NodeId::Balancer.key(),
        ComponentMetrics::Server(server) => server.id.clone(),
        ComponentMetrics::Queue(queue) => NodeId::Queue(queue.counts.name.clone()).key(),
        ComponentMetrics::Websocket(_) => NodeId::WebSocketService.key(),
        ComponentMetrics::Database(_) => NodeId::Database.key(),
        ComponentMetrics::Smtp(_) => NodeId::EmailService.key(),
    }
}

/// Whether an app server is up: its own metrics say so, or else the balancer's health check.
pub fn server_running(components: &BTreeMap<String, ComponentMetrics>, server: &crate::wire::BalancedServer) -> bool {
    match components.get(&server.id) {
        Some(ComponentMetrics::Server(metrics)) => metrics.running,
        _ => server.healthy,
    }
}

/// The one figure a component's sparkline follows.
pub fn spark_figure(metrics: &ComponentMetrics) -> f64 {
    match metrics {
        ComponentMetrics::LoadBalancer(balancer) => balancer
            .servers
            .iter()
            .map(|server| server.active_connections as f64)
            .sum(),
        ComponentMetrics::Server(server) => server.requests_per_second,
        // A dead-letter queue's depth is its failed jobs; the others', what is still to run.
        ComponentMetrics::Queue(queue) if queue.is_dead_letter() => queue.counts.failed as f64,
        ComponentMetrics::Queue(queue) => queue.counts.waiting as f64 + queue.counts.delayed as f64,
        ComponentMetrics::Websocket(socket) => socket.messages_per_second,
        ComponentMetrics::Database(database) => database.writes_per_second + database.reads_per_second,
        ComponentMetrics::Smtp(smtp) => smtp.sent_per_second,
    }
}

/// Every signal of the dashboard. `Copy`: pass it around freely.
#[derive(Clone, Copy)]
pub struct Live {
    pub connection: RwSignal<Connection>,
    pub transport: RwSignal<Transport>,
    pub last_seq: RwSignal<u64>,
    pub status: RwSignal<Option<SystemStatus>>,
    pub metrics: RwSignal<Option<SystemMetrics>>,
    pub components: RwSignal<BTreeMap<String, ComponentMetrics>>,
    pub sparks: RwSignal<BTreeMap<String, VecDeque<f64>>>,
    pub controls: RwSignal<ControlSettings>,
    pub requests: RwSignal<VecDeque<RequestRow>>,
    /// Bumped whenever any event about a request arrives, with its id; the inspector
    /// refreshes when it is the one shown.
    pub touched: RwSignal<Vec<String>>,
    pub selected_node: RwSignal<Option<NodeId>>,
    pub selected_request: RwSignal<Option<String>>,
    /// The request started in step mode from this page, while it waits at boundaries.
    pub stepping: RwSignal<Option<String>>,
    /// Space pauses the animation (the system itself keeps running).
    pub paused: RwSignal<bool>,
    /// Animation switched off: nodes and figures only, no bubbles.
    pub animate: RwSignal<bool>,
    pub trails: RwSignal<bool>,
    pub glow: RwSignal<bool>,
    /// A message for the person (an action's result or error), shown briefly.
    pub notice: RwSignal<Option<String>>,
    /// A past window is playing. Its own signal, not a connection state: the live stream
    /// is still read underneath, and the indicator keeps telling how that connection is
    /// (as one state, a reconnect during a replay took the REPLAY badge away).
    pub replaying: RwSignal<bool>,
    /// Who this page is signed in as (`anonymous` without sign-in): what it may do.
    pub session: RwSignal<Option<crate::wire::SessionInfo>>,
}

impl Live {
    pub fn new() -> Self {
        Self {
            connection: RwSignal::new(Connection::Connecting),
            transport: RwSignal::new(Transport::WebSocket),
            last_seq: RwSignal::new(0),
            status: RwSignal::new(None),
            metrics: RwSignal::new(None),
            components: RwSignal::new(BTreeMap::new()),
            sparks: RwSignal::new(BTreeMap::new()),
            controls: RwSignal::new(ControlSettings::default()),
            requests: RwSignal::new(VecDeque::new()),
            touched: RwSignal::new(Vec::new()),
            selected_node: RwSignal::new(None),
            selected_request: RwSignal::new(None),
            stepping: RwSignal::new(None),
            paused: RwSignal::new(false),
            animate: RwSignal::new(true),
            trails: RwSignal::new(true),
            glow: RwSignal::new(true),
            notice: RwSignal::new(None),
            replaying: RwSignal::new(false),
            session: RwSignal::new(None),
        }
    }

    /// Whether the person may use the controls (an operator or an admin); the server
    /// checks it again on every request.
    pub fn can_act(&self) -> bool {
        self.session.with(|session| {
            session
                .as_ref()
                .is_some_and(|session| session.role >= crate::wire::Role::Operator)
        })
    }

    /// Applies a batch of envelopes in order, touching each signal at most once; `now_ms`
    /// (the frame's time) paces the request list.
    pub fn apply_batch(&self, envelopes: &[Envelope], now_ms: f64) {
        let Some(last) = envelopes.last() else {
            self.publish_rows(now_ms);
            return;
        };
        let mut status = None;
        let mut metrics = None;
        let mut controls = None;
        let mut component_updates: Vec<ComponentMetrics> = Vec::new();
        let mut request_events: Vec<&LiveEvent> = Vec::new();
        let mut snapshot_requests: Option<&[RequestTracker]> = None;
        for envelope in envelopes {
            match &envelope.event {
                LiveEvent::SystemStatus(next) => status = Some(next.clone()),
                LiveEvent::SystemMetrics(next) => metrics = Some(next.clone()),
                LiveEvent::ControlsChanged(next) => controls = Some(next.clone()),
                LiveEvent::ComponentMetrics(next) => component_updates.push(next.clone()),
                LiveEvent::Snapshot(snapshot) => {
                    status = snapshot.status.clone().or(status);
                    metrics = snapshot.metrics.clone().or(metrics);
                    controls = snapshot.controls.clone().or(controls);
                    component_updates.extend(snapshot.components.iter().cloned());
                    snapshot_requests = Some(&snapshot.requests);
                    request_events.clear();
                }
                event @ (LiveEvent::RequestNew(_)
                | LiveEvent::RequestProgress(_)
                | LiveEvent::RequestComplete(_)
                | LiveEvent::RequestFailed(_)) => request_events.push(event),
                LiveEvent::Gap(gap) => leptos::logging::log!("live stream gap: missed {}..={}", gap.from, gap.to),
                LiveEvent::StreamError(error) => leptos::logging::warn!("live stream error: {}", error.error),
                _ => {}
            }
        }
        self.last_seq.set(last.seq);
        if let Some(status) = status {
            self.status.set(Some(status));
        }
        if let Some(metrics) = metrics {
            self.metrics.set(Some(metrics));
        }
        if let Some(controls) = controls {
            self.controls.set(controls);
        }
        if !component_updates.is_empty() {
            self.sparks.update(|sparks| {
                for metrics in &component_updates {
                    let samples = sparks.entry(metrics_key(metrics)).or_default();
                    samples.push_back(spark_figure(metrics));
                    while samples.len() > SPARK_SAMPLES {
                        samples.pop_front();
                    }
                }
            });
            self.components.update(|components| {
                for metrics in component_updates {
                    components.insert(metrics_key(&metrics), metrics);
                }
            });
        }
        if snapshot_requests.is_some() || !request_events.is_empty() {
            ROWS.with(|rows| {
                let mut rows = rows.borrow_mut();
                let RowBuffer {
                    rows,
                    touched: pending,
                    dirty,
                    ..
                } = &mut *rows;
                *dirty = true;
                if let Some(trackers) = snapshot_requests {
                    rows.clear();
                    rows.extend(trackers.iter().map(RequestRow::from_tracker));
                }
                for event in request_events {
                    pending.push(apply_request_event(rows, event));
                }
                while rows.len() > RECENT_REQUESTS {
                    rows.pop_back();
                }
            });
        }
        self.publish_rows(now_ms);
    }

    /// Hands the request list and the touched ids to the views, at most every
    /// [`ROWS_EVERY_MS`]: under load a list redrawn each frame would cost more than the canvas.
    fn publish_rows(&self, now_ms: f64) {
        let due = ROWS.with(|rows| {
            let mut rows = rows.borrow_mut();
            if !rows.changed() || now_ms - rows.published_at < ROWS_EVERY_MS {
                return None;
            }
            rows.published_at = now_ms;
            let mut touched = std::mem::take(&mut rows.touched);
            touched.sort();
            touched.dedup();
            rows.dirty = false;
            Some((rows.rows.clone(), touched))
        });
        if let Some((rows, touched)) = due {
            self.requests.set(rows);
            self.touched.set(touched);
        }
    }
}

/// How often, at most, the request list and the inspector are refreshed.
const ROWS_EVERY_MS: f64 = 250.0;

/// The request list as the stream has it, ahead of what the views were last given.
#[derive(Default)]
struct RowBuffer {
    rows: VecDeque<RequestRow>,
    touched: Vec<String>,
    dirty: bool,
    published_at: f64,
}

impl RowBuffer {
    fn changed(&self) -> bool {
        self.dirty || !self.touched.is_empty()
    }
}

thread_local! {
    static ROWS: std::cell::RefCell<RowBuffer> = std::cell::RefCell::new(RowBuffer::default());
}

impl Live {
    /// The app servers' ids (`server-1`, ...), as the metrics name them; a memo, so a view
    /// built from it is redrawn only when the set of servers changes, not every second.
    pub fn server_ids(&self) -> Memo<Vec<String>> {
        let components = self.components;
        Memo::new(move |_| {
            components.with(|components| {
                components
                    .keys()
                    .filter(|key| key.starts_with("server-"))
                    .cloned()
                    .collect()
            })
        })
    }
}

impl Default for Live {
    fn default() -> Self {
        Self::new()
    }
}

/// Updates the newest-first request list for one request event; returns the request's id.
fn apply_request_event(rows: &mut VecDeque<RequestRow>, event: &LiveEvent) -> String {
    let id = match event {
        LiveEvent::RequestNew(tracker) => &tracker.request_id,
        LiveEvent::RequestProgress(progress) => &progress.request_id,
        LiveEvent::RequestComplete(complete) => &complete.request_id,
        LiveEvent::RequestFailed(failed) => &failed.request_id,
        _ => unreachable!("only request events are passed here"),
    };
    let position = rows.iter().position(|row| &row.request_id == id);
    match (event, position) {
        (LiveEvent::RequestNew(tracker), None) => rows.push_front(RequestRow::from_tracker(tracker)),
        (LiveEvent::RequestNew(tracker), Some(index)) => rows[index] = RequestRow::from_tracker(tracker),
        (LiveEvent::RequestProgress(progress), Some(index)) => {
            let row = &mut rows[index];
            row.stage = progress.current_stage;
            if progress.stage.status == StageStatus::Failed {
                row.outcome = Outcome::Failed;
            }
            if let Some(server) = progress.stage.metadata.get("server").and_then(|value| value.as_str()) {
                row.server = Some(server.to_string());
            }
            if let Some(duration) = progress.stage.duration {
                let elapsed = (progress.stage.start_time - row.started).num_milliseconds() as f64 + duration;
                row.duration_ms = row.duration_ms.max(elapsed);
            }
        }
        (LiveEvent::RequestProgress(progress), None) => rows.push_front(RequestRow {
            request_id: progress.request_id.clone(),
            kind: progress.kind,
            stage: progress.current_stage,
            started: progress.stage.start_time,
            outcome: Outcome::InProgress,
            duration_ms: 0.0,
            server: None,
        }),
        (LiveEvent::RequestComplete(complete), Some(index)) => {
            rows[index].outcome = Outcome::Completed;
            rows[index].duration_ms = complete.total_duration;
        }
        (LiveEvent::RequestFailed(failed), Some(index)) => {
            rows[index].outcome = Outcome::Failed;
            rows[index].stage = failed.stage;
            rows[index].duration_ms = failed.total_duration;
        }
        _ => {}
    }
    id.clone()
}

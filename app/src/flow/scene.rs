//! What moves on the flow canvas: one bubble per request and per delivery lane, moving
//! node to node as the request's real stage events arrive.
//!
//! A request starts as one bubble on the request path (balancer, server, middleware,
//! controllers, database). At `queue-add` each job gets a bubble of its own flow (email or
//! in-app) that goes on through its queue, worker and delivery, while the request bubble
//! carries the response back to the user. Time here is animation time: the caller advances
//! the scene by real milliseconds times the playback speed, so 0.25× is four times slower
//! to watch and pausing is advancing by zero.
//!
//! Nothing here touches the browser, so the whole model is tested on the host.

use std::collections::{HashMap, VecDeque};

use crate::wire::{Envelope, Filters, Flow, LiveEvent, NotificationType, RequestProgress, StageStatus, SystemStage};

use super::layout::{Layout, NodeId};

/// How long one hop along an edge takes, in animation milliseconds, when nothing is queued
/// behind it.
pub const HOP_MS: f64 = 700.0;
/// How long a bubble stays after its last hop before it is gone.
pub const LINGER_MS: f64 = 1_200.0;
/// How long a node glows after a bubble reached it, and an edge stays animated after a
/// bubble used it.
pub const PULSE_MS: f64 = 800.0;
/// A bubble never keeps more hops than this; older ones are skipped so a slow playback
/// speed under heavy load shows where requests are, not where they were minutes ago.
const MAX_PENDING_HOPS: usize = 6;

/// Which path a bubble is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// The HTTP request itself, until its response reaches the user.
    Request,
    Email,
    InApp,
}

impl Lane {
    fn of_queue(queue: &str) -> Self {
        match Flow::of_queue(queue) {
            Some(Flow::InApp) => Self::InApp,
            _ => Self::Email,
        }
    }
}

/// A bubble's color: its flow, or what happened to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tint {
    /// A request not yet fanned out into deliveries.
    Request,
    /// A message's sending, before it fans out: messaging's own colour.
    Message,
    Email,
    InApp,
    Retry,
    Failed,
}

impl Tint {
    /// The design's flow colors: email #3B82F6, in-app #10B981, retry #F59E0B, failed #EF4444.
    pub fn color(self) -> &'static str {
        match self {
            Self::Request => "#E2E8F0",
            Self::Message => "#A855F7",
            Self::Email => "#3B82F6",
            Self::InApp => "#10B981",
            Self::Retry => "#F59E0B",
            Self::Failed => "#EF4444",
        }
    }

    fn of_lane(lane: Lane) -> Self {
        match lane {
            Lane::Request => Self::Request,
            Lane::Email => Self::Email,
            Lane::InApp => Self::InApp,
        }
    }
}

#[derive(Debug, Clone)]
struct Hop {
    to: NodeId,
    tint: Tint,
}

/// One request's bubble on one lane.
#[derive(Debug, Clone)]
pub struct Bubble {
    pub request_id: String,
    pub lane: Lane,
    pub kind: NotificationType,
    /// The server that handled the request, once known (for filters and the response path).
    pub server: Option<String>,
    pub tint: Tint,
    from: NodeId,
    from_xy: (f64, f64),
    /// Where it is heading, or `None` once it has arrived and nothing else is due.
    to: Option<NodeId>,
    progress: f64,
    pending: VecDeque<Hop>,
    /// The last stage applied, so a stage's start and end do not both move it.
    last_stage: Option<SystemStage>,
    idle_ms: f64,
}

impl Bubble {
    /// Where it is now, in world units.
    pub fn position(&self, layout: &Layout) -> (f64, f64) {
        self.point_at(layout, self.progress)
    }

    /// A point behind it on its current edge, for the trail.
    pub fn tail(&self, layout: &Layout) -> (f64, f64) {
        self.point_at(layout, (self.progress - 0.25).max(0.0))
    }

    fn point_at(&self, layout: &Layout, progress: f64) -> (f64, f64) {
        let target = self.to.as_ref().and_then(|to| layout.position(to));
        match target {
            Some((x, y)) => {
                let (fx, fy) = self.from_xy;
                (fx + (x - fx) * progress, fy + (y - fy) * progress)
            }
            None => self.from_xy,
        }
    }

    /// The node it is at or leaving.
    pub fn at(&self) -> &NodeId {
        &self.from
    }

    /// The node it is heading to, if moving.
    pub fn heading(&self) -> Option<&NodeId> {
        self.to.as_ref()
    }

    /// 0.0 to 1.0: how faded out it is.
    pub fn fade(&self) -> f64 {
        (self.idle_ms / LINGER_MS).clamp(0.0, 1.0)
    }
}

/// What to draw for one bubble, or for several merged into one counted bubble.
#[derive(Debug, Clone, PartialEq)]
pub struct Sprite {
    pub x: f64,
    pub y: f64,
    pub tail_x: f64,
    pub tail_y: f64,
    pub tint: Tint,
    /// 1 for a single bubble; more when bubbles on one edge were merged.
    pub count: usize,
    /// The request, for a single bubble (clicking it opens the journey).
    pub request_id: Option<String>,
    /// 1.0 fully visible, 0.0 gone.
    pub alpha: f64,
}

/// Which bubbles to show: the filters of the control panel, applied on the canvas.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Visibility {
    pub hide_email: bool,
    pub hide_in_app: bool,
    /// Empty: every type.
    pub types: Vec<NotificationType>,
    /// Empty: every server.
    pub servers: Vec<String>,
}

impl Visibility {
    /// The canvas's share of the control panel's filters.
    pub fn of_filters(filters: &Filters) -> Self {
        Self {
            hide_email: !filters.show_email_flow,
            hide_in_app: !filters.show_in_app_flow,
            types: filters.notification_types.clone(),
            servers: filters.server_filter.clone(),
        }
    }

    pub fn shows(&self, bubble: &Bubble) -> bool {
        let lane_shown = match bubble.lane {
            Lane::Request => true,
            Lane::Email => !self.hide_email,
            Lane::InApp => !self.hide_in_app,
        };
        let type_shown = self.types.is_empty() || self.types.contains(&bubble.kind);
        let server_shown = self.servers.is_empty()
            || bubble
                .server
                .as_ref()
                .is_none_or(|server| self.servers.contains(server));
        lane_shown && type_shown && server_shown
    }
}

/// Every bubble, node pulse and edge in use.
#[derive(Debug, Default)]
pub struct Scene {
    bubbles: HashMap<(String, Lane), Bubble>,
    /// Animation time of the last bubble that reached each node.
    node_hits: HashMap<NodeId, f64>,
    /// Animation time a bubble last set off along each edge.
    edge_hits: HashMap<(NodeId, NodeId), f64>,
    clock_ms: f64,
}

impl Scene {
    pub fn len(&self) -> usize {
        self.bubbles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bubbles.is_empty()
    }

    /// Applies a batch from the stream: stage events move bubbles; a snapshot means
    /// events were missed, so stale bubbles go.
    pub fn feed(&mut self, batch: &[Envelope], layout: &Layout) {
        for envelope in batch {
            match &envelope.event {
                LiveEvent::RequestProgress(progress) => self.on_progress(progress, layout),
                LiveEvent::Snapshot(_) => self.clear(),
                _ => {}
            }
        }
    }

    pub fn clear(&mut self) {
        self.bubbles.clear();
        self.node_hits.clear();
        self.edge_hits.clear();
    }

    pub fn bubble(&self, request_id: &str, lane: Lane) -> Option<&Bubble> {
        self.bubbles.get(&(request_id.to_string(), lane))
    }

    /// Moves the request's bubble (or starts one) for a `request:progress`.
    pub fn on_progress(&mut self, progress: &RequestProgress, layout: &Layout) {
        let stage = &progress.stage;
        let text = |key: &str| {
            stage
                .metadata
                .get(key)
                .and_then(|value| value.as_str())
                .map(str::to_string)
        };
        let failed = stage.status == StageStatus::Failed;
        let (lane, hops, tint): (Lane, Vec<NodeId>, Option<Tint>) = match stage.stage {
            SystemStage::LbReceived => (Lane::Request, vec![NodeId::Balancer], None),
            SystemStage::LbForwarded => match text("server") {
                Some(server) => (Lane::Request, vec![NodeId::Server(server)], None),
                None => return,
            },
            SystemStage::ServerReceived => (Lane::Request, vec![NodeId::Server(stage.component.clone())], None),
            SystemStage::Middleware => (Lane::Request, vec![NodeId::Middleware], None),
            SystemStage::Controller => (Lane::Request, vec![NodeId::Controllers], None),
            SystemStage::DbQuery => (Lane::Request, vec![NodeId::Database], None),
            SystemStage::NotificationFanout => (Lane::Request, vec![NodeId::NotificationService], None),
            SystemStage::Response => {
                let status = stage
                    .metadata
                    .get("status")
                    .and_then(|value| value.as_u64())
                    .unwrap_or(200);
                let tint = (status >= 400).then_some(Tint::Failed);
                (Lane::Request, vec![NodeId::Balancer, NodeId::Users], tint)
            }
            SystemStage::QueueAdd => {
                let Some(queue) = text("queue") else { return };
                (
                    Lane::of_queue(&queue),
                    vec![NodeId::QueueManager, NodeId::Queue(queue)],
                    None,
                )
            }
            SystemStage::WorkerPickup => {
                let Some(queue) = text("queue") else { return };
                let lane = Lane::of_queue(&queue);
                let worker = if lane == Lane::InApp {
                    NodeId::InAppWorker
                } else {
                    NodeId::MailWorker
                };
                (lane, vec![NodeId::Queue(queue), worker], None)
            }
            SystemStage::SmtpAttempt => (Lane::Email, vec![NodeId::EmailService], None),
            SystemStage::RetryScheduled => {
                let Some(queue) = text("tier").or_else(|| text("queue")) else {
                    return;
                };
                (Lane::of_queue(&queue), vec![NodeId::Queue(queue)], Some(Tint::Retry))
            }
            SystemStage::DeadLetter => {
                let queue = text("queue").unwrap_or_else(|| "mail-dlq".into());
                (Lane::of_queue(&queue), vec![NodeId::Queue(queue)], Some(Tint::Failed))
            }
            SystemStage::InappPush => (Lane::InApp, vec![NodeId::WebSocketService], None),
            SystemStage::ClientAck | SystemStage::Read => (Lane::InApp, vec![NodeId::Client], None),
            // The delivery stops at its worker.
            SystemStage::Skipped => match text("channel").as_deref() {
                Some("in-app") => (Lane::InApp, vec![NodeId::InAppWorker], None),
                _ => (Lane::Email, vec![NodeId::MailWorker], None),
            },
        };
        let tint = if failed { Some(Tint::Failed) } else { tint };
        let key = (progress.request_id.clone(), lane);
        let server = match stage.stage {
            SystemStage::LbForwarded => text("server"),
            SystemStage::ServerReceived => Some(stage.component.clone()),
            _ => None,
        };
        let start = self.start_of(&progress.request_id, lane, &hops, layout);
        let bubble = self.bubbles.entry(key).or_insert_with(|| {
            let (from, from_xy) = start;
            Bubble {
                request_id: progress.request_id.clone(),
                lane,
                kind: progress.kind,
                server: None,
                tint: match (lane, progress.kind) {
                    (Lane::Request, NotificationType::Message) => Tint::Message,
                    _ => Tint::of_lane(lane),
                },
                from,
                from_xy,
                to: None,
                progress: 0.0,
                pending: VecDeque::new(),
                last_stage: None,
                idle_ms: 0.0,
            }
        });
        if server.is_some() {
            bubble.server = server;
        }
        let tint = tint.unwrap_or(bubble.tint);
        if bubble.last_stage == Some(stage.stage) {
            // The end of a stage whose start already moved the bubble: only a failure shows.
            if failed {
                bubble.tint = Tint::Failed;
                bubble.idle_ms = 0.0;
            }
            return;
        }
        bubble.last_stage = Some(stage.stage);
        bubble.idle_ms = 0.0;
        for to in hops {
            let already_there = bubble.to.is_none() && bubble.from == to;
            let queued_last = bubble.pending.back().map(|hop| &hop.to).or(bubble.to.as_ref());
            if already_there || queued_last == Some(&to) {
                continue;
            }
            bubble.pending.push_back(Hop { to, tint });
        }
        while bubble.pending.len() > MAX_PENDING_HOPS {
            bubble.pending.pop_front();
        }
        if bubble.pending.is_empty() && tint != bubble.tint {
            bubble.tint = tint;
        }
    }

    /// Where a new bubble appears: a delivery lane starts where its request is (or at the
    /// notification service); a request starts at the users, or where it was first seen.
    fn start_of(&self, request_id: &str, lane: Lane, hops: &[NodeId], layout: &Layout) -> (NodeId, (f64, f64)) {
        let from = match lane {
            Lane::Request if hops.first() == Some(&NodeId::Balancer) => NodeId::Users,
            Lane::Request => hops.first().cloned().unwrap_or(NodeId::Users),
            Lane::Email | Lane::InApp => match self.bubbles.get(&(request_id.to_string(), Lane::Request)) {
                Some(request) if request.to.is_none() => request.from.clone(),
                _ if hops.first() == Some(&NodeId::QueueManager) => NodeId::NotificationService,
                _ => hops.first().cloned().unwrap_or(NodeId::QueueManager),
            },
        };
        let xy = layout.position(&from).unwrap_or_default();
        (from, xy)
    }

    /// Moves every bubble on by `elapsed_ms` of animation time; drops faded ones.
    pub fn advance(&mut self, elapsed_ms: f64, layout: &Layout) {
        self.clock_ms += elapsed_ms;
        let clock = self.clock_ms;
        let Self {
            bubbles,
            node_hits,
            edge_hits,
            ..
        } = self;
        for bubble in bubbles.values_mut() {
            let mut budget = elapsed_ms;
            loop {
                if bubble.to.is_none() {
                    let Some(hop) = bubble.pending.pop_front() else {
                        bubble.idle_ms += budget;
                        break;
                    };
                    if layout.position(&hop.to).is_none() {
                        continue; // a server that has gone away
                    }
                    edge_hits.insert((bubble.from.clone(), hop.to.clone()), clock);
                    bubble.to = Some(hop.to);
                    bubble.tint = hop.tint;
                    bubble.progress = 0.0;
                }
                // Catch up when hops pile up behind this one.
                let hop_ms = HOP_MS / (1.0 + bubble.pending.len() as f64);
                let needed = (1.0 - bubble.progress) * hop_ms;
                if budget < needed {
                    bubble.progress += budget / hop_ms;
                    break;
                }
                budget -= needed;
                let Some(arrived) = bubble.to.take() else { break };
                bubble.from_xy = layout.position(&arrived).unwrap_or(bubble.from_xy);
                node_hits.insert(arrived.clone(), clock);
                bubble.from = arrived;
                bubble.progress = 0.0;
            }
        }
        bubbles.retain(|_, bubble| bubble.idle_ms < LINGER_MS);
        node_hits.retain(|_, at| clock - *at < PULSE_MS);
        edge_hits.retain(|_, at| clock - *at < PULSE_MS * 2.0);
    }

    /// 0.0 to 1.0: how brightly a node pulses now.
    pub fn pulse(&self, node: &NodeId) -> f64 {
        self.node_hits
            .get(node)
            .map(|at| 1.0 - (self.clock_ms - at) / PULSE_MS)
            .unwrap_or(0.0)
            .clamp(0.0, 1.0)
    }

    /// Whether something set off along this edge a moment ago (drawn animated).
    pub fn edge_in_use(&self, from: &NodeId, to: &NodeId) -> bool {
        // Only edges used a moment ago are kept, so a scan beats building an owned key.
        self.edge_hits
            .keys()
            .any(|(hit_from, hit_to)| hit_from == from && hit_to == to)
    }

    /// Animation time so far, for dash offsets and pulses.
    pub fn clock_ms(&self) -> f64 {
        self.clock_ms
    }

    /// What to draw. Up to `cap` visible bubbles are drawn one by one; above it, bubbles on
    /// the same edge and in the same stretch of it merge into one counted bubble, so
    /// thousands in flight cost a few hundred shapes.
    pub fn sprites(&self, layout: &Layout, visibility: &Visibility, cap: usize) -> Vec<Sprite> {
        let visible: Vec<&Bubble> = self
            .bubbles
            .values()
            .filter(|bubble| visibility.shows(bubble))
            .collect();
        let sprite = |bubble: &Bubble, single: bool| {
            let (x, y) = bubble.position(layout);
            let (tail_x, tail_y) = bubble.tail(layout);
            Sprite {
                x,
                y,
                tail_x,
                tail_y,
                tint: bubble.tint,
                count: 1,
                request_id: single.then(|| bubble.request_id.clone()),
                alpha: 1.0 - bubble.fade(),
            }
        };
        if visible.len() <= cap {
            let mut sprites: Vec<Sprite> = visible.into_iter().map(|bubble| sprite(bubble, true)).collect();
            // A stable order, so bubbles do not flicker over one another between frames.
            sprites.sort_by(|a, b| a.request_id.cmp(&b.request_id));
            return sprites;
        }
        const STRETCHES: f64 = 8.0;
        // Keyed by edge, tint and stretch; each group sums its members' alpha.
        type Stretch<'a> = (&'a NodeId, Option<&'a NodeId>, Tint, u32);
        let mut groups: HashMap<Stretch<'_>, (Sprite, f64)> = HashMap::new();
        for bubble in visible {
            let stretch = (bubble.progress * STRETCHES) as u32;
            let key = (&bubble.from, bubble.to.as_ref(), bubble.tint, stretch);
            let single = sprite(bubble, false);
            groups
                .entry(key)
                .and_modify(|(group, alpha_sum)| {
                    group.count += 1;
                    *alpha_sum += single.alpha;
                })
                .or_insert_with(|| {
                    let alpha = single.alpha;
                    (single, alpha)
                });
        }
        let mut sprites: Vec<Sprite> = groups
            .into_values()
            .map(|(mut group, alpha_sum)| {
                group.alpha = (alpha_sum / group.count as f64).max(0.3);
                group
            })
            .collect();
        sprites.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
        sprites
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Stage, StageMetadata};

    fn layout() -> Layout {
        Layout::new(&["server-1".to_string(), "server-2".to_string()])
    }

    fn progress(
        id: &str,
        stage: SystemStage,
        component: &str,
        meta: &[(&'static str, serde_json::Value)],
    ) -> RequestProgress {
        let metadata: StageMetadata = meta.iter().map(|(k, v)| (*k, v.clone())).collect();
        RequestProgress {
            request_id: id.into(),
            kind: NotificationType::Purchase,
            current_stage: stage,
            stage: Stage {
                stage,
                component: component.into(),
                start_time: chrono::DateTime::from_timestamp(1_790_000_000, 0).expect("time"),
                end_time: None,
                duration: None,
                status: StageStatus::Processing,
                metadata,
            },
        }
    }

    #[test]
    fn the_panels_filters_become_what_the_canvas_hides() {
        let filters = Filters {
            show_email_flow: false,
            show_in_app_flow: true,
            notification_types: vec![NotificationType::Purchase],
            server_filter: vec!["server-2".into()],
        };
        let visibility = Visibility::of_filters(&filters);
        assert!(visibility.hide_email && !visibility.hide_in_app);
        assert_eq!(visibility.types, [NotificationType::Purchase]);
        assert_eq!(visibility.servers, ["server-2"]);
        assert_eq!(Visibility::of_filters(&Filters::default()), Visibility::default());
    }

    #[test]
    fn a_batch_moves_bubbles_and_a_snapshot_clears_them() {
        let layout = layout();
        let mut scene = Scene::default();
        let envelope = |event| Envelope {
            seq: 1,
            ts: chrono::DateTime::from_timestamp(1_790_000_000, 0).expect("time"),
            event,
        };
        scene.feed(
            &[envelope(LiveEvent::RequestProgress(progress(
                "r1",
                SystemStage::LbReceived,
                "load-balancer",
                &[],
            )))],
            &layout,
        );
        assert_eq!(scene.len(), 1);
        scene.feed(&[envelope(LiveEvent::Snapshot(Default::default()))], &layout);
        assert_eq!(scene.len(), 0, "a snapshot means events were missed");
    }

    fn run(scene: &mut Scene, layout: &Layout, ms: f64) {
        // Small steps, like animation frames.
        let mut left = ms;
        while left > 0.0 {
            scene.advance(left.min(16.0), layout);
            left -= 16.0;
        }
    }

    #[test]
    fn a_request_walks_the_request_path_then_splits_into_its_deliveries() {
        let layout = layout();
        let mut scene = Scene::default();
        scene.on_progress(&progress("r1", SystemStage::LbReceived, "load-balancer", &[]), &layout);
        let bubble = scene.bubble("r1", Lane::Request).expect("a bubble");
        assert_eq!(bubble.at(), &NodeId::Users, "it starts at the users");
        run(&mut scene, &layout, HOP_MS + 20.0);
        assert_eq!(
            scene.bubble("r1", Lane::Request).expect("bubble").at(),
            &NodeId::Balancer
        );
        assert!(
            scene.pulse(&NodeId::Balancer) > 0.9,
            "the balancer pulses as it arrives"
        );

        scene.on_progress(
            &progress(
                "r1",
                SystemStage::LbForwarded,
                "load-balancer",
                &[("server", "server-2".into())],
            ),
            &layout,
        );
        run(&mut scene, &layout, HOP_MS / 2.0);
        let bubble = scene.bubble("r1", Lane::Request).expect("bubble");
        assert_eq!(bubble.heading(), Some(&NodeId::Server("server-2".into())));
        assert!(scene.edge_in_use(&NodeId::Balancer, &NodeId::Server("server-2".into())));
        let (x, _) = bubble.position(&layout);
        let (bx, _) = layout.position(&NodeId::Balancer).expect("balancer");
        let (sx, _) = layout.position(&NodeId::Server("server-2".into())).expect("server");
        assert!(x > bx && x < sx, "half way there: {bx} < {x} < {sx}");
        run(&mut scene, &layout, HOP_MS);
        assert_eq!(
            scene.bubble("r1", Lane::Request).expect("bubble").server.as_deref(),
            Some("server-2")
        );

        scene.on_progress(
            &progress("r1", SystemStage::NotificationFanout, "notification-service", &[]),
            &layout,
        );
        run(&mut scene, &layout, HOP_MS + 20.0);
        for queue in ["mail", "inapp"] {
            scene.on_progress(
                &progress("r1", SystemStage::QueueAdd, "queue-manager", &[("queue", queue.into())]),
                &layout,
            );
        }
        assert_eq!(scene.len(), 3, "the request and its two deliveries");
        let email = scene.bubble("r1", Lane::Email).expect("email bubble");
        assert_eq!(
            email.at(),
            &NodeId::NotificationService,
            "deliveries start where the request is"
        );
        assert_eq!(email.tint, Tint::Email);
        run(&mut scene, &layout, 2.0 * HOP_MS + 50.0);
        assert_eq!(
            scene.bubble("r1", Lane::InApp).expect("in-app").at(),
            &NodeId::Queue("inapp".into())
        );
    }

    #[test]
    fn a_message_has_its_own_colour_until_it_fans_out() {
        let layout = layout();
        let mut scene = Scene::default();
        let mut sent = progress("m1", SystemStage::LbReceived, "load-balancer", &[]);
        sent.kind = NotificationType::Message;
        scene.on_progress(&sent, &layout);
        assert_eq!(scene.bubble("m1", Lane::Request).expect("bubble").tint, Tint::Message);
        assert_eq!(Tint::Message.color(), "#A855F7");
        let mut queued = progress(
            "m1",
            SystemStage::QueueAdd,
            "queue-manager",
            &[("queue", "inapp".into())],
        );
        queued.kind = NotificationType::Message;
        scene.on_progress(&queued, &layout);
        assert_eq!(scene.bubble("m1", Lane::InApp).expect("delivery").tint, Tint::InApp);
    }

    #[test]
    fn a_stage_start_and_end_move_a_bubble_once_and_failures_turn_it_red() {
        let layout = layout();
        let mut scene = Scene::default();
        let pickup = progress(
            "r2",
            SystemStage::WorkerPickup,
            "mail-worker-1",
            &[("queue", "mail".into())],
        );
        scene.on_progress(&pickup, &layout);
        let mut done = pickup.clone();
        done.stage.status = StageStatus::Completed;
        scene.on_progress(&done, &layout);
        run(&mut scene, &layout, HOP_MS * 2.0);
        assert_eq!(
            scene.bubble("r2", Lane::Email).expect("bubble").at(),
            &NodeId::MailWorker
        );

        let mut attempt = progress("r2", SystemStage::SmtpAttempt, "mail-worker-1", &[]);
        scene.on_progress(&attempt, &layout);
        attempt.stage.status = StageStatus::Failed;
        scene.on_progress(&attempt, &layout);
        assert_eq!(scene.bubble("r2", Lane::Email).expect("bubble").tint, Tint::Failed);

        let retry = progress(
            "r2",
            SystemStage::RetryScheduled,
            "queue-manager",
            &[("tier", "mail-retry-1".into())],
        );
        scene.on_progress(&retry, &layout);
        run(&mut scene, &layout, HOP_MS * 3.0);
        let bubble = scene.bubble("r2", Lane::Email).expect("bubble");
        assert_eq!(bubble.at(), &NodeId::Queue("mail-retry-1".into()));
        assert_eq!(bubble.tint, Tint::Retry);
    }

    #[test]
    fn bubbles_fade_out_after_their_last_hop_and_pausing_freezes_them() {
        let layout = layout();
        let mut scene = Scene::default();
        scene.on_progress(&progress("r3", SystemStage::LbReceived, "load-balancer", &[]), &layout);
        run(&mut scene, &layout, 200.0);
        let before = scene.bubble("r3", Lane::Request).expect("bubble").position(&layout);
        for _ in 0..100 {
            scene.advance(0.0, &layout);
        }
        assert_eq!(
            scene.bubble("r3", Lane::Request).expect("bubble").position(&layout),
            before
        );
        run(&mut scene, &layout, HOP_MS + LINGER_MS + 50.0);
        assert!(scene.is_empty(), "gone after lingering");
    }

    #[test]
    fn above_the_cap_bubbles_on_one_edge_merge_into_counted_bubbles() {
        let layout = layout();
        let mut scene = Scene::default();
        for n in 0..1000 {
            scene.on_progress(
                &progress(&format!("r{n}"), SystemStage::LbReceived, "load-balancer", &[]),
                &layout,
            );
        }
        run(&mut scene, &layout, 100.0);
        let visibility = Visibility::default();
        assert_eq!(scene.sprites(&layout, &visibility, 2000).len(), 1000);
        let merged = scene.sprites(&layout, &visibility, 200);
        assert!(merged.len() < 20, "{} sprites", merged.len());
        assert_eq!(
            merged.iter().map(|sprite| sprite.count).sum::<usize>(),
            1000,
            "every bubble is counted"
        );
        assert!(
            merged
                .iter()
                .all(|sprite| sprite.request_id.is_none() || sprite.count == 1)
        );
    }

    #[test]
    fn filters_hide_flows_types_and_servers() {
        let layout = layout();
        let mut scene = Scene::default();
        let add = |scene: &mut Scene, id: &str, queue: &str| {
            scene.on_progress(
                &progress(id, SystemStage::QueueAdd, "queue-manager", &[("queue", queue.into())]),
                &layout,
            );
        };
        add(&mut scene, "a", "mail");
        add(&mut scene, "b", "inapp");
        scene.on_progress(
            &progress(
                "c",
                SystemStage::LbForwarded,
                "load-balancer",
                &[("server", "server-1".into())],
            ),
            &layout,
        );
        let shown = |visibility: &Visibility| scene.sprites(&layout, visibility, 100).len();
        assert_eq!(shown(&Visibility::default()), 3);
        assert_eq!(
            shown(&Visibility {
                hide_email: true,
                ..Default::default()
            }),
            2
        );
        assert_eq!(
            shown(&Visibility {
                hide_in_app: true,
                hide_email: true,
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            shown(&Visibility {
                types: vec![NotificationType::Signup],
                ..Default::default()
            }),
            0
        );
        assert_eq!(
            shown(&Visibility {
                servers: vec!["server-2".into()],
                ..Default::default()
            }),
            2
        );
    }
}

//! The live stream's hub: numbers every event, serializes it once, keeps the latest state
//! for snapshots and the last N events for viewers that resume, and fans out to every
//! viewer (WebSocket or SSE) without ever waiting for one.
//!
//! Publishing takes one short lock (numbering, framing, the history ring, a broadcast
//! send) and never awaits. Fan-out is a bounded tokio broadcast ring shared by every
//! viewer: a viewer that falls behind it loses its place, gets a `stream:gap` and a fresh
//! `stream:snapshot`, and is closed if that keeps happening (close codes in `socket.rs`). So memory is
//! bounded by the ring and the history, never by the number or slowness of viewers.

mod filter;
mod frame;
mod socket;
mod sse;
mod viewer;

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use wire::{
    ComponentMetrics, ControlSettings, LiveEvent, LiveSnapshot, RequestTracker, StreamGap, SystemMetrics, SystemStatus,
};

pub use filter::{Subscription, Tags};
pub(crate) use filter::{list as comma_list, matches as topic_matches};
pub use frame::{Encoded, Published, json_frame, msgpack_frame};
pub use socket::{CLOSE_TOO_SLOW, LiveSocketState, live_socket};
pub use sse::live_sse;

/// How many events are kept for resuming unless `--live-history` says otherwise.
pub const DEFAULT_HISTORY: usize = 10_000;
/// Published frames the broadcast ring holds. A viewer this many frames behind has
/// lagged. Shared by all viewers; each frame is at most [`MAX_FRAME_BYTES`] (plus one event).
pub const FANOUT_CAPACITY: usize = 1024;
/// A batch is cut into frames of at most this many events ...
pub const MAX_FRAME_EVENTS: usize = 256;
/// ... and about this many bytes of JSON, so no viewer ever gets a huge frame.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// The kernel send buffer of every dashboard connection (Linux doubles it for its own
/// bookkeeping). Left to autotuning it grows to `tcp_wmem`'s maximum, megabytes per
/// socket: a viewer that kept reading, but too slowly, then fell seconds behind inside
/// the kernel (1.6 GiB of TCP memory at 10,000 viewers in `liveview bench fanout`) where
/// the hub never saw it. Capped, the backlog stays in the hub's ring, where it is
/// resynced or closed (close code 4008). 64 KiB is still dozens of typical frames in
/// flight, and more than a browser on a slow link drains in a round trip.
pub const SEND_BUFFER_BYTES: usize = 64 * 1024;

/// Caps a freshly accepted dashboard connection's send buffer at [`SEND_BUFFER_BYTES`].
pub fn cap_send_buffer(stream: &mut tokio::net::TcpStream) {
    if let Err(error) = socket2::SockRef::from(&*stream).set_send_buffer_size(SEND_BUFFER_BYTES) {
        tracing::warn!(%error, "could not cap a dashboard connection's send buffer");
    }
}

/// Where snapshots get recent request journeys from (the telemetry installs one).
pub type JourneySource = Arc<dyn Fn() -> Vec<RequestTracker> + Send + Sync>;

/// What a viewer that last saw `after` needs.
#[derive(Debug)]
pub enum Replay {
    /// Exactly the events after it, up to `last` (the hub's last seq at that moment).
    Events { events: Vec<Arc<Encoded>>, last: u64 },
    /// Some are no longer kept: the missed range, to be followed by a fresh snapshot.
    Gap(StreamGap),
}

pub use wire::LiveStats;

/// The latest of each kind of state event, for snapshots.
#[derive(Debug, Default, Clone)]
struct Latest {
    status: Option<SystemStatus>,
    metrics: Option<SystemMetrics>,
    components: BTreeMap<String, ComponentMetrics>,
    controls: Option<ControlSettings>,
}

impl Latest {
    /// Keeps `event` if it is state; drops it otherwise.
    fn absorb(&mut self, event: LiveEvent) {
        match event {
            LiveEvent::SystemStatus(status) => self.status = Some(status),
            LiveEvent::SystemMetrics(metrics) => self.metrics = Some(metrics),
            LiveEvent::ControlsChanged(controls) => self.controls = Some(controls),
            LiveEvent::ComponentMetrics(metrics) => {
                self.components.insert(component_key(&metrics), metrics);
            }
            _ => {}
        }
    }
}

fn component_key(metrics: &ComponentMetrics) -> String {
    match metrics {
        ComponentMetrics::LoadBalancer(_) => "load-balancer".into(),
        ComponentMetrics::Server(server) => server.id.clone(),
        ComponentMetrics::Queue(queue) => format!("queue/{}", queue.counts.name),
        ComponentMetrics::Websocket(_) => "websocket".into(),
        ComponentMetrics::Database(_) => "database".into(),
        ComponentMetrics::Smtp(_) => "smtp".into(),
    }
}

/// Everything numbered together under one lock.
#[derive(Default)]
struct State {
    last_seq: u64,
    history: VecDeque<Arc<Encoded>>,
    latest: Latest,
}

/// An event serialized before taking the lock: `{"topic":...,"payload":...}`.
struct Prepared {
    tags: Tags,
    /// Where the event's JSON is in the batch's one buffer.
    json: std::ops::Range<usize>,
    event: LiveEvent,
}

/// Receives every published frame, in order (the history writer); must not block.
pub type PublishSink = Arc<dyn Fn(&Published) + Send + Sync>;

pub struct LiveHub {
    state: Mutex<State>,
    /// Set at construction: the order of start-up is kept by the types.
    sink: Option<PublishSink>,
    history_capacity: usize,
    sender: broadcast::Sender<Arc<Published>>,
    journeys: Option<JourneySource>,
    /// The last snapshot message made, reused while no event has been published since.
    snapshot_cache: Mutex<Option<Arc<Encoded>>>,
    viewers: AtomicUsize,
    resyncs: AtomicU64,
    too_slow: AtomicU64,
    unserializable: AtomicU64,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveHub {
    pub fn new() -> Self {
        Self::with_history(DEFAULT_HISTORY)
    }

    /// A hub that keeps the last `history` events for viewers that resume.
    pub fn with_history(history: usize) -> Self {
        Self::build(history, None, None)
    }

    /// The system's hub: it keeps the last `history` events for viewers that resume,
    /// hands every frame it publishes to `sink` (the history, so none is missed), and
    /// puts `journeys` (the newest ones) in every snapshot.
    pub fn recording(history: usize, sink: PublishSink, journeys: JourneySource) -> Self {
        Self::build(history, Some(sink), Some(journeys))
    }

    fn build(history: usize, sink: Option<PublishSink>, journeys: Option<JourneySource>) -> Self {
        Self {
            sink,
            state: Mutex::new(State::default()),
            history_capacity: history,
            sender: broadcast::channel(FANOUT_CAPACITY).0,
            journeys,
            snapshot_cache: Mutex::new(None),
            viewers: AtomicUsize::new(0),
            resyncs: AtomicU64::new(0),
            too_slow: AtomicU64::new(0),
            unserializable: AtomicU64::new(0),
        }
    }

    /// Numbers, timestamps and sends one event; returns its seq. Never blocks on viewers.
    pub fn publish(&self, event: LiveEvent) -> u64 {
        match self.publish_batch(vec![event]) {
            Some((_, last)) => last,
            None => self.last_seq(),
        }
    }

    /// Publishes events in order, each with its own seq and Envelope, sent as few frames
    /// (JSON arrays) as possible. Returns the first and last seq, or `None` when nothing
    /// was published (no events, or only `stream:*` ones, which are the stream's own).
    pub fn publish_batch(&self, events: Vec<LiveEvent>) -> Option<(u64, u64)> {
        // Serialize before taking the lock: only the seq and ts are added under it. Every
        // event goes into one buffer, sized for the batch, rather than into a string of
        // its own that grows (and reallocates) as serde writes.
        let mut json = Vec::with_capacity(events.len() * 512);
        // Sized up front: collected from a filter, the vector would grow by doubling and
        // copy a window's worth of events each time.
        let mut prepared: Vec<Prepared> = Vec::with_capacity(events.len());
        for event in events {
            if event.is_stream_control() {
                tracing::warn!(topic = event.topic(), "stream messages are not published; dropped");
                continue;
            }
            let start = json.len();
            match serde_json::to_writer(&mut json, &event) {
                Ok(()) => prepared.push(Prepared {
                    tags: Tags::of(&event),
                    json: start..json.len(),
                    event,
                }),
                Err(error) => {
                    json.truncate(start);
                    self.unserializable.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%error, topic = event.topic(), "live event did not serialize; dropped");
                }
            }
        }
        if prepared.is_empty() {
            return None;
        }

        let mut state = self.lock_state();
        let ts = serde_json::to_string(&chrono::Utc::now()).unwrap_or_default();
        let first = state.last_seq + 1;
        let mut frames = Vec::new();
        let mut chunk = Vec::new();
        let mut chunk_bytes = 0;
        for item in prepared {
            chunk_bytes += item.json.len();
            chunk.push(item);
            if chunk.len() >= MAX_FRAME_EVENTS || chunk_bytes >= MAX_FRAME_BYTES {
                frames.push(std::mem::take(&mut chunk));
                chunk_bytes = 0;
            }
        }
        if !chunk.is_empty() {
            frames.push(chunk);
        }
        let mut seq = first;
        for chunk in frames {
            let published = Arc::new(self.frame(&mut state, chunk, &json, seq, &ts));
            seq = published.last() + 1;
            if let Some(sink) = &self.sink {
                sink(&published);
            }
            // An error only means nobody is watching right now.
            let _ = self.sender.send(published);
        }
        state.last_seq = seq - 1;
        Some((first, state.last_seq))
    }

    /// Builds one frame of consecutive events from `seq` on, keeps their state and
    /// history. Called with the lock held.
    fn frame(&self, state: &mut State, chunk: Vec<Prepared>, json: &[u8], mut seq: u64, ts: &str) -> Published {
        let many = chunk.len() > 1;
        let capacity = chunk.iter().map(|item| item.json.len() + ts.len() + 32).sum::<usize>() + 2;
        let mut text: Vec<u8> = Vec::with_capacity(capacity);
        let mut spans = Vec::with_capacity(chunk.len());
        if many {
            text.push(b'[');
        }
        for (index, item) in chunk.iter().enumerate() {
            if index > 0 {
                text.push(b',');
            }
            let start = text.len();
            // Exactly what serde writes for an Envelope: seq and ts, then the flattened
            // event's own `"topic":...,"payload":...` (its JSON minus the opening brace).
            // Pushed piece by piece: `write!` goes through `fmt`, which costs more here.
            text.extend_from_slice(b"{\"seq\":");
            text.extend_from_slice(itoa::Buffer::new().format(seq + index as u64).as_bytes());
            text.extend_from_slice(b",\"ts\":");
            text.extend_from_slice(ts.as_bytes());
            text.push(b',');
            text.extend_from_slice(&json[item.json.start + 1..item.json.end]);
            spans.push(start..text.len());
        }
        if many {
            text.push(b']');
        }
        let frame = Bytes::from(text);
        let mut events = Vec::with_capacity(chunk.len());
        for (item, span) in chunk.into_iter().zip(spans) {
            // serde_json writes UTF-8, cut here at ASCII delimiters: always valid.
            let json = Utf8Bytes::try_from(frame.slice(span)).unwrap_or_default();
            let encoded = Arc::new(Encoded {
                seq,
                tags: item.tags,
                json,
                msgpack: OnceLock::new(),
            });
            state.latest.absorb(item.event);
            if self.history_capacity > 0 {
                if state.history.len() == self.history_capacity {
                    state.history.pop_front();
                }
                state.history.push_back(encoded.clone());
            }
            events.push(encoded);
            seq += 1;
        }
        Published {
            events,
            json: Utf8Bytes::try_from(frame).unwrap_or_default(),
            msgpack: OnceLock::new(),
        }
    }

    /// The seq of the last published event (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.lock_state().last_seq
    }

    /// The whole state now: latest status, metrics, component metrics, controls and recent
    /// journeys.
    pub fn snapshot(&self) -> LiveSnapshot {
        self.snapshot_at().1
    }

    /// The snapshot and the seq of the last event it reflects.
    fn snapshot_at(&self) -> (u64, LiveSnapshot) {
        let (seq, latest) = {
            let state = self.lock_state();
            (state.last_seq, state.latest.clone())
        };
        let requests = self.journeys.as_ref().map(|source| source()).unwrap_or_default();
        let snapshot = LiveSnapshot {
            status: latest.status,
            metrics: latest.metrics,
            components: latest.components.into_values().collect(),
            controls: latest.controls,
            requests,
        };
        (seq, snapshot)
    }

    /// The `stream:snapshot` message, serialized once per seq however many viewers ask.
    pub fn snapshot_message(&self) -> Arc<Encoded> {
        let last = self.last_seq();
        if let Some(cached) = self.lock_cache().as_ref().filter(|cached| cached.seq == last) {
            return cached.clone();
        }
        let (seq, snapshot) = self.snapshot_at();
        let message = Encoded::control(seq, LiveEvent::Snapshot(Box::new(snapshot)));
        *self.lock_cache() = Some(message.clone());
        message
    }

    /// The latest `system:status` published.
    pub fn latest_status(&self) -> Option<SystemStatus> {
        self.lock_state().latest.status.clone()
    }

    /// What a viewer that last saw `after` missed: the events themselves while they are
    /// still kept, otherwise the missed range. A seq from the future (a viewer of an
    /// earlier process) missed everything this process published.
    pub fn replay_after(&self, after: u64) -> Replay {
        let state = self.lock_state();
        let last = state.last_seq;
        if after == last {
            return Replay::Events {
                events: Vec::new(),
                last,
            };
        }
        if after > last {
            return match last {
                0 => Replay::Events {
                    events: Vec::new(),
                    last,
                },
                _ => Replay::Gap(StreamGap { from: 1, to: last }),
            };
        }
        let oldest = state.history.front().map_or(last + 1, |event| event.seq);
        if after + 1 < oldest {
            return Replay::Gap(StreamGap {
                from: after + 1,
                to: last,
            });
        }
        // Seqs are consecutive in the ring, so the position is arithmetic.
        let skip = usize::try_from(after + 1 - oldest).unwrap_or(usize::MAX);
        Replay::Events {
            events: state.history.iter().skip(skip).cloned().collect(),
            last,
        }
    }

    /// The fan-out: every published frame from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.sender.subscribe()
    }

    pub fn viewer_count(&self) -> usize {
        self.viewers.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> LiveStats {
        LiveStats {
            last_seq: self.last_seq(),
            viewers: self.viewer_count(),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            too_slow: self.too_slow.load(Ordering::Relaxed),
            unserializable: self.unserializable.load(Ordering::Relaxed),
        }
    }

    fn viewer_joined(self: &Arc<Self>) -> ViewerGuard {
        self.viewers.fetch_add(1, Ordering::Relaxed);
        ViewerGuard(self.clone())
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Option<Arc<Encoded>>> {
        self.snapshot_cache.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Counts a viewer for as long as its connection lives.
struct ViewerGuard(Arc<LiveHub>);

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        self.0.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use wire::{Envelope, OverallHealth, WorkerIdle, WorkerKind};

    /// A small event with no flow, type or server of its own (shared by the live tests).
    pub(crate) fn idle() -> LiveEvent {
        LiveEvent::WorkerIdle(WorkerIdle {
            worker_id: "w".into(),
            kind: WorkerKind::Mail,
        })
    }

    fn status(version: &str) -> LiveEvent {
        LiveEvent::SystemStatus(SystemStatus {
            status: OverallHealth::Healthy,
            version: version.into(),
            started_at: chrono::Utc::now(),
            uptime_seconds: 1,
            uptime: "1s".into(),
            timestamp: chrono::Utc::now(),
            components: Vec::new(),
        })
    }

    fn seqs(events: &[Arc<Encoded>]) -> Vec<u64> {
        events.iter().map(|event| event.seq).collect()
    }

    #[tokio::test]
    async fn sequence_numbers_increase_by_one_in_send_order() {
        let hub = LiveHub::new();
        let mut receiver = hub.subscribe();
        let seqs: Vec<u64> = (0..5).map(|_| hub.publish(idle())).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        for expected in seqs {
            let published = receiver.recv().await.expect("message");
            assert_eq!((published.first(), published.last()), (expected, expected));
            let envelope: Envelope = serde_json::from_str(published.json()).expect("valid envelope");
            assert_eq!(envelope.seq, expected);
        }
    }

    #[tokio::test]
    async fn batches_and_single_events_share_one_contiguous_sequence() {
        let hub = LiveHub::new();
        let mut receiver = hub.subscribe();
        assert_eq!(hub.publish(idle()), 1);
        assert_eq!(hub.publish_batch(vec![idle(), status("a"), idle()]), Some((2, 4)));
        assert_eq!(hub.publish_batch(Vec::new()), None);
        assert_eq!(hub.publish(idle()), 5);
        let big: Vec<LiveEvent> = (0..MAX_FRAME_EVENTS + 10).map(|_| idle()).collect();
        let (first, last) = hub.publish_batch(big).expect("published");
        assert_eq!((first, last), (6, 5 + MAX_FRAME_EVENTS as u64 + 10));

        let mut seen = Vec::new();
        while let Ok(published) = receiver.try_recv() {
            let frame = wire::parse_frame(published.json()).expect("a frame of envelopes");
            assert_eq!(frame.len(), published.events.len());
            assert!(frame.len() <= MAX_FRAME_EVENTS, "big batches are cut into frames");
            for (envelope, event) in frame.iter().zip(&published.events) {
                assert_eq!(envelope.seq, event.seq);
                let alone: Envelope = serde_json::from_str(event.json()).expect("each event is an envelope");
                assert_eq!(&alone, envelope);
            }
            seen.extend(frame.into_iter().map(|envelope| envelope.seq));
        }
        assert_eq!(
            seen,
            (1..=last).collect::<Vec<_>>(),
            "contiguous, in order, nothing twice"
        );
    }

    #[test]
    fn published_json_is_exactly_what_serde_writes_for_the_envelope() {
        let hub = LiveHub::new();
        let mut receiver = hub.subscribe();
        hub.publish_batch(vec![status("x"), idle()]);
        let published = receiver.try_recv().expect("one frame");
        for event in &published.events {
            let envelope: Envelope = serde_json::from_str(event.json()).expect("envelope");
            assert_eq!(serde_json::to_string(&envelope).expect("json"), event.json().as_str());
            assert_eq!(event.tags, Tags::of(&envelope.event));
        }
    }

    #[test]
    fn stream_messages_are_not_published() {
        let hub = LiveHub::new();
        let gap = LiveEvent::Gap(StreamGap { from: 1, to: 2 });
        assert_eq!(hub.publish_batch(vec![gap.clone()]), None);
        assert_eq!(hub.publish(gap), 0);
        assert_eq!(
            hub.publish_batch(vec![idle(), LiveEvent::Gap(StreamGap { from: 1, to: 1 })]),
            Some((1, 1))
        );
    }

    #[test]
    fn publishing_with_no_viewers_neither_blocks_nor_fails() {
        let hub = LiveHub::with_history(8);
        for _ in 0..(FANOUT_CAPACITY * 4) {
            hub.publish(idle());
        }
        assert_eq!(hub.last_seq(), FANOUT_CAPACITY as u64 * 4);
        assert!(
            hub.latest_status().is_none(),
            "only state events are kept for snapshots"
        );
    }

    #[test]
    fn resume_inside_the_window_gets_exactly_the_missed_events() {
        let hub = LiveHub::with_history(5);
        for _ in 0..3 {
            hub.publish(idle());
        }
        hub.publish_batch(vec![idle(), idle()]);
        let Replay::Events { events, last } = hub.replay_after(2) else {
            panic!("still kept")
        };
        assert_eq!((seqs(&events), last), (vec![3, 4, 5], 5));
        let Replay::Events { events, .. } = hub.replay_after(0) else {
            panic!("1..=5 are all kept")
        };
        assert_eq!(seqs(&events), [1, 2, 3, 4, 5]);
        let Replay::Events { events, last } = hub.replay_after(5) else {
            panic!("nothing missed")
        };
        assert_eq!((events.len(), last), (0, 5));
    }

    #[test]
    fn the_ring_evicts_the_oldest_and_older_resumes_get_the_gap() {
        let hub = LiveHub::with_history(5);
        for _ in 0..4 {
            hub.publish(idle());
        }
        hub.publish_batch((0..4).map(|_| idle()).collect());
        // 8 published, 4..=8 kept.
        let Replay::Events { events, .. } = hub.replay_after(3) else {
            panic!("4 is the oldest kept")
        };
        assert_eq!(seqs(&events), [4, 5, 6, 7, 8]);
        let Replay::Gap(gap) = hub.replay_after(2) else {
            panic!("3 was evicted")
        };
        assert_eq!(gap, StreamGap { from: 3, to: 8 });
        let Replay::Gap(gap) = hub.replay_after(0) else {
            panic!("1..=3 were evicted")
        };
        assert_eq!(gap, StreamGap { from: 1, to: 8 });
        let Replay::Gap(gap) = hub.replay_after(50) else {
            panic!("a seq from another process")
        };
        assert_eq!(gap, StreamGap { from: 1, to: 8 });

        let none = LiveHub::with_history(0);
        none.publish(idle());
        none.publish(idle());
        assert!(matches!(
            none.replay_after(1),
            Replay::Gap(StreamGap { from: 2, to: 2 })
        ));
        assert!(matches!(none.replay_after(2), Replay::Events { .. }));
    }

    #[test]
    fn snapshots_hold_the_latest_state_and_the_journeys() {
        let tracker = RequestTracker {
            request_id: "req-1".into(),
            kind: wire::NotificationType::Signup,
            current_stage: wire::SystemStage::LbReceived,
            start_time: chrono::Utc::now(),
            stages: Vec::new(),
            total_duration: 0.0,
        };
        let journeys = vec![tracker];
        let source = journeys.clone();
        let recorded = Arc::new(AtomicUsize::new(0));
        let sink = recorded.clone();
        let hub = LiveHub::recording(
            DEFAULT_HISTORY,
            Arc::new(move |_| {
                sink.fetch_add(1, Ordering::Relaxed);
            }),
            Arc::new(move || source.clone()),
        );
        assert!(LiveHub::new().snapshot().requests.is_empty(), "no journey source");
        hub.publish(status("first"));
        hub.publish(status("second"));
        hub.publish(LiveEvent::ControlsChanged(ControlSettings::default()));
        hub.publish(idle());
        let snapshot = hub.snapshot();
        assert_eq!(snapshot.status.map(|status| status.version).as_deref(), Some("second"));
        assert_eq!(snapshot.controls, Some(ControlSettings::default()));
        assert_eq!(snapshot.requests, journeys);
        assert_eq!(recorded.load(Ordering::Relaxed), 4, "every frame reached the sink");

        let message = hub.snapshot_message();
        assert_eq!(message.seq, 4, "a snapshot carries the last seq it reflects");
        assert!(
            Arc::ptr_eq(&message, &hub.snapshot_message()),
            "serialized once per seq"
        );
        let envelope: Envelope = serde_json::from_str(message.json()).expect("envelope");
        assert!(matches!(envelope.event, LiveEvent::Snapshot(_)));
        hub.publish(idle());
        assert_eq!(hub.snapshot_message().seq, 5);
        assert!(
            matches!(hub.replay_after(3), Replay::Events { .. }),
            "snapshots are not kept"
        );
        assert_eq!(hub.stats().last_seq, 5);
    }

    #[test]
    fn msgpack_frames_decode_to_the_same_envelopes() {
        let hub = LiveHub::new();
        let mut receiver = hub.subscribe();
        hub.publish(status("one"));
        let batch: Vec<LiveEvent> = (0..20).map(|_| idle()).collect();
        hub.publish_batch(batch);
        let single = receiver.try_recv().expect("frame");
        let decoded: Envelope = rmp_serde::from_slice(single.msgpack()).expect("one envelope");
        assert_eq!(decoded, serde_json::from_str::<Envelope>(single.json()).expect("json"));
        let many = receiver.try_recv().expect("frame");
        let decoded: Vec<Envelope> = rmp_serde::from_slice(many.msgpack()).expect("an array of 20");
        assert_eq!(decoded, wire::parse_frame(many.json()).expect("json"));
        let few: Vec<Envelope> = rmp_serde::from_slice(&msgpack_frame(&many.events[..3])).expect("fixarray");
        assert_eq!(few.len(), 3);
    }
}

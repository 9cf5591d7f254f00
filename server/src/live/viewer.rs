//! One viewer's place in the stream, shared by the WebSocket and SSE endpoints: where it
//! is (`position`), what it wants (its [`Subscription`]), what to send it next, and what
//! to do when it falls behind.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use tokio::sync::broadcast::{self, error::RecvError};
use wire::{LiveEvent, StreamError, StreamGap};

use super::{Encoded, LiveHub, MAX_FRAME_BYTES, MAX_FRAME_EVENTS, Published, Replay, Subscription, ViewerGuard};

/// A viewer that falls behind this many times ...
pub const TOO_SLOW_LAGS: usize = 3;
/// ... within this long is closed as too slow instead of resynced again.
pub const TOO_SLOW_WINDOW: Duration = Duration::from_secs(60);

/// Something to send, in order.
#[derive(Debug)]
pub enum Outgoing {
    /// A whole published frame: every event of it is wanted, so it goes as serialized.
    Frame(Arc<Published>),
    /// Some events (part of a frame, or replayed), in seq order.
    Events(Vec<Arc<Encoded>>),
    /// A message of the stream itself: snapshot, gap or error.
    Control(Arc<Encoded>),
}

/// What happened on the fan-out.
#[derive(Debug)]
pub enum Update {
    Send(Outgoing),
    /// The viewer fell behind: a gap and a snapshot to send.
    Resync(Vec<Outgoing>),
    /// It fell behind too often: close it.
    TooSlow,
    /// The hub is gone.
    Closed,
}

pub struct Viewer {
    hub: Arc<LiveHub>,
    updates: broadcast::Receiver<Arc<Published>>,
    /// The last seq this viewer is current with: sent, filtered out, or covered by a
    /// snapshot.
    position: u64,
    /// Every event after this seq has been sent on this connection (or filtered out,
    /// or is on its way): what a `resume` must not send again.
    sent_after: u64,
    pub subscription: Subscription,
    lags: LagWindow,
    _counted: ViewerGuard,
}

impl Viewer {
    /// Joins the fan-out now, so nothing published from here on is missed.
    pub fn join(hub: &Arc<LiveHub>, subscription: Subscription) -> Self {
        Self {
            updates: hub.subscribe(),
            _counted: hub.viewer_joined(),
            hub: hub.clone(),
            position: 0,
            sent_after: 0,
            subscription,
            lags: LagWindow::default(),
        }
    }

    /// The first messages: a snapshot, or what was missed after `after` when resuming.
    pub fn start(&mut self, after: Option<u64>) -> Vec<Outgoing> {
        match after {
            None => {
                let snapshot = self.hub.snapshot_message();
                self.position = snapshot.seq;
                self.sent_after = snapshot.seq;
                vec![Outgoing::Control(snapshot)]
            }
            Some(after) => {
                let (outgoing, replayed) = self.replay(after, u64::MAX);
                self.sent_after = if replayed { after } else { self.position };
                outgoing
            }
        }
    }

    /// What came after `after` and was not sent on this connection yet (a client that
    /// resumes once its snapshot and the first live events are already in must not get
    /// those twice), or a gap and a snapshot when that is no longer kept. What comes
    /// after its position is on its way through the fan-out.
    pub fn resume(&mut self, after: u64) -> Vec<Outgoing> {
        if after >= self.sent_after {
            return Vec::new();
        }
        let (outgoing, replayed) = self.replay(after, self.sent_after);
        if replayed {
            self.sent_after = after;
        }
        outgoing
    }

    /// The events in `(after, until]` this viewer wants, and true; or a gap and a
    /// snapshot, and false.
    fn replay(&mut self, after: u64, until: u64) -> (Vec<Outgoing>, bool) {
        match self.hub.replay_after(after) {
            Replay::Events { events, last } => {
                let until = until.min(last);
                let wanted: Vec<_> = events
                    .into_iter()
                    .take_while(|event| event.seq <= until)
                    .filter(|event| self.subscription.wants(&event.tags))
                    .collect();
                self.position = self.position.max(until);
                (chunks(wanted).map(Outgoing::Events).collect(), true)
            }
            Replay::Gap(gap) => (self.gap_and_snapshot(gap.from), false),
        }
    }

    /// Waits for the next thing to send. Cancel-safe: a frame is only taken off the
    /// fan-out when it is dealt with in the same poll.
    pub async fn next(&mut self) -> Update {
        loop {
            match self.updates.recv().await {
                Ok(published) => {
                    if let Some(outgoing) = self.select(published) {
                        return Update::Send(outgoing);
                    }
                }
                Err(RecvError::Lagged(frames)) => {
                    if self.lags.record(Instant::now()) {
                        return Update::TooSlow;
                    }
                    self.hub.resyncs.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(frames, position = self.position, "live viewer lagged; resyncing");
                    let resync = self.gap_and_snapshot(self.position + 1);
                    // What fell through is not sent: a resume may ask for it.
                    self.sent_after = self.position;
                    return Update::Resync(resync);
                }
                Err(RecvError::Closed) => return Update::Closed,
            }
        }
    }

    /// Counts this viewer as closed for being too slow (its endpoint closes it).
    pub fn closed_too_slow(&self) {
        self.hub.too_slow.fetch_add(1, Ordering::Relaxed);
    }

    /// `stream:error` about a client message, carrying this viewer's position.
    pub fn error(&self, error: String) -> Arc<Encoded> {
        Encoded::control(self.position, LiveEvent::StreamError(StreamError { error }))
    }

    /// What of `published` this viewer still needs and wants.
    fn select(&mut self, published: Arc<Published>) -> Option<Outgoing> {
        if published.last() <= self.position {
            return None;
        }
        let whole = published.first() > self.position;
        if whole && self.subscription.is_everything() {
            self.position = published.last();
            return Some(Outgoing::Frame(published));
        }
        let wanted: Vec<_> = published
            .events
            .iter()
            .filter(|event| event.seq > self.position && self.subscription.wants(&event.tags))
            .cloned()
            .collect();
        self.position = published.last();
        if whole && wanted.len() == published.events.len() {
            Some(Outgoing::Frame(published))
        } else if wanted.is_empty() {
            None
        } else {
            Some(Outgoing::Events(wanted))
        }
    }

    /// A gap from `from` to a fresh snapshot's seq, then that snapshot.
    fn gap_and_snapshot(&mut self, from: u64) -> Vec<Outgoing> {
        let snapshot = self.hub.snapshot_message();
        let mut outgoing = Vec::with_capacity(2);
        if from <= snapshot.seq {
            let gap = StreamGap { from, to: snapshot.seq };
            outgoing.push(Outgoing::Control(Encoded::control(snapshot.seq, LiveEvent::Gap(gap))));
        }
        self.position = snapshot.seq;
        outgoing.push(Outgoing::Control(snapshot));
        outgoing
    }
}

/// Cuts replayed events into frames the size published frames have at most.
fn chunks(events: Vec<Arc<Encoded>>) -> impl Iterator<Item = Vec<Arc<Encoded>>> {
    let mut events = events.into_iter().peekable();
    std::iter::from_fn(move || {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        while let Some(event) = events.next_if(|_| chunk.len() < MAX_FRAME_EVENTS && bytes < MAX_FRAME_BYTES) {
            bytes += event.json().len();
            chunk.push(event);
        }
        (!chunk.is_empty()).then_some(chunk)
    })
}

/// When a viewer last fell behind, to tell a hiccup from a viewer that cannot keep up.
#[derive(Debug, Default)]
struct LagWindow {
    recent: [Option<Instant>; TOO_SLOW_LAGS],
    next: usize,
}

impl LagWindow {
    /// Records a lag at `now`; true when it is the [`TOO_SLOW_LAGS`]th within
    /// [`TOO_SLOW_WINDOW`].
    fn record(&mut self, now: Instant) -> bool {
        self.recent[self.next] = Some(now);
        self.next = (self.next + 1) % TOO_SLOW_LAGS;
        self.recent
            .iter()
            .all(|lag| lag.is_some_and(|at| now.duration_since(at) <= TOO_SLOW_WINDOW))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::tests::idle;

    fn sent_seqs(outgoing: &[Outgoing]) -> Vec<u64> {
        outgoing
            .iter()
            .flat_map(|outgoing| match outgoing {
                Outgoing::Frame(published) => published.events.iter().map(|event| event.seq).collect(),
                Outgoing::Events(events) => events.iter().map(|event| event.seq).collect(),
                Outgoing::Control(message) => vec![message.seq],
            })
            .collect()
    }

    #[test]
    fn three_lags_within_a_minute_are_too_slow_and_spaced_ones_are_not() {
        let start = Instant::now();
        let mut window = LagWindow::default();
        assert!(!window.record(start));
        assert!(!window.record(start + Duration::from_secs(30)));
        assert!(
            !window.record(start + Duration::from_secs(61)),
            "the first fell out of the window"
        );
        assert!(window.record(start + Duration::from_secs(62)));
    }

    #[tokio::test]
    async fn a_new_viewer_gets_a_snapshot_then_only_later_events() {
        let hub = Arc::new(LiveHub::new());
        hub.publish(idle());
        let mut viewer = Viewer::join(&hub, Subscription::default());
        assert_eq!(hub.viewer_count(), 1);
        let start = viewer.start(None);
        assert!(matches!(&start[..], [Outgoing::Control(snapshot)] if snapshot.seq == 1));
        hub.publish(idle());
        let Update::Send(Outgoing::Frame(frame)) = viewer.next().await else {
            panic!("the whole frame")
        };
        assert_eq!(frame.first(), 2);
        drop(viewer);
        assert_eq!(hub.viewer_count(), 0);
    }

    #[tokio::test]
    async fn a_lagging_viewer_gets_the_gap_then_a_snapshot_and_is_too_slow_the_third_time() {
        let hub = Arc::new(LiveHub::with_history(10));
        let mut viewer = Viewer::join(&hub, Subscription::default());
        viewer.start(None);
        for round in 0..3 {
            let before = hub.last_seq();
            for _ in 0..(super::super::FANOUT_CAPACITY + 5) {
                hub.publish(idle());
            }
            match viewer.next().await {
                Update::Resync(outgoing) if round < 2 => {
                    let [Outgoing::Control(gap), Outgoing::Control(snapshot)] = &outgoing[..] else {
                        panic!("gap then snapshot: {outgoing:?}")
                    };
                    assert_eq!(gap.tags.topic, "stream:gap");
                    let envelope: wire::Envelope = serde_json::from_str(gap.json()).expect("envelope");
                    let LiveEvent::Gap(range) = envelope.event else {
                        panic!("a gap")
                    };
                    assert_eq!(
                        range,
                        StreamGap {
                            from: before + 1,
                            to: hub.last_seq()
                        }
                    );
                    assert_eq!((gap.seq, snapshot.seq), (hub.last_seq(), hub.last_seq()));
                }
                Update::TooSlow if round == 2 => viewer.closed_too_slow(),
                other => panic!("round {round}: {other:?}"),
            }
        }
        assert_eq!((hub.stats().resyncs, hub.stats().too_slow), (2, 1));
    }

    #[tokio::test]
    async fn filtered_viewers_get_only_what_they_want_and_resume_exactly() {
        let hub = Arc::new(LiveHub::new());
        let mut subscription = Subscription::default();
        subscription
            .subscribe(vec!["system:*".into()], None)
            .expect("valid pattern");
        let mut viewer = Viewer::join(&hub, subscription);
        viewer.start(None);
        let status = LiveEvent::ControlsChanged(wire::ControlSettings::default());
        hub.publish_batch(vec![idle(), status.clone(), idle()]);
        hub.publish(LiveEvent::SystemMetrics(wire::SystemMetrics {
            system_status: wire::OverallHealth::Healthy,
            active_requests: 0,
            requests_per_second: 0.0,
            average_latency: 0.0,
            error_rate: 0.0,
            uptime: "1s".into(),
            timestamp: chrono::Utc::now(),
        }));
        let Update::Send(outgoing) = viewer.next().await else {
            panic!("something to send")
        };
        assert_eq!(sent_seqs(&[outgoing]), [4], "frames with nothing wanted are skipped");

        let mut all = Viewer::join(&hub, Subscription::default());
        let replay = all.start(Some(1));
        assert_eq!(sent_seqs(&replay), [2, 3, 4]);
        assert!(all.resume(2).is_empty(), "what this connection sent is not sent again");
        let mut late = Viewer::join(&hub, Subscription::default());
        late.start(None);
        let missed = late.resume(1);
        assert_eq!(sent_seqs(&missed), [2, 3, 4], "what came before its snapshot");
        assert!(late.resume(1).is_empty(), "and only once");
        hub.publish(idle());
        let Update::Send(next) = all.next().await else {
            panic!("the next frame")
        };
        assert_eq!(sent_seqs(&[next]), [5], "and then carries on without repeats");
    }

    #[test]
    fn replays_are_cut_into_bounded_frames() {
        let hub = Arc::new(LiveHub::new());
        hub.publish_batch((0..600).map(|_| idle()).collect());
        let mut viewer = Viewer::join(&hub, Subscription::default());
        let replay = viewer.start(Some(0));
        assert!(replay.len() >= 3);
        assert_eq!(sent_seqs(&replay), (1..=600).collect::<Vec<_>>());
        for outgoing in &replay {
            let Outgoing::Events(events) = outgoing else {
                panic!("replayed events")
            };
            assert!(events.len() <= MAX_FRAME_EVENTS);
        }
    }
}

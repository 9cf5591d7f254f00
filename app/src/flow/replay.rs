//! Replay: a past window of the live stream (from `/api/live-view/history`) played on the
//! canvas at the playback speed, with pause, a scrubber and rewind. Times shown are the
//! events' own timestamps, as they really were.

use crate::{
    flow::{Layout, Scene},
    wire::{Envelope, LiveEvent, Timestamp},
};

/// How much of the past is re-applied when the scrubber jumps: enough for the bubbles that
/// were in flight at that moment to be on the canvas, not so much that it stalls.
const JUMP_CONTEXT_MS: f64 = 3_000.0;

/// A loaded window and where playback is in it.
#[derive(Debug)]
pub struct Replay {
    events: Vec<Envelope>,
    pub from: Timestamp,
    pub to: Timestamp,
    /// Milliseconds after `from`.
    pub position_ms: f64,
    next: usize,
    pub playing: bool,
}

impl Replay {
    /// Keeps the stage events of `events` (in seq order) for the window `from..to`.
    pub fn new(mut events: Vec<Envelope>, from: Timestamp, to: Timestamp) -> Self {
        events.retain(|envelope| matches!(envelope.event, LiveEvent::RequestProgress(_)));
        events.sort_by_key(|envelope| envelope.seq);
        Self {
            events,
            from,
            to,
            position_ms: 0.0,
            next: 0,
            playing: true,
        }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn duration_ms(&self) -> f64 {
        (self.to - self.from).num_milliseconds().max(0) as f64
    }

    /// The moment being shown.
    pub fn now(&self) -> Timestamp {
        self.from + chrono::Duration::milliseconds(self.position_ms as i64)
    }

    fn offset_ms(&self, envelope: &Envelope) -> f64 {
        (envelope.ts - self.from).num_milliseconds() as f64
    }

    /// Plays on by `elapsed_ms` of animation time (0 while paused).
    pub fn advance(&mut self, elapsed_ms: f64, scene: &mut Scene, layout: &Layout) {
        if !self.playing {
            return;
        }
        self.position_ms = (self.position_ms + elapsed_ms).min(self.duration_ms());
        self.apply_until(scene, layout);
        if self.position_ms >= self.duration_ms() {
            self.playing = false;
        }
    }

    fn apply_until(&mut self, scene: &mut Scene, layout: &Layout) {
        while let Some(envelope) = self.events.get(self.next) {
            if self.offset_ms(envelope) > self.position_ms {
                break;
            }
            if let LiveEvent::RequestProgress(progress) = &envelope.event {
                scene.on_progress(progress, layout);
            }
            self.next += 1;
        }
    }

    /// Jumps to `position_ms` (the scrubber, or 0 to rewind): the canvas is rebuilt from the
    /// few seconds before that moment.
    pub fn seek(&mut self, position_ms: f64, scene: &mut Scene, layout: &Layout) {
        let target = position_ms.clamp(0.0, self.duration_ms());
        scene.clear();
        self.position_ms = (target - JUMP_CONTEXT_MS).max(0.0);
        self.next = self
            .events
            .partition_point(|envelope| self.offset_ms(envelope) < self.position_ms);
        // Replays the context in frame-sized steps so bubbles are where they would be.
        while self.position_ms < target {
            let step = (target - self.position_ms).min(50.0);
            self.position_ms += step;
            self.apply_until(scene, layout);
            scene.advance(step, layout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{NotificationType, RequestProgress, Stage, StageStatus, SystemStage, SystemStatus};

    fn at(ms: i64) -> Timestamp {
        chrono::DateTime::from_timestamp_millis(1_790_000_000_000 + ms).expect("time")
    }

    fn progress(seq: u64, ms: i64, id: &str) -> Envelope {
        Envelope {
            seq,
            ts: at(ms),
            event: LiveEvent::RequestProgress(RequestProgress {
                request_id: id.into(),
                kind: NotificationType::Signup,
                current_stage: SystemStage::LbReceived,
                stage: Stage {
                    stage: SystemStage::LbReceived,
                    component: "load-balancer".into(),
                    start_time: at(ms),
                    end_time: None,
                    duration: None,
                    status: StageStatus::Processing,
                    metadata: Default::default(),
                },
            }),
        }
    }

    #[test]
    fn plays_events_at_their_own_times_and_stops_at_the_end() {
        let layout = Layout::new(&["server-1".into()]);
        let mut scene = Scene::default();
        let status = Envelope {
            seq: 2,
            ts: at(0),
            event: LiveEvent::SystemStatus(SystemStatus {
                status: crate::wire::OverallHealth::Healthy,
                version: "0".into(),
                started_at: at(0),
                uptime_seconds: 0,
                uptime: "0s".into(),
                timestamp: at(0),
                components: Vec::new(),
            }),
        };
        let events = vec![progress(3, 2_000, "late"), status, progress(1, 100, "early")];
        let mut replay = Replay::new(events, at(0), at(5_000));
        assert_eq!(replay.len(), 2, "only stage events are replayed");
        replay.advance(500.0, &mut scene, &layout);
        assert!(scene.bubble("early", crate::flow::Lane::Request).is_some());
        assert!(
            scene.bubble("late", crate::flow::Lane::Request).is_none(),
            "not yet: it happened at 2 s"
        );
        assert_eq!(replay.now(), at(500), "the clock shows the window's own time");
        replay.playing = false;
        replay.advance(10_000.0, &mut scene, &layout);
        assert_eq!(replay.position_ms, 500.0, "paused");
        replay.playing = true;
        replay.advance(10_000.0, &mut scene, &layout);
        assert_eq!(replay.position_ms, 5_000.0);
        assert!(!replay.playing, "stops at the end");
        replay.seek(0.0, &mut scene, &layout);
        assert!(scene.is_empty(), "rewound to before the first event");
        replay.seek(2_100.0, &mut scene, &layout);
        assert!(scene.bubble("late", crate::flow::Lane::Request).is_some());
    }
}

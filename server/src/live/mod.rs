//! The live stream's hub: numbers every event, serializes it once, and fans it out to
//! every viewer without ever waiting for one. A viewer that falls behind gets the
//! latest snapshot again instead of an unbounded backlog.

mod socket;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use app::wire::{Envelope, LiveEvent};
use tokio::sync::broadcast;

pub use socket::{LiveSocketState, live_socket};

/// How many serialized messages a slow viewer may fall behind before it is resynced.
const VIEWER_BACKLOG: usize = 256;

/// One published message, serialized once for every viewer.
#[derive(Debug, Clone)]
pub struct Published {
    pub seq: u64,
    pub json: Arc<str>,
}

pub struct LiveHub {
    next_seq: AtomicU64,
    sender: broadcast::Sender<Published>,
    /// The last `system:status`, sent first to every new viewer.
    latest_status: Mutex<Option<Published>>,
    viewers: AtomicUsize,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveHub {
    pub fn new() -> Self {
        Self {
            next_seq: AtomicU64::new(1),
            sender: broadcast::channel(VIEWER_BACKLOG).0,
            latest_status: Mutex::new(None),
            viewers: AtomicUsize::new(0),
        }
    }

    /// Numbers, timestamps and sends an event. Never blocks: with no viewers the message
    /// is simply not kept.
    pub fn publish(&self, event: LiveEvent) -> u64 {
        let is_status = matches!(event, LiveEvent::SystemStatus(_));
        // Holding the lock across numbering and sending keeps seq order equal to send
        // order when two tasks publish at once.
        let mut latest = self.latest_status.lock().unwrap_or_else(|poison| poison.into_inner());
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let envelope = Envelope {
            seq,
            ts: chrono::Utc::now(),
            event,
        };
        let json: Arc<str> = match serde_json::to_string(&envelope) {
            Ok(json) => json.into(),
            Err(error) => {
                tracing::error!(%error, seq, "live event did not serialize");
                return seq;
            }
        };
        let published = Published { seq, json };
        if is_status {
            *latest = Some(published.clone());
        }
        // An error only means nobody is watching right now.
        let _ = self.sender.send(published);
        seq
    }

    /// A new viewer's starting point: the latest status, then everything after it.
    pub fn subscribe(&self) -> (Option<Published>, broadcast::Receiver<Published>) {
        let latest = self.latest_status.lock().unwrap_or_else(|poison| poison.into_inner());
        (latest.clone(), self.sender.subscribe())
    }

    pub fn latest_status(&self) -> Option<Published> {
        self.latest_status
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    pub fn viewer_count(&self) -> usize {
        self.viewers.load(Ordering::Relaxed)
    }

    fn viewer_joined(self: &Arc<Self>) -> ViewerGuard {
        self.viewers.fetch_add(1, Ordering::Relaxed);
        ViewerGuard(self.clone())
    }
}

/// Counts a viewer for as long as its socket lives.
struct ViewerGuard(Arc<LiveHub>);

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        self.0.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::wire::{WorkerIdle, WorkerKind};

    fn idle() -> LiveEvent {
        LiveEvent::WorkerIdle(WorkerIdle {
            worker_id: "w".into(),
            kind: WorkerKind::Mail,
        })
    }

    #[tokio::test]
    async fn sequence_numbers_increase_by_one_in_send_order() {
        let hub = LiveHub::new();
        let (_, mut receiver) = hub.subscribe();
        let seqs: Vec<u64> = (0..5).map(|_| hub.publish(idle())).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        for expected in seqs {
            let message = receiver.recv().await.expect("message");
            assert_eq!(message.seq, expected);
            let envelope: Envelope = serde_json::from_str(&message.json).expect("valid envelope");
            assert_eq!(envelope.seq, expected);
        }
    }

    #[test]
    fn publishing_with_no_viewers_neither_blocks_nor_fails() {
        let hub = LiveHub::new();
        for _ in 0..(VIEWER_BACKLOG * 4) {
            hub.publish(idle());
        }
        assert!(
            hub.latest_status().is_none(),
            "only system:status is kept as the snapshot"
        );
    }
}

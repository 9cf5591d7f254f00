//! Journeys: the last N requests, each the design's `RequestTracker` with its stages,
//! built from [`StageRecord`]s in the order they arrive, plus a log line per stage.
//!
//! A journey starts with its first stage that names its type (the balancer knows it from
//! the route). It is *complete* when the response was a success and every delivery the
//! fan-out promised has ended — an email accepted, an in-app frame acked — and *failed*
//! when the response was an error or a delivery was dead-lettered. Stages that come
//! later (a read receipt) are still added.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use wire::{
    LiveEvent, NotificationType, RequestComplete, RequestFailed, RequestProgress, RequestTracker, Stage, StageStatus,
    SystemStage,
};

use super::StageRecord;

/// How many journeys are kept by default (`--journeys`).
pub const DEFAULT_CAPACITY: usize = 1_000;
/// Log lines kept per journey.
const MAX_LOG_LINES: usize = 200;

pub use wire::{LogLine, Outcome};

/// What a log line is made from. Lines are formatted when someone asks for them
/// (`GET /api/live-view/requests/{id}`), not as each stage arrives: someone reads the
/// lines of a handful of requests, while every stage of every request is folded.
#[derive(Debug, Clone)]
enum LogEntry {
    /// The stage at this index of the tracker's stages, as it is now.
    Stage(usize),
    /// A stage that has since been replaced there by its ending: its "started" line.
    Replaced(Stage),
}

#[derive(Debug, Clone)]
pub struct Journey {
    pub tracker: RequestTracker,
    logs: Vec<LogEntry>,
    pub outcome: Outcome,
    /// The HTTP status the caller got, once answered.
    response: Option<u16>,
    /// Deliveries the fan-out created, once known.
    deliveries: Option<u64>,
    deliveries_ended: u64,
    delivery_error: Option<String>,
}

#[derive(Default)]
struct Store {
    /// Keyed by request id, the key shared with `order` (one copy of each id).
    by_id: HashMap<Arc<str>, Journey>,
    /// Oldest first, for eviction.
    order: VecDeque<Arc<str>>,
}

/// The journey store, shared by the aggregator (writes) and the API (reads).
pub struct Journeys {
    capacity: usize,
    store: Mutex<Store>,
}

impl Journeys {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            store: Mutex::new(Store::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Takes what a component observed: a stage is folded into its journey, an event
    /// passes as it is; either way the live events that follow go onto `events`.
    pub fn observe(&self, observation: super::Observation, events: &mut Vec<LiveEvent>) {
        match observation {
            super::Observation::Stage(record) => self.fold(record, events),
            super::Observation::Event(event) => events.push(event),
        }
    }

    /// Adds a stage to its journey and appends the live events that follow from it.
    pub fn fold(&self, record: StageRecord, events: &mut Vec<LiveEvent>) {
        let mut store = self.lock();
        if let Some(journey) = store.by_id.get_mut(record.request_id.as_str()) {
            let stage = apply(journey, record);
            events.push(LiveEvent::RequestProgress(RequestProgress {
                request_id: journey.tracker.request_id.clone(),
                kind: journey.tracker.kind,
                current_stage: journey.tracker.current_stage,
                stage,
            }));
            conclude(journey, events);
            return;
        }
        // Only a stage that names the request's type can start a journey; anything else
        // belongs to a journey already evicted (or never traced).
        let Some(kind) = record.kind else {
            return;
        };
        let key: Arc<str> = Arc::from(record.request_id.as_str());
        let mut journey = Journey {
            tracker: RequestTracker {
                request_id: record.request_id.clone(),
                kind,
                current_stage: record.stage,
                start_time: record.start,
                stages: Vec::new(),
                total_duration: 0.0,
            },
            logs: Vec::new(),
            outcome: Outcome::InProgress,
            response: None,
            deliveries: None,
            deliveries_ended: 0,
            delivery_error: None,
        };
        apply(&mut journey, record);
        events.push(LiveEvent::RequestNew(journey.tracker.clone()));
        conclude(&mut journey, events);
        while store.order.len() >= self.capacity {
            if let Some(oldest) = store.order.pop_front() {
                store.by_id.remove(&oldest);
            }
        }
        store.order.push_back(key.clone());
        store.by_id.insert(key, journey);
    }

    pub fn get(&self, request_id: &str) -> Option<Journey> {
        self.lock().by_id.get(request_id).cloned()
    }

    /// The newest journeys first, at most `limit`, that pass `keep`, each as `take` makes
    /// it (so a caller copies only what it needs, not every log line).
    pub fn recent<T>(&self, limit: usize, keep: impl Fn(&Journey) -> bool, take: impl Fn(&Journey) -> T) -> Vec<T> {
        let store = self.lock();
        store
            .order
            .iter()
            .rev()
            .filter_map(|id| store.by_id.get(id))
            .filter(|journey| keep(journey))
            .take(limit)
            .map(take)
            .collect()
    }

    /// Requests answered or still open whose deliveries have not all ended.
    pub fn in_progress(&self) -> usize {
        self.lock()
            .by_id
            .values()
            .filter(|journey| journey.outcome == Outcome::InProgress)
            .count()
    }

    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Puts the record into the journey (replacing the same stage's "processing" entry if
/// it announced itself) and returns the stage as stored.
fn apply(journey: &mut Journey, record: StageRecord) -> Stage {
    if let Some(kind) = record.kind {
        journey.tracker.kind = kind;
    }
    let stage = Stage {
        stage: record.stage,
        component: record.component,
        start_time: record.start,
        end_time: record.end,
        duration: record
            .end
            .map(|end| (end - record.start).num_microseconds().unwrap_or_default() as f64 / 1000.0),
        status: record.status,
        metadata: record.metadata,
    };
    track_outcome(journey, &stage);
    let tracker = &mut journey.tracker;
    tracker.current_stage = stage.stage;
    let open = tracker.stages.iter().position(|known| {
        known.status == StageStatus::Processing && known.stage == stage.stage && known.component == stage.component
    });
    let index = match open {
        Some(index) => {
            let started = std::mem::replace(&mut tracker.stages[index], stage.clone());
            // Its "started" line keeps what it said; the new line shows the ending.
            if let Some(entry) = journey
                .logs
                .iter_mut()
                .rev()
                .find(|entry| matches!(entry, LogEntry::Stage(at) if *at == index))
            {
                *entry = LogEntry::Replaced(started);
            }
            index
        }
        None => {
            tracker.stages.push(stage.clone());
            tracker.stages.len() - 1
        }
    };
    journey.logs.push(LogEntry::Stage(index));
    if journey.logs.len() > MAX_LOG_LINES {
        journey.logs.remove(0);
    }
    let tracker = &mut journey.tracker;
    let last = stage.end_time.unwrap_or(stage.start_time);
    let total = (last - tracker.start_time).num_microseconds().unwrap_or_default() as f64 / 1000.0;
    tracker.total_duration = tracker.total_duration.max(total);
    stage
}

fn track_outcome(journey: &mut Journey, stage: &Stage) {
    let ended = stage.status != StageStatus::Processing;
    match stage.stage {
        SystemStage::Response if ended => {
            journey.response = stage
                .metadata
                .get("status")
                .and_then(serde_json::Value::as_u64)
                .map(|code| code as u16);
        }
        SystemStage::NotificationFanout if ended => {
            journey.deliveries = stage.metadata.get("deliveries").and_then(serde_json::Value::as_u64);
        }
        SystemStage::SmtpAttempt if stage.status == StageStatus::Completed => journey.deliveries_ended += 1,
        SystemStage::ClientAck if stage.status == StageStatus::Completed => journey.deliveries_ended += 1,
        SystemStage::Skipped if stage.status == StageStatus::Completed => journey.deliveries_ended += 1,
        SystemStage::DeadLetter if ended => {
            journey.deliveries_ended += 1;
            let reason = stage.metadata.get("reason").and_then(serde_json::Value::as_str);
            journey.delivery_error = Some(reason.unwrap_or("dead-lettered").to_string());
        }
        _ => {}
    }
}

/// Emits `request:complete` or `request:failed` the moment the journey's outcome is known.
fn conclude(journey: &mut Journey, events: &mut Vec<LiveEvent>) {
    if journey.outcome != Outcome::InProgress {
        return;
    }
    let Some(status) = journey.response else {
        return;
    };
    let tracker = &journey.tracker;
    if status >= 400 {
        journey.outcome = Outcome::Failed;
        events.push(LiveEvent::RequestFailed(RequestFailed {
            request_id: tracker.request_id.clone(),
            kind: tracker.kind,
            stage: SystemStage::Response,
            error: format!("HTTP {status}"),
            total_duration: tracker.total_duration,
        }));
        return;
    }
    if journey.deliveries_ended < journey.deliveries.unwrap_or(0) {
        return;
    }
    if let Some(error) = &journey.delivery_error {
        journey.outcome = Outcome::Failed;
        events.push(LiveEvent::RequestFailed(RequestFailed {
            request_id: tracker.request_id.clone(),
            kind: tracker.kind,
            stage: SystemStage::DeadLetter,
            error: error.clone(),
            total_duration: tracker.total_duration,
        }));
        return;
    }
    journey.outcome = Outcome::Completed;
    let end_time = tracker
        .stages
        .iter()
        .filter_map(|stage| stage.end_time)
        .max()
        .unwrap_or(tracker.start_time);
    events.push(LiveEvent::RequestComplete(RequestComplete {
        request_id: tracker.request_id.clone(),
        kind: tracker.kind,
        end_time,
        total_duration: tracker.total_duration,
    }));
}

impl Journey {
    /// The journey's log lines, oldest first (at most [`MAX_LOG_LINES`]).
    pub fn log_lines(&self) -> Vec<LogLine> {
        self.logs
            .iter()
            .filter_map(|entry| match entry {
                LogEntry::Stage(index) => self.tracker.stages.get(*index).map(log_line),
                LogEntry::Replaced(stage) => Some(log_line(stage)),
            })
            .collect()
    }
}

fn log_line(stage: &Stage) -> LogLine {
    let name = stage.stage.name();
    let facts: Vec<String> = stage
        .metadata
        .iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(text) => format!("{key}={text}"),
            other => format!("{key}={other}"),
        })
        .collect();
    let (level, verb) = match stage.status {
        StageStatus::Failed => ("error", "failed"),
        StageStatus::Processing | StageStatus::Pending => ("info", "started"),
        StageStatus::Completed if stage.stage == SystemStage::RetryScheduled => ("warn", "completed"),
        StageStatus::Completed => ("info", "completed"),
    };
    let took = stage.duration.map(|ms| format!(" in {ms:.1} ms")).unwrap_or_default();
    let facts = if facts.is_empty() {
        String::new()
    } else {
        format!(" ({})", facts.join(", "))
    };
    LogLine {
        timestamp: stage.end_time.unwrap_or(stage.start_time),
        level: level.to_string(),
        component: stage.component.clone(),
        message: format!("{name} {verb}{took}{facts}"),
    }
}

/// The request type a route stands for, if it is one of the business actions.
pub fn kind_of_route(method: &str, path: &str) -> Option<NotificationType> {
    if method != "POST" {
        return None;
    }
    match path {
        "/api/auth/signup" => Some(NotificationType::Signup),
        "/api/auth/login" => Some(NotificationType::Login),
        "/api/auth/reset-password" | "/api/auth/reset-password/confirm" => Some(NotificationType::ResetPassword),
        "/api/purchases" => Some(NotificationType::Purchase),
        "/api/friend-requests" => Some(NotificationType::FriendRequest),
        _ if path.starts_with("/api/friend-requests/") && path.ends_with("/accept") => {
            Some(NotificationType::FriendAccept)
        }
        _ if path.starts_with("/api/conversations/") && path.ends_with("/messages") => Some(NotificationType::Message),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::StageMetadata;

    fn record(stage: SystemStage, status: StageStatus, meta: &[(&str, serde_json::Value)]) -> StageRecord {
        let now = chrono::Utc::now();
        StageRecord {
            request_id: "r1".into(),
            kind: (stage == SystemStage::LbReceived).then_some(NotificationType::Purchase),
            stage,
            component: "c".into(),
            start: now,
            end: (status != StageStatus::Processing).then_some(now),
            status,
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<StageMetadata>(),
        }
    }

    fn topics(events: &[LiveEvent]) -> Vec<&'static str> {
        events.iter().map(LiveEvent::topic).collect()
    }

    #[test]
    fn a_purchase_completes_when_both_deliveries_have_ended() {
        let journeys = Journeys::new(10);
        let mut events = Vec::new();
        let done = StageStatus::Completed;
        journeys.fold(record(SystemStage::LbReceived, done, &[]), &mut events);
        journeys.fold(
            record(SystemStage::NotificationFanout, done, &[("deliveries", 2.into())]),
            &mut events,
        );
        journeys.fold(
            record(SystemStage::Response, done, &[("status", 201.into())]),
            &mut events,
        );
        journeys.fold(record(SystemStage::SmtpAttempt, done, &[]), &mut events);
        assert_eq!(
            topics(&events),
            [
                "request:new",
                "request:progress",
                "request:progress",
                "request:progress"
            ]
        );
        journeys.fold(record(SystemStage::ClientAck, done, &[]), &mut events);
        assert_eq!(topics(&events).last(), Some(&"request:complete"));
        let journey = journeys.get("r1").expect("kept");
        assert_eq!(journey.outcome, Outcome::Completed);
        assert_eq!(journey.tracker.stages.len(), 5);
        assert_eq!(journey.log_lines().len(), 5);
    }

    #[test]
    fn an_error_response_or_a_dead_letter_fails_the_journey() {
        let journeys = Journeys::new(10);
        let mut events = Vec::new();
        let done = StageStatus::Completed;
        journeys.fold(record(SystemStage::LbReceived, done, &[]), &mut events);
        journeys.fold(
            record(SystemStage::Response, done, &[("status", 400.into())]),
            &mut events,
        );
        assert_eq!(topics(&events).last(), Some(&"request:failed"));

        let other = Journeys::new(10);
        let mut events = Vec::new();
        other.fold(record(SystemStage::LbReceived, done, &[]), &mut events);
        other.fold(
            record(SystemStage::NotificationFanout, done, &[("deliveries", 1.into())]),
            &mut events,
        );
        other.fold(
            record(SystemStage::Response, done, &[("status", 201.into())]),
            &mut events,
        );
        other.fold(
            record(SystemStage::DeadLetter, done, &[("reason", "554 rejected".into())]),
            &mut events,
        );
        let Some(LiveEvent::RequestFailed(failed)) = events.last() else {
            panic!("failed: {:?}", topics(&events));
        };
        assert_eq!(failed.error, "554 rejected");
    }

    #[test]
    fn an_announced_stage_is_replaced_by_its_end_and_the_oldest_journey_is_evicted() {
        let journeys = Journeys::new(1);
        let mut events = Vec::new();
        journeys.fold(
            record(SystemStage::LbReceived, StageStatus::Completed, &[]),
            &mut events,
        );
        journeys.fold(
            record(SystemStage::SmtpAttempt, StageStatus::Processing, &[]),
            &mut events,
        );
        journeys.fold(
            record(SystemStage::SmtpAttempt, StageStatus::Completed, &[]),
            &mut events,
        );
        let journey = journeys.get("r1").expect("kept");
        assert_eq!(journey.tracker.stages.len(), 2, "processing replaced by completed");
        let messages: Vec<String> = journey.log_lines().into_iter().map(|line| line.message).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[1].starts_with("smtp-attempt started"), "{messages:?}");
        assert!(messages[2].starts_with("smtp-attempt completed"), "{messages:?}");
        let mut next = record(SystemStage::LbReceived, StageStatus::Completed, &[]);
        next.request_id = "r2".into();
        journeys.fold(next, &mut events);
        assert!(journeys.get("r1").is_none(), "evicted");
        assert_eq!(journeys.len(), 1);
        let mut orphan = record(SystemStage::WorkerPickup, StageStatus::Completed, &[]);
        orphan.request_id = "gone".into();
        let before = events.len();
        journeys.fold(orphan, &mut events);
        assert_eq!(events.len(), before, "no journey is started without a type");
    }

    #[test]
    fn routes_name_their_request_type() {
        assert_eq!(
            kind_of_route("POST", "/api/purchases"),
            Some(NotificationType::Purchase)
        );
        assert_eq!(
            kind_of_route("POST", "/api/friend-requests/abc/accept"),
            Some(NotificationType::FriendAccept)
        );
        assert_eq!(kind_of_route("GET", "/api/purchases"), None);
        assert_eq!(kind_of_route("POST", "/api/notifications/x/read"), None);
    }
}

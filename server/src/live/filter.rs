//! Which events a viewer gets: [`Tags`] computed once per event when it is published, and
//! a viewer's [`Subscription`] (topic patterns and filters) matched against them.

use serde::{Deserialize, de::DeserializeOwned};
use wire::{ComponentMetrics, Flow, LiveEvent, NotificationType, Stage, StreamFilters, WorkerKind};

use crate::api_error::ApiError;

/// How many topic patterns (included plus excluded) one viewer may hold.
pub const MAX_PATTERNS: usize = 64;
/// How many values one filter dimension may list.
pub const MAX_FILTER_VALUES: usize = 64;
/// The longest topic pattern or server id accepted.
const MAX_NAME_LEN: usize = 128;

/// What a viewer can filter an event by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tags {
    pub topic: &'static str,
    pub flow: Option<Flow>,
    pub kind: Option<NotificationType>,
    /// The app server (`server-2`) the event happened on or is about.
    pub server: Option<Box<str>>,
}

impl Tags {
    /// Tags with only a topic: the stream's own messages.
    pub fn topic(topic: &'static str) -> Self {
        Self {
            topic,
            flow: None,
            kind: None,
            server: None,
        }
    }

    pub fn of(event: &LiveEvent) -> Self {
        let mut tags = Self::topic(event.topic());
        match event {
            LiveEvent::RequestNew(tracker) => {
                tags.kind = Some(tracker.kind);
                tags.server = tracker.stages.iter().rev().find_map(stage_server);
            }
            LiveEvent::RequestProgress(progress) => {
                tags.kind = Some(progress.kind);
                tags.server = stage_server(&progress.stage);
            }
            LiveEvent::RequestComplete(complete) => tags.kind = Some(complete.kind),
            LiveEvent::RequestFailed(failed) => tags.kind = Some(failed.kind),
            LiveEvent::ComponentStatus(status) => tags.server = app_server(&status.id),
            LiveEvent::ComponentMetrics(ComponentMetrics::Server(server)) => tags.server = app_server(&server.id),
            LiveEvent::ComponentMetrics(ComponentMetrics::Queue(queue)) => {
                tags.flow = Flow::of_queue(&queue.counts.name)
            }
            LiveEvent::QueueJobAdded(job) => tags.flow = Some(job.flow),
            LiveEvent::QueueJobProcessing(job) => tags.flow = Flow::of_queue(&job.queue),
            LiveEvent::QueueJobCompleted(job) => tags.flow = Flow::of_queue(&job.queue),
            LiveEvent::QueueJobFailed(job) => tags.flow = Flow::of_queue(&job.queue),
            LiveEvent::QueueJobRetry(job) => tags.flow = Flow::of_queue(&job.queue),
            LiveEvent::WorkerProcessing(worker) => tags.flow = Flow::of_queue(&worker.queue),
            LiveEvent::WorkerIdle(worker) => {
                tags.flow = Some(match worker.kind {
                    WorkerKind::Mail => Flow::Email,
                    WorkerKind::Inapp => Flow::InApp,
                })
            }
            LiveEvent::EmailSent(_) => tags.flow = Some(Flow::Email),
            LiveEvent::InAppDelivered(delivered) => {
                tags.flow = Some(Flow::InApp);
                tags.server = Some(delivered.server.as_str().into());
            }
            _ => {}
        }
        tags
    }
}

/// The app server a stage ran on: its `server` metadata, or the component itself when
/// that is an app server.
fn stage_server(stage: &Stage) -> Option<Box<str>> {
    match stage.metadata.get("server").and_then(|server| server.as_str()) {
        Some(server) => Some(server.into()),
        None => app_server(&stage.component),
    }
}

/// `server-3` is an app server; `load-balancer` is not.
fn app_server(id: &str) -> Option<Box<str>> {
    let number = id.strip_prefix("server-")?;
    (!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())).then(|| id.into())
}

/// One viewer's choice of events: topic patterns and filters.
///
/// A topic is delivered when it matches an included pattern and no excluded one. Until
/// the first `subscribe` that names topics every topic is included. `subscribe` adds
/// patterns (and drops exclusions they cover) and replaces the filters when it has some;
/// `unsubscribe` drops the patterns it names and excludes what a broader included pattern
/// would still deliver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// `None`: every topic (the default).
    include: Option<Vec<String>>,
    exclude: Vec<String>,
    filters: StreamFilters,
}

impl Subscription {
    /// Every topic, no filters: the viewer gets whole published frames, untouched.
    pub fn is_everything(&self) -> bool {
        self.include.is_none() && self.exclude.is_empty() && self.filters.is_empty()
    }

    pub fn subscribe(&mut self, topics: Vec<String>, filters: Option<StreamFilters>) -> Result<(), String> {
        topics.iter().try_for_each(|topic| check_pattern(topic))?;
        if let Some(filters) = &filters {
            check_filters(filters)?;
        }
        let mut next = self.clone();
        if !topics.is_empty() {
            let include = next.include.get_or_insert_with(Vec::new);
            for topic in topics {
                next.exclude.retain(|excluded| !covers(&topic, excluded));
                if !include.contains(&topic) {
                    include.push(topic);
                }
            }
        }
        if let Some(filters) = filters {
            next.filters = filters;
        }
        next.check_size()?;
        *self = next;
        Ok(())
    }

    pub fn unsubscribe(&mut self, topics: Vec<String>) -> Result<(), String> {
        topics.iter().try_for_each(|topic| check_pattern(topic))?;
        let mut next = self.clone();
        for topic in topics {
            if let Some(include) = &mut next.include {
                include.retain(|included| included != &topic);
            }
            let still_delivered = match &next.include {
                None => true,
                Some(include) => include.iter().any(|included| overlaps(included, &topic)),
            };
            if still_delivered && !next.exclude.contains(&topic) {
                next.exclude.push(topic);
            }
        }
        next.check_size()?;
        *self = next;
        Ok(())
    }

    pub fn wants(&self, tags: &Tags) -> bool {
        let topic = tags.topic;
        let included = match &self.include {
            None => true,
            Some(include) => include.iter().any(|pattern| matches(pattern, topic)),
        };
        included
            && !self.exclude.iter().any(|pattern| matches(pattern, topic))
            && passes(&self.filters.flows, tags.flow.as_ref())
            && passes(&self.filters.types, tags.kind.as_ref())
            && match (&self.filters.servers, &tags.server) {
                (Some(servers), Some(server)) => servers.iter().any(|wanted| **wanted == **server),
                _ => true,
            }
    }

    fn check_size(&self) -> Result<(), String> {
        let patterns = self.include.as_ref().map_or(0, Vec::len) + self.exclude.len();
        if patterns > MAX_PATTERNS {
            return Err(format!("at most {MAX_PATTERNS} topic patterns per viewer"));
        }
        Ok(())
    }
}

/// A filter passes an event that has no value for its dimension.
fn passes<T: PartialEq>(wanted: &Option<Vec<T>>, value: Option<&T>) -> bool {
    match (wanted, value) {
        (Some(wanted), Some(value)) => wanted.contains(value),
        _ => true,
    }
}

/// `queue:*` matches every topic starting with `queue:`; `*` matches all; anything else
/// matches itself only.
pub(crate) fn matches(pattern: &str, topic: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => pattern == topic,
    }
}

/// Whether every topic `narrow` matches is also matched by `broad`.
fn covers(broad: &str, narrow: &str) -> bool {
    match (broad.strip_suffix('*'), narrow.strip_suffix('*')) {
        (Some(prefix), Some(narrow_prefix)) => narrow_prefix.starts_with(prefix),
        (Some(prefix), None) => narrow.starts_with(prefix),
        (None, Some(_)) => false,
        (None, None) => broad == narrow,
    }
}

/// Whether some topic matches both patterns.
fn overlaps(a: &str, b: &str) -> bool {
    covers(a, b) || covers(b, a)
}

fn check_pattern(pattern: &str) -> Result<(), String> {
    let valid = !pattern.is_empty()
        && pattern.len() <= MAX_NAME_LEN
        && pattern.bytes().all(|b| b.is_ascii_graphic())
        && !pattern.trim_end_matches('*').contains('*')
        && !pattern.ends_with("**");
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid topic {pattern:?}: expected a name like \"system:status\" or a prefix like \"queue:*\""
        ))
    }
}

fn check_filters(filters: &StreamFilters) -> Result<(), String> {
    let too_many = filters.flows.as_ref().is_some_and(|v| v.len() > MAX_FILTER_VALUES)
        || filters.types.as_ref().is_some_and(|v| v.len() > MAX_FILTER_VALUES)
        || filters.servers.as_ref().is_some_and(|v| v.len() > MAX_FILTER_VALUES);
    if too_many {
        return Err(format!("at most {MAX_FILTER_VALUES} values per filter"));
    }
    if let Some(bad) = filters
        .servers
        .iter()
        .flatten()
        .find(|server| server.is_empty() || server.len() > MAX_NAME_LEN)
    {
        return Err(format!("invalid server {bad:?}"));
    }
    Ok(())
}

/// The query both stream endpoints take: `topics`, `flows`, `types` and `servers`, each
/// comma-separated, as in a `subscribe` message; and where to resume (`afterSeq`, or SSE's
/// `lastEventId`). Everything is read as text so a bad value gets a clear 400.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamQuery {
    pub topics: Option<String>,
    pub flows: Option<String>,
    pub types: Option<String>,
    pub servers: Option<String>,
    pub after_seq: Option<String>,
    pub last_event_id: Option<String>,
    /// `json` (the default) or `msgpack` (WebSocket only).
    pub encoding: Option<String>,
}

impl StreamQuery {
    /// The subscription the query asks for: every topic, no filters, when it names none.
    pub fn subscription(&self) -> Result<Subscription, ApiError> {
        let mut subscription = Subscription::default();
        let filters = StreamFilters {
            flows: self
                .flows
                .as_deref()
                .map(|flows| parse_list("flows", flows))
                .transpose()?,
            types: self
                .types
                .as_deref()
                .map(|types| parse_list("types", types))
                .transpose()?,
            servers: self
                .servers
                .as_deref()
                .map(|servers| list(servers).map(String::from).collect()),
        };
        let topics = self
            .topics
            .as_deref()
            .map_or_else(Vec::new, |topics| list(topics).map(String::from).collect());
        subscription
            .subscribe(topics, Some(filters))
            .map_err(|message| ApiError::invalid([("topics", message)]))?;
        Ok(subscription)
    }

    /// `afterSeq` as a number, when given.
    pub fn after_seq(&self) -> Result<Option<u64>, ApiError> {
        parse_seq("afterSeq", self.after_seq.as_deref())
    }
}

/// A seq given as text (`afterSeq`, `Last-Event-ID`).
pub fn parse_seq(field: &'static str, text: Option<&str>) -> Result<Option<u64>, ApiError> {
    text.map(|text| {
        text.trim()
            .parse::<u64>()
            .map_err(|_| ApiError::invalid([(field, format!("expected a sequence number, got {text:?}"))]))
    })
    .transpose()
}

pub(crate) fn list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|item| !item.is_empty())
}

/// `email,in-app` → flows, by their wire names.
fn parse_list<T: DeserializeOwned>(field: &'static str, text: &str) -> Result<Vec<T>, ApiError> {
    list(text)
        .map(|item| {
            serde_json::from_value(serde_json::Value::String(item.into()))
                .map_err(|_| ApiError::invalid([(field, format!("unknown value {item:?}"))]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use wire::{
        ComponentHealth, ComponentKind, ComponentStatus, EmailSent, InAppDelivered, QueueJobAdded, QueueJobFailed,
        RequestComplete, RequestProgress, StageStatus, SystemStage, WorkerIdle,
    };

    fn stage(component: &str, server: Option<&str>) -> Stage {
        let mut metadata = wire::StageMetadata::new();
        if let Some(server) = server {
            metadata.insert("server", server);
        }
        Stage {
            stage: SystemStage::LbForwarded,
            component: component.into(),
            start_time: Utc::now(),
            end_time: None,
            duration: None,
            status: StageStatus::Processing,
            metadata,
        }
    }

    fn progress(kind: NotificationType, stage: Stage) -> LiveEvent {
        LiveEvent::RequestProgress(RequestProgress {
            request_id: "r".into(),
            kind,
            current_stage: stage.stage,
            stage,
        })
    }

    fn job_failed(queue: &str) -> LiveEvent {
        LiveEvent::QueueJobFailed(QueueJobFailed {
            queue: queue.into(),
            job_id: "j".into(),
            request_id: None,
            attempt: 1,
            error: "451".into(),
            dead_lettered: false,
        })
    }

    fn component(id: &str) -> LiveEvent {
        LiveEvent::ComponentStatus(ComponentStatus {
            id: id.into(),
            name: id.into(),
            kind: ComponentKind::Server,
            health: ComponentHealth::Healthy,
            address: "127.0.0.1:1".into(),
            figure: String::new(),
            latency_ms: None,
            detail: None,
        })
    }

    #[test]
    fn tags_name_flow_type_and_server_where_the_event_has_them() {
        let tags = Tags::of(&progress(
            NotificationType::Purchase,
            stage("load-balancer", Some("server-2")),
        ));
        assert_eq!(tags.topic, "request:progress");
        assert_eq!(tags.kind, Some(NotificationType::Purchase));
        assert_eq!(tags.server.as_deref(), Some("server-2"));
        let on_server = Tags::of(&progress(NotificationType::Login, stage("server-3", None)));
        assert_eq!(on_server.server.as_deref(), Some("server-3"));
        let elsewhere = Tags::of(&progress(NotificationType::Login, stage("mail-worker-1", None)));
        assert_eq!(elsewhere.server, None);

        let added = Tags::of(&LiveEvent::QueueJobAdded(QueueJobAdded {
            queue: "whatever".into(),
            job_id: "j".into(),
            notification_id: "n".into(),
            request_id: None,
            flow: Flow::InApp,
            run_at: None,
        }));
        assert_eq!(added.flow, Some(Flow::InApp), "the job's own flow wins over its queue");
        assert_eq!(Tags::of(&job_failed("mail-retry-2")).flow, Some(Flow::Email));
        assert_eq!(Tags::of(&job_failed("inapp-dlq")).flow, Some(Flow::InApp));
        assert_eq!(Tags::of(&job_failed("other")).flow, None);
        let idle = Tags::of(&LiveEvent::WorkerIdle(WorkerIdle {
            worker_id: "w".into(),
            kind: WorkerKind::Inapp,
        }));
        assert_eq!(idle.flow, Some(Flow::InApp));
        let sent = Tags::of(&LiveEvent::EmailSent(EmailSent {
            notification_id: "n".into(),
            request_id: None,
            to: "a***@example.com".into(),
            smtp_code: 250,
        }));
        assert_eq!((sent.flow, sent.kind), (Some(Flow::Email), None));
        let delivered = Tags::of(&LiveEvent::InAppDelivered(InAppDelivered {
            notification_id: "n".into(),
            request_id: None,
            user_id: "u".into(),
            server: "server-1".into(),
        }));
        assert_eq!(delivered.flow, Some(Flow::InApp));
        assert_eq!(delivered.server.as_deref(), Some("server-1"));
        let complete = Tags::of(&LiveEvent::RequestComplete(RequestComplete {
            request_id: "r".into(),
            kind: NotificationType::Signup,
            end_time: Utc::now(),
            total_duration: 1.0,
        }));
        assert_eq!(complete.kind, Some(NotificationType::Signup));

        assert_eq!(Tags::of(&component("server-12")).server.as_deref(), Some("server-12"));
        assert_eq!(Tags::of(&component("server-")).server, None);
        assert_eq!(Tags::of(&component("database")).server, None);
    }

    #[test]
    fn by_default_everything_passes() {
        let subscription = Subscription::default();
        assert!(subscription.is_everything());
        assert!(subscription.wants(&Tags::of(&job_failed("mail"))));
        assert!(subscription.wants(&Tags::topic("system:status")));
    }

    #[test]
    fn the_first_subscribe_replaces_everything_and_prefixes_match() {
        let mut subscription = Subscription::default();
        subscription.subscribe(vec!["queue:*".into()], None).expect("valid");
        assert!(!subscription.is_everything());
        assert!(subscription.wants(&Tags::topic("queue:job:failed")));
        assert!(!subscription.wants(&Tags::topic("system:status")));
        subscription
            .subscribe(vec!["system:status".into()], None)
            .expect("valid");
        assert!(subscription.wants(&Tags::topic("system:status")));
        assert!(!subscription.wants(&Tags::topic("system:metrics")));
        assert!(subscription.wants(&Tags::topic("queue:job:added")), "subscribe adds");
    }

    #[test]
    fn unsubscribe_removes_and_excludes() {
        let mut subscription = Subscription::default();
        subscription.unsubscribe(vec!["worker:*".into()]).expect("valid");
        assert!(!subscription.wants(&Tags::topic("worker:idle")));
        assert!(subscription.wants(&Tags::topic("queue:job:added")));
        subscription.subscribe(vec!["worker:*".into()], None).expect("valid");
        assert!(
            subscription.wants(&Tags::topic("worker:idle")),
            "subscribe lifts the exclusion"
        );

        let mut subscription = Subscription::default();
        subscription
            .subscribe(vec!["queue:*".into(), "system:status".into()], None)
            .expect("valid");
        subscription.unsubscribe(vec!["system:status".into()]).expect("valid");
        assert!(!subscription.wants(&Tags::topic("system:status")));
        subscription.unsubscribe(vec!["queue:job:retry".into()]).expect("valid");
        assert!(!subscription.wants(&Tags::topic("queue:job:retry")));
        assert!(subscription.wants(&Tags::topic("queue:job:added")));
        subscription.subscribe(vec!["*".into()], None).expect("valid");
        assert!(subscription.wants(&Tags::topic("queue:job:retry")));
        assert!(subscription.wants(&Tags::topic("system:status")));
    }

    #[test]
    fn filters_pass_events_without_a_value_for_their_dimension() {
        let mut subscription = Subscription::default();
        let filters = StreamFilters {
            flows: Some(vec![Flow::Email]),
            types: Some(vec![NotificationType::Purchase]),
            servers: Some(vec!["server-2".into()]),
        };
        subscription.subscribe(vec!["*".into()], Some(filters)).expect("valid");
        assert!(subscription.wants(&Tags::topic("system:status")));
        assert!(subscription.wants(&Tags::of(&job_failed("mail"))));
        assert!(!subscription.wants(&Tags::of(&job_failed("inapp"))));
        assert!(subscription.wants(&Tags::of(&progress(
            NotificationType::Purchase,
            stage("server-2", None)
        ))));
        assert!(!subscription.wants(&Tags::of(&progress(
            NotificationType::Purchase,
            stage("server-1", None)
        ))));
        assert!(!subscription.wants(&Tags::of(&progress(NotificationType::Login, stage("server-2", None)))));
        subscription
            .subscribe(Vec::new(), Some(StreamFilters::default()))
            .expect("valid");
        assert!(subscription.wants(&Tags::of(&job_failed("inapp"))), "filters replaced");
    }

    #[test]
    fn bad_patterns_and_oversized_subscriptions_are_refused_and_change_nothing() {
        let mut subscription = Subscription::default();
        for bad in ["", "queue:*:added", "**", "has space", &"x".repeat(200)] {
            assert!(subscription.subscribe(vec![bad.into()], None).is_err(), "{bad:?}");
            assert!(subscription.unsubscribe(vec![bad.into()]).is_err(), "{bad:?}");
        }
        let many = (0..=MAX_PATTERNS).map(|n| format!("topic:{n}")).collect();
        assert!(subscription.subscribe(many, None).is_err());
        let servers = StreamFilters {
            servers: Some(vec![String::new()]),
            ..Default::default()
        };
        assert!(subscription.subscribe(vec!["*".into()], Some(servers)).is_err());
        assert!(subscription.is_everything(), "a refused message changes nothing");
    }

    #[test]
    fn the_query_mirrors_subscribe() {
        let query = StreamQuery {
            topics: Some("queue:*, system:status".into()),
            flows: Some("in-app".into()),
            types: Some("purchase,signup".into()),
            servers: Some("server-1".into()),
            ..Default::default()
        };
        let subscription = query.subscription().expect("valid");
        assert!(subscription.wants(&Tags::topic("system:status")));
        assert!(!subscription.wants(&Tags::topic("worker:idle")));
        assert!(!subscription.wants(&Tags::of(&job_failed("mail"))));
        assert!(subscription.wants(&Tags::of(&job_failed("inapp"))));

        let filters_only = StreamQuery {
            flows: Some("email".into()),
            ..Default::default()
        };
        let subscription = filters_only.subscription().expect("valid");
        assert!(subscription.wants(&Tags::topic("worker:idle")), "every topic");
        assert!(!subscription.wants(&Tags::of(&job_failed("inapp"))));
        assert!(StreamQuery::default().subscription().expect("valid").is_everything());

        let bad = StreamQuery {
            flows: Some("fax".into()),
            ..Default::default()
        };
        assert_eq!(
            bad.subscription().expect_err("unknown flow").fields["flows"],
            "unknown value \"fax\""
        );
        let bad = StreamQuery {
            after_seq: Some("soon".into()),
            ..Default::default()
        };
        assert!(bad.after_seq().is_err());
        assert_eq!(parse_seq("lastEventId", Some(" 42 ")).expect("number"), Some(42));
    }
}

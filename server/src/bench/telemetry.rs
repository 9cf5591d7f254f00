//! `liveview bench telemetry`: what the live window costs per request, measured on its
//! own. `bench pipeline --without-live-telemetry` answers "how much throughput does it
//! take", but at a fixed rate the difference is a few percent of a noisy whole; this
//! command runs only the telemetry's part of a purchase, so a change to it can be
//! measured to a microsecond.
//!
//! It makes the stage records of N purchases exactly as the components make them for a
//! real one (the 15 stages, two of them announced before they end, with the same
//! metadata), and their queue, worker and delivery events (`queue:job:*` for both jobs,
//! `notification:*`, and `worker:processing`/`worker:idle` once a batch of four), folds
//! the records into journeys ([`Journeys::observe`], as the aggregator does) and
//! publishes the resulting events in batches the size the aggregator makes at 2,400
//! purchases/s ([`LiveHub::publish_batch`], with the history recording every frame in a
//! temporary directory). Single-threaded parts are timed on the wall clock;
//! the whole round, history writes included, on this process's CPU clock.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use wire::{
    EmailSent, Flow, InAppDelivered, LiveEvent, NotificationType, QueueJobAdded, QueueJobCompleted, QueueJobProcessing,
    StageStatus, SystemStage, Timestamp, WorkerIdle, WorkerKind, WorkerProcessing,
};

use crate::{
    history::{History, Retention},
    live::LiveHub,
    telemetry::{Observation, StageRecord, journeys::DEFAULT_CAPACITY},
};

#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// Purchases per round.
    #[arg(long, default_value_t = 20_000)]
    pub purchases: usize,
    /// Rounds; each prints its own line, so the spread shows.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

/// Purchases whose events the aggregator publishes together at 2,400 purchases/s: one
/// 50 ms window's worth.
const PURCHASES_PER_BATCH: usize = 120;

pub async fn telemetry(args: TelemetryArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("liveview-bench-telemetry-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let tasks = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let retention = Retention {
        keep: Duration::from_secs(3600),
        full_detail: Duration::from_secs(600),
        max_bytes: u64::MAX,
    };
    let history = History::open(&dir, retention, &tasks, shutdown.clone()).await?;
    let json_bytes = Arc::new(AtomicUsize::new(0));
    let hub = {
        let (history, json_bytes) = (history.clone(), json_bytes.clone());
        let sink = Arc::new(move |published: &crate::live::Published| {
            json_bytes.fetch_add(published.json().len(), Ordering::Relaxed);
            history.record_frame(published);
        });
        // The benchmark's snapshots carry no journeys: it times folding and publishing.
        Arc::new(LiveHub::recording(
            crate::live::DEFAULT_HISTORY,
            sink,
            Arc::new(Vec::new),
        ))
    };
    let journeys = crate::telemetry::Journeys::new(DEFAULT_CAPACITY);
    let pid = std::process::id();

    println!(
        "{:>9} {:>8} {:>8} {:>11} {:>11} {:>11} {:>10}",
        "purchases", "records", "events", "fold", "publish", "all cpu", "json"
    );
    for round in 0..args.rounds {
        let cpu_before = super::cpu_seconds(pid);
        let bytes_before = json_bytes.load(Ordering::Relaxed);
        let (mut making, mut fold, mut publish) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let (mut record_count, mut event_count) = (0, 0);
        // Made, folded and published a window at a time, as in the running system, so
        // the memory stays as warm as there (making all the records first put a fresh
        // 170 MB under every round, and the page faults in the figures).
        for first in (0..args.purchases).step_by(PURCHASES_PER_BATCH) {
            let started = Instant::now();
            let last = (first + PURCHASES_PER_BATCH).min(args.purchases);
            let records: Vec<Observation> = (first..last).flat_map(|n| purchase(round, n)).collect();
            record_count += records.len();
            let folding = Instant::now();
            making += folding - started;
            let mut events = Vec::with_capacity(records.len() + 8);
            for record in records {
                journeys.observe(record, &mut events);
            }
            event_count += events.len();
            let publishing = Instant::now();
            fold += publishing - folding;
            hub.publish_batch(events);
            publish += publishing.elapsed();
        }
        // The history writes a transaction a second; wait for it to have written this
        // round, so the CPU below includes it.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        // Making the records is the benchmark's work, not the telemetry's.
        let cpu = super::cpu_seconds(pid) - cpu_before - making.as_secs_f64();
        let json = json_bytes.load(Ordering::Relaxed) - bytes_before;
        let per = |seconds: f64| format!("{:.1} µs", seconds * 1e6 / args.purchases as f64);
        println!(
            "{:>9} {:>8} {:>8} {:>11} {:>11} {:>11} {:>8} B",
            args.purchases,
            record_count / args.purchases,
            event_count / args.purchases,
            per(fold.as_secs_f64()),
            per(publish.as_secs_f64()),
            per(cpu),
            json / args.purchases
        );
    }
    println!(
        "per purchase: records = stage records and events the components make, events = live events \
         published, fold = into journeys (wall), publish = JSON, framing, ring and history queue (wall), \
         all cpu = this process's CPU for the round less making the records, the history's writes \
         included, json = bytes of JSON published"
    );
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Purchases per worker batch: the workers' `worker:processing` and `worker:idle` come
/// once a batch, and at 2,400 purchases/s a claim takes a few jobs.
const JOBS_PER_BATCH: usize = 4;

/// The stage records and events of one purchase, as the balancer, a server, the
/// database, the notification service, the queue manager and the two workers make them.
fn purchase(round: usize, n: usize) -> Vec<Observation> {
    let server = format!("server-{}", n % 3 + 1);
    let socket_server = format!("server-{}", (n + 1) % 3 + 1);
    let mail_worker = format!("mail-worker-{}", n % 16 + 1);
    let inapp_worker = format!("inapp-worker-{}", n % 8 + 1);
    let id = || uuid::Uuid::now_v7().to_string();
    let (mail_job, inapp_job, email_id, notice_id) = (id(), id(), id(), id());
    let mut journey = Records {
        request_id: id(),
        start: chrono::Utc::now(),
        clock_us: 0,
        records: Vec::with_capacity(30),
    };
    let purchase = Some(NotificationType::Purchase);
    journey.stage(
        SystemStage::LbReceived,
        "load-balancer",
        purchase,
        20,
        &[("method", "POST".into()), ("path", "/api/purchases".into())],
    );
    journey.stage(
        SystemStage::LbForwarded,
        "load-balancer",
        None,
        1,
        &[
            ("algorithm", "round-robin".into()),
            ("retriedAfterRefusal", 0.into()),
            ("server", server.as_str().into()),
        ],
    );
    journey.stage(SystemStage::ServerReceived, &server, None, 10, &[]);
    journey.stage(
        SystemStage::Middleware,
        &server,
        None,
        30,
        &[("pipeline", "request-id, errors, body-limit, timeout, auth".into())],
    );
    journey.stage(SystemStage::Controller, &server, purchase, 40, &[]);
    journey.stage(
        SystemStage::DbQuery,
        "database",
        None,
        900,
        &[("statements", 5.into()), ("transaction", "group".into())],
    );
    journey.stage(
        SystemStage::NotificationFanout,
        "notification-service",
        None,
        5,
        &[("deliveries", 2.into()), ("emails", 1.into()), ("inApp", 1.into())],
    );
    let jobs = [
        (&mail_job, &email_id, "mail", Flow::Email),
        (&inapp_job, &notice_id, "inapp", Flow::InApp),
    ];
    for (job, notice, queue, flow) in jobs {
        journey.stage(
            SystemStage::QueueAdd,
            "queue-manager",
            None,
            2,
            &[
                ("jobId", job.as_str().into()),
                ("notificationId", notice.as_str().into()),
                ("queue", queue.into()),
            ],
        );
        let request_id = Some(journey.request_id.clone());
        journey.event(LiveEvent::QueueJobAdded(QueueJobAdded {
            queue: queue.to_string(),
            job_id: job.clone(),
            notification_id: notice.clone(),
            request_id,
            flow,
            run_at: None,
        }));
    }
    journey.stage(SystemStage::Response, &server, None, 15, &[("status", 201.into())]);
    let pickup = |job: &str, queue: &str| -> Vec<(&'static str, Value)> {
        vec![
            ("attempt", 1.into()),
            ("batch", 1.into()),
            ("jobId", job.into()),
            ("queue", queue.into()),
        ]
    };
    journey.picked_up(&inapp_worker, WorkerKind::Inapp, "inapp", &inapp_job, n);
    journey.stage(
        SystemStage::WorkerPickup,
        &inapp_worker,
        None,
        300,
        &pickup(&inapp_job, "inapp"),
    );
    journey.stage(
        SystemStage::InappPush,
        &inapp_worker,
        None,
        40,
        &[
            ("seq", (round * 100_000 + n).into()),
            ("server", socket_server.as_str().into()),
        ],
    );
    // The ack is announced when the frame goes out and ends when the client acks.
    let ack = [("notificationId", Value::from(notice_id.as_str()))];
    journey.announced(SystemStage::ClientAck, &socket_server, 400, &ack, &ack);
    let request_id = Some(journey.request_id.clone());
    journey.event(LiveEvent::InAppDelivered(InAppDelivered {
        notification_id: notice_id.clone(),
        request_id,
        user_id: format!("user-{}", n % 40),
        server: socket_server.clone(),
    }));
    journey.completed(&inapp_worker, WorkerKind::Inapp, "inapp", &inapp_job, n);
    journey.picked_up(&mail_worker, WorkerKind::Mail, "mail", &mail_job, n);
    journey.stage(
        SystemStage::WorkerPickup,
        &mail_worker,
        None,
        300,
        &pickup(&mail_job, "mail"),
    );
    // The SMTP attempt is announced, then ends with the server's reply.
    let to = ("to", Value::from("v***@liveview.example"));
    journey.announced(
        SystemStage::SmtpAttempt,
        &mail_worker,
        2_000,
        &[("attempt", 1.into()), to.clone()],
        &[("attempt", 1.into()), ("smtpCode", 250.into()), to],
    );
    let request_id = Some(journey.request_id.clone());
    journey.event(LiveEvent::EmailSent(EmailSent {
        notification_id: email_id.clone(),
        request_id,
        to: "v***@liveview.example".into(),
        smtp_code: 250,
    }));
    journey.completed(&mail_worker, WorkerKind::Mail, "mail", &mail_job, n);
    journey.records
}

/// One request's records in the making, on a clock of its own.
struct Records {
    request_id: String,
    start: Timestamp,
    clock_us: i64,
    records: Vec<Observation>,
}

impl Records {
    fn event(&mut self, event: LiveEvent) {
        self.records.push(Observation::Event(event));
    }

    /// A worker claiming the job: `queue:job:processing`, and `worker:processing` when
    /// it starts a batch.
    fn picked_up(&mut self, worker: &str, kind: WorkerKind, queue: &str, job: &str, n: usize) {
        let request_id = Some(self.request_id.clone());
        if n.is_multiple_of(JOBS_PER_BATCH) {
            self.event(LiveEvent::WorkerProcessing(WorkerProcessing {
                worker_id: worker.to_string(),
                kind,
                queue: queue.to_string(),
                job_id: job.to_string(),
                request_id: request_id.clone(),
            }));
        }
        self.event(LiveEvent::QueueJobProcessing(QueueJobProcessing {
            queue: queue.to_string(),
            job_id: job.to_string(),
            request_id,
            worker_id: worker.to_string(),
            attempt: 1,
        }));
    }

    /// The job done: `queue:job:completed`, and `worker:idle` when its batch ends.
    fn completed(&mut self, worker: &str, kind: WorkerKind, queue: &str, job: &str, n: usize) {
        let request_id = Some(self.request_id.clone());
        self.event(LiveEvent::QueueJobCompleted(QueueJobCompleted {
            queue: queue.to_string(),
            job_id: job.to_string(),
            request_id,
            duration: 2.5,
        }));
        if n % JOBS_PER_BATCH == JOBS_PER_BATCH - 1 {
            self.event(LiveEvent::WorkerIdle(WorkerIdle {
                worker_id: worker.to_string(),
                kind,
            }));
        }
    }

    fn tick(&mut self, micros: i64) -> Timestamp {
        self.clock_us += micros;
        self.start + chrono::Duration::microseconds(self.clock_us)
    }

    /// A stage recorded once, when it ended `took` µs after it began.
    fn stage(
        &mut self,
        stage: SystemStage,
        component: &str,
        kind: Option<NotificationType>,
        took: i64,
        meta: &[(&'static str, Value)],
    ) {
        let begun = self.tick(5);
        let end = self.tick(took);
        self.push(stage, component, kind, begun, Some(end), meta);
    }

    /// A stage recorded when it began (still processing) and again when it ended.
    fn announced(
        &mut self,
        stage: SystemStage,
        component: &str,
        took: i64,
        begun_meta: &[(&'static str, Value)],
        ended_meta: &[(&'static str, Value)],
    ) {
        let begun = self.tick(5);
        self.push(stage, component, None, begun, None, begun_meta);
        let end = self.tick(took);
        self.push(stage, component, None, begun, Some(end), ended_meta);
    }

    fn push(
        &mut self,
        stage: SystemStage,
        component: &str,
        kind: Option<NotificationType>,
        start: Timestamp,
        end: Option<Timestamp>,
        meta: &[(&'static str, Value)],
    ) {
        self.records.push(Observation::Stage(StageRecord {
            request_id: self.request_id.clone(),
            kind,
            stage,
            component: component.to_string(),
            start,
            end,
            status: if end.is_some() {
                StageStatus::Completed
            } else {
                StageStatus::Processing
            },
            metadata: meta.iter().map(|(key, value)| (*key, value.clone())).collect(),
        }));
    }
}

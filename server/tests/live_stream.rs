//! The live stream end to end: the whole system started in-process, events published
//! through its hub, and real clients (tokio-tungstenite, reqwest reading server-sent
//! events) on the dashboard's `/api/live-view/ws` and `/api/live-view/sse`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use liveview::live::LiveHub;
use support::{Sse, TestSystem};
use tokio::{net::TcpStream, sync::MutexGuard};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{self, Message, client::IntoClientRequest},
};
use wire::{
    ClientMessage, ComponentHealth, ComponentKind, ComponentStatus, Envelope, InAppDelivered, LiveEvent,
    NotificationType, OverallHealth, QueueJobCompleted, QueueJobFailed, RequestComplete, StreamGap, SystemMetrics,
    WorkerIdle, WorkerKind, parse_frame,
};

mod support;

use liveview::config::Config;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long any one expected thing may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);

/// One test at a time: they share this process's CPU, and one measures its memory.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn start(configure: impl FnOnce(&mut Config)) -> (MutexGuard<'static, ()>, TestSystem) {
    let turn = ONE_AT_A_TIME.lock().await;
    let system = TestSystem::start(|config| {
        config.servers = 1;
        configure(config);
    })
    .await;
    (turn, system)
}

fn hub(system: &TestSystem) -> &LiveHub {
    &system.running.hub
}

/// Waits until the status sampler has published once, so snapshots hold a status.
async fn first_status(system: &TestSystem) {
    support::eventually("a system:status published", WAIT, || async {
        hub(system).latest_status().map(|_| ())
    })
    .await;
}

async fn connect_with(system: &TestSystem, query: &str, origin: Option<&str>) -> Result<Socket, tungstenite::Error> {
    let url = format!("ws://{}/api/live-view/ws{query}", system.running.dash());
    let mut request = url.into_client_request()?;
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("a header value"));
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

async fn connect(system: &TestSystem, query: &str) -> Socket {
    connect_with(system, query, None).await.expect("upgrade")
}

/// The next data frame's Envelopes: JSON text, or MessagePack binary.
async fn next_frame(socket: &mut Socket) -> Vec<Envelope> {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame in time")
            .expect("the stream is open")
            .expect("a frame");
        match message {
            Message::Text(text) => return parse_frame(&text).expect("Envelopes"),
            Message::Binary(data) => return decode_msgpack(&data),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// A MessagePack frame: one Envelope (a map) or an array of them.
fn decode_msgpack(data: &[u8]) -> Vec<Envelope> {
    match data.first() {
        Some(0x90..=0x9f | 0xdc | 0xdd) => rmp_serde::from_slice(data).expect("an array of Envelopes"),
        _ => vec![rmp_serde::from_slice(data).expect("one Envelope")],
    }
}

/// Reads until an Envelope satisfies `done`; returns everything read.
async fn read_until(socket: &mut Socket, done: impl Fn(&Envelope) -> bool) -> Vec<Envelope> {
    let mut seen = Vec::new();
    // The status arrives every second, so each frame comes in time; the whole wait must too.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "not seen within {WAIT:?}");
        let frame = next_frame(socket).await;
        let found = frame.iter().any(&done);
        seen.extend(frame);
        if found {
            return seen;
        }
    }
}

/// Reads until the server closes; the close code, or `None` if it hung up without one.
async fn close_code(socket: &mut Socket) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, socket.next()).await.expect("closed in time") {
            Some(Ok(Message::Close(frame))) => return frame.map(|frame| u16::from(frame.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

async fn send(socket: &mut Socket, message: &ClientMessage) {
    let text = serde_json::to_string(message).expect("json");
    socket.send(Message::text(text)).await.expect("sent");
}

/// Publishes pairs (unwanted, wanted) until one arrives without its unwanted half: from
/// then on the server has applied what the client sent before.
async fn fence(socket: &mut Socket, hub: &LiveHub, unwanted: impl Fn() -> LiveEvent, wanted: impl Fn() -> LiveEvent) {
    for _ in 0..100 {
        let skipped = hub.publish(unwanted());
        let marker = hub.publish(wanted());
        let seen = read_until(socket, |envelope| envelope.seq == marker).await;
        if seen.iter().all(|envelope| envelope.seq != skipped) {
            return;
        }
    }
    panic!("the subscription never took effect");
}

/// The envelopes among `seen` with a seq in `seqs`: what the test published, whatever
/// else the running system publishes meanwhile.
fn only(seen: Vec<Envelope>, seqs: impl IntoIterator<Item = u64>) -> Vec<Envelope> {
    let seqs: Vec<u64> = seqs.into_iter().collect();
    seen.into_iter()
        .filter(|envelope| seqs.contains(&envelope.seq))
        .collect()
}

fn topics(envelopes: &[Envelope]) -> Vec<&'static str> {
    envelopes.iter().map(|envelope| envelope.event.topic()).collect()
}

fn seqs(envelopes: &[Envelope]) -> Vec<u64> {
    envelopes.iter().map(|envelope| envelope.seq).collect()
}

fn idle(kind: WorkerKind) -> LiveEvent {
    LiveEvent::WorkerIdle(WorkerIdle {
        worker_id: "worker-1".into(),
        kind,
    })
}

fn job_failed(queue: &str) -> LiveEvent {
    LiveEvent::QueueJobFailed(QueueJobFailed {
        queue: queue.into(),
        job_id: "job-1".into(),
        request_id: None,
        attempt: 1,
        error: "451 try later".into(),
        dead_lettered: false,
    })
}

fn job_completed() -> LiveEvent {
    LiveEvent::QueueJobCompleted(QueueJobCompleted {
        queue: "mail".into(),
        job_id: "job-2".into(),
        request_id: None,
        duration: 3.0,
    })
}

fn complete(kind: NotificationType) -> LiveEvent {
    LiveEvent::RequestComplete(RequestComplete {
        request_id: "req-1".into(),
        kind,
        end_time: chrono::Utc::now(),
        total_duration: 12.0,
    })
}

fn delivered(server: &str) -> LiveEvent {
    LiveEvent::InAppDelivered(InAppDelivered {
        notification_id: "n-1".into(),
        request_id: None,
        user_id: "u-1".into(),
        server: server.into(),
    })
}

/// Has no flow, type or server: passes every filter.
fn metrics() -> LiveEvent {
    LiveEvent::SystemMetrics(SystemMetrics {
        system_status: OverallHealth::Healthy,
        active_requests: 0,
        requests_per_second: 0.0,
        average_latency: 0.0,
        error_rate: 0.0,
        uptime: "1s".into(),
        timestamp: chrono::Utc::now(),
    })
}

/// A `component:status` carrying `bytes` of detail: bulk for flooding.
fn bulky(bytes: usize) -> LiveEvent {
    LiveEvent::ComponentStatus(ComponentStatus {
        id: "database".into(),
        name: "Database".into(),
        kind: ComponentKind::Database,
        health: ComponentHealth::Healthy,
        address: "sqlite://test".into(),
        figure: "flood".into(),
        latency_ms: None,
        detail: Some("x".repeat(bytes)),
    })
}

#[tokio::test]
async fn a_new_viewer_gets_a_snapshot_first_then_every_event_in_order() {
    let (_turn, system) = start(|_| {}).await;
    first_status(&system).await;
    let mut socket = connect(&system, "").await;
    let first = next_frame(&mut socket).await;
    let [snapshot] = &first[..] else {
        panic!("one snapshot first: {first:?}")
    };
    let LiveEvent::Snapshot(state) = &snapshot.event else {
        panic!("a snapshot first: {snapshot:?}")
    };
    assert!(state.status.is_some(), "the snapshot holds the latest status");

    let seq = hub(&system).publish(idle(WorkerKind::Mail));
    let seen = read_until(&mut socket, |envelope| envelope.seq == seq).await;
    assert_eq!(
        seqs(&seen),
        (snapshot.seq + 1..=seq).collect::<Vec<_>>(),
        "every event after the snapshot, once, in order"
    );

    let (first, last) = hub(&system)
        .publish_batch(vec![idle(WorkerKind::Mail), job_completed(), metrics()])
        .expect("published");
    let frame = loop {
        let frame = next_frame(&mut socket).await;
        if frame.iter().any(|envelope| envelope.seq == first) {
            break frame;
        }
    };
    assert_eq!(seqs(&frame), (first..=last).collect::<Vec<_>>(), "a batch is one frame");
    assert_eq!(topics(&frame), ["worker:idle", "queue:job:completed", "system:metrics"]);
    system.stop().await;
}

#[tokio::test]
async fn a_prefix_subscription_gets_only_matching_topics() {
    let (_turn, system) = start(|_| {}).await;
    let hub = hub(&system);

    // In the query: in effect from the start.
    let mut socket = connect(&system, "?topics=queue:*").await;
    let snapshot = next_frame(&mut socket).await;
    assert_eq!(topics(&snapshot), ["stream:snapshot"], "the snapshot is always sent");
    let skipped = hub.publish(idle(WorkerKind::Mail));
    let failed = hub.publish(job_failed("mail"));
    // The status sampler publishes in between: a status gathered after `failed` went out.
    let after_failed = chrono::Utc::now();
    support::eventually("a system:status after the job failed", WAIT, || async {
        hub.latest_status()
            .filter(|status| status.timestamp > after_failed)
            .map(|_| ())
    })
    .await;
    let statuses = hub.last_seq();
    let also_skipped = hub.publish(metrics());
    let marker = hub.publish(job_completed());
    let seen = read_until(&mut socket, |envelope| envelope.seq == marker).await;
    assert!(
        seen.iter().all(|envelope| envelope.event.topic().starts_with("queue:")),
        "{seen:?}"
    );
    let seen = only(seen, (skipped..=statuses).chain([also_skipped, marker]));
    assert_eq!(seqs(&seen), [failed, marker]);

    // By message, on a connection that got everything so far.
    let mut socket = connect(&system, "").await;
    next_frame(&mut socket).await;
    send(
        &mut socket,
        &ClientMessage::Subscribe {
            topics: vec!["queue:*".into()],
            filters: None,
        },
    )
    .await;
    fence(&mut socket, hub, metrics, || job_failed("mail")).await;
    let (first, last) = hub
        .publish_batch(vec![
            idle(WorkerKind::Mail),
            job_failed("inapp"),
            metrics(),
            job_completed(),
        ])
        .expect("published");
    let seen = only(
        read_until(&mut socket, |envelope| envelope.seq == last).await,
        first..=last,
    );
    assert_eq!(topics(&seen), ["queue:job:failed", "queue:job:completed"]);
    assert_eq!(seqs(&seen), [first + 1, last]);

    send(
        &mut socket,
        &ClientMessage::Unsubscribe {
            topics: vec!["queue:job:failed".into()],
        },
    )
    .await;
    fence(&mut socket, hub, || job_failed("mail"), job_completed).await;
    let (first, last) = hub
        .publish_batch(vec![job_failed("mail"), idle(WorkerKind::Mail), job_completed()])
        .expect("published");
    let seen = only(
        read_until(&mut socket, |envelope| envelope.seq == last).await,
        first..=last,
    );
    assert_eq!(topics(&seen), ["queue:job:completed"]);
    system.stop().await;
}

#[tokio::test]
async fn filters_narrow_events_and_pass_those_without_the_dimension() {
    let (_turn, system) = start(|_| {}).await;
    let hub = hub(&system);
    let mut socket = connect(&system, "?flows=email&types=purchase").await;
    next_frame(&mut socket).await;
    let (first, last) = hub
        .publish_batch(vec![
            job_failed("inapp"),
            job_failed("mail-retry-1"),
            complete(NotificationType::Purchase),
            complete(NotificationType::Signup),
            idle(WorkerKind::Inapp),
            metrics(),
        ])
        .expect("published");
    let seen = only(
        read_until(&mut socket, |envelope| envelope.seq == last).await,
        first..=last,
    );
    assert_eq!(seqs(&seen), [first + 1, first + 2, last]);
    assert_eq!(
        topics(&seen),
        ["queue:job:failed", "request:complete", "system:metrics"]
    );

    // By message: servers only, every topic.
    let mut socket = connect(&system, "").await;
    next_frame(&mut socket).await;
    send(
        &mut socket,
        &ClientMessage::Subscribe {
            topics: Vec::new(),
            filters: Some(wire::StreamFilters {
                servers: Some(vec!["server-2".into()]),
                ..Default::default()
            }),
        },
    )
    .await;
    fence(&mut socket, hub, || delivered("server-1"), || delivered("server-2")).await;
    let (first, last) = hub
        .publish_batch(vec![delivered("server-1"), delivered("server-2"), metrics()])
        .expect("published");
    let seen = only(
        read_until(&mut socket, |envelope| envelope.seq == last).await,
        first..=last,
    );
    assert_eq!(seqs(&seen), [first + 1, last]);
    let LiveEvent::InAppDelivered(delivery) = &seen[0].event else {
        panic!("a delivery")
    };
    assert_eq!(delivery.server, "server-2");
    system.stop().await;
}

#[tokio::test]
async fn resuming_inside_the_history_window_is_gapless() {
    let (_turn, system) = start(|_| {}).await;
    let hub = hub(&system);
    let first = hub.publish(idle(WorkerKind::Mail));
    let (_, last) = hub
        .publish_batch((0..4).map(|_| job_completed()).collect())
        .expect("published");

    // At connect: no snapshot, exactly the events after afterSeq.
    let mut socket = connect(&system, &format!("?afterSeq={}", first - 1)).await;
    let seen = read_until(&mut socket, |envelope| envelope.seq >= last).await;
    assert_eq!(seqs(&seen), (first..=seen[seen.len() - 1].seq).collect::<Vec<_>>());
    assert!(!topics(&seen).contains(&"stream:snapshot"));

    // By message, after the snapshot: the missed events again, in order.
    let mut socket = connect(&system, "").await;
    let snapshot = next_frame(&mut socket).await[0].seq;
    assert!(snapshot >= last);
    send(&mut socket, &ClientMessage::Resume { after_seq: first - 1 }).await;
    let mut seen = read_until(&mut socket, |envelope| envelope.seq == first).await;
    let start = seen
        .iter()
        .position(|envelope| envelope.seq == first)
        .expect("replayed");
    if !seen[start..].iter().any(|envelope| envelope.seq == snapshot) {
        seen.extend(read_until(&mut socket, |envelope| envelope.seq == snapshot).await);
    }
    let replay: Vec<u64> = seqs(&seen[start..])
        .into_iter()
        .take_while(|seq| *seq <= snapshot)
        .collect();
    assert_eq!(replay, (first..=snapshot).collect::<Vec<_>>());
    system.stop().await;
}

#[tokio::test]
async fn resuming_outside_the_history_window_gets_the_gap_then_a_snapshot() {
    let (_turn, system) = start(|config| config.live_history = 5).await;
    let hub = hub(&system);
    let old = hub.publish(idle(WorkerKind::Mail));
    hub.publish_batch((0..20).map(|_| job_completed()).collect())
        .expect("published");

    let mut socket = connect(&system, &format!("?afterSeq={old}")).await;
    let gap = next_frame(&mut socket).await;
    let [
        Envelope {
            event: LiveEvent::Gap(range),
            seq: gap_seq,
            ..
        },
    ] = &gap[..]
    else {
        panic!("a gap first: {gap:?}")
    };
    assert_eq!(range.from, old + 1);
    assert_eq!(*gap_seq, range.to);
    let snapshot = next_frame(&mut socket).await;
    assert!(matches!(snapshot[0].event, LiveEvent::Snapshot(_)), "{snapshot:?}");
    assert_eq!(snapshot[0].seq, range.to, "the gap ends where the snapshot starts");
    let next = hub.publish(metrics());
    let seen = read_until(&mut socket, |envelope| envelope.seq == next).await;
    assert!(seen.iter().all(|envelope| envelope.seq > range.to));

    // By message, mid-stream.
    send(&mut socket, &ClientMessage::Resume { after_seq: old }).await;
    let seen = read_until(&mut socket, |envelope| matches!(envelope.event, LiveEvent::Gap(_))).await;
    let LiveEvent::Gap(range) = seen[seen.len() - 1].event else {
        panic!("a gap")
    };
    assert_eq!(range.from, old + 1);
    let snapshot = next_frame(&mut socket).await;
    assert!(matches!(snapshot[0].event, LiveEvent::Snapshot(_)));
    assert_eq!(snapshot[0].seq, range.to);

    // SSE: the same rule from Last-Event-ID.
    let mut events = Sse::open(&system, "", Some(old)).await;
    let gap = events.next().await;
    assert_eq!(gap.event, "stream:gap");
    assert_eq!(gap.id, None, "a gap is not a place to resume from");
    let LiveEvent::Gap(StreamGap { from, to }) = gap.envelope().event else {
        panic!("a gap")
    };
    assert_eq!(from, old + 1);
    let snapshot = events.next().await;
    assert_eq!(snapshot.event, "stream:snapshot");
    assert_eq!(snapshot.id, Some(to.to_string()));
    system.stop().await;
}

#[tokio::test]
async fn msgpack_frames_carry_the_same_envelopes() {
    let (_turn, system) = start(|_| {}).await;
    let hub = hub(&system);
    // Published before the viewer connects: its snapshot covers them, and a resume from
    // before them replays them.
    let (first, last) = hub
        .publish_batch(vec![job_failed("mail"), complete(NotificationType::Login)])
        .expect("published");
    let mut socket = connect(&system, "?encoding=msgpack").await;
    let message = tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("frame");
    let Message::Binary(data) = message else {
        panic!("a binary frame: {message:?}")
    };
    let snapshot: Envelope = rmp_serde::from_slice(&data).expect("an Envelope in MessagePack");
    assert!(matches!(snapshot.event, LiveEvent::Snapshot(_)));
    assert!(snapshot.seq >= last);

    // Client messages may be MessagePack too.
    let resume = rmp_serde::to_vec_named(&ClientMessage::Resume { after_seq: first - 1 }).expect("encodes");
    socket.send(Message::binary(resume)).await.expect("sent");
    let frame = loop {
        let frame = next_frame(&mut socket).await;
        if frame.iter().any(|envelope| envelope.seq == first) {
            break frame;
        }
    };
    assert_eq!(seqs(&frame)[..2], [first, last]);
    assert!(matches!(
        &frame[1].event,
        LiveEvent::RequestComplete(RequestComplete {
            kind: NotificationType::Login,
            ..
        })
    ));
    system.stop().await;
}

#[tokio::test]
async fn only_allowed_origins_may_connect() {
    let (_turn, system) = start(|config| config.allowed_origins = vec!["https://ops.example".into()]).await;
    let error = connect_with(&system, "", Some("http://evil.example"))
        .await
        .expect_err("refused");
    let tungstenite::Error::Http(response) = error else {
        panic!("an HTTP refusal, got {error}")
    };
    assert_eq!(response.status(), 403);
    let body = response.body().as_deref().expect("the refusal says why");
    let body: serde_json::Value = serde_json::from_slice(body).expect("JSON");
    assert_eq!(body, serde_json::json!({"error": "origin not allowed"}));

    let sse = system
        .http
        .get(system.dashboard("/api/live-view/sse"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("answers");
    assert_eq!(sse.status(), 403);
    assert_eq!(
        sse.json::<serde_json::Value>().await.expect("JSON"),
        serde_json::json!({"error": "origin not allowed"})
    );

    let same = format!("http://{}", system.running.dash());
    for origin in [None, Some(same.as_str()), Some("https://ops.example")] {
        let mut socket = connect_with(&system, "", origin).await.expect("allowed");
        assert_eq!(
            topics(&next_frame(&mut socket).await),
            ["stream:snapshot"],
            "{origin:?}"
        );
    }
    system.stop().await;
}

#[tokio::test]
async fn a_client_frame_over_64_kib_closes_with_1009() {
    let (_turn, system) = start(|_| {}).await;
    let mut socket = connect(&system, "").await;
    next_frame(&mut socket).await;
    socket.send(Message::text("x".repeat(65 * 1024))).await.expect("sent");
    assert_eq!(close_code(&mut socket).await, Some(1009));
    system.stop().await;
}

#[tokio::test]
async fn malformed_messages_get_an_error_and_the_fifth_closes_with_1008() {
    let (_turn, system) = start(|_| {}).await;
    let mut socket = connect(&system, "").await;
    next_frame(&mut socket).await;
    socket.send(Message::text("not json")).await.expect("sent");
    let seen = read_until(&mut socket, |envelope| {
        matches!(envelope.event, LiveEvent::StreamError(_))
    })
    .await;
    let LiveEvent::StreamError(error) = &seen[seen.len() - 1].event else {
        panic!("an error")
    };
    assert!(error.error.starts_with("malformed message"), "{}", error.error);
    for bad in [
        r#"{"type":"dance"}"#,
        r#"{"type":"resume"}"#,
        r#"{"type":"subscribe","topics":["queue:*:added"]}"#,
        "[]",
    ] {
        socket.send(Message::text(bad)).await.expect("sent");
    }
    assert_eq!(close_code(&mut socket).await, Some(1008));
    system.stop().await;
}

#[tokio::test]
async fn sse_streams_events_with_ids_and_resumes_from_last_event_id() {
    let (_turn, system) = start(|_| {}).await;
    let hub = hub(&system);
    let mut events = Sse::open(&system, "", None).await;
    let snapshot = events.next().await;
    assert_eq!(snapshot.event, "stream:snapshot");
    assert_eq!(snapshot.id, Some(snapshot.envelope().seq.to_string()));

    let (first, last) = hub
        .publish_batch(vec![idle(WorkerKind::Mail), job_failed("mail")])
        .expect("published");
    let event = loop {
        let event = events.next().await;
        if event.envelope().seq == first {
            break event;
        }
    };
    assert_eq!(
        (event.event.as_str(), event.id),
        ("worker:idle", Some(first.to_string()))
    );
    let event = events.next().await;
    assert_eq!(
        (event.event.as_str(), event.id),
        ("queue:job:failed", Some(last.to_string()))
    );
    assert!(
        !event.data.starts_with('['),
        "one Envelope per SSE event, never an array"
    );
    drop(events);

    let later = hub.publish(metrics());
    for (query, header) in [("", Some(first)), (format!("?lastEventId={first}").as_str(), None)] {
        let mut events = Sse::open(&system, query, header).await;
        let mut seen = Vec::new();
        while seen.last() != Some(&later) {
            seen.push(events.next().await.envelope().seq);
        }
        assert_eq!(seen, (first + 1..=later).collect::<Vec<_>>(), "{query}");
    }

    let mut queues = Sse::open(&system, "?topics=queue:*", None).await;
    assert_eq!(queues.next().await.event, "stream:snapshot");
    let skipped = hub.publish(idle(WorkerKind::Mail));
    let failed = hub.publish(job_failed("inapp"));
    loop {
        let next = queues.next().await;
        assert!(next.event.starts_with("queue:"), "{next:?}");
        assert_ne!(next.envelope().seq, skipped);
        if next.envelope().seq == failed {
            break;
        }
    }

    tokio::time::timeout(Duration::from_secs(5), system.stop())
        .await
        .expect("shutdown does not wait on an open event stream");
    assert!(queues.ended().await, "the stream ends at shutdown");
}

/// A viewer that never reads: the server must neither buffer for it without bound nor let
/// it hold up anyone else, and must resync or close it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_never_reads_neither_grows_memory_nor_delays_others() {
    const EVENTS: usize = 30_000;
    const EVENT_BYTES: usize = 4 * 1024;
    let (_turn, system) = start(|config| config.live_history = 100).await;
    let hub = system.running.hub.clone();
    first_status(&system).await;
    let mut stalled = connect(&system, "").await;

    // The other viewer reads all the time and notes the latest system:status it got.
    let mut reader = connect(&system, "").await;
    let latest_status = Arc::new(AtomicU64::new(0));
    let noted = latest_status.clone();
    let reading = tokio::spawn(async move {
        while let Some(Ok(message)) = reader.next().await {
            let Message::Text(text) = message else { continue };
            // Flood frames are big; status frames are small and worth parsing.
            if text.len() < EVENT_BYTES && text.contains("\"topic\":\"system:status\"") {
                for envelope in parse_frame(&text).expect("Envelopes") {
                    noted.fetch_max(envelope.seq, Ordering::Relaxed);
                }
            }
        }
    });

    // Both viewers are the hub's before the flood starts.
    support::eventually("both viewers subscribed", WAIT, || async {
        (hub.viewer_count() == 2).then_some(())
    })
    .await;
    let before = resident_bytes();
    for index in 0..EVENTS {
        hub.publish(bulky(EVENT_BYTES));
        if index % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let flood_end = hub.last_seq();
    let grown = resident_bytes().saturating_sub(before);
    let published = EVENTS * EVENT_BYTES;
    assert!(
        grown < published / 2,
        "memory grew {} MiB while {} MiB went through",
        grown >> 20,
        published >> 20
    );

    // The reading viewer gets a status published after the flood, within seconds.
    support::eventually(
        "the reading viewer gets a status after the flood",
        Duration::from_secs(15),
        || async { (latest_status.load(Ordering::Relaxed) > flood_end).then_some(()) },
    )
    .await;

    // The stalled one, once it reads, finds it was resynced (a gap) or closed.
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(message)) = stalled.next().await {
            match message {
                Message::Close(frame) => return format!("closed {:?}", frame.map(|f| u16::from(f.code))),
                Message::Text(text) if text.len() < EVENT_BYTES && text.contains("\"topic\":\"stream:gap\"") => {
                    return "resynced".to_string();
                }
                _ => {}
            }
        }
        "closed without a close frame".to_string()
    })
    .await
    .expect("the stalled viewer was dealt with");
    let stats = hub.stats();
    assert!(stats.resyncs + stats.too_slow >= 1, "{outcome}: {stats:?}");
    reading.abort();
    system.stop().await;
}

/// A viewer that falls behind must fall behind where the hub can see it (its ring, then a
/// resync or a too-slow close), not in the server's socket buffer: left to the kernel's
/// autotuning a send buffer grows to megabytes per socket (`tcp_wmem`), and at 10,000
/// slow viewers that was gigabytes of kernel memory with no viewer ever resynced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_viewer_backlog_stays_out_of_the_server_socket_buffer() {
    const EVENTS: usize = 4_000;
    let (_turn, system) = start(|_| {}).await;
    let hub = system.running.hub.clone();
    first_status(&system).await;
    let stalled = connect(&system, "").await;
    let MaybeTlsStream::Plain(client_end) = stalled.get_ref() else {
        panic!("plain TCP")
    };
    let client_addr = client_end.local_addr().expect("client address");
    let dashboard = system.running.dash();

    for index in 0..EVENTS {
        hub.publish(bulky(4 * 1024));
        if index % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // 16 MiB went out to a socket nobody reads; give the kernel time to fill what it may
    // (a fixed wait: what is checked is that the buffer does not grow past a bound).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let unsent = send_queue_bytes(dashboard, client_addr).expect("the server's end of the stalled socket");
    assert!(
        unsent <= 256 * 1024,
        "{} KiB of the stalled viewer's frames sit in the server's socket buffer",
        unsent >> 10
    );
    drop(stalled);
    system.stop().await;
}

/// Bytes queued in the send buffer of the TCP socket from `local` to `remote`: the
/// `tx_queue` column of `/proc/net/tcp` (Linux, IPv4).
fn send_queue_bytes(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> Option<u64> {
    let hex = |addr: std::net::SocketAddr| match addr {
        std::net::SocketAddr::V4(v4) => format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port()),
        std::net::SocketAddr::V6(_) => unreachable!("the test system listens on IPv4"),
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).find_map(|line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        (columns.get(1) == Some(&local.as_str()) && columns.get(2) == Some(&remote.as_str()))
            .then(|| u64::from_str_radix(columns[4].split(':').next()?, 16).ok())
            .flatten()
    })
}

/// This process's resident memory (Linux).
fn resident_bytes() -> usize {
    let kib = liveview::bench::rss_kib();
    assert!(kib > 0, "VmRSS in /proc/self/status");
    kib as usize * 1024
}

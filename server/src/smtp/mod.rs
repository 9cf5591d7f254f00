//! The embedded capture SMTP server, like Mailpit: a real SMTP listener that stores each
//! accepted message once per Message-ID (listed at `GET /api/mailbox`), with fault knobs — a rate of 4xx
//! and 5xx replies and added latency — so retries and dead-lettering can be watched.
//!
//! The protocol is `mailin`'s (a sans-I/O SMTP state machine); the tokio loop around it
//! is ours because it must make the end-of-DATA decision asynchronously (store in the
//! database, wait the injected latency). mailin keeps its DATA state if `data_end`
//! answers an error, so the handler always answers 250 to mailin and the loop writes
//! the real reply in its place.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use mailin::{Action, Handler, Response, SessionBuilder};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    accounts::new_id,
    now_ms,
    storage::{Database, Engine, RETENTION_EVERY, WriteBatch},
};

/// RFC 5321's limit on a line, CRLF included.
const MAX_LINE: u64 = 1000;
/// The largest message accepted.
const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
/// A client silent this long is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub use wire::{Faults, StoredMessage};

/// The fields of `faults` that are out of range, for a 400.
pub fn fault_problems(faults: &Faults) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    for (field, rate) in [
        ("smtp4xxRate", faults.smtp_4xx_rate),
        ("smtp5xxRate", faults.smtp_5xx_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            problems.push((field, "must be between 0.0 and 1.0".to_string()));
        }
    }
    if faults.smtp_4xx_rate + faults.smtp_5xx_rate > 1.0 {
        problems.push((
            "smtp5xxRate",
            "smtp4xxRate + smtp5xxRate must not exceed 1.0".to_string(),
        ));
    }
    if faults.smtp_latency_ms > 60_000 {
        problems.push(("smtpLatencyMs", "must be at most 60000".to_string()));
    }
    problems
}

/// What the capture server answers a complete message.
trait Decide {
    /// The reply to a complete message, given a uniform roll in `[0, 1)`.
    fn verdict(&self, roll: f64) -> Verdict;
}

impl Decide for Faults {
    fn verdict(&self, roll: f64) -> Verdict {
        if roll < self.smtp_5xx_rate {
            Verdict::Reject
        } else if roll < self.smtp_5xx_rate + self.smtp_4xx_rate {
            Verdict::TryLater
        } else {
            Verdict::Accept
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accept,
    TryLater,
    Reject,
}

/// A message as the session completed it.
#[derive(Debug, Default)]
struct Envelope {
    from: String,
    recipients: Vec<String>,
    data: Vec<u8>,
}

/// How often a capture server (or a dashboard's view of one) reads the faults from the
/// database, and a running one on a shared database says it runs.
pub const FAULTS_REFRESH: Duration = Duration::from_secs(1);
/// A capture server not seen for this long is not running (a dashboard's view answers
/// 404 then, as without one).
pub const CAPTURE_DOWN_AFTER: Duration = Duration::from_secs(10);

/// The capture server's shared state; or, in a dashboard process without one, its view
/// of the cluster's capture server through the database (its mailbox and faults).
#[derive(Clone)]
pub struct CaptureServer {
    db: Database,
    faults: Arc<RwLock<Faults>>,
    /// Counts this process's own changes of the faults, so that a refresh which read the
    /// database before one does not put the older faults back.
    changes: Arc<AtomicU64>,
    /// True for a server that listens here; false for a dashboard's view.
    listening: bool,
}

impl CaptureServer {
    pub fn new(db: Database) -> Self {
        Self {
            db,
            faults: Arc::new(RwLock::new(Faults::default())),
            changes: Arc::new(AtomicU64::new(0)),
            listening: true,
        }
    }

    /// A dashboard's view of the capture server another process of the cluster runs.
    pub fn view(db: Database) -> Self {
        Self {
            listening: false,
            ..Self::new(db)
        }
    }

    /// Whether a capture server runs: this one, or (for a view) one that said so lately.
    pub async fn is_running(&self) -> Result<bool, sqlx::Error> {
        if self.listening {
            return Ok(true);
        }
        let seen: Option<i64> = crate::with_connection!(&mut self.db.read().await?, |c| sqlx::query_scalar(
            "SELECT seen_at_ms FROM capture_faults WHERE id = 1"
        )
        .fetch_optional(c)
        .await)?;
        Ok(seen.is_some_and(|seen| now_ms() - seen < CAPTURE_DOWN_AFTER.as_millis() as i64))
    }

    /// Reads the faults in force from the database; a server on a shared database also
    /// says it runs.
    async fn refresh(&self) -> Result<(), sqlx::Error> {
        let changes = self.changes.load(Ordering::SeqCst);
        let stored: Option<String> = crate::with_connection!(&mut self.db.read().await?, |c| sqlx::query_scalar(
            "SELECT faults FROM capture_faults WHERE id = 1"
        )
        .fetch_optional(c)
        .await)?;
        if let Some(faults) = stored.and_then(|json| serde_json::from_str::<Faults>(&json).ok()) {
            let mut current = self.faults.write().unwrap_or_else(|poison| poison.into_inner());
            if self.changes.load(Ordering::SeqCst) == changes {
                *current = faults;
            }
        }
        if self.listening && self.db.engine().is_shared() {
            let faults = serde_json::to_string(&self.faults()).expect("faults serialize");
            crate::with_connection!(&mut self.db.writing().await?, |c| sqlx::query(
                "INSERT INTO capture_faults (id, faults, seen_at_ms) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET seen_at_ms = excluded.seen_at_ms"
            )
            .bind(faults)
            .bind(now_ms())
            .execute(c)
            .await
            .map(drop))?;
        }
        Ok(())
    }

    /// Reads the faults at once and every [`FAULTS_REFRESH`] until shutdown.
    pub async fn follow_faults(self, shutdown: CancellationToken) {
        crate::every(FAULTS_REFRESH, shutdown, || async {
            if let Err(error) = self.refresh().await {
                tracing::debug!(%error, "the capture server's faults could not be read");
            }
        })
        .await;
    }

    /// How many re-deliveries of a stored Message-ID were answered 250 and not stored
    /// again: a sender's retry of a delivery whose first 250 it never recorded.
    pub async fn duplicates(&self) -> Result<u64, sqlx::Error> {
        let repeats: i64 = crate::with_connection!(&mut self.db.read().await?, |c| sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(repeats), 0) AS BIGINT) FROM mailbox"
        )
        .fetch_one(c)
        .await)?;
        Ok(repeats.max(0) as u64)
    }

    pub fn faults(&self) -> Faults {
        *self.faults.read().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Sets the faults here and in the database, where every capture server of the
    /// cluster reads them within [`FAULTS_REFRESH`].
    pub async fn set_faults(&self, faults: Faults) -> Result<(), sqlx::Error> {
        // The database first: a refresh that reads it before this write started before
        // the change below and leaves it alone; one that reads it after finds it.
        let json = serde_json::to_string(&faults).expect("faults serialize");
        let seen = if self.listening { now_ms() } else { 0 };
        crate::with_connection!(&mut self.db.writing().await?, |c| sqlx::query(
            "INSERT INTO capture_faults (id, faults, seen_at_ms) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET faults = excluded.faults"
        )
        .bind(json)
        .bind(seen)
        .execute(c)
        .await
        .map(drop))?;
        let mut current = self.faults.write().unwrap_or_else(|poison| poison.into_inner());
        *current = faults;
        self.changes.fetch_add(1, Ordering::SeqCst);
        drop(current);
        tracing::info!(?faults, "smtp faults changed");
        Ok(())
    }

    /// Accepts SMTP connections until shutdown.
    pub fn spawn(&self, listener: TcpListener, tasks: &TaskTracker, shutdown: CancellationToken) {
        let server = self.clone();
        let connections = tasks.clone();
        tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((socket, peer)) = accepted else { continue };
                let _ = socket.set_nodelay(true);
                let server = server.clone();
                let stop = shutdown.clone();
                connections.spawn(async move {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        result = server.session(socket, peer) => {
                            if let Err(error) = result {
                                tracing::debug!(%peer, %error, "smtp session ended with an error");
                            }
                        }
                    }
                });
            }
        });
    }

    async fn session(&self, socket: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
        let finished = Arc::new(Mutex::new(None));
        let handler = Session {
            current: Envelope::default(),
            finished: finished.clone(),
            too_big: false,
        };
        let mut session = SessionBuilder::new("liveview-capture").build(peer.ip(), handler);
        let mut stream = BufReader::new(socket);
        stream.write_all(&session.greeting().buffer()?).await?;
        let mut line = Vec::with_capacity(1024);
        loop {
            line.clear();
            let mut limited = (&mut stream).take(MAX_LINE);
            let read = tokio::time::timeout(IDLE_TIMEOUT, limited.read_until(b'\n', &mut line)).await;
            match read {
                Err(_) | Ok(Ok(0)) => return Ok(()),
                Ok(Err(error)) => return Err(error),
                Ok(Ok(_)) if !line.ends_with(b"\n") => {
                    stream.write_all(b"500 5.5.2 line too long\r\n").await?;
                    return Ok(());
                }
                Ok(Ok(_)) => {}
            }
            let mut reply = session.process(&line);
            let envelope = finished.lock().unwrap_or_else(|poison| poison.into_inner()).take();
            if let Some(envelope) = envelope {
                reply = self.decide(envelope).await;
            }
            match reply.action {
                Action::Reply => stream.write_all(&reply.buffer()?).await?,
                Action::Close => {
                    stream.write_all(&reply.buffer()?).await?;
                    return Ok(());
                }
                Action::UpgradeTls => return Ok(()),
                Action::NoReply => {}
            }
        }
    }

    /// The end-of-DATA reply: the injected latency, then the injected fault if the dice
    /// say so, else store the message and accept it.
    async fn decide(&self, envelope: Option<Envelope>) -> Response {
        let faults = self.faults();
        if faults.smtp_latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.smtp_latency_ms)).await;
        }
        let Some(envelope) = envelope else {
            return Response::custom(552, "5.3.4 message too big".into());
        };
        // No faults set (the usual case): no dice to roll.
        let injecting = faults.smtp_4xx_rate > 0.0 || faults.smtp_5xx_rate > 0.0;
        match faults.verdict(if injecting { uniform() } else { 1.0 }) {
            Verdict::Reject => return Response::custom(554, "5.7.1 rejected (injected fault)".into()),
            Verdict::TryLater => return Response::custom(451, "4.3.0 temporary failure (injected fault)".into()),
            Verdict::Accept => {}
        }
        match self.store(envelope).await {
            Ok(id) => Response::custom(250, format!("2.0.0 Ok: queued as {id}")),
            Err(error) => {
                tracing::warn!(%error, "capture server could not store a message");
                Response::custom(451, "4.3.0 cannot store the message now".into())
            }
        }
    }

    /// Stores a message once per Message-ID: the sender's idempotency key. A repeat is
    /// acknowledged like the original (the sender must stop retrying), counted on the
    /// stored row, and not stored twice. The insert shares a commit with whatever else is
    /// being written (group commit): the 250 goes out once it is durable.
    async fn store(&self, envelope: Envelope) -> Result<String, sqlx::Error> {
        let raw = String::from_utf8_lossy(&envelope.data).into_owned();
        let id = new_id();
        let mut batch = WriteBatch::default();
        batch
            .statement(
                "INSERT INTO mailbox (id, message_id, mail_from, rcpt_to, subject, raw, received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (message_id) DO UPDATE SET repeats = mailbox.repeats + 1",
            )
            .bind(&id)
            .bind(header(&raw, "message-id"))
            .bind(envelope.from)
            .bind(envelope.recipients.join(","))
            .bind(header(&raw, "subject"))
            .bind(raw)
            .bind(now_ms());
        self.db.commit(batch).await?;
        Ok(id)
    }

    /// The newest messages first.
    pub async fn messages(&self, limit: u32) -> Result<Vec<StoredMessage>, sqlx::Error> {
        type Row = (String, Option<String>, String, String, Option<String>, String, i64);
        let rows: Vec<Row> = crate::with_connection!(&mut self.db.read().await?, |c| {
            sqlx::query_as(
            "SELECT id, message_id, mail_from, rcpt_to, subject, raw, received_at_ms FROM mailbox ORDER BY received_at_ms DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(c)
        .await
        })?;
        Ok(rows
            .into_iter()
            .map(
                |(id, message_id, mail_from, rcpt_to, subject, raw, received_at_ms)| StoredMessage {
                    id,
                    message_id,
                    mail_from,
                    rcpt_to,
                    subject,
                    raw,
                    received_at_ms,
                },
            )
            .collect())
    }

    /// Keeps the newest `keep` messages, like Mailpit's message limit; answers how many
    /// were deleted. A repeated Message-ID is recognised only while its first copy is kept.
    pub async fn prune(&self, keep: u64) -> Result<u64, sqlx::Error> {
        match self.db.engine() {
            Engine::Sqlite => {
                // Rowids grow with every stored message and only the oldest are ever
                // deleted, so the newest `keep` are the rowids above max − keep: found
                // through the primary key in O(log n), where counting `keep` rows down an
                // index took a walk of 50,000 entries every time.
                let newest: Option<i64> = crate::with_connection!(&mut self.db.read().await?, |c| {
                    sqlx::query_scalar("SELECT MAX(rowid) FROM mailbox").fetch_one(c).await
                })?;
                let last_to_delete = newest.unwrap_or(0) - keep as i64;
                if last_to_delete <= 0 {
                    return Ok(0);
                }
                self.db
                    .delete_in_chunks(
                        "DELETE FROM mailbox WHERE rowid IN (SELECT rowid FROM mailbox WHERE rowid <= $1 LIMIT 1000)",
                        last_to_delete,
                    )
                    .await
            }
            Engine::Postgres => {
                // PostgreSQL has no rowid; its index on received_at_ms finds the
                // `keep`-th newest message.
                let cutoff: Option<i64> = crate::with_connection!(&mut self.db.read().await?, |c| {
                    sqlx::query_scalar(
                        "SELECT received_at_ms FROM mailbox ORDER BY received_at_ms DESC LIMIT 1 OFFSET $1",
                    )
                    .bind(keep as i64)
                    .fetch_optional(c)
                    .await
                })?;
                let Some(cutoff) = cutoff else {
                    return Ok(0);
                };
                self.db
                    .delete_in_chunks(
                        "DELETE FROM mailbox WHERE id IN (SELECT id FROM mailbox WHERE received_at_ms < $1 LIMIT 1000)",
                        cutoff,
                    )
                    .await
            }
        }
    }

    /// Prunes to the newest `keep` messages every [`RETENTION_EVERY`] until shutdown.
    pub async fn run_retention(self, keep: u64, shutdown: CancellationToken) {
        crate::every(RETENTION_EVERY, shutdown, || async {
            if let Err(error) = self.prune(keep).await {
                tracing::warn!(%error, "could not prune the capture mailbox");
            }
        })
        .await;
    }

    pub async fn count(&self) -> Result<u64, sqlx::Error> {
        let count: i64 = crate::with_connection!(&mut self.db.read().await?, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM mailbox"
        )
        .fetch_one(c)
        .await)?;
        Ok(count.max(0) as u64)
    }
}

/// A header's value from the message's header block (unfolded), if present.
fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or(raw);
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(value) = value.as_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        if let Some((field, rest)) = line.split_once(':')
            && field.eq_ignore_ascii_case(name)
        {
            value = Some(rest.trim().to_string());
        }
    }
    value
}

/// A uniform number in `[0, 1)` from the OS's random source.
fn uniform() -> f64 {
    (getrandom::u64().unwrap_or(0) >> 11) as f64 / (1u64 << 53) as f64
}

/// mailin's handler: collects one message at a time and hands it to the I/O loop.
struct Session {
    current: Envelope,
    /// `Some(Some(message))` after a complete message, `Some(None)` after an oversize one.
    finished: Arc<Mutex<Option<Option<Envelope>>>>,
    too_big: bool,
}

impl Handler for Session {
    fn mail(&mut self, _ip: std::net::IpAddr, _domain: &str, from: &str) -> Response {
        self.current = Envelope {
            from: from.to_string(),
            ..Envelope::default()
        };
        self.too_big = false;
        mailin::response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        self.current.recipients.push(to.to_string());
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.current.data.len() + buf.len() > MAX_MESSAGE_BYTES {
            self.too_big = true;
        } else {
            self.current.data.extend_from_slice(buf);
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let envelope = std::mem::take(&mut self.current);
        let complete = (!self.too_big).then_some(envelope);
        *self.finished.lock().unwrap_or_else(|poison| poison.into_inner()) = Some(complete);
        // Replaced by the loop; see the module docs.
        mailin::response::OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_rates_split_the_unit_interval() {
        let faults = Faults {
            smtp_4xx_rate: 0.2,
            smtp_5xx_rate: 0.1,
            smtp_latency_ms: 0,
        };
        assert_eq!(faults.verdict(0.05), Verdict::Reject);
        assert_eq!(faults.verdict(0.25), Verdict::TryLater);
        assert_eq!(faults.verdict(0.31), Verdict::Accept);
        assert_eq!(Faults::default().verdict(0.0), Verdict::Accept);
        let every = Faults {
            smtp_4xx_rate: 1.0,
            ..Faults::default()
        };
        assert_eq!(every.verdict(0.999_999), Verdict::TryLater);
    }

    #[test]
    fn out_of_range_faults_are_named() {
        let bad = Faults {
            smtp_4xx_rate: 1.5,
            smtp_5xx_rate: -0.1,
            smtp_latency_ms: 120_000,
        };
        let fields: Vec<&str> = fault_problems(&bad).iter().map(|(field, _)| *field).collect();
        assert_eq!(fields, ["smtp4xxRate", "smtp5xxRate", "smtp5xxRate", "smtpLatencyMs"]);
        assert!(fault_problems(&Faults::default()).is_empty());
    }

    #[test]
    fn headers_are_read_unfolded_and_case_insensitively() {
        let raw = "Message-ID: <n-1@liveview>\r\nSubject: Your receipt\r\n for a lamp\r\nTo: a@example.com\r\n\r\nSubject: not a header\r\n";
        assert_eq!(header(raw, "message-id").as_deref(), Some("<n-1@liveview>"));
        assert_eq!(header(raw, "subject").as_deref(), Some("Your receipt for a lamp"));
        assert_eq!(header(raw, "cc"), None);
    }

    #[tokio::test]
    async fn pruning_keeps_the_newest_messages() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::open(&crate::storage::resolve_url(dir.path(), None).expect("url"))
            .await
            .expect("db");
        let capture = CaptureServer::new(db);
        for n in 0..5 {
            let raw = format!("Message-ID: <m{n}@test>\r\nSubject: {n}\r\n\r\nbody\r\n");
            let envelope = Envelope {
                from: "a@example.com".into(),
                recipients: vec!["b@example.com".into()],
                data: raw.into_bytes(),
            };
            capture.store(envelope).await.expect("stored");
        }
        assert_eq!(capture.prune(2).await.expect("prunes"), 3);
        let kept: Vec<Option<String>> = capture
            .messages(10)
            .await
            .expect("list")
            .into_iter()
            .map(|m| m.subject)
            .collect();
        assert_eq!(kept, [Some("4".to_string()), Some("3".to_string())]);
    }

    #[test]
    fn uniform_stays_in_the_unit_interval() {
        assert!((0..1000).map(|_| uniform()).all(|x| (0.0..1.0).contains(&x)));
    }
}

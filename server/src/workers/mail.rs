//! Mail workers: claim a batch of mail jobs, send their emails over SMTP with lettre (on
//! a few conversations side by side), and record the outcome. A 250 marks the email
//! sent and completes the job in one transaction; a 4xx or timeout moves the job to the
//! next retry tier; a 5xx dead-letters it.
//!
//! Idempotency: an email already marked sent is never sent again, whatever its job says.
//! The 250 is first written to the sent ledger (`ledger.rs`), then committed, so a crash
//! between the two does not send it again. What no SMTP client can close (SMTP has no
//! two-phase commit) is the few microseconds between the server's 250 leaving it and our
//! ledger write; a crash exactly there sends that email once more, with the same
//! Message-ID, which an idempotent receiver (like the embedded capture server) drops.

use std::{collections::HashMap, sync::Arc, time::Duration};

use lettre::{
    Message,
    message::{Mailbox, header::ContentType},
    transport::smtp::{
        authentication::{Credentials, Mechanism},
        client::AsyncSmtpConnection,
        extension::ClientId,
    },
};
use tokio::net::TcpStream;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use wire::{EmailSent, Flow, LiveEvent, QueueJobCompleted, SystemStage, WorkerKind};

use super::{
    DeliveryError,
    breaker::{Permit, SmtpBreaker},
    ledger::{self, SentLedger},
};
use crate::{
    controls::Controls,
    controls::DelayPoint,
    now_ms,
    queue::{Channel, Failure, Job, QueueName, Queues, placeholders},
    storage::{Database, WriteBatch},
    telemetry::mask_email,
};

/// One SMTP conversation may take this long before it counts as a transient failure.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
const FROM: &str = "Live View <noreply@liveview.local>";

/// Starts `count` mail workers sending to `smtp_url`.
// What a mail worker is made of, each its own: grouping them would only hide that.
#[allow(clippy::too_many_arguments)]
pub fn spawn_pool(
    count: u16,
    smtp_url: &str,
    db: Database,
    queues: Arc<Queues>,
    ledger: Arc<SentLedger>,
    controls: Arc<Controls>,
    breaker: Arc<SmtpBreaker>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<(), String> {
    // Parse once up front so a bad URL fails the start, not every send.
    SmtpTarget::parse(smtp_url)?;
    for number in 1..=count {
        let worker = MailWorker {
            id: format!("mail-worker-{number}"),
            smtp_url: smtp_url.to_string(),
            db: db.clone(),
            queues: queues.clone(),
            ledger: ledger.clone(),
            tasks: tasks.clone(),
            controls: controls.clone(),
            breaker: breaker.clone(),
        };
        tasks.spawn(worker.run(shutdown.clone()));
    }
    Ok(())
}

/// One worker's SMTP conversation, kept open between messages.
///
/// lettre speaks the protocol; the TCP stream is ours so it can have `TCP_NODELAY`:
/// lettre writes a message's body and its final `.` separately, and with Nagle's
/// algorithm against the server's delayed ACK every message waited about 40 ms.
/// `liveview bench hops` holds these too, to measure a conversation's cost alone.
pub(crate) struct SmtpClient {
    target: SmtpTarget,
    connection: Option<AsyncSmtpConnection>,
    last_used: std::time::Instant,
}

/// SMTP conversations each mail worker keeps, sending a claimed batch side by side.
/// Claiming in batches is what keeps claims cheap, but one conversation sends one email
/// at a time, and each waits for the receiving server to store it: with one lane the
/// last email of a batch of 32 waited for the 31 before it.
const SMTP_LANES: usize = 4;

/// What a batch (or a lane of it) delivered: jobs to complete, emails sent with the
/// server's reply.
#[derive(Default)]
struct Delivered<'j> {
    completed: Vec<&'j str>,
    sent: Vec<(String, String)>,
    /// Emails not sent, and why: `preference` (their user switched their category off
    /// for email) or `read` (a message reminder whose message was read meanwhile).
    skipped: Vec<(String, String)>,
    /// The sent ledger's entries for `sent`, settled once the batch is committed.
    entries: Vec<ledger::Entry>,
}

struct LaneOutcome<'j> {
    delivered: Delivered<'j>,
    error: Option<sqlx::Error>,
}

/// A connection idle longer than this is checked with NOOP before use.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl SmtpClient {
    pub(crate) fn new(smtp_url: &str) -> Result<Self, String> {
        Ok(Self {
            target: SmtpTarget::parse(smtp_url)?,
            connection: None,
            last_used: std::time::Instant::now(),
        })
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, DeliveryError> {
        let unreachable = |error: String| DeliveryError::Transient(format!("cannot reach the SMTP server: {error}"));
        let address = (self.target.host.as_str(), self.target.port);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| unreachable("connect timed out".into()))?
            .map_err(|error| unreachable(error.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|error| unreachable(error.to_string()))?;
        let mut connection = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &ClientId::default())
            .await
            .map_err(|error| classify(&error))?;
        if let Some((user, password)) = &self.target.credentials {
            let credentials = Credentials::new(user.clone(), password.clone());
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                .await
                .map_err(|error| classify(&error))?;
        }
        Ok(connection)
    }

    /// Sends one message; returns the server's reply on a 2xx.
    pub(crate) async fn send(&mut self, message: &Message) -> Result<Accepted, DeliveryError> {
        let stale = self.last_used.elapsed() > CHECK_IDLE_AFTER;
        let mut connection = match self.connection.take() {
            Some(mut connection) if !connection.has_broken() => {
                if stale && !connection.test_connected().await {
                    self.connect().await?
                } else {
                    connection
                }
            }
            _ => self.connect().await?,
        };
        let result = connection.send(message.envelope(), &message.formatted()).await;
        self.last_used = std::time::Instant::now();
        if !connection.has_broken() {
            self.connection = Some(connection);
        }
        match result {
            Ok(response) if response.is_positive() => {
                let code = u16::from(response.code());
                let text = response.message().collect::<Vec<_>>().join(" ");
                Ok(Accepted {
                    code,
                    reply: format!("{code} {text}"),
                })
            }
            Ok(response) => Err(DeliveryError::Transient(format!(
                "unexpected SMTP reply {}",
                u16::from(response.code())
            ))),
            Err(error) => Err(classify(&error)),
        }
    }

    /// After a timeout the conversation is in an unknown state: start a new one.
    fn reset(&mut self) {
        self.connection = None;
    }
}

/// A server's positive answer to a message: its code, as lettre parsed it, and the whole
/// reply line as stored with the email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub(crate) code: u16,
    pub(crate) reply: String,
}

/// `smtp://[user:password@]host[:port]`. Plain SMTP only: the SMTP servers this talks to
/// are local (the capture server, a test server, a relay on the same network).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SmtpTarget {
    pub(crate) host: String,
    pub(crate) port: u16,
    credentials: Option<(String, String)>,
}

impl SmtpTarget {
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("smtp://")
            .ok_or_else(|| "expected smtp://host:port (TLS schemes are not built in)".to_string())?;
        let rest = rest.trim_end_matches('/');
        let (credentials, host_port) = match rest.rsplit_once('@') {
            Some((userinfo, host_port)) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (Some((user.to_string(), password.to_string())), host_port)
            }
            None => (None, rest),
        };
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                (host, port.parse().map_err(|_| format!("bad port {port:?}"))?)
            }
            _ => (host_port, 25),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("missing host".into());
        }
        Ok(Self {
            host: host.to_string(),
            port,
            credentials,
        })
    }
}

#[derive(Clone)]
struct MailWorker {
    id: String,
    smtp_url: String,
    db: Database,
    queues: Arc<Queues>,
    ledger: Arc<SentLedger>,
    /// Where stepped requests' jobs are delivered apart ([`super::split_stepped`]).
    tasks: TaskTracker,
    /// Injected delays and step boundaries.
    controls: Arc<Controls>,
    /// Shared by the process's mail workers: no sending while the SMTP server is down.
    breaker: Arc<SmtpBreaker>,
}

/// The email row a job delivers.
#[derive(sqlx::FromRow)]
struct Email {
    id: String,
    to_address: String,
    subject: String,
    body: String,
    sent_at_ms: Option<i64>,
    /// Why it is not to be sent: its user switched its category off for email (and it
    /// is not critical), `preference`; a message reminder whose message was read, `read`.
    skip: Option<String>,
}

impl MailWorker {
    async fn run(self, shutdown: CancellationToken) {
        let Ok(mut lanes) = (0..SMTP_LANES)
            .map(|_| SmtpClient::new(&self.smtp_url))
            .collect::<Result<Vec<_>, _>>()
        else {
            return;
        };
        let mut busy = false;
        loop {
            // While the circuit is open the mail waits in its queue, unclaimed.
            while let Some(wait) = self.breaker.waiting() {
                self.queues.telemetry().meters().set_smtp_circuit(self.breaker.state());
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait.min(Duration::from_millis(250))) => {}
                }
            }
            self.queues.telemetry().meters().set_smtp_circuit(self.breaker.state());
            let Some(jobs) = super::next_jobs(
                &self.queues,
                &QueueName::MAIL_WORK,
                Channel::Email,
                &self.id,
                &shutdown,
                &mut busy,
            )
            .await
            else {
                return;
            };
            let jobs = super::split_stepped(jobs, &self.controls, &self.tasks, &shutdown, |job| {
                let worker = self.clone();
                async move {
                    // A conversation of its own: the worker's lanes go on with other jobs.
                    if let Ok(smtp) = SmtpClient::new(&worker.smtp_url) {
                        worker.process_logged(&[job], &mut [smtp]).await;
                    }
                }
            });
            if jobs.is_empty() {
                continue;
            }
            let _busy = super::Busy::new(&self.queues.telemetry().meters().mail_busy);
            self.process_logged(&jobs, &mut lanes).await;
        }
    }

    async fn process_logged(&self, jobs: &[Job], lanes: &mut [SmtpClient]) {
        if let Err(error) = self.process(jobs, lanes).await {
            // The leases run out and another attempt follows; nothing is lost.
            tracing::warn!(worker = %self.id, jobs = jobs.len(), %error, "could not record mail jobs' outcome");
        }
    }

    /// Sends a batch over the worker's SMTP conversations side by side (each lane one
    /// email at a time), then records every success in one transaction (each 250 is in
    /// the sent ledger from the moment it arrives, so waiting for the batch's commit adds
    /// no risk of sending twice). Successes are recorded even when another job of the
    /// batch could not be, so a sent email is never left to be sent again.
    async fn process(&self, jobs: &[Job], lanes: &mut [SmtpClient]) -> Result<(), sqlx::Error> {
        let started = std::time::Instant::now();
        let mut emails = self.load(jobs).await?;
        let telemetry = self.queues.telemetry();
        self.controls.inject(DelayPoint::WorkerProcessing).await;
        super::record_pickups(telemetry, &self.controls, jobs, &self.id, WorkerKind::Mail, started).await;
        let used = lanes.len().min(jobs.len()).max(1);
        let mut work: Vec<Vec<(&Job, Option<Email>)>> = (0..used).map(|_| Vec::new()).collect();
        for (index, job) in jobs.iter().enumerate() {
            work[index % used].push((job, emails.remove(&job.target_id)));
        }
        let outcomes = futures_util::future::join_all(
            work.into_iter()
                .zip(lanes.iter_mut())
                .map(|(lane, smtp)| self.deliver(lane, smtp)),
        )
        .await;
        let mut delivered = Delivered::default();
        let mut first_error = None;
        for outcome in outcomes {
            delivered.completed.extend(outcome.delivered.completed);
            delivered.sent.extend(outcome.delivered.sent);
            delivered.skipped.extend(outcome.delivered.skipped);
            delivered.entries.extend(outcome.delivered.entries);
            first_error = first_error.or(outcome.error);
        }
        let committed = self
            .record_sent(&delivered.completed, &delivered.sent, &delivered.skipped)
            .await;
        // Settled even if the commit failed: those emails' jobs run again anyway (their
        // leases run out), and an entry never settled would keep the ledger from rotating.
        delivered
            .entries
            .into_iter()
            .for_each(|entry| self.ledger.committed(entry));
        match first_error {
            Some(error) => Err(error),
            None => committed,
        }
    }

    /// One lane's share of a batch, in order, on one SMTP conversation. Stops at the
    /// first database error (the rest of the lane is attempted again when its leases
    /// run out); what it sent before is returned either way.
    async fn deliver<'j>(&self, lane: Vec<(&'j Job, Option<Email>)>, smtp: &mut SmtpClient) -> LaneOutcome<'j> {
        let telemetry = self.queues.telemetry();
        let mut delivered = Delivered::default();
        for (job, email) in lane {
            // This job's own time: its lane's earlier jobs are not its work.
            let picked_up = std::time::Instant::now();
            let request_id = job.request_id.as_deref().unwrap_or_default();
            let Some(email) = email else {
                if let Err(error) = self.queues.dead_letter(job, "the email row is missing").await {
                    return LaneOutcome {
                        delivered,
                        error: Some(error),
                    };
                }
                continue;
            };
            if email.sent_at_ms.is_some() {
                // Delivered by an earlier attempt whose completion was not recorded.
                delivered.completed.push(&job.id);
                continue;
            }
            if let Some(reason) = email.skip {
                telemetry
                    .stage_since(request_id, SystemStage::Skipped, &self.id, picked_up)
                    .meta("channel", Flow::Email.name())
                    .meta("reason", reason.as_str())
                    .done();
                delivered.completed.push(&job.id);
                delivered.skipped.push((email.id, reason));
                continue;
            }
            // In step mode the attempt is a step of its own, after the pickup's.
            self.controls.worker_boundary(request_id).await;
            if let Permit::Wait(_) = self.breaker.permit() {
                // The circuit opened while this batch was under way: the job goes back
                // unattempted instead of failing against a server that is down.
                if let Err(error) = self.queues.put_back(job).await {
                    return LaneOutcome {
                        delivered,
                        error: Some(error),
                    };
                }
                continue;
            }
            let masked = mask_email(&email.to_address);
            let attempt = telemetry
                .stage(request_id, SystemStage::SmtpAttempt, &self.id)
                .meta("to", masked.as_str())
                .meta("attempt", job.attempts);
            attempt.announce();
            self.controls.inject(DelayPoint::EmailDelivery).await;
            let sent = self.send(&email, smtp).await;
            match &sent {
                Err(DeliveryError::Transient(_)) => self.breaker.failed(),
                // Any answer, a refusal included, shows the server is up.
                Ok(_) | Err(DeliveryError::Permanent(_)) => self.breaker.succeeded(),
            }
            telemetry.meters().set_smtp_circuit(self.breaker.state());
            match sent {
                Ok(Accepted { code, reply }) => {
                    match self.ledger.record(&email.id) {
                        Ok(entry) => delivered.entries.push(entry),
                        Err(error) => {
                            tracing::warn!(%error, "could not write the sent ledger; relying on the commit alone");
                        }
                    }
                    attempt.meta("smtpCode", code).done();
                    telemetry.meters().smtp_reply(code, &reply, chrono::Utc::now());
                    telemetry.event(LiveEvent::EmailSent(EmailSent {
                        notification_id: email.id.clone(),
                        request_id: job.request_id.clone(),
                        to: masked,
                        smtp_code: code,
                    }));
                    telemetry.event(LiveEvent::QueueJobCompleted(QueueJobCompleted {
                        queue: job.queue.to_string(),
                        job_id: job.id.clone(),
                        request_id: job.request_id.clone(),
                        duration: picked_up.elapsed().as_secs_f64() * 1_000.0,
                    }));
                    delivered.completed.push(&job.id);
                    delivered.sent.push((email.id, reply));
                }
                Err(error) => {
                    let (reason, permanent) = match error {
                        DeliveryError::Transient(reason) => (reason, false),
                        DeliveryError::Permanent(reason) => (reason, true),
                    };
                    telemetry
                        .meters()
                        .smtp_reply(reply_code(&reason), &reason, chrono::Utc::now());
                    attempt.failed(reason.clone());
                    let outcome = if permanent {
                        self.queues.dead_letter(job, &reason).await
                    } else {
                        self.queues.retry_later(job, &reason).await
                    };
                    match outcome {
                        Ok(outcome) => log_failure(&self.id, job, &reason, &outcome),
                        Err(error) => {
                            return LaneOutcome {
                                delivered,
                                error: Some(error),
                            };
                        }
                    }
                }
            }
        }
        LaneOutcome { delivered, error: None }
    }

    async fn load(&self, jobs: &[Job]) -> Result<HashMap<String, Email>, sqlx::Error> {
        let sql = format!(
            "SELECT id, to_address, subject, body, sent_at_ms, \
             CASE WHEN {} THEN 'preference' WHEN {} THEN 'read' END AS skip FROM emails WHERE id IN ({})",
            crate::notify::muted_sql("emails", Flow::Email),
            crate::notify::READ_ALREADY_SQL,
            placeholders(jobs.len())
        );
        let sql = crate::storage::numbered(&sql);
        let emails: Vec<Email> = crate::with_connection!(&mut self.db.read().await?, |c| {
            let mut query = sqlx::query_as::<_, Email>(sqlx::AssertSqlSafe(sql.as_str()));
            for job in jobs {
                query = query.bind(&job.target_id);
            }
            query.fetch_all(c).await
        })?;
        Ok(emails.into_iter().map(|email| (email.id.clone(), email)).collect())
    }

    /// Marks the emails sent and completes their jobs, together.
    async fn record_sent(
        &self,
        completed: &[&str],
        sent: &[(String, String)],
        skipped: &[(String, String)],
    ) -> Result<(), sqlx::Error> {
        if completed.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut batch = WriteBatch::default();
        for (email_id, reply) in sent {
            batch
                .statement("UPDATE emails SET sent_at_ms = ?, smtp_reply = ? WHERE id = ? AND sent_at_ms IS NULL")
                .bind(now)
                .bind(reply.clone())
                .bind(email_id.clone());
        }
        for (email_id, reason) in skipped {
            batch
                .statement("UPDATE emails SET skipped = ? WHERE id = ? AND sent_at_ms IS NULL")
                .bind(reason.clone())
                .bind(email_id.clone());
        }
        Queues::complete_all(&mut batch, completed);
        self.db.commit(batch).await
    }

    /// One SMTP attempt. Returns the server's reply on success.
    async fn send(&self, email: &Email, smtp: &mut SmtpClient) -> Result<Accepted, DeliveryError> {
        let message = build_message(email)?;
        match tokio::time::timeout(SEND_TIMEOUT, smtp.send(&message)).await {
            Ok(result) => result,
            Err(_) => {
                smtp.reset();
                Err(DeliveryError::Transient(format!(
                    "no SMTP answer within {} s",
                    SEND_TIMEOUT.as_secs()
                )))
            }
        }
    }
}

/// The SMTP reply code a failure names (lettre's errors start with it), or 0 when the
/// server never answered (a timeout, a refused connection).
fn reply_code(reason: &str) -> u16 {
    reason
        .split(|c: char| !c.is_ascii_digit())
        .find(|part| part.len() == 3)
        .and_then(|code| code.parse().ok())
        .filter(|code| (400..600).contains(code))
        .unwrap_or(0)
}

/// SMTP's own rule: 5xx is permanent, everything else (4xx, network) may pass.
fn classify(error: &lettre::transport::smtp::Error) -> DeliveryError {
    let text = error.to_string();
    if error.is_permanent() {
        DeliveryError::Permanent(text)
    } else {
        DeliveryError::Transient(text)
    }
}

fn build_message(email: &Email) -> Result<Message, DeliveryError> {
    compose(&email.id, &email.to_address, &email.subject, &email.body)
}

/// The message a mail worker sends for notification `id`.
pub(crate) fn compose(id: &str, to_address: &str, subject: &str, body: &str) -> Result<Message, DeliveryError> {
    let to: Mailbox = to_address
        .parse()
        .map_err(|_| DeliveryError::Permanent(format!("unusable address {to_address:?}")))?;
    let from: Mailbox = FROM
        .parse()
        .map_err(|_| DeliveryError::Permanent("bad sender address".into()))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        // The notification id, so the receiving side can tell deliveries apart.
        .message_id(Some(format!("<{id}@liveview.local>")))
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_string())
        .map_err(|error| DeliveryError::Permanent(format!("message could not be built: {error}")))
}

fn log_failure(worker: &str, job: &Job, reason: &str, outcome: &Failure) {
    match outcome {
        Failure::Retried { queue, due_at_ms } => {
            tracing::info!(worker, job = %job.id, reason, next = %queue, due_in_ms = due_at_ms - now_ms(), "mail retry scheduled");
        }
        Failure::DeadLettered { queue } => {
            tracing::warn!(worker, job = %job.id, reason, queue = %queue, "mail dead-lettered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_parse() {
        let plain = SmtpTarget::parse("smtp://127.0.0.1:2525").expect("parses");
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.credentials),
            ("127.0.0.1", 2525, None)
        );
        let default_port = SmtpTarget::parse("smtp://mail.internal").expect("parses");
        assert_eq!(default_port.port, 25);
        let with_user = SmtpTarget::parse("smtp://app:p%40ss@relay:587").expect("parses");
        assert_eq!(with_user.credentials, Some(("app".into(), "p%40ss".into())));
        let v6 = SmtpTarget::parse("smtp://[::1]:2525").expect("parses");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 2525));
        assert!(SmtpTarget::parse("smtps://relay:465").is_err());
        assert!(SmtpTarget::parse("smtp://relay:notaport").is_err());
        assert!(SmtpTarget::parse("smtp://").is_err());
    }

    #[test]
    fn the_message_id_is_the_notification_id() {
        let email = Email {
            id: "0190-abc".into(),
            to_address: "ada@example.com".into(),
            subject: "Hi".into(),
            body: "Body".into(),
            sent_at_ms: None,
            skip: None,
        };
        let message = build_message(&email).expect("builds");
        let text = String::from_utf8(message.formatted()).expect("utf-8");
        assert!(text.contains("Message-ID: <0190-abc@liveview.local>"), "{text}");
        let bad = Email {
            to_address: "not an address".into(),
            ..email
        };
        assert!(matches!(build_message(&bad), Err(DeliveryError::Permanent(_))));
    }
}

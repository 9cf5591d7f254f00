//! In-app pushes across processes: a worker reaches a user's socket in whichever app
//! process holds it, over the bus.
//!
//! [`Pusher::push`] tries this process's [`Registry`] first (an `all` process holds
//! its own users' sockets). When the user has no socket here and the bus crosses
//! processes, it publishes a [`PushRequest`] on [`Channel::InappPush`]; every app
//! process's [`relay`] tries its own registry, and the one that holds the socket answers
//! on [`Channel::InappReply`]: `Taken` once the frame is handed to the connection, then
//! `Acked` when the client acks it (or `Busy`). No answer within [`ACCEPT_WITHIN`] means
//! no process holds a socket: the notification stays stored, and the socket's next
//! connect pushes it, as for a user who is offline. A lost message is a push that is not
//! acked in time, which the job's retry tiers (in the database) already handle.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{Frame, PushError, Registry};
use crate::bus::{Bus, Channel, ProcessId};

/// How long a worker waits for an app process to say it holds the user's socket. Redis
/// answers in about a millisecond; this leaves room for a loaded cluster.
pub const ACCEPT_WITHIN: Duration = Duration::from_millis(500);
/// Requests older than this are forgotten even if their answer never came.
const FORGET_AFTER: Duration = Duration::from_secs(120);

/// A worker's push, as it travels to the app processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushRequest {
    /// Made by the worker; its answers carry it.
    pub id: String,
    pub user_id: String,
    pub frame: Frame,
    /// The worker's process, which alone reads the answers.
    pub reply_to: ProcessId,
}

/// An app process's answer to a [`PushRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushReply {
    pub id: String,
    pub to: ProcessId,
    pub outcome: PushOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum PushOutcome {
    /// Handed to the connection on app server `server`.
    Taken { server: String },
    /// The client acked the frame.
    Acked,
    /// The connection is backed up.
    Busy,
}

/// A request waiting for its answers.
struct Waiting {
    sent: Instant,
    taken: Option<oneshot::Sender<Result<String, PushError>>>,
    acked: Option<oneshot::Sender<()>>,
}

/// How in-app workers reach users' sockets: here, or through the bus.
#[derive(Clone)]
pub struct Pusher {
    registry: Arc<Registry>,
    bus: Bus,
    waiting: Arc<Mutex<HashMap<String, Waiting>>>,
}

impl Pusher {
    /// A pusher over `registry`, reaching other processes through `bus` when it crosses
    /// processes; start [`Pusher::answers`] alongside.
    pub fn new(registry: Arc<Registry>, bus: Bus) -> Self {
        Self {
            registry,
            bus,
            waiting: Arc::default(),
        }
    }

    /// Hands `frame` to every connection of the user, wherever they are; the receiver
    /// resolves when the first client acks. Answers the app server that took it (here,
    /// if any here did).
    pub async fn push(&self, user_id: &str, frame: Frame) -> Result<(oneshot::Receiver<()>, String), PushError> {
        if !self.bus.crosses_processes() {
            return self.registry.push(user_id, frame);
        }
        match self.registry.push(user_id, frame.clone()) {
            Err(PushError::Offline) => self.push_remote(user_id, frame).await,
            Ok((here, server)) => {
                // The user's other devices may be on other processes: they get it too,
                // and whichever acks first delivers it.
                let this = self.clone();
                let user_id = user_id.to_string();
                let (mut first, acked) = oneshot::channel();
                tokio::spawn(async move {
                    // True once some client acked; a side with no socket never does.
                    let there = async {
                        match this.push_remote(&user_id, frame).await {
                            Ok((acked, _)) => acked.await.is_ok(),
                            Err(_) => false,
                        }
                    };
                    let here = async { here.await.is_ok() };
                    let either = async {
                        let (here, there) = (std::pin::pin!(here), std::pin::pin!(there));
                        match futures_util::future::select(here, there).await {
                            futures_util::future::Either::Left((true, _))
                            | futures_util::future::Either::Right((true, _)) => true,
                            futures_util::future::Either::Left((false, other)) => other.await,
                            futures_util::future::Either::Right((false, other)) => other.await,
                        }
                    };
                    tokio::select! {
                        // The worker stopped waiting (its ack timeout).
                        () = first.closed() => {}
                        acked = either => if acked {
                            let _ = first.send(());
                        },
                    }
                });
                Ok((acked, server))
            }
            busy => busy,
        }
    }

    async fn push_remote(&self, user_id: &str, frame: Frame) -> Result<(oneshot::Receiver<()>, String), PushError> {
        let id = crate::accounts::new_id();
        let (taken, taken_answer) = oneshot::channel();
        let (acked, acked_answer) = oneshot::channel();
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(|poison| poison.into_inner());
            waiting.retain(|_, request| request.sent.elapsed() < FORGET_AFTER);
            waiting.insert(
                id.clone(),
                Waiting {
                    sent: Instant::now(),
                    taken: Some(taken),
                    acked: Some(acked),
                },
            );
        }
        let request = PushRequest {
            id: id.clone(),
            user_id: user_id.to_string(),
            frame,
            reply_to: self.bus.me().clone(),
        };
        if let Err(error) = self.bus.publish(Channel::InappPush, &request).await {
            tracing::debug!(%error, "an in-app push could not go on the bus");
            self.forget(&id);
            return Err(PushError::Busy);
        }
        match tokio::time::timeout(ACCEPT_WITHIN, taken_answer).await {
            Ok(Ok(Ok(server))) => Ok((acked_answer, server)),
            Ok(Ok(Err(error))) => {
                self.forget(&id);
                Err(error)
            }
            // No process holds a socket of the user's.
            _ => {
                self.forget(&id);
                Err(PushError::Offline)
            }
        }
    }

    fn forget(&self, id: &str) {
        self.waiting
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(id);
    }

    /// Reads the app processes' answers to this process's pushes, until shutdown.
    pub async fn answers(self, shutdown: CancellationToken) {
        let me = self.bus.me().clone();
        self.bus
            .from_others(
                Channel::InappReply,
                "in-app push answers",
                shutdown,
                |reply: PushReply| {
                    if reply.to == me {
                        self.answer(reply);
                    }
                    std::future::ready(())
                },
            )
            .await;
    }

    fn answer(&self, reply: PushReply) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|poison| poison.into_inner());
        let Some(request) = waiting.get_mut(&reply.id) else {
            return;
        };
        match reply.outcome {
            PushOutcome::Taken { server } => {
                if let Some(taken) = request.taken.take() {
                    let _ = taken.send(Ok(server));
                }
            }
            PushOutcome::Busy => {
                if let Some(taken) = request.taken.take() {
                    let _ = taken.send(Err(PushError::Busy));
                }
            }
            PushOutcome::Acked => {
                if let Some(acked) = request.acked.take() {
                    let _ = acked.send(());
                }
                waiting.remove(&reply.id);
            }
        }
    }
}

/// In a process with app servers on a cluster's bus: takes the other processes'
/// pushes for users whose socket is here, answers them, and answers again on the
/// client's ack; until shutdown.
pub async fn relay(registry: Arc<Registry>, bus: Bus, shutdown: CancellationToken) {
    // This process's own workers tried its registry before asking.
    bus.from_others(
        Channel::InappPush,
        "in-app pushes",
        shutdown.clone(),
        |request: PushRequest| take(&registry, &bus, &shutdown, request),
    )
    .await;
}

/// Pushes `request` if the user's socket is here, and answers it.
async fn take(registry: &Registry, bus: &Bus, shutdown: &CancellationToken, request: PushRequest) {
    let PushRequest {
        id,
        user_id,
        frame,
        reply_to,
    } = request;
    let answer = |outcome| PushReply {
        id: id.clone(),
        to: reply_to.clone(),
        outcome,
    };
    match registry.push(&user_id, frame) {
        Ok((acked, server)) => {
            publish(bus, &answer(PushOutcome::Taken { server })).await;
            let bus = bus.clone();
            let acked_reply = answer(PushOutcome::Acked);
            let shutdown = shutdown.clone();
            // The ack may take seconds; the next pushes are not held behind it.
            tokio::spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    ack = acked => if ack.is_ok() {
                        publish(&bus, &acked_reply).await;
                    }
                }
            });
        }
        Err(PushError::Busy) => publish(bus, &answer(PushOutcome::Busy)).await,
        // Not here: the process that holds the socket answers.
        Err(PushError::Offline) => {}
    }
}

async fn publish(bus: &Bus, reply: &PushReply) {
    if let Err(error) = bus.publish(Channel::InappReply, reply).await {
        tracing::debug!(%error, "an in-app push answer could not go on the bus");
    }
}

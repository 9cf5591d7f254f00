//! Controls that act in another process: a dashboard stopping or starting an app
//! server that another process runs, or changing the algorithm of balancers that run
//! elsewhere. The dashboard publishes a [`Command`] on [`Channel::Commands`]; the
//! process that runs the server (or every balancer) acts ([`obey`]) and answers, and
//! the dashboard's request gets the answer it would have had in one process
//! ([`Remote::act`]). No answer within [`ANSWER_WITHIN`]: no process runs it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use wire::BalancerAlgorithm;

use super::{PoolError, ServerPool};
use crate::{
    balancer::Balancer,
    bus::{Bus, Channel, ProcessId},
};

/// How long a dashboard waits for the process that runs a server to answer.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// What a dashboard asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "camelCase")]
pub enum Action {
    Stop { server: String },
    Start { server: String },
    Algorithm { algorithm: BalancerAlgorithm },
}

/// How it went, as the process that acted says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Outcome {
    Done,
    AlreadyRunning,
    AlreadyStopped,
    /// The server could not listen on its address again.
    BindFailed {
        reason: String,
    },
}

/// A message on [`Channel::Commands`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Command {
    Ask {
        id: String,
        action: Action,
        reply_to: ProcessId,
    },
    Answer {
        id: String,
        to: ProcessId,
        outcome: Outcome,
    },
}

/// A dashboard's end: asks, and waits for answers.
#[derive(Clone)]
pub struct Remote {
    bus: Bus,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>,
}

impl Remote {
    pub fn new(bus: Bus) -> Self {
        Self {
            bus,
            waiting: Arc::default(),
        }
    }

    /// True when there are other processes to ask.
    pub fn reaches_others(&self) -> bool {
        self.bus.crosses_processes()
    }

    /// Asks the cluster to do `action`; the outcome, or `None` when no process answered
    /// (none runs that server, or no balancer runs elsewhere).
    pub async fn act(&self, action: Action) -> Option<Outcome> {
        let id = crate::accounts::new_id();
        let (answer, answered) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(id.clone(), answer);
        let ask = Command::Ask {
            id: id.clone(),
            action,
            reply_to: self.bus.me().clone(),
        };
        let outcome = match self.bus.publish(Channel::Commands, &ask).await {
            Ok(()) => tokio::time::timeout(ANSWER_WITHIN, answered)
                .await
                .ok()
                .and_then(Result::ok),
            Err(error) => {
                tracing::warn!(%error, "a command could not go on the bus");
                None
            }
        };
        self.waiting
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(&id);
        outcome
    }

    /// Reads the answers to this process's commands, until shutdown.
    pub async fn answers(self, shutdown: CancellationToken) {
        let me = self.bus.me().clone();
        self.bus
            .from_others(Channel::Commands, "command answers", shutdown, |command: Command| {
                if let Command::Answer { id, to, outcome } = command
                    && to == me
                    && let Some(answer) = self
                        .waiting
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner())
                        .remove(&id)
                {
                    let _ = answer.send(outcome);
                }
                std::future::ready(())
            })
            .await;
    }
}

/// In a process that runs app servers or a balancer: does what other processes'
/// dashboards ask of them, and answers; until shutdown.
pub async fn obey(pool: ServerPool, balancer: Option<Balancer>, bus: Bus, shutdown: CancellationToken) {
    let answering = bus.clone();
    bus.from_others(Channel::Commands, "commands", shutdown, |command: Command| {
        let pool = pool.clone();
        let balancer = balancer.clone();
        let bus = answering.clone();
        async move {
            let Command::Ask { id, action, reply_to } = command else {
                return;
            };
            let outcome = match action {
                Action::Stop { server } if pool.has(&server) => outcome(pool.stop(&server).await),
                Action::Start { server } if pool.has(&server) => outcome(pool.start(&server).await),
                Action::Algorithm { algorithm } => match &balancer {
                    Some(balancer) => {
                        balancer.set_algorithm(algorithm);
                        Outcome::Done
                    }
                    None => return,
                },
                // Another process runs it.
                _ => return,
            };
            let answer = Command::Answer {
                id,
                to: reply_to,
                outcome,
            };
            if let Err(error) = bus.publish(Channel::Commands, &answer).await {
                tracing::warn!(%error, "a command's answer could not go on the bus");
            }
        }
    })
    .await;
}

/// Stops or starts `server` wherever it runs: in this process's `pool`, or by asking the
/// cluster. `None` when no process runs a server of that name.
pub async fn on_server(pool: &ServerPool, remote: &Remote, action: Action) -> Option<Outcome> {
    let (Action::Stop { server } | Action::Start { server }) = &action else {
        return remote.act(action).await;
    };
    if pool.has(server) || !remote.reaches_others() {
        let result = match action {
            Action::Start { ref server } => pool.start(server).await,
            Action::Stop { ref server } => pool.stop(server).await,
            Action::Algorithm { .. } => unreachable!("matched above"),
        };
        return match result {
            Err(PoolError::NotFound(_)) => None,
            result => Some(outcome(result)),
        };
    }
    remote.act(action).await
}

/// A pool's answer as an [`Outcome`].
pub fn outcome(result: Result<(), PoolError>) -> Outcome {
    match result {
        Ok(()) => Outcome::Done,
        Err(PoolError::AlreadyRunning(_)) => Outcome::AlreadyRunning,
        Err(PoolError::AlreadyStopped(_)) => Outcome::AlreadyStopped,
        Err(error) => Outcome::BindFailed {
            reason: error.to_string(),
        },
    }
}

//! The Redis bus (`--bus-url redis://…`), on the `fred` client: one connection that
//! publishes, and one subscriber connection that fred resubscribes by itself after a
//! reconnect (`manage_subscriptions`). A dispatcher task hands each message to the
//! broadcast channel of its [`Channel`], so this process's subscribers read it exactly
//! as they would from the in-process bus.
//!
//! Redis pub/sub drops what is published while a subscriber is disconnected; the bus
//! says so ([`super`]), and nothing that must arrive travels on it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use fred::{clients::SubscriberClient, prelude::*};
use tokio::sync::broadcast;

use super::{BusError, Channel, SUBSCRIBER_BACKLOG};

/// Reconnect for ever, from 100 ms up to 5 s between tries.
fn policy() -> ReconnectPolicy {
    ReconnectPolicy::new_exponential(0, 100, 5_000, 2)
}

#[derive(Clone)]
pub struct RedisBus {
    publisher: Client,
    subscriber: SubscriberClient,
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<Bytes>>>>,
    tasks: Arc<Vec<tokio::task::JoinHandle<()>>>,
}

impl RedisBus {
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        let failed = |error: fred::error::Error| BusError::Connect {
            url: redacted(url),
            reason: error.to_string(),
        };
        let config = Config::from_url(url).map_err(failed)?;
        let publisher = Builder::from_config(config.clone())
            .set_policy(policy())
            .build()
            .map_err(failed)?;
        let subscriber = Builder::from_config(config)
            .set_policy(policy())
            .build_subscriber_client()
            .map_err(failed)?;
        // The first connection must work: a bus that is wrong at start is a wrong flag.
        publisher.init().await.map_err(failed)?;
        subscriber.init().await.map_err(failed)?;
        let channels: Arc<Mutex<HashMap<String, broadcast::Sender<Bytes>>>> = Arc::default();
        let resubscribing = subscriber.manage_subscriptions();
        let dispatching = tokio::spawn(dispatch(subscriber.message_rx(), channels.clone()));
        Ok(Self {
            publisher,
            subscriber,
            channels,
            tasks: Arc::new(vec![resubscribing, dispatching]),
        })
    }

    pub async fn publish(&self, channel: Channel, payload: Bytes) -> Result<(), BusError> {
        self.publisher
            .publish::<(), _, _>(channel.name(), payload)
            .await
            .map_err(|error| BusError::Publish(error.to_string()))
    }

    pub async fn subscribe(&self, channel: Channel) -> Result<broadcast::Receiver<Bytes>, BusError> {
        let (receiver, first) = {
            let mut channels = self.channels.lock().unwrap_or_else(|poison| poison.into_inner());
            let first = !channels.contains_key(channel.name());
            let sender = channels
                .entry(channel.name().to_string())
                .or_insert_with(|| broadcast::channel(SUBSCRIBER_BACKLOG).0);
            (sender.subscribe(), first)
        };
        if first {
            self.subscriber
                .subscribe(channel.name())
                .await
                .map_err(|error| BusError::Publish(error.to_string()))?;
        }
        Ok(receiver)
    }

    pub async fn close(&self) {
        for task in self.tasks.iter() {
            task.abort();
        }
        let _ = self.subscriber.quit().await;
        let _ = self.publisher.quit().await;
    }
}

/// Hands every message from Redis to its channel's local subscribers.
async fn dispatch(
    mut messages: broadcast::Receiver<fred::types::Message>,
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<Bytes>>>>,
) {
    loop {
        match messages.recv().await {
            Ok(message) => {
                let Some(payload) = message.value.as_bytes().map(Bytes::copy_from_slice) else {
                    continue;
                };
                let sender = channels
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner())
                    .get(&*message.channel)
                    .cloned();
                if let Some(sender) = sender {
                    let _ = sender.send(payload);
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "the Redis bus's dispatcher fell behind");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The URL without its password, for errors and logs.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_in_the_url_is_never_shown() {
        assert_eq!(
            super::redacted("redis://user:secret@cache:6379/0"),
            "redis://…@cache:6379/0"
        );
        assert_eq!(super::redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}

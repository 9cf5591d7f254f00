//! The Redis bus (`--bus-url redis://…`), on the `fred` client: one connection that
//! publishes, and one subscriber connection that fred resubscribes by itself after a
//! reconnect (`manage_subscriptions`). A dispatcher task hands each message to the
//! broadcast channel of its [`Channel`], so this process's subscribers read it exactly
//! as they would from the in-process bus.
//!
//! Redis pub/sub drops what is published while a subscriber is disconnected. A
//! [resumable](Channel::resumable) channel is a Redis Stream instead: `XADD` keeps each
//! message for [`RETAIN`], and a reader task per channel (on a connection of its own,
//! since `XREAD BLOCK` holds its connection) reads on from the last id it had, so a
//! reconnect loses nothing sent meanwhile.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use fred::{clients::SubscriberClient, prelude::*};
use tokio::sync::broadcast;

use super::{BusError, Channel, SUBSCRIBER_BACKLOG};

/// How long a resumable channel's stream keeps a message: a reader whose connection is
/// down for less than this misses nothing (`XADD … MINID ~`, trimmed as it goes).
pub const RETAIN: Duration = Duration::from_secs(60);
/// Most stream entries one `XREAD` returns.
const READ_COUNT: u64 = 256;
/// How long one `XREAD` blocks for new entries before it asks again.
const READ_BLOCK_MS: u64 = 1_000;
/// The field of a stream entry that holds the message.
const FIELD: &str = "m";

/// Reconnect for ever, from 100 ms up to 5 s between tries.
fn policy() -> ReconnectPolicy {
    ReconnectPolicy::new_exponential(0, 100, 5_000, 2)
}

#[derive(Clone)]
pub struct RedisBus {
    publisher: Client,
    subscriber: SubscriberClient,
    /// How to make the stream readers' connections.
    config: Config,
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<Bytes>>>>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    readers: Arc<Mutex<Vec<Client>>>,
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
        let subscriber = Builder::from_config(config.clone())
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
            config,
            channels,
            tasks: Arc::new(Mutex::new(vec![resubscribing, dispatching])),
            readers: Arc::default(),
        })
    }

    pub async fn publish(&self, channel: Channel, payload: Bytes) -> Result<(), BusError> {
        let published = if channel.resumable() {
            let oldest = crate::now_ms().saturating_sub(RETAIN.as_millis() as i64);
            self.publisher
                .xadd::<(), _, _, _, _>(
                    channel.name(),
                    false,
                    ("MINID", "~", format!("{oldest}-0")),
                    "*",
                    vec![(FIELD, payload)],
                )
                .await
        } else {
            self.publisher.publish::<(), _, _>(channel.name(), payload).await
        };
        published.map_err(|error| BusError::Publish(error.to_string()))
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
        if first && channel.resumable() {
            self.read_stream(channel).await?;
        } else if first {
            self.subscriber
                .subscribe(channel.name())
                .await
                .map_err(|error| BusError::Publish(error.to_string()))?;
        }
        Ok(receiver)
    }

    /// Starts the reader of a resumable channel's stream, from its newest entry now.
    async fn read_stream(&self, channel: Channel) -> Result<(), BusError> {
        let failed = |error: fred::error::Error| BusError::Connect {
            url: "the bus".into(),
            reason: error.to_string(),
        };
        let reader = Builder::from_config(self.config.clone())
            .set_policy(policy())
            .build()
            .map_err(failed)?;
        reader.init().await.map_err(failed)?;
        // From the newest entry, not `$`: `$` read again after a reconnect would skip
        // what came meanwhile.
        let newest: Vec<(String, HashMap<String, Bytes>)> = reader
            .xrevrange(channel.name(), "+", "-", Some(1))
            .await
            .map_err(failed)?;
        let after = newest
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_string(), |(id, _)| id);
        let sender = self
            .channels
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(channel.name())
            .cloned()
            .expect("made by subscribe");
        let task = tokio::spawn(read(reader.clone(), channel, sender, after));
        self.tasks
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(task);
        self.readers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(reader);
        Ok(())
    }

    pub async fn close(&self) {
        for task in self.tasks.lock().unwrap_or_else(|poison| poison.into_inner()).drain(..) {
            task.abort();
        }
        let readers = std::mem::take(&mut *self.readers.lock().unwrap_or_else(|poison| poison.into_inner()));
        for reader in readers {
            let _ = reader.quit().await;
        }
        let _ = self.subscriber.quit().await;
        let _ = self.publisher.quit().await;
    }
}

/// Reads a resumable channel's stream for ever, from the entry after `after`, and hands
/// each message to its local subscribers. A failed read (the connection dropped) is
/// tried again from the same id once the client has reconnected.
async fn read(reader: Client, channel: Channel, sender: broadcast::Sender<Bytes>, mut after: String) {
    let mut failing = false;
    loop {
        let read = reader
            .xread_map::<String, String, String, Bytes, _, _>(
                Some(READ_COUNT),
                Some(READ_BLOCK_MS),
                channel.name(),
                after.as_str(),
            )
            .await;
        match read {
            Ok(streams) => {
                failing = false;
                for (id, mut fields) in streams.into_values().flatten() {
                    after = id;
                    if let Some(payload) = fields.remove(FIELD) {
                        let _ = sender.send(payload);
                    }
                }
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(channel = channel.name(), %error, "the bus's stream reader lost Redis; it reads on from where it was");
                }
                failing = true;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
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

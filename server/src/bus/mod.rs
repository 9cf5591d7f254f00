//! The bus: everything that must cross from one process of a cluster to the others goes
//! through here, and nowhere else. One interface, [`Bus`], with two transports: in
//! process ([`local`], the default: one process is the whole cluster) and Redis
//! ([`redis`], `--bus-url redis://…`), so a feature built on it works the same on one
//! machine and on many.
//!
//! A message is published on a [`Channel`] and reaches every subscriber of that channel
//! in every process, the publisher's own included; each carries the [`ProcessId`] that
//! sent it, so a process that has already applied its own change can skip the echo. On
//! Redis every message is signed with the cluster's key (`--cluster-secret`), and one
//! that is not — from anyone else who can reach the Redis — is dropped.
//! Delivery is at most once, as Redis pub/sub gives it: what a process misses while its
//! connection is down is lost, so only what can be lost goes here — current settings a
//! process re-reads, commands a person repeats. What must arrive lives in the database.
//! A [resumable](Channel::resumable) channel (telemetry) is a Redis Stream instead,
//! whose readers read on after a reconnect from the last message they had (within
//! [`redis::RETAIN`]); a Redis restart still loses what it held.

pub mod local;
pub mod redis;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Serialize, de::DeserializeOwned};
use sha2::Sha256;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::cluster::ClusterSecret;

/// How many messages a subscriber may fall behind before it loses the oldest.
pub const SUBSCRIBER_BACKLOG: usize = 1_024;

/// What a message is about: one name per use, so a subscriber sees only its own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// The dashboard's control settings (delays, load simulation) after a change.
    Controls,
    /// A worker asking whichever app process holds a user's socket to push a frame.
    InappPush,
    /// An app process answering a push: taken, acked, or backed up.
    InappReply,
    /// Stage records and live events from the processes that make them to the
    /// dashboards that fold them into journeys.
    Telemetry,
    /// Each process's figures, once a second, for the dashboards' cards.
    Reports,
    /// A dashboard asking the process that runs an app server to stop or start it, or
    /// the balancers to change their algorithm.
    Commands,
    /// Step mode: a request entering it, a step, its response, its end.
    Steps,
    /// Frames for end users' sockets by room (`user:{id}`, `system`), to the processes
    /// that hold them. At most once: a client that misses one sees the gap in its
    /// versions or seqs and asks again.
    Rooms,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Controls => "liveview:controls",
            Channel::InappPush => "liveview:inapp:push",
            Channel::InappReply => "liveview:inapp:reply",
            Channel::Telemetry => "liveview:telemetry",
            Channel::Reports => "liveview:reports",
            Channel::Commands => "liveview:commands",
            Channel::Steps => "liveview:steps",
            Channel::Rooms => "liveview:rooms",
        }
    }

    /// Whether a subscriber that loses its connection for a while reads on from where it
    /// was, rather than losing what was sent meanwhile. On Redis such a channel is a
    /// Stream ([`redis::RETAIN`]); the rest are pub/sub, at most once. Telemetry is: a
    /// dashboard's journeys would otherwise lose stages to every reconnect.
    pub fn resumable(self) -> bool {
        matches!(self, Channel::Telemetry)
    }
}

/// This process, as its messages name it: a UUIDv7 made at start.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct ProcessId(pub String);

impl ProcessId {
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
}

impl Default for ProcessId {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the bus at {url} cannot be used: {reason}")]
    Connect { url: String, reason: String },
    #[error("the bus refused a message: {0}")]
    Publish(String),
    #[error("a bus between processes needs --cluster-secret")]
    Unsigned,
    #[error("a message could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One message as it travels: who sent it and what it says, as JSON.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct Envelope<T> {
    from: ProcessId,
    body: T,
}

/// A signed message on the wire: the envelope's JSON, then its 32-byte HMAC-SHA256
/// (none on the in-process bus, which no one else can reach).
fn seal(key: Option<&[u8; 32]>, mut json: Vec<u8>) -> Vec<u8> {
    if let Some(key) = key {
        let tag = mac(key, &json);
        json.extend_from_slice(&tag);
    }
    json
}

/// The envelope's JSON if the signature holds.
fn open<'a>(key: Option<&[u8; 32]>, payload: &'a [u8]) -> Option<&'a [u8]> {
    let Some(key) = key else { return Some(payload) };
    let (json, tag) = payload.split_at_checked(payload.len().checked_sub(32)?)?;
    let mut check = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    check.update(json);
    check.verify_slice(tag).ok().map(|()| json)
}

fn mac(key: &[u8; 32], json: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(json);
    mac.finalize().into_bytes().into()
}

#[derive(Clone)]
enum Transport {
    Local(local::LocalBus),
    Redis(redis::RedisBus),
}

/// The bus, as every part of the system holds it (cheap to clone).
#[derive(Clone)]
pub struct Bus {
    transport: Transport,
    me: ProcessId,
    /// The cluster's bus key: what signs and checks every message.
    key: Option<[u8; 32]>,
}

impl Bus {
    /// The in-process bus: this process is the whole cluster.
    pub fn local() -> Self {
        Self {
            transport: Transport::Local(local::LocalBus::default()),
            me: ProcessId::new(),
            key: None,
        }
    }

    /// The Redis bus at `url`; fails if Redis cannot be reached now (later outages are
    /// ridden out: the client reconnects and resubscribes by itself).
    pub async fn redis(url: &str, secret: &ClusterSecret) -> Result<Self, BusError> {
        Ok(Self {
            transport: Transport::Redis(redis::RedisBus::connect(url).await?),
            me: ProcessId::new(),
            key: Some(secret.key("bus")),
        })
    }

    /// `--bus-url` (with the cluster's secret), or the in-process bus without one.
    pub async fn open(url: Option<&str>, secret: Option<&ClusterSecret>) -> Result<Self, BusError> {
        match (url, secret) {
            (None, _) => Ok(Self::local()),
            (Some(url), Some(secret)) => Self::redis(url, secret).await,
            (Some(_), None) => Err(BusError::Unsigned),
        }
    }

    /// Which transport, for the log and `/status`.
    pub fn describe(&self) -> &'static str {
        match self.transport {
            Transport::Local(_) => "in-process",
            Transport::Redis(_) => "redis",
        }
    }

    pub fn me(&self) -> &ProcessId {
        &self.me
    }

    /// True when other processes may be on this bus (Redis); the in-process bus has
    /// only this one.
    pub fn crosses_processes(&self) -> bool {
        matches!(self.transport, Transport::Redis(_))
    }

    /// Sends `body` to every subscriber of `channel`, in every process.
    pub async fn publish<T: Serialize>(&self, channel: Channel, body: &T) -> Result<(), BusError> {
        let json = serde_json::to_vec(&Envelope {
            from: self.me.clone(),
            body,
        })?;
        let payload = seal(self.key.as_ref(), json);
        match &self.transport {
            Transport::Local(bus) => {
                bus.publish(channel, payload.into());
                Ok(())
            }
            Transport::Redis(bus) => bus.publish(channel, payload.into()).await,
        }
    }

    /// Every message published on `channel` from now on.
    pub async fn subscribe<T: DeserializeOwned>(&self, channel: Channel) -> Result<Subscription<T>, BusError> {
        let receiver = match &self.transport {
            Transport::Local(bus) => bus.subscribe(channel),
            Transport::Redis(bus) => bus.subscribe(channel).await?,
        };
        Ok(Subscription {
            receiver,
            channel,
            key: self.key,
            _body: std::marker::PhantomData,
        })
    }

    /// Hands every message the *other* processes publish on `channel` to `each`, until
    /// shutdown or the bus closes. What this process published itself is skipped: it
    /// acted on it before publishing. `what` names the follower in the log if the
    /// subscription cannot be made.
    pub async fn from_others<T, F, Fut>(&self, channel: Channel, what: &str, shutdown: CancellationToken, each: F)
    where
        T: DeserializeOwned,
        F: FnMut(T) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        self.follow(channel, what, shutdown, false, each).await;
    }

    /// [`from_others`](Self::from_others), this process's own messages included.
    pub async fn from_everyone<T, F, Fut>(&self, channel: Channel, what: &str, shutdown: CancellationToken, each: F)
    where
        T: DeserializeOwned,
        F: FnMut(T) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        self.follow(channel, what, shutdown, true, each).await;
    }

    async fn follow<T, F, Fut>(&self, channel: Channel, what: &str, shutdown: CancellationToken, own: bool, mut each: F)
    where
        T: DeserializeOwned,
        F: FnMut(T) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut subscription = match self.subscribe::<T>(channel).await {
            Ok(subscription) => subscription,
            Err(error) => {
                tracing::error!(%error, "{what}: cannot subscribe to {}", channel.name());
                return;
            }
        };
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                next = subscription.next() => next,
            };
            let Some((from, body)) = next else { return };
            if own || from != self.me {
                each(body).await;
            }
        }
    }

    /// Closes the connections (Redis) once nothing more will be sent.
    pub async fn close(&self) {
        if let Transport::Redis(bus) = &self.transport {
            bus.close().await;
        }
    }
}

/// A subscriber's end of a channel.
pub struct Subscription<T> {
    receiver: broadcast::Receiver<bytes::Bytes>,
    channel: Channel,
    key: Option<[u8; 32]>,
    _body: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Subscription<T> {
    /// The next message and who sent it; `None` once the bus is gone. A message that does
    /// not decode (a process of another version) is logged and skipped; a subscriber that
    /// fell more than [`SUBSCRIBER_BACKLOG`] behind loses the oldest, which is logged.
    pub async fn next(&mut self) -> Option<(ProcessId, T)> {
        loop {
            match self.receiver.recv().await {
                Ok(payload) => {
                    let Some(json) = open(self.key.as_ref(), &payload) else {
                        tracing::warn!(
                            channel = self.channel.name(),
                            "a bus message not signed with this cluster's secret; dropped"
                        );
                        continue;
                    };
                    match serde_json::from_slice::<Envelope<T>>(json) {
                        Ok(envelope) => return Some((envelope.from, envelope.body)),
                        Err(error) => {
                            tracing::warn!(channel = self.channel.name(), %error, "a bus message did not decode; skipped");
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(channel = self.channel.name(), missed, "a bus subscriber fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_message_reaches_every_subscriber_with_its_sender() {
        let bus = Bus::local();
        let mut first = bus.subscribe::<u32>(Channel::Controls).await.expect("subscribes");
        let mut second = bus.subscribe::<u32>(Channel::Controls).await.expect("subscribes");
        bus.publish(Channel::Controls, &7u32).await.expect("published");
        assert_eq!(first.next().await, Some((bus.me().clone(), 7)));
        assert_eq!(second.next().await, Some((bus.me().clone(), 7)));
    }

    #[test]
    fn only_a_message_signed_with_the_key_opens() {
        let key = [7u8; 32];
        let sealed = seal(Some(&key), b"{}".to_vec());
        assert_eq!(open(Some(&key), &sealed), Some(&b"{}"[..]));
        assert_eq!(open(Some(&[8u8; 32]), &sealed), None, "another cluster's key");
        assert_eq!(open(Some(&key), b"{}"), None, "unsigned");
        let mut tampered = sealed.clone();
        tampered[0] = b'[';
        assert_eq!(open(Some(&key), &tampered), None, "changed after signing");
        assert_eq!(open(None, b"{}"), Some(&b"{}"[..]), "in process nothing is signed");
    }

    #[tokio::test]
    async fn a_message_that_does_not_decode_is_skipped() {
        let bus = Bus::local();
        let mut numbers = bus.subscribe::<u32>(Channel::Controls).await.expect("subscribes");
        bus.publish(Channel::Controls, &"not a number")
            .await
            .expect("published");
        bus.publish(Channel::Controls, &8u32).await.expect("published");
        assert_eq!(numbers.next().await.map(|(_, n)| n), Some(8));
    }
}

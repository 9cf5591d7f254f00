//! The stream's messages as they go out: each serialized once, as JSON and (on demand)
//! MessagePack, and batched into frames of one message or an array of them.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use wire::{Envelope, LiveEvent};

use super::Tags;

/// One message of the stream as sent: numbered, tagged and serialized once. Published
/// events and the stream's own messages (snapshot, gap, error) alike.
#[derive(Debug)]
pub struct Encoded {
    pub seq: u64,
    pub tags: Tags,
    /// One Envelope as JSON.
    pub(super) json: Utf8Bytes,
    /// The same Envelope as MessagePack, made the first time a viewer asks for it.
    pub(super) msgpack: OnceLock<Bytes>,
}

impl Encoded {
    /// Serializes a message of the stream itself (`stream:*`), which is never published.
    pub fn control(seq: u64, event: LiveEvent) -> Arc<Self> {
        let tags = Tags::topic(event.topic());
        let envelope = Envelope {
            seq,
            ts: chrono::Utc::now(),
            event,
        };
        let json = serde_json::to_string(&envelope).unwrap_or_else(|error| {
            // Every stream type serializes; this is a bug, not a viewer's problem.
            tracing::error!(%error, "stream message did not serialize");
            String::new()
        });
        Arc::new(Self {
            seq,
            tags,
            json: json.into(),
            msgpack: OnceLock::new(),
        })
    }

    pub fn json(&self) -> &Utf8Bytes {
        &self.json
    }

    pub fn msgpack(&self) -> &Bytes {
        self.msgpack.get_or_init(|| transcode(&self.json))
    }
}

/// Consecutive events published together: the unit of fan-out, and the very frame sent
/// to every viewer that wants all of it.
#[derive(Debug)]
pub struct Published {
    pub events: Vec<Arc<Encoded>>,
    /// One Envelope object for one event, an array of them for several.
    pub(super) json: Utf8Bytes,
    pub(super) msgpack: OnceLock<Bytes>,
}

impl Published {
    pub fn first(&self) -> u64 {
        self.events.first().map_or(0, |event| event.seq)
    }

    pub fn last(&self) -> u64 {
        self.events.last().map_or(0, |event| event.seq)
    }

    pub fn json(&self) -> &Utf8Bytes {
        &self.json
    }

    pub fn msgpack(&self) -> &Bytes {
        self.msgpack.get_or_init(|| msgpack_frame(&self.events))
    }
}

/// A JSON frame for events: the object for one, an array for several.
pub fn json_frame(events: &[Arc<Encoded>]) -> Utf8Bytes {
    if let [event] = events {
        return event.json.clone();
    }
    let length = events.iter().map(|event| event.json.len() + 1).sum::<usize>() + 1;
    let mut text = String::with_capacity(length);
    text.push('[');
    for (index, event) in events.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(event.json.as_str());
    }
    text.push(']');
    text.into()
}

/// A MessagePack frame for events: the map for one, an array of maps for several.
pub fn msgpack_frame(events: &[Arc<Encoded>]) -> Bytes {
    if let [event] = events {
        return event.msgpack().clone();
    }
    let mut frame = Vec::with_capacity(events.iter().map(|event| event.msgpack().len()).sum::<usize>() + 5);
    // MessagePack array header: fixarray, array 16 or array 32.
    match events.len() {
        len @ 0..=15 => frame.push(0x90 | len as u8),
        len @ 16..=0xffff => {
            frame.push(0xdc);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0xdd);
            frame.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        }
    }
    for event in events {
        frame.extend_from_slice(event.msgpack());
    }
    frame.into()
}

fn encode_msgpack(envelope: &Envelope) -> Bytes {
    rmp_serde::to_vec_named(envelope)
        .map(Bytes::from)
        .unwrap_or_else(|error| {
            tracing::error!(%error, seq = envelope.seq, "live event did not encode as MessagePack");
            Bytes::new()
        })
}

/// MessagePack from the JSON made at publish: kept events hold only their JSON, and most
/// are never asked for in MessagePack.
fn transcode(json: &str) -> Bytes {
    match wire::parse_frame(json).map(|mut envelopes| envelopes.pop()) {
        Ok(Some(envelope)) => encode_msgpack(&envelope),
        Ok(None) => Bytes::new(),
        Err(error) => {
            tracing::error!(%error, "published JSON did not read back as an Envelope");
            Bytes::new()
        }
    }
}

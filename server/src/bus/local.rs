//! The in-process bus: one broadcast channel per [`Channel`], made on first use.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use tokio::sync::broadcast;

use super::{Channel, SUBSCRIBER_BACKLOG};

#[derive(Clone, Default)]
pub struct LocalBus {
    channels: Arc<Mutex<HashMap<Channel, broadcast::Sender<Bytes>>>>,
}

impl LocalBus {
    fn sender(&self, channel: Channel) -> broadcast::Sender<Bytes> {
        let mut channels = self.channels.lock().unwrap_or_else(|poison| poison.into_inner());
        channels
            .entry(channel)
            .or_insert_with(|| broadcast::channel(SUBSCRIBER_BACKLOG).0)
            .clone()
    }

    pub fn publish(&self, channel: Channel, payload: Bytes) {
        // No subscriber yet is not an error: nobody was listening.
        let _ = self.sender(channel).send(payload);
    }

    pub fn subscribe(&self, channel: Channel) -> broadcast::Receiver<Bytes> {
        self.sender(channel).subscribe()
    }
}

//! Rooms on the end users' sockets: a frame for a room reaches every socket in it, in
//! every process. `user:{id}` is every socket of one user (their tabs and devices);
//! `conversation:{id}` every socket of its members; `system` is every socket
//! (operators' announcements).
//!
//! A frame is encoded once, handed to the sockets this process holds, and — when the
//! bus crosses processes — published on [`Channel::Rooms`] for the others, whose
//! [`Rooms::follow`] hands it to theirs. Membership is who holds a socket: the
//! [`Registry`] of each process knows its own, so no process keeps a list of another's.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wire::UserFrame;

use super::Registry;
use crate::bus::{Bus, Channel};

/// Who a frame is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "room", content = "id", rename_all = "camelCase")]
pub enum Room {
    /// Every socket of one user.
    User(String),
    /// Every socket of a conversation's members. The sender read them from the database
    /// (the source of truth) and they travel with the frame, so no process keeps a
    /// conversation's membership in memory.
    Conversation { id: String, members: Vec<String> },
    /// Every socket.
    System,
}

impl Room {
    /// `user:{id}` or `system`, as the protocol names rooms.
    pub fn name(&self) -> String {
        match self {
            Room::User(id) => format!("user:{id}"),
            Room::Conversation { id, .. } => format!("conversation:{id}"),
            Room::System => "system".to_string(),
        }
    }
}

/// A frame on its way to the other processes' sockets.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RoomFrame {
    room: Room,
    /// The frame as the sockets send it.
    text: String,
}

/// Sends frames to rooms.
#[derive(Clone)]
pub struct Rooms {
    registry: Arc<Registry>,
    bus: Bus,
}

impl Rooms {
    pub fn new(registry: Arc<Registry>, bus: Bus) -> Self {
        Self { registry, bus }
    }

    /// Sends `frame` to every socket in `room`; returns how many sockets of this
    /// process took it (the others' are not counted: publishing does not wait for them).
    pub async fn send(&self, room: Room, frame: &UserFrame) -> usize {
        let text: Arc<str> = match serde_json::to_string(frame) {
            Ok(text) => text.into(),
            Err(error) => {
                tracing::warn!(%error, "a user frame could not be encoded");
                return 0;
            }
        };
        let here = self.deliver(&room, &text);
        if self.bus.crosses_processes() {
            let message = RoomFrame {
                room,
                text: text.to_string(),
            };
            if let Err(error) = self.bus.publish(Channel::Rooms, &message).await {
                tracing::debug!(%error, "a room frame could not go on the bus");
            }
        }
        here
    }

    fn deliver(&self, room: &Room, text: &Arc<str>) -> usize {
        match room {
            Room::User(id) => self.registry.send_to_user(id, text),
            Room::Conversation { members, .. } => members
                .iter()
                .map(|member| self.registry.send_to_user(member, text))
                .sum(),
            Room::System => self.registry.send_to_everyone(text),
        }
    }

    /// In a process that holds sockets, on a bus between processes: hands the other
    /// processes' room frames to the sockets here, until shutdown.
    pub async fn follow(self, shutdown: CancellationToken) {
        self.bus
            .clone()
            .from_others(Channel::Rooms, "room frames", shutdown, |frame: RoomFrame| {
                self.deliver(&frame.room, &Arc::from(frame.text));
                std::future::ready(())
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_have_the_protocols_names() {
        assert_eq!(Room::User("u1".into()).name(), "user:u1");
        assert_eq!(Room::System.name(), "system");
        let conversation = Room::Conversation {
            id: "c1".into(),
            members: vec!["u1".into()],
        };
        assert_eq!(conversation.name(), "conversation:c1");
    }
}

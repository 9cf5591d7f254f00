//! What the end users' client holds of its conversations, and the rules that keep it
//! right (README, "Messaging"): messages by `seq`, merged from pages and frames without
//! repeats; the messages this device is sending (optimistic, kept in the browser's
//! storage until the server has them: [`Outbox`]); the participants' horizons and so
//! every message's state; who is typing. Pure logic, tested on the host; the views are in
//! `client::chat`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::wire::{Conversation, DeliveryState, Message, MessagePage, Participant, StateUpdate, Typing};

/// How long a "typing" lasts without another (seed 003: 5 s).
pub const TYPING_EXPIRES_MS: i64 = 5_000;
/// A device says "typing" at most this often (seed 003: 1 s).
pub const TYPING_EVERY_MS: i64 = 1_000;
/// Attempts before a message is `failed` (seed 003's offline queue: 5).
pub const MAX_ATTEMPTS: u32 = 5;
/// The `localStorage` key of the outbox (seed 003's name).
pub const OUTBOX_KEY: &str = "offline_message_queue";

/// A message this device composed and the server has not yet answered for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outgoing {
    pub conversation_id: String,
    /// Seed 003's `temp-<ms>-<random>`: the server's idempotency key too.
    pub client_id: String,
    pub body: String,
    pub created_at_ms: i64,
    pub attempts: u32,
    /// Gave up (or refused): shown with a retry button.
    pub failed: bool,
    /// Why, when the server refused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The messages waiting to be sent, oldest first: kept in `localStorage` so a reload or
/// a crash while offline loses none, and sent in order when the connection is back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbox {
    pub items: Vec<Outgoing>,
}

impl Outbox {
    pub fn add(&mut self, item: Outgoing) {
        self.items.push(item);
    }

    /// The oldest message still to try, if any (failed ones wait for their button).
    pub fn next(&self) -> Option<&Outgoing> {
        self.items.iter().find(|item| !item.failed)
    }

    /// The server has it: it leaves the outbox.
    pub fn sent(&mut self, client_id: &str) {
        self.items.retain(|item| item.client_id != client_id);
    }

    /// An attempt that did not reach the server; `failed` after [`MAX_ATTEMPTS`].
    pub fn attempt_failed(&mut self, client_id: &str) {
        if let Some(item) = self.items.iter_mut().find(|item| item.client_id == client_id) {
            item.attempts += 1;
            item.failed = item.attempts >= MAX_ATTEMPTS;
        }
    }

    /// The server refused it (not a friend any more, too long): no use retrying.
    pub fn refused(&mut self, client_id: &str, why: String) {
        if let Some(item) = self.items.iter_mut().find(|item| item.client_id == client_id) {
            item.failed = true;
            item.error = Some(why);
        }
    }

    /// The retry button: five more attempts.
    pub fn retry(&mut self, client_id: &str) {
        if let Some(item) = self.items.iter_mut().find(|item| item.client_id == client_id) {
            item.attempts = 0;
            item.failed = false;
            item.error = None;
        }
    }
}

/// One conversation's messages as this device holds them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thread {
    pub messages: BTreeMap<i64, Message>,
    /// Older pages exist before this seq.
    pub next_before: Option<i64>,
    /// Who types, until when.
    pub typing: HashMap<String, i64>,
}

impl Thread {
    /// The highest seq held with none missing below it since the first held: what this
    /// device acks (it never claims a message it lacks).
    pub fn contiguous_up_to(&self) -> i64 {
        let mut up_to = None::<i64>;
        for seq in self.messages.keys() {
            match up_to {
                None => up_to = Some(*seq),
                Some(last) if *seq == last + 1 => up_to = Some(*seq),
                Some(_) => break,
            }
        }
        up_to.unwrap_or(0)
    }
}

/// Everything of messaging this device holds for user `me`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chats {
    pub me: String,
    pub conversations: Vec<Conversation>,
    pub threads: HashMap<String, Thread>,
}

impl Chats {
    pub fn new(me: &str) -> Self {
        Self {
            me: me.to_string(),
            ..Self::default()
        }
    }

    pub fn conversation(&self, id: &str) -> Option<&Conversation> {
        self.conversations.iter().find(|conversation| conversation.id == id)
    }

    fn conversation_mut(&mut self, id: &str) -> Option<&mut Conversation> {
        self.conversations.iter_mut().find(|conversation| conversation.id == id)
    }

    /// The list from `GET /api/conversations`: it replaces what was held, threads stay.
    pub fn set_list(&mut self, conversations: Vec<Conversation>) {
        self.conversations = conversations;
    }

    /// Adds (or replaces) one conversation, the newest first.
    pub fn upsert(&mut self, conversation: Conversation) {
        let unread = self
            .conversation(&conversation.id)
            .map_or(conversation.unread, |held| held.unread);
        self.conversations.retain(|held| held.id != conversation.id);
        self.conversations.insert(0, Conversation { unread, ..conversation });
    }

    /// A page of history: merged into the thread, the participants' horizons taken.
    pub fn page(&mut self, conversation_id: &str, page: MessagePage, older: bool) {
        let thread = self.threads.entry(conversation_id.to_string()).or_default();
        for message in page.messages {
            thread.messages.insert(message.seq, message);
        }
        if older || thread.next_before.is_none() {
            thread.next_before = page.next_before;
        }
        if let Some(conversation) = self.conversation_mut(conversation_id) {
            conversation.participants = page.participants;
        }
    }

    /// `message:new`: a message (maybe this device's own, maybe one it has). Returns the
    /// seq to ack when it is someone else's.
    pub fn on_message(&mut self, message: Message) -> Option<i64> {
        let mine = message.sender_id == self.me;
        let conversation_id = message.conversation_id.clone();
        let thread = self.threads.entry(conversation_id.clone()).or_default();
        let new = !thread.messages.contains_key(&message.seq);
        thread.typing.remove(&message.sender_id);
        thread.messages.insert(message.seq, message.clone());
        let ack = thread.contiguous_up_to();
        if let Some(conversation) = self.conversation_mut(&conversation_id) {
            if message.seq >= conversation.last_seq {
                conversation.last_seq = message.seq;
                conversation.last_message = Some(message.clone());
            }
            if new && !mine {
                conversation.unread += 1;
            }
            if mine {
                // A message from this user's other device: they have read what came before.
                for participant in conversation
                    .participants
                    .iter_mut()
                    .filter(|participant| participant.id == message.sender_id)
                {
                    participant.delivered_seq = participant.delivered_seq.max(message.seq);
                    participant.read_seq = participant.read_seq.max(message.seq);
                }
            }
        }
        // Newest activity first.
        if let Some(at) = self
            .conversations
            .iter()
            .position(|conversation| conversation.id == conversation_id)
        {
            let conversation = self.conversations.remove(at);
            self.conversations.insert(0, conversation);
        }
        (!mine).then_some(ack)
    }

    /// `message:update`: an edit or deletion.
    pub fn on_amended(&mut self, message: Message) {
        if let Some(conversation) = self.conversation_mut(&message.conversation_id)
            && conversation
                .last_message
                .as_ref()
                .is_some_and(|last| last.id == message.id)
        {
            conversation.last_message = Some(message.clone());
        }
        let thread = self.threads.entry(message.conversation_id.clone()).or_default();
        thread.messages.insert(message.seq, message);
    }

    /// `conversation.state_update`: a participant's horizons (never moved back).
    pub fn on_state(&mut self, update: &StateUpdate) {
        let me = self.me.clone();
        let Some(conversation) = self.conversation_mut(&update.conversation_id) else {
            return;
        };
        if let Some(participant) = conversation
            .participants
            .iter_mut()
            .find(|participant| participant.id == update.user_id)
        {
            participant.delivered_seq = participant.delivered_seq.max(update.delivered_seq);
            participant.read_seq = participant.read_seq.max(update.read_seq);
        }
        // Read on another device of mine: nothing unread here either.
        if update.user_id == me {
            let read = update.read_seq;
            let unread = self.threads.get(&update.conversation_id).map_or(0, |thread| {
                thread
                    .messages
                    .values()
                    .filter(|message| message.seq > read && message.sender_id != me && message.deleted_at_ms.is_none())
                    .count() as i64
            });
            if let Some(conversation) = self.conversation_mut(&update.conversation_id) {
                conversation.unread = unread.min(conversation.unread);
            }
        }
    }

    /// `conversation.typing` at `now_ms`.
    pub fn on_typing(&mut self, typing: &Typing, now_ms: i64) {
        if typing.user_id == self.me {
            return;
        }
        let thread = self.threads.entry(typing.conversation_id.clone()).or_default();
        if typing.is_typing {
            thread.typing.insert(typing.user_id.clone(), now_ms + TYPING_EXPIRES_MS);
        } else {
            thread.typing.remove(&typing.user_id);
        }
    }

    /// "Ada is typing…", "Ada and Bob are typing…", or nothing, at `now_ms`.
    pub fn typing_line(&self, conversation_id: &str, now_ms: i64) -> Option<String> {
        let thread = self.threads.get(conversation_id)?;
        let conversation = self.conversation(conversation_id)?;
        let mut names: Vec<String> = thread
            .typing
            .iter()
            .filter(|(_, until)| **until > now_ms)
            .filter_map(|(id, _)| {
                conversation
                    .participants
                    .iter()
                    .find(|participant| participant.id == *id)
            })
            .map(|participant| participant.name.clone())
            .collect();
        names.sort();
        match names.as_slice() {
            [] => None,
            [one] => Some(format!("{one} is typing…")),
            [one, two] => Some(format!("{one} and {two} are typing…")),
            [one, ..] => Some(format!("{one} and {} others are typing…", names.len() - 1)),
        }
    }

    /// Read up to `seq` on this device: nothing unread in the list.
    pub fn read_here(&mut self, conversation_id: &str, seq: i64) {
        let me = self.me.clone();
        if let Some(conversation) = self.conversation_mut(conversation_id) {
            conversation.unread = 0;
            if let Some(participant) = conversation
                .participants
                .iter_mut()
                .find(|participant| participant.id == me)
            {
                participant.read_seq = participant.read_seq.max(seq);
                participant.delivered_seq = participant.delivered_seq.max(seq);
            }
        }
    }

    /// The conversation's name: its title, or the others' names.
    pub fn title(&self, conversation: &Conversation) -> String {
        if let Some(title) = &conversation.title {
            return title.clone();
        }
        let others: Vec<&str> = conversation
            .participants
            .iter()
            .filter(|participant| participant.id != self.me && participant.left_at_ms.is_none())
            .map(|participant| participant.name.as_str())
            .collect();
        if others.is_empty() {
            "Only you".into()
        } else {
            others.join(", ")
        }
    }
}

/// The state of `message` (the viewer's own) for the others: the least far along of
/// them, and each one's, for the tooltip.
pub fn state_of(message: &Message, participants: &[Participant]) -> (DeliveryState, Vec<(String, DeliveryState)>) {
    let each: Vec<(String, DeliveryState)> = participants
        .iter()
        .filter(|participant| participant.id != message.sender_id && participant.left_at_ms.is_none())
        .map(|participant| {
            (
                participant.name.clone(),
                DeliveryState::of(message.seq, participant.delivered_seq, participant.read_seq),
            )
        })
        .collect();
    let least = each
        .iter()
        .map(|(_, state)| *state)
        .min()
        .unwrap_or(DeliveryState::Sent);
    (least, each)
}

/// A new `clientId` (seed 003's shape), from the time and a random number in [0, 1).
pub fn client_id(now_ms: i64, random: f64) -> String {
    let suffix = (random * 36f64.powi(9)) as u64;
    format!("temp-{now_ms}-{}", radix36(suffix))
}

fn radix36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: i64, sender: &str) -> Message {
        Message {
            id: format!("m{seq}"),
            conversation_id: "c1".into(),
            seq,
            sender_id: sender.into(),
            client_id: format!("temp-{seq}"),
            body: format!("text {seq}"),
            created_at_ms: seq,
            edited_at_ms: None,
            deleted_at_ms: None,
        }
    }

    fn participant(id: &str, delivered_seq: i64, read_seq: i64) -> Participant {
        Participant {
            id: id.into(),
            name: id.to_uppercase(),
            delivered_seq,
            read_seq,
            left_at_ms: None,
        }
    }

    fn chats() -> Chats {
        let mut chats = Chats::new("ada");
        chats.set_list(vec![Conversation {
            id: "c1".into(),
            title: None,
            created_by: "ada".into(),
            created_at_ms: 0,
            last_seq: 0,
            participants: vec![
                participant("ada", 0, 0),
                participant("bob", 0, 0),
                participant("cy", 0, 0),
            ],
            last_message: None,
            unread: 0,
        }]);
        chats
    }

    #[test]
    fn messages_merge_by_seq_and_acks_never_claim_a_gap() {
        let mut chats = chats();
        assert_eq!(chats.on_message(message(1, "bob")), Some(1));
        // 3 overtook 2 on the way (two senders' frames): acked only once 2 is here, so
        // the delivered horizon never claims a message this device lacks.
        assert_eq!(chats.on_message(message(3, "bob")), Some(1));
        assert_eq!(chats.on_message(message(2, "bob")), Some(3));
        assert_eq!(chats.on_message(message(2, "bob")), Some(3), "a repeat changes nothing");
        assert_eq!(chats.conversations[0].unread, 3);
        assert_eq!(chats.on_message(message(4, "ada")), None, "one's own is not acked");
        assert_eq!(
            chats.conversations[0].last_message.as_ref().map(|last| last.seq),
            Some(4)
        );
        assert_eq!(chats.threads["c1"].messages.len(), 4);
    }

    #[test]
    fn my_messages_state_is_the_least_far_along_of_the_others() {
        let mut chats = chats();
        chats.on_message(message(1, "ada"));
        let mine = message(1, "ada");
        let participants = |chats: &Chats| chats.conversations[0].participants.clone();
        assert_eq!(state_of(&mine, &participants(&chats)).0, DeliveryState::Sent);
        for (user, delivered, read) in [("bob", 1, 0), ("cy", 1, 0)] {
            chats.on_state(&StateUpdate {
                conversation_id: "c1".into(),
                user_id: user.into(),
                delivered_seq: delivered,
                read_seq: read,
            });
        }
        assert_eq!(state_of(&mine, &participants(&chats)).0, DeliveryState::Delivered);
        chats.on_state(&StateUpdate {
            conversation_id: "c1".into(),
            user_id: "bob".into(),
            delivered_seq: 1,
            read_seq: 1,
        });
        let (least, each) = state_of(&mine, &participants(&chats));
        assert_eq!(least, DeliveryState::Delivered, "Cy has not read it");
        assert_eq!(
            each,
            [
                ("BOB".to_string(), DeliveryState::Read),
                ("CY".to_string(), DeliveryState::Delivered)
            ]
        );
        // An older update never moves a horizon back.
        chats.on_state(&StateUpdate {
            conversation_id: "c1".into(),
            user_id: "bob".into(),
            delivered_seq: 0,
            read_seq: 0,
        });
        assert_eq!(state_of(&mine, &participants(&chats)).1[0].1, DeliveryState::Read);
    }

    #[test]
    fn typing_expires_and_a_message_ends_it() {
        let mut chats = chats();
        let typing = |user: &str, is_typing| Typing {
            conversation_id: "c1".into(),
            user_id: user.into(),
            is_typing,
        };
        chats.on_typing(&typing("bob", true), 1_000);
        assert_eq!(chats.typing_line("c1", 1_500).as_deref(), Some("BOB is typing…"));
        chats.on_typing(&typing("cy", true), 2_000);
        assert_eq!(
            chats.typing_line("c1", 2_500).as_deref(),
            Some("BOB and CY are typing…")
        );
        assert_eq!(
            chats.typing_line("c1", 6_500).as_deref(),
            Some("CY is typing…"),
            "Bob's expired"
        );
        chats.on_message(message(1, "cy"));
        assert_eq!(chats.typing_line("c1", 2_500).as_deref(), Some("BOB is typing…"));
        chats.on_typing(&typing("bob", false), 2_600);
        assert_eq!(chats.typing_line("c1", 2_700), None);
        chats.on_typing(&typing("ada", true), 2_700);
        assert_eq!(chats.typing_line("c1", 2_800), None, "one's own typing is not shown");
    }

    #[test]
    fn the_outbox_keeps_order_gives_up_after_five_attempts_and_retries() {
        let mut outbox = Outbox::default();
        for n in 1..=2 {
            outbox.add(Outgoing {
                conversation_id: "c1".into(),
                client_id: format!("temp-{n}"),
                body: format!("offline {n}"),
                created_at_ms: n,
                attempts: 0,
                failed: false,
                error: None,
            });
        }
        assert_eq!(outbox.next().map(|item| item.client_id.as_str()), Some("temp-1"));
        for _ in 0..MAX_ATTEMPTS {
            outbox.attempt_failed("temp-1");
        }
        assert!(outbox.items[0].failed);
        assert_eq!(
            outbox.next().map(|item| item.client_id.as_str()),
            Some("temp-2"),
            "a failed one waits"
        );
        outbox.sent("temp-2");
        assert!(outbox.next().is_none());
        outbox.retry("temp-1");
        assert_eq!(
            outbox.next().map(|item| (item.client_id.as_str(), item.attempts)),
            Some(("temp-1", 0))
        );
        outbox.refused("temp-1", "403: not in it".into());
        assert!(outbox.next().is_none());
        let stored = serde_json::to_string(&outbox).expect("json");
        assert_eq!(serde_json::from_str::<Outbox>(&stored).expect("back"), outbox);
    }

    #[test]
    fn titles_and_client_ids() {
        let chats = chats();
        assert_eq!(chats.title(&chats.conversations[0]), "BOB, CY");
        let id = client_id(1_733_231_231_000, 0.5);
        assert!(id.starts_with("temp-1733231231000-"), "{id}");
        assert!(id.len() <= 64);
        assert_ne!(client_id(1, 0.25), client_id(1, 0.5));
    }
}

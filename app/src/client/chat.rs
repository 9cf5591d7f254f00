//! Messaging in the client: the conversations, one thread with its messages and their
//! states, the composer. What it holds is a [`Chats`] and an [`Outbox`]; the socket's
//! frames change the first, this module's sending drains the second.
//!
//! A message composed here shows at once as *sending*, is kept in `localStorage`
//! (`offline_message_queue`) until the server has it, and is sent in order whenever the
//! connection allows — at most five attempts, then *failed* with a retry button. Its
//! `clientId` makes every attempt the same message: it never appears twice.

use leptos::{prelude::*, task::spawn_local};

use super::{api, socket};
use crate::{
    messages::{Chats, OUTBOX_KEY, Outbox, Outgoing, TYPING_EVERY_MS, client_id, state_of},
    wire::{
        ClientFrame, Conversation, Conversations, DeliveryState, Friends, Message, MessagePage, NewConversation,
        NewMessage, User,
    },
};

/// Messages a thread asks for at a time.
const PAGE: u32 = 50;

/// Messaging's state, shared by the socket and the views.
#[derive(Clone, Copy)]
pub struct Chat {
    pub chats: RwSignal<Chats>,
    pub outbox: RwSignal<Outbox>,
    /// The thread shown, if any.
    pub open: RwSignal<Option<String>>,
    /// Milliseconds now, every second: what typing lines expire by.
    pub now: RwSignal<i64>,
    /// Whether a sending round is under way.
    sending: RwSignal<bool>,
    /// When this device last said it types.
    typed_at: RwSignal<i64>,
    pub error: RwSignal<Option<String>>,
}

fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

impl Chat {
    pub fn new(me: &User) -> Self {
        let outbox = storage()
            .and_then(|storage| storage.get_item(OUTBOX_KEY).ok().flatten())
            .and_then(|stored| serde_json::from_str::<Outbox>(&stored).ok())
            .unwrap_or_default();
        let chat = Self {
            chats: RwSignal::new(Chats::new(&me.id)),
            outbox: RwSignal::new(outbox),
            open: RwSignal::new(None),
            now: RwSignal::new(now_ms()),
            sending: RwSignal::new(false),
            typed_at: RwSignal::new(0),
            error: RwSignal::new(None),
        };
        set_interval(move || chat.now.set(now_ms()), std::time::Duration::from_secs(1));
        // Back online (the socket may have stayed open through it): send what waited.
        let _ = window_event_listener(leptos::ev::online, move |_| chat.flush());
        chat
    }

    fn save_outbox(&self) {
        let stored = self
            .outbox
            .with_untracked(|outbox| serde_json::to_string(outbox).unwrap_or_default());
        if let Some(storage) = storage() {
            let _ = storage.set_item(OUTBOX_KEY, &stored);
        }
    }

    /// Asks for the list (and the open thread) again: on every (re)connection.
    pub async fn reload(&self) -> Result<(), String> {
        let list = api::get::<Conversations>("/api/conversations").await?;
        self.chats.update(|chats| chats.set_list(list.conversations));
        if let Some(open) = self.open.get_untracked() {
            self.load_thread(&open, None).await?;
        }
        Ok(())
    }

    async fn load_thread(&self, id: &str, before: Option<i64>) -> Result<(), String> {
        let mut path = format!("/api/conversations/{id}/messages?limit={PAGE}");
        if let Some(before) = before {
            path.push_str(&format!("&before={before}"));
        }
        let page = api::get::<MessagePage>(&path).await?;
        self.chats.update(|chats| chats.page(id, page, before.is_some()));
        self.mark_read();
        Ok(())
    }

    /// Opens a thread: its newest page, and what it shows is read.
    pub fn show(self, id: String) {
        self.open.set(Some(id.clone()));
        spawn_local(async move {
            if let Err(error) = self.load_thread(&id, None).await {
                self.error.set(Some(error));
            }
        });
    }

    fn older(self) {
        let Some(id) = self.open.get_untracked() else {
            return;
        };
        let before = self
            .chats
            .with_untracked(|chats| chats.threads.get(&id).and_then(|thread| thread.next_before));
        if let Some(before) = before {
            spawn_local(async move {
                if let Err(error) = self.load_thread(&id, Some(before)).await {
                    self.error.set(Some(error));
                }
            });
        }
    }

    /// The open thread is on screen: says how far it has been read.
    pub fn mark_read(&self) {
        let Some(id) = self.open.get_untracked() else {
            return;
        };
        if document().hidden() {
            return;
        }
        let (up_to, unread) = self.chats.with_untracked(|chats| {
            let up_to = chats.threads.get(&id).map_or(0, |thread| thread.contiguous_up_to());
            let unread = chats.conversation(&id).is_some_and(|conversation| {
                conversation
                    .participants
                    .iter()
                    .any(|participant| participant.id == chats.me && participant.read_seq < up_to)
                    || conversation.unread > 0
            });
            (up_to, unread)
        });
        if up_to > 0 && unread {
            self.chats.update(|chats| chats.read_here(&id, up_to));
            socket::send(&ClientFrame::MessageRead {
                conversation_id: id,
                up_to_seq: up_to,
            });
        }
    }

    /// `message:new` from the socket: kept, acked, and read when its thread is open.
    pub fn on_message(&self, message: Message) {
        let conversation_id = message.conversation_id.clone();
        let client_id = message.client_id.clone();
        let ack = self.chats.try_update(|chats| chats.on_message(message)).flatten();
        // This device's own, sent before its answer came: the outbox is done with it.
        self.outbox.update(|outbox| outbox.sent(&client_id));
        self.save_outbox();
        if let Some(up_to_seq) = ack {
            socket::send(&ClientFrame::MessageAck {
                conversation_id: conversation_id.clone(),
                up_to_seq,
            });
        }
        if self.open.get_untracked().as_deref() == Some(conversation_id.as_str()) {
            self.mark_read();
        } else if !self
            .chats
            .with_untracked(|chats| chats.conversation(&conversation_id).is_some())
        {
            // A conversation this device has not heard of: the list again.
            let chat = *self;
            spawn_local(async move {
                let _ = chat.reload().await;
            });
        }
    }

    /// Composes a message: shown at once, kept, sent when it can be.
    fn compose(self, conversation_id: String, body: String) {
        let item = Outgoing {
            conversation_id: conversation_id.clone(),
            client_id: client_id(now_ms(), js_sys::Math::random()),
            body,
            created_at_ms: now_ms(),
            attempts: 0,
            failed: false,
            error: None,
        };
        self.outbox.update(|outbox| outbox.add(item));
        self.save_outbox();
        socket::send(&ClientFrame::Typing {
            conversation_id,
            is_typing: false,
        });
        self.typed_at.set(0);
        self.flush();
    }

    /// Sends what waits in the outbox, oldest first, one at a time; stops at the first
    /// that does not get through (the next connection or retry starts again).
    pub fn flush(self) {
        if self.sending.get_untracked() {
            return;
        }
        self.sending.set(true);
        spawn_local(async move {
            while let Some(item) = self.outbox.with_untracked(|outbox| outbox.next().cloned()) {
                let body = NewMessage {
                    client_id: item.client_id.clone(),
                    body: item.body.clone(),
                };
                let path = format!("/api/conversations/{}/messages", item.conversation_id);
                match api::post::<Message>(&path, &body).await {
                    Ok(message) => {
                        self.chats.update(|chats| {
                            chats.on_message(message);
                        });
                        self.outbox.update(|outbox| outbox.sent(&item.client_id));
                        self.save_outbox();
                    }
                    // Refused (4xx): trying again would be refused again.
                    Err(error) if error.starts_with('4') => {
                        self.outbox.update(|outbox| outbox.refused(&item.client_id, error));
                        self.save_outbox();
                    }
                    Err(_) => {
                        self.outbox.update(|outbox| outbox.attempt_failed(&item.client_id));
                        self.save_outbox();
                        // Not reachable: wait a little before the next attempt; offline, wait
                        // for the connection (or the browser) to come back instead.
                        gloo_timers::future::sleep(std::time::Duration::from_secs(2)).await;
                        if socket::is_open() && window().navigator().on_line() {
                            continue;
                        }
                        break;
                    }
                }
            }
            self.sending.set(false);
        });
    }

    fn retry(self, client_id: String) {
        self.outbox.update(|outbox| outbox.retry(&client_id));
        self.save_outbox();
        self.flush();
    }

    /// A keystroke in the composer: "typing" at most once a second.
    fn typed(self, conversation_id: String) {
        let now = now_ms();
        if now - self.typed_at.get_untracked() >= TYPING_EVERY_MS {
            self.typed_at.set(now);
            socket::send(&ClientFrame::Typing {
                conversation_id,
                is_typing: true,
            });
        }
    }

    /// Starts (or finds) the conversation with these people and opens it.
    pub fn start(self, participants: Vec<String>, title: Option<String>) {
        spawn_local(async move {
            let body = NewConversation { participants, title };
            match api::post::<Conversation>("/api/conversations", &body).await {
                Ok(conversation) => {
                    let id = conversation.id.clone();
                    self.chats.update(|chats| chats.upsert(conversation));
                    self.show(id);
                }
                Err(error) => self.error.set(Some(error)),
            }
        });
    }
}

fn state_label(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Sending => "Sending…",
        DeliveryState::Sent => "Sent",
        DeliveryState::Delivered => "Delivered",
        DeliveryState::Read => "Read",
        DeliveryState::Failed => "Failed",
    }
}

/// The messaging panel: the list beside the open thread (one at a time when narrow).
#[component]
pub fn ChatPanel(chat: Chat) -> impl IntoView {
    let starting = RwSignal::new(false);
    view! {
        <section class="chat" data-testid="chat" class:thread-open=move || chat.open.get().is_some()>
            <aside class="chat-list">
                <button type="button" class="primary" data-testid="new-conversation" on:click=move |_| starting.update(|on| *on = !*on)>
                    "New conversation"
                </button>
                {move || starting.get().then(|| view! { <NewConversationForm chat starting /> })}
                {move || chat.error.get().map(|error| view! { <p class="error" role="alert">{error}</p> })}
                <ul class="conversations" data-testid="conversations">
                    {move || {
                        let chats = chat.chats.get();
                        chats.conversations.iter().map(|conversation| {
                            let id = conversation.id.clone();
                            let open_id = id.clone();
                            let title = chats.title(conversation);
                            let preview = conversation.last_message.as_ref().map(|message| if message.deleted_at_ms.is_some() { "Deleted".to_string() } else { message.body.clone() }).unwrap_or_default();
                            let unread = conversation.unread;
                            view! {
                                <li>
                                    <button
                                        type="button"
                                        class="conversation"
                                        data-testid="conversation"
                                        class:active=move || chat.open.get().as_deref() == Some(open_id.as_str())
                                        on:click=move |_| chat.show(id.clone())
                                    >
                                        <strong>{title}</strong>
                                        <span class="muted preview">{preview}</span>
                                        {(unread > 0).then(|| view! { <span class="badge count" data-testid="conversation-unread">{unread}</span> })}
                                    </button>
                                </li>
                            }
                        }).collect_view()
                    }}
                </ul>
            </aside>
            {move || chat.open.get().map(|id| view! { <ThreadView chat id /> })}
        </section>
    }
}

#[component]
fn NewConversationForm(chat: Chat, starting: RwSignal<bool>) -> impl IntoView {
    let friends = RwSignal::new(Friends::default());
    let chosen = RwSignal::new(Vec::<String>::new());
    let title = RwSignal::new(String::new());
    spawn_local(async move {
        if let Ok(loaded) = api::get::<Friends>("/api/friends").await {
            friends.set(loaded);
        }
    });
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let participants = chosen.get_untracked();
        if participants.is_empty() {
            return;
        }
        let title = Some(title.get_untracked().trim().to_string()).filter(|title| !title.is_empty());
        chat.start(participants, title);
        starting.set(false);
    };
    view! {
        <form class="new-conversation" data-testid="new-conversation-form" on:submit=submit>
            {move || {
                let list = friends.get().friends;
                if list.is_empty() {
                    return view! { <p class="muted">"Add friends first: only friends can talk."</p> }.into_any();
                }
                list.into_iter().map(|person| {
                    let id = person.id.clone();
                    view! {
                        <label class="check">
                            <input type="checkbox" data-testid="pick-friend"
                                on:change=move |event| {
                                    let on = event_target_checked(&event);
                                    let id = id.clone();
                                    chosen.update(|chosen| if on { chosen.push(id) } else { chosen.retain(|held| *held != id) });
                                } />
                            {person.name}
                        </label>
                    }
                }).collect_view().into_any()
            }}
            <input placeholder="Title (for a group)" maxlength="100" data-testid="conversation-title"
                prop:value=move || title.get() on:input=move |event| title.set(event_target_value(&event)) />
            <button class="primary" type="submit" data-testid="start-conversation">"Start"</button>
        </form>
    }
}

#[component]
fn ThreadView(chat: Chat, id: String) -> impl IntoView {
    let draft = RwSignal::new(String::new());
    let thread_id = id.clone();
    let title = {
        let id = id.clone();
        move || {
            chat.chats.with(|chats| {
                chats
                    .conversation(&id)
                    .map(|conversation| chats.title(conversation))
                    .unwrap_or_default()
            })
        }
    };
    let typing = {
        let id = id.clone();
        move || chat.chats.with(|chats| chats.typing_line(&id, chat.now.get()))
    };
    let has_older = {
        let id = id.clone();
        move || {
            chat.chats.with(|chats| {
                chats
                    .threads
                    .get(&id)
                    .is_some_and(|thread| thread.next_before.is_some())
            })
        }
    };
    let messages = {
        let id = id.clone();
        move || {
            chat.chats.with(|chats| {
                let participants = chats.conversation(&id).map(|conversation| conversation.participants.clone()).unwrap_or_default();
                let group = participants.len() > 2;
                let Some(thread) = chats.threads.get(&id) else {
                    return Vec::new();
                };
                thread.messages.values().map(|message| {
                    let mine = message.sender_id == chats.me;
                    let sender = participants.iter().find(|participant| participant.id == message.sender_id).map(|participant| participant.name.clone()).unwrap_or_default();
                    let (state, each) = state_of(message, &participants);
                    let detail: Vec<String> = each.iter().map(|(name, state)| format!("{name}: {}", state_label(*state))).collect();
                    let deleted = message.deleted_at_ms.is_some();
                    view! {
                        <li class="bubble" class:mine=mine data-testid="message" data-seq=message.seq data-state=mine.then_some(state.as_str())>
                            {(group && !mine).then(|| view! { <span class="sender">{sender}</span> })}
                            <span class="text" class:deleted=deleted>{if deleted { "Message deleted".to_string() } else { message.body.clone() }}</span>
                            {message.edited_at_ms.filter(|_| !deleted).map(|_| view! { <span class="muted">" (edited)"</span> })}
                            {mine.then(|| view! { <span class="state" data-testid="message-state" title=detail.join(", ")>{state_label(state)}</span> })}
                        </li>
                    }
                }).collect::<Vec<_>>()
            })
        }
    };
    let pending = {
        let id = id.clone();
        move || {
            let held: Vec<String> = chat.chats.with(|chats| {
                chats
                    .threads
                    .get(&id)
                    .map(|thread| {
                        thread
                            .messages
                            .values()
                            .map(|message| message.client_id.clone())
                            .collect()
                    })
                    .unwrap_or_default()
            });
            chat.outbox.with(|outbox| {
                outbox.items.iter().filter(|item| item.conversation_id == id && !held.contains(&item.client_id)).map(|item| {
                    let state = if item.failed { DeliveryState::Failed } else { DeliveryState::Sending };
                    let retry_id = item.client_id.clone();
                    view! {
                        <li class="bubble mine pending" data-testid="message" data-state=state.as_str()>
                            <span class="text">{item.body.clone()}</span>
                            <span class="state" data-testid="message-state" title=item.error.clone().unwrap_or_default()>{state_label(state)}</span>
                            {item.failed.then(|| view! {
                                <button type="button" class="small" data-testid="retry" on:click=move |_| chat.retry(retry_id.clone())>"Retry"</button>
                            })}
                        </li>
                    }
                }).collect::<Vec<_>>()
            })
        }
    };
    let submit = {
        let id = id.clone();
        move |event: leptos::ev::SubmitEvent| {
            event.prevent_default();
            let body = draft.get_untracked();
            if body.trim().is_empty() {
                return;
            }
            draft.set(String::new());
            chat.compose(id.clone(), body);
        }
    };
    view! {
        <div class="thread" data-testid="thread">
            <header class="thread-head">
                <button type="button" class="back" data-testid="back" on:click=move |_| chat.open.set(None)>"←"</button>
                <strong data-testid="thread-title">{title}</strong>
            </header>
            {move || has_older().then(|| view! { <button type="button" class="more" data-testid="older-messages" on:click=move |_| chat.older()>"Older messages"</button> })}
            <ul class="messages" data-testid="messages">
                {messages}
                {pending}
            </ul>
            <p class="typing muted" data-testid="typing" aria-live="polite">{typing}</p>
            <form class="composer" on:submit=submit>
                <input
                    placeholder="Message"
                    maxlength="4000"
                    data-testid="composer"
                    prop:value=move || draft.get()
                    on:input=move |event| {
                        draft.set(event_target_value(&event));
                        chat.typed(thread_id.clone());
                    }
                />
                <button class="primary" type="submit" data-testid="send">"Send"</button>
            </form>
        </div>
    }
}

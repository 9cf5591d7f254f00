//! The WebSocket service: end users' in-app sockets (`GET /api/notifications/ws` on the
//! app servers, sticky through the balancer) and the registry the in-app workers push
//! through. Its ping schedule and close codes are the live stream's too
//! ([`crate::sockets`]).
//!
//! A user may hold several sockets (tabs, devices): each gets every push and every
//! frame, and the first ack delivers the notification. Frames that need no ack (the
//! notification center's updates, later messages and presence) reach every socket of a
//! user in every process through [`rooms::Rooms`].
//!
//! Every push to a connection goes through that connection's task, which pushes in `seq`
//! order: a request to deliver `seq` N first pushes every undelivered notification up to
//! N. A frame is delivered when the client acks it (`{"ack": id}`); only then is
//! `delivered_at` set (by the waiting worker, with its batch, or here for frames
//! nobody waits for). A client that reconnects with `?lastSeq=N` says it already has
//! everything up to N, so nothing it has is pushed again.
//!
//! [`relay`] carries pushes to sockets held by other processes of a cluster.

pub mod relay;
pub mod rooms;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    extract::{
        Query, State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket},
    },
    response::Response,
};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wire::{Room, SocketEvent, SystemStage};

use crate::{
    accounts::User,
    analytics::sessions::Touch,
    middleware::{
        AppServer,
        extract::{ActiveSession, AuthUser},
    },
    now_ms,
    recent::RecentIds,
    storage::{Database, WriteBatch},
    telemetry::Telemetry,
};

/// How many acks a connection remembers (see `UserConnection::acked`).
const ACKS_KEPT: usize = 1024;
/// Pushes waiting for a connection task beyond this are refused (the worker retries later).
const PUSH_BACKLOG: usize = 256;
/// What a client sends is acks (`{"ack": id}`, about 50 bytes) and pongs. tungstenite
/// sizes its read buffer to this and zeroes it on every read, so the default 128 KiB
/// would have every read clear 128 KiB for 50 bytes.
const READ_BUFFER: usize = 4 * 1024;
/// A client message larger than this closes the socket (1009, [`crate::sockets::close::TOO_BIG`]).
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// Sockets one user may hold open at once (tabs and devices). Opening another closes
/// the oldest with 1008, so a reloading tab never locks its user out, and no user can
/// grow the registry without end.
pub const MAX_SOCKETS_PER_USER: usize = 16;

/// The configuration of our own in-app clients (the load simulator's virtual users, the
/// benchmarks): they receive small frames and send acks, so small buffers and no write
/// buffering, for the reason given at [`READ_BUFFER`].
pub fn client_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
}

use wire::Ack;
/// The frame a user receives: the notification itself.
pub use wire::InAppFrame as Frame;

/// A worker's request to deliver one notification; answered when a client acks it.
struct Push {
    frame: Frame,
    acked: Arc<AckWaiter>,
}

/// The worker waiting for a notification's first ack, shared by every socket of the
/// user it was pushed to.
struct AckWaiter {
    waiting: Mutex<Option<oneshot::Sender<()>>>,
    /// Whether the worker had the ack (it then records the delivery).
    handed_over: std::sync::atomic::AtomicBool,
}

impl AckWaiter {
    fn new(acked: oneshot::Sender<()>) -> Arc<Self> {
        Arc::new(Self {
            waiting: Mutex::new(Some(acked)),
            handed_over: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A client acked: tells the worker if it is the first. True when the worker has
    /// (or, from another socket, already had) the ack.
    fn resolve(&self) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(|poison| poison.into_inner());
        match waiting.take() {
            Some(acked) => {
                let handed_over = acked.send(()).is_ok();
                self.handed_over.store(handed_over, Ordering::Relaxed);
                handed_over
            }
            None => self.handed_over.load(Ordering::Relaxed),
        }
    }
}

/// A push whose frame is not the next in order, waiting on a flush.
struct Pending {
    id: String,
    seq: i64,
    acked: Arc<AckWaiter>,
}

/// Frames waiting for a connection task beyond this close the connection: a client
/// that does not read them is resynced by its reconnect instead of holding memory.
const FRAME_BACKLOG: usize = 256;

struct Connection {
    id: u64,
    server: String,
    pushes: mpsc::Sender<Push>,
    /// Frames that need no ack, already encoded (one encoding for every socket).
    frames: mpsc::Sender<Arc<str>>,
    /// Cancelled when the user opened more than [`MAX_SOCKETS_PER_USER`] sockets and
    /// this is the oldest.
    evicted: CancellationToken,
    /// Cancelled when its client fell [`FRAME_BACKLOG`] frames behind.
    behind: CancellationToken,
}

/// Who is connected where, in this process: the app servers and the in-app workers share
/// it because they run in one process.
#[derive(Default)]
pub struct Registry {
    next_id: AtomicU64,
    users: Mutex<HashMap<String, Vec<Connection>>>,
    /// The latest connects and disconnects, newest last, for the WebSocket card.
    recent: Mutex<VecDeque<SocketEvent>>,
}

/// Socket events kept for the WebSocket card.
const RECENT_EVENTS: usize = 20;

/// Why a push could not be handed to a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// The user has no open socket; the notification waits for their next connect.
    Offline,
    /// The connection's backlog is full or it just closed; try again later.
    Busy,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Hands a push to every connection of the user here. The receiver resolves when
    /// the first client acks; it is dropped if every connection closes first. Answers
    /// the app server of the newest connection that took it.
    pub fn push(&self, user_id: &str, frame: Frame) -> Result<(oneshot::Receiver<()>, String), PushError> {
        let users = self.users.lock().unwrap_or_else(|poison| poison.into_inner());
        let connections = users.get(user_id).ok_or(PushError::Offline)?;
        let (acked, receiver) = oneshot::channel();
        let acked = AckWaiter::new(acked);
        let mut taken_by = None;
        for connection in connections.iter().rev() {
            let push = Push {
                frame: frame.clone(),
                acked: acked.clone(),
            };
            if connection.pushes.try_send(push).is_ok() && taken_by.is_none() {
                taken_by = Some(connection.server.clone());
            }
        }
        taken_by.map(|server| (receiver, server)).ok_or(PushError::Busy)
    }

    /// Sends an encoded frame to every connection of the user here; returns how many
    /// took it. A connection too far behind to take it is closed (its client reconnects
    /// and resyncs), so that it slows no one.
    pub fn send_to_user(&self, user_id: &str, text: &Arc<str>) -> usize {
        let users = self.users.lock().unwrap_or_else(|poison| poison.into_inner());
        users.get(user_id).map_or(0, |connections| {
            connections.iter().filter(|connection| connection.send(text)).count()
        })
    }

    /// Sends an encoded frame to every connection here (the `system` room).
    pub fn send_to_everyone(&self, text: &Arc<str>) -> usize {
        let users = self.users.lock().unwrap_or_else(|poison| poison.into_inner());
        users
            .values()
            .flatten()
            .filter(|connection| connection.send(text))
            .count()
    }

    /// One room per app server: the users whose socket it holds.
    pub fn rooms(&self) -> Vec<Room> {
        let users = self.users.lock().unwrap_or_else(|poison| poison.into_inner());
        let mut rooms: BTreeMap<String, u64> = BTreeMap::new();
        for connections in users.values() {
            let mut servers: Vec<&str> = connections
                .iter()
                .map(|connection| connection.server.as_str())
                .collect();
            servers.sort_unstable();
            servers.dedup();
            for server in servers {
                *rooms.entry(server.to_string()).or_default() += 1;
            }
        }
        rooms.into_iter().map(|(name, users)| Room { name, users }).collect()
    }

    /// The latest connects and disconnects, newest first.
    pub fn recent_events(&self) -> Vec<SocketEvent> {
        let recent = self.recent.lock().unwrap_or_else(|poison| poison.into_inner());
        recent.iter().rev().cloned().collect()
    }

    fn note(&self, kind: &str, user_id: &str) {
        let mut recent = self.recent.lock().unwrap_or_else(|poison| poison.into_inner());
        if recent.len() == RECENT_EVENTS {
            recent.pop_front();
        }
        recent.push_back(SocketEvent {
            kind: kind.to_string(),
            user_id: user_id.to_string(),
            timestamp: chrono::Utc::now(),
        });
    }

    /// Users with an open socket, and sockets in all.
    pub fn counts(&self) -> (usize, usize) {
        let users = self.users.lock().unwrap_or_else(|poison| poison.into_inner());
        (users.len(), users.values().map(Vec::len).sum())
    }

    fn register(self: &Arc<Self>, user_id: &str, server: &str) -> (Registration, Inbound) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (pushes, push_receiver) = mpsc::channel(PUSH_BACKLOG);
        let (frames, frame_receiver) = mpsc::channel(FRAME_BACKLOG);
        let evicted = CancellationToken::new();
        let behind = CancellationToken::new();
        let mut users = self.users.lock().unwrap_or_else(|poison| poison.into_inner());
        let connections = users.entry(user_id.to_string()).or_default();
        if connections.len() >= MAX_SOCKETS_PER_USER {
            // The oldest goes; its task closes it and its registration removes nothing
            // more (it is already out).
            connections.remove(0).evicted.cancel();
        }
        connections.push(Connection {
            id,
            server: server.to_string(),
            pushes,
            frames,
            evicted: evicted.clone(),
            behind: behind.clone(),
        });
        drop(users);
        self.note("connect", user_id);
        (
            Registration {
                registry: self.clone(),
                user_id: user_id.to_string(),
                id,
                evicted,
                behind,
            },
            Inbound {
                pushes: push_receiver,
                frames: frame_receiver,
            },
        )
    }
}

impl Connection {
    fn send(&self, text: &Arc<str>) -> bool {
        match self.frames.try_send(text.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.behind.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// What a connection task receives from the rest of the process.
struct Inbound {
    pushes: mpsc::Receiver<Push>,
    frames: mpsc::Receiver<Arc<str>>,
}

/// Removes a connection from the registry when its task ends, however it ends.
struct Registration {
    registry: Arc<Registry>,
    user_id: String,
    id: u64,
    evicted: CancellationToken,
    behind: CancellationToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut users = self.registry.users.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(connections) = users.get_mut(&self.user_id) {
            connections.retain(|connection| connection.id != self.id);
            if connections.is_empty() {
                users.remove(&self.user_id);
            }
        }
        drop(users);
        self.registry.note("disconnect", &self.user_id);
    }
}

/// The end users' socket route.
pub fn router() -> axum::Router<AppServer> {
    axum::Router::new().route("/api/notifications/ws", axum::routing::get(user_socket))
}

#[derive(Debug, Deserialize)]
pub struct Resume {
    #[serde(rename = "lastSeq")]
    last_seq: Option<i64>,
}

/// `GET /api/notifications/ws?token=...&lastSeq=N`.
pub async fn user_socket(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    session: Option<axum::Extension<ActiveSession>>,
    Query(resume): Query<Resume>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let upgrade = upgrade
        .read_buffer_size(READ_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE);
    upgrade.on_upgrade(move |socket| async move {
        // While the socket is open its user is active, whether or not they send.
        let open = CancellationToken::new();
        if let Some(axum::Extension(ActiveSession(session))) = session {
            let (activity, user_id, open) = (server.shared.activity.clone(), user.id.clone(), open.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(crate::analytics::sessions::SOCKET_TOUCH_EVERY);
                loop {
                    tokio::select! {
                        () = open.cancelled() => return,
                        _ = every.tick() => activity.touch(session.clone(), &user_id, Touch::Socket, Default::default()),
                    }
                }
            });
        }
        let _closed = open.drop_guard();
        let connection = UserConnection {
            telemetry: server.shared.telemetry.clone(),
            messaging: server.shared.messaging.clone(),
            app: server.clone(),
            limiter: ClientLimiter::new(),
            server: server.id.clone(),
            db: server.shared.db.clone(),
            user,
            pushed_up_to: resume.last_seq.unwrap_or(0),
            in_flight: BTreeMap::new(),
            acked: RecentIds::new(ACKS_KEPT),
        };
        connection
            .run(
                socket,
                server.shared.registry.clone(),
                &server.id,
                server.stopping.clone(),
                resume.last_seq,
            )
            .await;
    })
}

struct UserConnection {
    telemetry: Telemetry,
    /// Where `message:*` frames go (the same rules as the REST routes).
    messaging: crate::messaging::Messaging,
    /// The app server holding the socket, for sends (they commit like a `POST`).
    app: AppServer,
    /// What this connection may still send (see [`Inbound`]'s rate limit).
    limiter: ClientLimiter,
    /// The app server holding the socket.
    server: String,
    db: Database,
    user: User,
    /// The highest seq pushed on this connection (or that the client said it had).
    pushed_up_to: i64,
    /// Pushed and not yet acked, by notification id.
    in_flight: BTreeMap<String, InFlight>,
    /// The last [`ACKS_KEPT`] notifications the client acked on this connection. A
    /// worker that handed an ack over and died before recording the delivery leaves the
    /// notification undelivered in the database; when another worker pushes it again,
    /// the connection that already has the client's ack answers at once instead of
    /// sending the user a second frame.
    acked: RecentIds,
}

/// A frame pushed on this connection and not yet acked.
#[derive(Default)]
struct InFlight {
    /// Workers waiting for the ack (none for a frame forwarded from storage).
    waiters: Vec<Arc<AckWaiter>>,
    /// The request that created a forwarded frame, read with it: its journey ends with
    /// the ack, and the ack should not cost another query to find it.
    request_id: Option<String>,
}

/// A stored notification about to be forwarded: its frame and the request behind it.
#[derive(sqlx::FromRow)]
struct Stored {
    #[sqlx(flatten)]
    frame: Frame,
    request_id: Option<String>,
}

impl UserConnection {
    async fn run(
        mut self,
        mut socket: WebSocket,
        registry: Arc<Registry>,
        server: &str,
        stopping: CancellationToken,
        last_seq: Option<i64>,
    ) {
        let (registration, mut inbound) = registry.register(&self.user.id, server);
        if let Some(last_seq) = last_seq
            && let Err(error) = self.client_has_up_to(last_seq).await
        {
            tracing::warn!(%error, "could not record a client's lastSeq");
        }
        // Store and forward: everything that waited while the user was away, in order.
        if self.flush(&mut socket, i64::MAX).await.is_err() || self.forward_messages(&mut socket).await.is_err() {
            return;
        }
        let mut ping = tokio::time::interval(crate::sockets::PING_INTERVAL);
        ping.reset();
        loop {
            tokio::select! {
                () = stopping.cancelled() => {
                    let frame = CloseFrame { code: crate::sockets::close::AWAY, reason: "server stopping".into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    return;
                }
                () = registration.evicted.cancelled() => {
                    let frame = CloseFrame { code: crate::sockets::close::POLICY, reason: "too many sockets for this user".into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    return;
                }
                () = registration.behind.cancelled() => {
                    let frame = CloseFrame { code: crate::sockets::close::POLICY, reason: "too far behind; reconnect".into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    return;
                }
                Some(push) = inbound.pushes.recv() => {
                    if self.deliver(&mut socket, push).await.is_err() {
                        return;
                    }
                }
                Some(text) = inbound.frames.recv() => {
                    if socket.send(Message::Text((*text).into())).await.is_err() {
                        return;
                    }
                }
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(reply) = self.received(&text).await {
                            let close = reply.code == "malformed" && self.limiter.too_many_malformed();
                            let frame = serde_json::to_string(&wire::UserFrame::Error(reply)).unwrap_or_default();
                            if socket.send(Message::Text(frame.into())).await.is_err() {
                                return;
                            }
                            if close {
                                let frame = CloseFrame { code: crate::sockets::close::POLICY, reason: "too many malformed messages".into() };
                                let _ = socket.send(Message::Close(Some(frame))).await;
                                return;
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => {}
                },
                _ = ping.tick() => {
                    if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn deliver(&mut self, socket: &mut WebSocket, push: Push) -> Result<(), axum::Error> {
        let Push { frame, acked } = push;
        if frame.seq == self.pushed_up_to + 1 {
            // The next one in order, as it usually is: no need to look for gaps.
            self.send_frame(socket, &frame).await?;
            self.in_flight.entry(frame.id).or_default().waiters.push(acked);
            return Ok(());
        }
        let push = Pending {
            id: frame.id,
            seq: frame.seq,
            acked,
        };
        if push.seq > self.pushed_up_to {
            self.flush(socket, push.seq).await?;
        }
        if let Some(in_flight) = self.in_flight.get_mut(&push.id) {
            in_flight.waiters.push(push.acked);
            return Ok(());
        }
        if self.acked.contains(&push.id) {
            // The client has it; whoever pushed it before did not live to record that.
            push.acked.resolve();
            return Ok(());
        }
        // Not in flight here: pushed and acked before, or pushed on an earlier connection
        // and never acked. Delivered means done; otherwise push it again.
        let frame = match self.db.read().await {
            Ok(mut read) => crate::with_connection!(&mut read, |c| {
                sqlx::query_as::<_, (Option<i64>, String, i64, String, String, String, i64)>(
                    "SELECT delivered_at_ms, id, seq, kind, title, body, created_at_ms FROM notifications WHERE id = $1 AND user_id = $2",
                )
                .bind(&push.id)
                .bind(&self.user.id)
                .fetch_optional(c)
                .await
            }),
            Err(error) => Err(error),
        };
        let frame = frame
            .ok()
            .flatten()
            .map(|(delivered, id, seq, kind, title, body, created_at)| {
                (
                    delivered,
                    Frame {
                        id,
                        seq,
                        kind,
                        title,
                        body,
                        created_at,
                    },
                )
            });
        match frame {
            Some((Some(_), _)) => {
                push.acked.resolve();
            }
            Some((None, frame)) => {
                self.send_frame(socket, &frame).await?;
                self.in_flight.entry(frame.id).or_default().waiters.push(push.acked);
            }
            // Not this user's: nothing to deliver here; the worker's wait times out.
            None => {}
        }
        Ok(())
    }

    async fn send_frame(&mut self, socket: &mut WebSocket, frame: &Frame) -> Result<(), axum::Error> {
        socket.send(Message::Text(notification_new(frame).into())).await?;
        self.pushed_up_to = self.pushed_up_to.max(frame.seq);
        Ok(())
    }

    /// Pushes every undelivered notification with `pushed_up_to < seq <= up_to`, in order.
    async fn flush(&mut self, socket: &mut WebSocket, up_to: i64) -> Result<(), axum::Error> {
        let stored = match self.db.read().await {
            Ok(mut read) => crate::with_connection!(&mut read, |c| {
                sqlx::query_as::<_, Stored>(sqlx::AssertSqlSafe(format!(
                    "SELECT id, seq, kind, title, body, created_at_ms, request_id FROM notifications \
                     WHERE user_id = $1 AND delivered_at_ms IS NULL AND skipped IS NULL AND NOT {} \
                     AND seq > $2 AND seq <= $3 ORDER BY seq",
                    crate::notify::muted_sql("notifications", wire::Flow::InApp)
                )))
                .bind(&self.user.id)
                .bind(self.pushed_up_to)
                .bind(up_to)
                .fetch_all(c)
                .await
            }),
            Err(error) => Err(error),
        };
        let stored = match stored {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, "could not load pending notifications");
                return Ok(());
            }
        };
        for Stored { frame, request_id } in stored {
            self.send_frame(socket, &frame).await?;
            self.in_flight.entry(frame.id).or_default().request_id = request_id;
        }
        Ok(())
    }

    /// A client message: a notification ack, or a [`wire::ClientFrame`]. What it
    /// answers with, when it refuses it (an `error` frame).
    async fn received(&mut self, text: &str) -> Option<wire::FrameError> {
        // A notification's ack is not counted: one comes for every frame pushed, and one
        // for no frame in flight costs a lookup and nothing more.
        if let Ok(Ack { ack }) = serde_json::from_str::<Ack>(text) {
            self.limiter.well_formed();
            self.acked(ack).await;
            return None;
        }
        if !self.limiter.take() {
            return self.limiter.say_limited();
        }
        let frame = match serde_json::from_str::<wire::ClientFrame>(text) {
            Ok(frame) => frame,
            Err(error) => {
                tracing::debug!(user = %self.user.id, %error, "a malformed client message");
                return Some(refusal(
                    "malformed",
                    format!("not a message this socket takes: {error}"),
                    None,
                ));
            }
        };
        self.limiter.well_formed();
        let (result, client_id) = match frame {
            wire::ClientFrame::MessageAck {
                conversation_id,
                up_to_seq,
            } => (
                self.messaging
                    .horizon(
                        &self.user,
                        &conversation_id,
                        crate::messaging::Horizon::Delivered,
                        up_to_seq,
                    )
                    .await
                    .map(drop),
                None,
            ),
            wire::ClientFrame::MessageRead {
                conversation_id,
                up_to_seq,
            } => (
                self.messaging
                    .horizon(&self.user, &conversation_id, crate::messaging::Horizon::Read, up_to_seq)
                    .await
                    .map(drop),
                None,
            ),
            wire::ClientFrame::MessageSend {
                conversation_id,
                client_id,
                body,
            } => {
                let message = wire::NewMessage {
                    client_id: client_id.clone(),
                    body,
                };
                // Not a journey: only requests through the balancer are traced.
                let untraced = crate::controllers::RequestId {
                    id: String::new(),
                    traced: false,
                    handler_started: std::time::Instant::now(),
                    commit: Default::default(),
                };
                let sent = crate::controllers::conversations::send_message(
                    &self.app,
                    &self.user,
                    &conversation_id,
                    &message,
                    &untraced,
                )
                .await;
                (sent.map(drop), Some(client_id))
            }
            wire::ClientFrame::Typing {
                conversation_id,
                is_typing,
            } => (self.typing(conversation_id, is_typing).await, None),
        };
        result.err().map(|error| {
            let code = match error.status.as_u16() {
                400 => "invalid",
                403 => "forbidden",
                404 => "not-found",
                409 => "conflict",
                413 => "too-large",
                _ => "internal",
            };
            let fields: Vec<String> = error
                .fields
                .iter()
                .map(|(field, why)| format!("{field} {why}"))
                .collect();
            let message = if fields.is_empty() {
                error.error
            } else {
                format!("{} ({})", error.error, fields.join("; "))
            };
            refusal(code, message, client_id)
        })
    }

    /// `conversation.typing` from this user: to the conversation's members when the user
    /// is one, at most once a second per conversation (a stop always goes through).
    async fn typing(&mut self, conversation_id: String, is_typing: bool) -> Result<(), crate::api_error::ApiError> {
        if is_typing && !self.limiter.typing_due(&conversation_id) {
            return Ok(());
        }
        let members = self.messaging.members_of(&conversation_id).await?;
        if !members.contains(&self.user.id) {
            return Err(crate::api_error::ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "you are not in this conversation",
            ));
        }
        let frame = wire::UserFrame::Typing(wire::Typing {
            conversation_id: conversation_id.clone(),
            user_id: self.user.id.clone(),
            is_typing,
        });
        self.messaging.relay(&conversation_id, members, &frame).await;
        Ok(())
    }

    /// Store and forward for conversations: every message after the user's delivered
    /// horizon, in order per conversation, however many.
    async fn forward_messages(&mut self, socket: &mut WebSocket) -> Result<(), axum::Error> {
        let mut after: Option<(String, i64)> = None;
        loop {
            let batch = match self
                .messaging
                .waiting(&self.user.id, after.as_ref().map(|(id, seq)| (id.as_str(), *seq)))
                .await
            {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(%error, "could not read the messages waiting for a user");
                    return Ok(());
                }
            };
            let full = batch.len() as i64 >= crate::messaging::FORWARD_BATCH;
            for message in batch {
                after = Some((message.conversation_id.clone(), message.seq));
                let frame = serde_json::to_string(&wire::UserFrame::MessageNew(message)).unwrap_or_default();
                socket.send(Message::Text(frame.into())).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn acked(&mut self, ack: String) {
        let Some(InFlight { waiters, request_id }) = self.in_flight.remove(&ack) else {
            return;
        };
        self.acked.insert(&ack);
        // A worker waiting for this ack records the delivery in its batch's commit; a
        // frame nobody waits for (store and forward on connect) is recorded here.
        let mut handed_over = false;
        for waiter in waiters {
            handed_over |= waiter.resolve();
        }
        if handed_over {
            return;
        }
        let mut batch = WriteBatch::default();
        batch
            .statement(
                "UPDATE notifications SET delivered_at_ms = ? WHERE id = ? AND user_id = ? AND delivered_at_ms IS NULL",
            )
            .bind(now_ms())
            .bind(ack.as_str())
            .bind(&self.user.id);
        if let Err(error) = self.db.commit(batch).await {
            tracing::warn!(%error, "could not record an ack; the notification will be pushed again");
            return;
        }
        // The journey that created it ends with this ack (stored while the user was away).
        if let Some(request_id) = request_id {
            self.telemetry
                .stage(&request_id, SystemStage::ClientAck, &self.server)
                .meta("notificationId", ack.as_str())
                .meta("storedAndForwarded", true)
                .done();
        }
    }

    /// The client says it holds everything up to `last_seq`.
    async fn client_has_up_to(&mut self, last_seq: i64) -> Result<(), sqlx::Error> {
        let mut batch = WriteBatch::default();
        batch
            .statement("UPDATE notifications SET delivered_at_ms = ? WHERE user_id = ? AND seq <= ? AND delivered_at_ms IS NULL")
            .bind(now_ms())
            .bind(&self.user.id)
            .bind(last_seq);
        self.db.commit(batch).await
    }
}

fn refusal(code: &str, message: impl Into<String>, client_id: Option<String>) -> wire::FrameError {
    wire::FrameError {
        code: code.to_string(),
        message: message.into(),
        client_id,
    }
}

/// How much one connection may send: a token bucket over every client message
/// ([`CLIENT_BURST`], refilled at [`CLIENT_RATE`] a second), typing at most once a second
/// per conversation, and a count of malformed messages in a row. A flood is refused with
/// `rate-limited` (said at most once a second) and costs no one else anything: the
/// refused messages are never parsed.
struct ClientLimiter {
    tokens: f64,
    refilled: std::time::Instant,
    said_limited: Option<std::time::Instant>,
    typing: HashMap<String, std::time::Instant>,
    malformed_in_a_row: u32,
}

/// Client messages a connection may send at once.
const CLIENT_BURST: f64 = 60.0;
/// And a second, on average.
const CLIENT_RATE: f64 = 20.0;
/// Malformed messages in a row that close the socket (1008).
const MALFORMED_LIMIT: u32 = 5;
/// Typing frames of one conversation are relayed at most this often.
const TYPING_EVERY: std::time::Duration = std::time::Duration::from_millis(900);

impl ClientLimiter {
    fn new() -> Self {
        Self {
            tokens: CLIENT_BURST,
            refilled: std::time::Instant::now(),
            said_limited: None,
            typing: HashMap::new(),
            malformed_in_a_row: 0,
        }
    }

    fn take(&mut self) -> bool {
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * CLIENT_RATE).min(CLIENT_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The `rate-limited` error, unless it was said less than a second ago.
    fn say_limited(&mut self) -> Option<wire::FrameError> {
        let now = std::time::Instant::now();
        if self
            .said_limited
            .is_some_and(|said| now.duration_since(said) < std::time::Duration::from_secs(1))
        {
            return None;
        }
        self.said_limited = Some(now);
        Some(refusal(
            "rate-limited",
            format!("more than {CLIENT_RATE} messages a second; some were dropped"),
            None,
        ))
    }

    fn well_formed(&mut self) {
        self.malformed_in_a_row = 0;
    }

    /// One more malformed message; whether that makes too many in a row.
    fn too_many_malformed(&mut self) -> bool {
        self.malformed_in_a_row += 1;
        self.malformed_in_a_row >= MALFORMED_LIMIT
    }

    fn typing_due(&mut self, conversation_id: &str) -> bool {
        let now = std::time::Instant::now();
        if self
            .typing
            .get(conversation_id)
            .is_some_and(|last| now.duration_since(*last) < TYPING_EVERY)
        {
            return false;
        }
        // A connection types in few conversations; forget the old ones now and then.
        if self.typing.len() > 64 {
            self.typing.retain(|_, last| now.duration_since(*last) < TYPING_EVERY);
        }
        self.typing.insert(conversation_id.to_string(), now);
        true
    }
}

/// `frame` as a `notification:new` ([`wire::UserFrame::NotificationNew`]), encoded
/// without copying the frame: its own JSON with the tag in front.
fn notification_new(frame: &Frame) -> String {
    let json = serde_json::to_string(frame).unwrap_or_default();
    format!(
        "{{\"type\":\"notification:new\",{}",
        json.strip_prefix('{').unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notification_frame_is_a_tagged_user_frame() {
        let frame = Frame {
            id: "n1".into(),
            seq: 4,
            kind: "login".into(),
            title: "New \"sign-in\"".into(),
            body: "{}".into(),
            created_at: 1_790_000_000_250,
        };
        let parsed: wire::UserFrame = serde_json::from_str(&notification_new(&frame)).expect("a user frame");
        assert_eq!(parsed, wire::UserFrame::NotificationNew(frame));
    }

    #[tokio::test]
    async fn every_socket_of_a_user_gets_the_push_and_the_first_ack_delivers() {
        let registry = Registry::new();
        let (_phone, mut phone) = registry.register("u1", "server-1");
        let (_laptop, mut laptop) = registry.register("u1", "server-2");
        let frame = Frame {
            id: "n1".into(),
            seq: 1,
            kind: "login".into(),
            title: "t".into(),
            body: "b".into(),
            created_at: 0,
        };
        let (acked, server) = registry.push("u1", frame).expect("taken");
        assert_eq!(server, "server-2", "the newest socket answers");
        let on_phone = phone.pushes.try_recv().expect("the phone has it");
        let on_laptop = laptop.pushes.try_recv().expect("the laptop has it");
        assert!(on_laptop.acked.resolve(), "the first ack reaches the worker");
        assert!(on_phone.acked.resolve(), "a second ack finds it handed over");
        acked.await.expect("the worker had its ack");
        assert_eq!(registry.push("u2", on_phone.frame).err(), Some(PushError::Offline));
    }

    #[tokio::test]
    async fn frames_reach_every_socket_and_a_socket_too_far_behind_is_closed() {
        let registry = Registry::new();
        let (slow, _slow_inbound) = registry.register("u1", "server-1");
        let (_fast, mut fast) = registry.register("u1", "server-1");
        let (_other, mut other) = registry.register("u2", "server-1");
        let text: Arc<str> = Arc::from("{}");
        for sent in 0..FRAME_BACKLOG {
            assert_eq!(registry.send_to_user("u1", &text), 2, "frame {sent}");
            fast.frames.try_recv().expect("read at once");
        }
        assert!(!slow.behind.is_cancelled());
        assert_eq!(registry.send_to_user("u1", &text), 1, "the slow one could not take it");
        assert!(slow.behind.is_cancelled(), "and is closed");
        assert_eq!(registry.send_to_everyone(&text), 2, "every socket but the one behind");
        assert!(other.frames.try_recv().is_ok());
    }

    // Regression: a user could open any number of sockets, each held in the registry.
    #[test]
    fn a_flood_of_one_users_sockets_keeps_the_newest_and_closes_the_oldest() {
        let registry = Registry::new();
        let held: Vec<_> = (0..1_000).map(|_| registry.register("u1", "server-1")).collect();
        let _other = registry.register("u2", "server-2");
        assert_eq!(registry.counts(), (2, MAX_SOCKETS_PER_USER + 1));
        let evicted = held
            .iter()
            .filter(|(registration, _)| registration.evicted.is_cancelled())
            .count();
        assert_eq!(evicted, 1_000 - MAX_SOCKETS_PER_USER);
        assert!(
            held.iter()
                .rev()
                .take(MAX_SOCKETS_PER_USER)
                .all(|(registration, _)| !registration.evicted.is_cancelled())
        );
        drop(held);
        assert_eq!(registry.counts(), (1, 1), "closing them leaves only the other user");
    }
}

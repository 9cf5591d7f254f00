//! `GET /api/live-view/ws`: one viewer's WebSocket.
//!
//! On connect the viewer gets a `stream:snapshot`, then every event it subscribed to (all
//! of them by default), each frame one Envelope or a JSON array of Envelopes. The query
//! may subscribe at once (`topics`, `flows`, `types`, `servers`, as for SSE), resume
//! instead of the snapshot (`afterSeq=N`), and ask for binary MessagePack frames
//! (`encoding=msgpack`). Client messages: `subscribe`, `unsubscribe`, `resume`
//! ([`wire::ClientMessage`]), as JSON text or MessagePack binary frames.
//!
//! The server pings every 30 s and closes a peer it has heard nothing from (not even a
//! pong) for 75 s. Close codes (shared with the end users' sockets, [`crate::sockets`]):
//!
//! | code | when |
//! |------|------|
//! | 1000 | the client closed first (echoed) |
//! | 1001 | the server is shutting down |
//! | 1008 | 5 malformed client messages (each of the first 4 gets a `stream:error`) |
//! | 1009 | a client message over 64 KiB |
//! | 4000 | nothing heard from the peer for 75 s |
//! | 4008 | too slow: fell behind 3 times within 60 s, or a frame could not be written within 10 s |
//!
//! A refused `Origin` is not a close code: it gets HTTP 403 before any upgrade.
//!
//! Memory per idle viewer is kept small on purpose: a 2 KiB read buffer, no write
//! buffering, and outgoing messages written as 4 KiB fragments, so the socket's buffers
//! never grow to the size of the largest message (a snapshot can be large). The upgrade is
//! done here with tokio-tungstenite rather than through axum's `WebSocketUpgrade`,
//! because only that lets us send fragments: tungstenite's write buffer keeps the capacity
//! of the largest frame it ever wrote. What an idle viewer costs is measured by
//! `liveview bench fanout` (BENCHMARKS.md, "Memory per idle viewer").

use std::{pin::pin, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite},
    time::{Instant, MissedTickBehavior, interval_at, sleep_until, timeout},
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Error as WsError, Message, Utf8Bytes,
        handshake::derive_accept_key,
        protocol::{
            CloseFrame, Role, WebSocketConfig,
            frame::{
                Frame,
                coding::{CloseCode, Data as OpData, OpCode},
            },
        },
    },
};
use tokio_util::sync::CancellationToken;
use wire::ClientMessage;

use super::{
    LiveHub,
    filter::StreamQuery,
    json_frame, msgpack_frame,
    viewer::{Outgoing, Update, Viewer},
};
use crate::access::OriginPolicy;
use crate::api_error::ApiError;

pub use crate::sockets::PING_INTERVAL;
/// A peer silent this long (no message, no pong) is closed with [`CLOSE_SILENT`].
pub const SILENCE_LIMIT: Duration = Duration::from_secs(75);
/// A frame the peer does not take within this long marks it too slow.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest client message; a bigger one closes with 1009.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Malformed client messages tolerated before closing with 1008 (this many closes).
pub const MAX_MALFORMED: u32 = 5;
/// Outgoing messages are written in fragments of this size.
pub const FRAGMENT_SIZE: usize = 4 * 1024;
/// The socket's read buffer: client messages are small.
const READ_BUFFER: usize = 2 * 1024;
/// How long a close handshake may take before the connection is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

pub use crate::sockets::close::{
    AWAY as CLOSE_AWAY, POLICY as CLOSE_POLICY, SESSION_ENDED as CLOSE_SESSION_ENDED, SILENT as CLOSE_SILENT,
    TOO_BIG as CLOSE_TOO_BIG, TOO_SLOW as CLOSE_TOO_SLOW,
};

/// What a viewer's connection needs from the dashboard (the WebSocket and SSE alike).
#[derive(Clone)]
pub struct LiveSocketState {
    pub hub: Arc<LiveHub>,
    pub shutdown: CancellationToken,
    pub origins: Arc<OriginPolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    MsgPack,
}

pub async fn live_socket(
    State(state): State<LiveSocketState>,
    Query(query): Query<StreamQuery>,
    mut request: Request,
) -> Response {
    if let Err(refused) = state.origins.check(request.headers()) {
        return refused.into_response();
    }
    let encoding = match query.encoding.as_deref() {
        None | Some("json") => Encoding::Json,
        Some("msgpack") => Encoding::MsgPack,
        Some(other) => {
            return ApiError::invalid([("encoding", format!("expected json or msgpack, got {other:?}"))])
                .into_response();
        }
    };
    let subscription = match query.subscription() {
        Ok(subscription) => subscription,
        Err(error) => return error.into_response(),
    };
    let after = match query.after_seq() {
        Ok(after) => after,
        Err(error) => return error.into_response(),
    };
    let key = match websocket_key(request.headers()) {
        Ok(key) => key,
        Err(error) => return error.into_response(),
    };
    if request.extensions().get::<hyper::upgrade::OnUpgrade>().is_none() {
        return ApiError::new(StatusCode::UPGRADE_REQUIRED, "this connection cannot be upgraded").into_response();
    }
    let on_upgrade = hyper::upgrade::on(&mut request);
    // Joined before answering, so nothing published after the handshake is missed.
    let viewer = Viewer::join(&state.hub, subscription);
    let shutdown = state.shutdown.clone();
    // The stream ends with the operator's session; the watch ends with the stream.
    let over = CancellationToken::new();
    let session_ended = crate::access::auth::watch_session(request.extensions().get().cloned(), over.clone());
    tokio::spawn(async move {
        let _over = over.drop_guard();
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config())).await;
                serve(socket, viewer, encoding, after, shutdown, session_ended).await;
            }
            Err(error) => tracing::debug!(%error, "live socket upgrade failed"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// Small buffers, eager writes, and the client message limit (frames and messages).
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        // One fragment and a control frame or two are ever buffered.
        .max_write_buffer_size(FRAGMENT_SIZE * 4)
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE))
}

/// The handshake's checks (RFC 6455 §4.2.1); the key, when it is a WebSocket request.
fn websocket_key(headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|value| value.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "expected a WebSocket upgrade (or use /api/live-view/sse)",
        ));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return Err(ApiError::invalid([(
            "sec-websocket-version",
            "expected 13".to_string(),
        )]));
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .cloned()
        .ok_or_else(|| ApiError::invalid([("sec-websocket-key", "missing".to_string())]))
}

/// Why a connection ends.
enum Stop {
    /// The peer did not take a frame in time: close with 4008.
    TooSlow,
    /// Close with this code.
    Close(u16, &'static str),
    /// Already closed, or nothing more can be sent.
    Gone,
}

/// One viewer's connection until it closes. Generic over the byte stream so tests can
/// drive it over an in-memory pipe.
async fn serve<S>(
    mut socket: WebSocketStream<S>,
    mut viewer: Viewer,
    encoding: Encoding,
    after: Option<u64>,
    shutdown: CancellationToken,
    session_ended: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut connection = Connection {
        socket: &mut socket,
        encoding,
        malformed: 0,
    };
    if let Err(stop) = connection.send_all(&viewer.start(after)).await {
        if matches!(stop, Stop::TooSlow) {
            viewer.closed_too_slow();
            connection.close(CLOSE_TOO_SLOW, "too slow").await;
        }
        return;
    }
    let mut ping = interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut silence = pin!(sleep_until(last_heard + SILENCE_LIMIT));
    // Made once: a fresh `cancelled()` future per frame is an allocation and a
    // registration per frame, for every viewer.
    let mut stopping = pin!(shutdown.cancelled());
    let mut session_over = pin!(session_ended.cancelled());
    loop {
        let step = tokio::select! {
            () = &mut stopping => Err(Stop::Close(CLOSE_AWAY, "server shutting down")),
            () = &mut session_over => Err(Stop::Close(CLOSE_SESSION_ENDED, "session ended: sign in again")),
            update = viewer.next() => match update {
                Update::Send(outgoing) => connection.send(&outgoing).await,
                Update::Resync(outgoing) => connection.send_all(&outgoing).await,
                Update::TooSlow => Err(Stop::TooSlow),
                Update::Closed => Err(Stop::Close(CLOSE_AWAY, "server shutting down")),
            },
            incoming = connection.socket.next() => {
                last_heard = Instant::now();
                match incoming {
                    None => Err(Stop::Gone),
                    Some(Err(WsError::Capacity(error))) => {
                        tracing::info!(%error, "live viewer sent a message over the limit; closing");
                        connection.close_unread(CLOSE_TOO_BIG, "message too big").await;
                        Err(Stop::Gone)
                    }
                    Some(Err(error)) => {
                        tracing::debug!(%error, "live socket failed");
                        Err(Stop::Gone)
                    }
                    Some(Ok(Message::Close(_))) => {
                        // tungstenite has queued the echo; sending it completes the close.
                        let _ = timeout(CLOSE_TIMEOUT, connection.socket.flush()).await;
                        Err(Stop::Gone)
                    }
                    Some(Ok(Message::Text(text))) => {
                        let parsed = serde_json::from_str(&text).map_err(|error| error.to_string());
                        connection.handle(&mut viewer, parsed).await
                    }
                    Some(Ok(Message::Binary(data))) => {
                        let parsed = rmp_serde::from_slice(&data).map_err(|error| error.to_string());
                        connection.handle(&mut viewer, parsed).await
                    }
                    // Pongs and pings only prove the peer is there; tungstenite answers pings.
                    Some(Ok(_)) => Ok(()),
                }
            }
            _ = ping.tick() => {
                match timeout(WRITE_TIMEOUT, connection.socket.send(Message::Ping(Bytes::new()))).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(Stop::Gone),
                    Err(_) => Err(Stop::TooSlow),
                }
            }
            () = &mut silence => {
                let deadline = last_heard + SILENCE_LIMIT;
                if deadline <= Instant::now() {
                    tracing::debug!("live viewer silent for {SILENCE_LIMIT:?}; closing");
                    Err(Stop::Close(CLOSE_SILENT, "no pong"))
                } else {
                    silence.as_mut().reset(deadline);
                    Ok(())
                }
            }
        };
        match step {
            Ok(()) => {}
            Err(Stop::Gone) => return,
            Err(Stop::Close(code, reason)) => {
                connection.close(code, reason).await;
                return;
            }
            Err(Stop::TooSlow) => {
                tracing::info!("live viewer too slow; closing");
                viewer.closed_too_slow();
                connection.close(CLOSE_TOO_SLOW, "too slow").await;
                return;
            }
        }
    }
}

struct Connection<'a, S> {
    socket: &'a mut WebSocketStream<S>,
    encoding: Encoding,
    malformed: u32,
}

impl<S> Connection<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Acts on one client message.
    async fn handle(&mut self, viewer: &mut Viewer, parsed: Result<ClientMessage, String>) -> Result<(), Stop> {
        let outcome = match parsed {
            Ok(ClientMessage::Subscribe { topics, filters }) => viewer.subscription.subscribe(topics, filters),
            Ok(ClientMessage::Unsubscribe { topics }) => viewer.subscription.unsubscribe(topics),
            Ok(ClientMessage::Resume { after_seq }) => {
                let replay = viewer.resume(after_seq);
                return self.send_all(&replay).await;
            }
            Err(error) => Err(format!("malformed message: {error}")),
        };
        let Err(error) = outcome else {
            return Ok(());
        };
        self.malformed += 1;
        if self.malformed >= MAX_MALFORMED {
            tracing::info!("live viewer sent {MAX_MALFORMED} malformed messages; closing");
            return Err(Stop::Close(CLOSE_POLICY, "too many malformed messages"));
        }
        self.send(&Outgoing::Control(viewer.error(error))).await
    }

    async fn send_all(&mut self, outgoing: &[Outgoing]) -> Result<(), Stop> {
        for outgoing in outgoing {
            self.send(outgoing).await?;
        }
        Ok(())
    }

    /// Sends one frame in this connection's encoding, within [`WRITE_TIMEOUT`].
    async fn send(&mut self, outgoing: &Outgoing) -> Result<(), Stop> {
        let (data, kind) = match (self.encoding, outgoing) {
            (Encoding::Json, Outgoing::Frame(published)) => (Bytes::from(published.json().clone()), OpData::Text),
            (Encoding::Json, Outgoing::Events(events)) => (Bytes::from(json_frame(events)), OpData::Text),
            (Encoding::Json, Outgoing::Control(message)) => (Bytes::from(message.json().clone()), OpData::Text),
            (Encoding::MsgPack, Outgoing::Frame(published)) => (published.msgpack().clone(), OpData::Binary),
            (Encoding::MsgPack, Outgoing::Events(events)) => (msgpack_frame(events), OpData::Binary),
            (Encoding::MsgPack, Outgoing::Control(message)) => (message.msgpack().clone(), OpData::Binary),
        };
        if data.is_empty() {
            // Could not be encoded (logged where it happened); nothing useful to send.
            return Ok(());
        }
        match timeout(WRITE_TIMEOUT, send_fragmented(self.socket, data, kind)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_) => Err(Stop::TooSlow),
        }
    }

    /// Sends a close frame and waits (briefly) for the echo.
    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from_static(reason),
        };
        let closing = async {
            self.socket.close(Some(frame)).await?;
            while let Some(Ok(_)) = self.socket.next().await {}
            Ok::<(), WsError>(())
        };
        let _ = timeout(CLOSE_TIMEOUT, closing).await;
    }

    /// Closes after a read error, when the rest of the peer's message can no longer be
    /// parsed: sends the close frame, then discards what the peer still sends until it
    /// hangs up, so the close frame is not lost to a reset.
    async fn close_unread(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from_static(reason),
        };
        if timeout(CLOSE_TIMEOUT, self.socket.close(Some(frame))).await.is_err() {
            return;
        }
        let drain = async {
            let mut buffer = [0u8; 1024];
            let stream = self.socket.get_mut();
            while let Ok(read) = stream.read(&mut buffer).await
                && read > 0
            {}
        };
        let _ = timeout(CLOSE_TIMEOUT, drain).await;
    }
}

/// Writes a message as fragments of [`FRAGMENT_SIZE`] so at most one fragment sits in
/// the socket's write buffer, whatever the message's size.
async fn send_fragmented<S>(socket: &mut WebSocketStream<S>, mut data: Bytes, kind: OpData) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut opcode = OpCode::Data(kind);
    loop {
        let is_final = data.len() <= FRAGMENT_SIZE;
        let fragment = if is_final {
            std::mem::take(&mut data)
        } else {
            data.split_to(FRAGMENT_SIZE)
        };
        socket
            .feed(Message::Frame(Frame::message(fragment, opcode, is_final)))
            .await?;
        if is_final {
            return socket.flush().await;
        }
        opcode = OpCode::Data(OpData::Continue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::Subscription;
    use wire::{Envelope, LiveEvent, WorkerIdle, WorkerKind};

    async fn pair() -> (
        WebSocketStream<tokio::io::DuplexStream>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (server, client) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(server, Role::Server, Some(config())).await;
        let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        (server, client)
    }

    #[tokio::test]
    async fn large_messages_arrive_whole_though_sent_in_fragments() {
        let (mut server, mut client) = pair().await;
        let text = "é".repeat(FRAGMENT_SIZE * 3);
        let sent = Bytes::from(text.clone());
        let send = send_fragmented(&mut server, sent, OpData::Text);
        let receive = client.next();
        let (sent, received) = tokio::join!(send, receive);
        sent.expect("sent");
        let Some(Ok(Message::Text(received))) = received else {
            panic!("one text message")
        };
        assert_eq!(received.as_str(), text, "fragments split inside characters are joined");
    }

    #[tokio::test]
    async fn an_idle_viewer_connection_is_small() {
        let hub = Arc::new(LiveHub::new());
        hub.publish(LiveEvent::WorkerIdle(WorkerIdle {
            worker_id: "w".into(),
            kind: WorkerKind::Mail,
        }));
        let (server, mut client) = pair().await;
        let viewer = Viewer::join(&hub, Subscription::default());
        let shutdown = CancellationToken::new();
        let task = serve(
            server,
            viewer,
            Encoding::Json,
            None,
            shutdown.clone(),
            CancellationToken::new(),
        );
        // The whole per-viewer task, as it sits waiting: the bound that matters for
        // thousands of idle viewers (their buffers are a few KiB more).
        assert!(
            std::mem::size_of_val(&task) < 4 * 1024,
            "the viewer task is {} bytes",
            std::mem::size_of_val(&task)
        );
        let task = tokio::spawn(task);
        let Some(Ok(Message::Text(first))) = client.next().await else {
            panic!("a snapshot first")
        };
        let envelope: Envelope = serde_json::from_str(&first).expect("envelope");
        assert!(matches!(envelope.event, LiveEvent::Snapshot(_)));
        assert_eq!(envelope.seq, 1);
        shutdown.cancel();
        let Some(Ok(Message::Close(Some(frame)))) = client.next().await else {
            panic!("a close frame")
        };
        assert_eq!(u16::from(frame.code), CLOSE_AWAY);
        drop(client);
        task.await.expect("the task ends");
    }

    #[tokio::test(start_paused = true)]
    async fn pings_every_30_s_and_closes_a_peer_silent_for_75_s() {
        let hub = Arc::new(LiveHub::new());
        let (server, mut client) = pair().await;
        let viewer = Viewer::join(&hub, Subscription::default());
        let task = tokio::spawn(serve(
            server,
            viewer,
            Encoding::Json,
            None,
            CancellationToken::new(),
            CancellationToken::new(),
        ));
        // Reading nothing, the client answers no ping (in virtual time). It wakes while the
        // server still waits for the close echo, so the pipe is still there to read.
        tokio::time::sleep(SILENCE_LIMIT + CLOSE_TIMEOUT / 2).await;
        let mut pings = 0;
        let code = loop {
            match client.next().await {
                Some(Ok(Message::Ping(_))) => pings += 1,
                Some(Ok(Message::Close(frame))) => break frame.map(|frame| u16::from(frame.code)),
                Some(Ok(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(code, Some(CLOSE_SILENT));
        assert_eq!(pings, 2, "at 30 s and 60 s");
        task.await.expect("the task ends");
        assert_eq!(hub.viewer_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_answers_pings_stays() {
        let hub = Arc::new(LiveHub::new());
        let (server, mut client) = pair().await;
        let viewer = Viewer::join(&hub, Subscription::default());
        let _task = tokio::spawn(serve(
            server,
            viewer,
            Encoding::Json,
            None,
            CancellationToken::new(),
            CancellationToken::new(),
        ));
        let mut pings = 0;
        // Reading is what makes tungstenite answer pings with pongs.
        let read = tokio::time::timeout(SILENCE_LIMIT * 2, async {
            loop {
                match client.next().await {
                    Some(Ok(Message::Ping(_))) => pings += 1,
                    Some(Ok(Message::Close(frame))) => panic!("closed: {frame:?}"),
                    Some(Ok(_)) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
        .await;
        assert!(read.is_err(), "still open after {:?}", SILENCE_LIMIT * 2);
        assert!(pings >= 4, "{pings} pings");
    }
}

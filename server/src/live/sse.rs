//! `GET /api/live-view/sse`: the live stream as server-sent events, for clients that
//! cannot or would rather not speak WebSocket.
//!
//! Each event is `id: <seq>`, `event: <topic>`, `data: <Envelope JSON>`, one Envelope per
//! event (never an array). The query mirrors a `subscribe` message: `topics`, `flows`,
//! `types`, `servers`, each comma-separated. It starts with a `stream:snapshot`, or, when
//! the request carries `Last-Event-ID` (or `?lastEventId=` for clients that cannot set
//! headers), with exactly the events after it while they are kept, otherwise a
//! `stream:gap` and a fresh snapshot. `stream:gap` and `stream:error` carry no `id`, so a
//! reconnecting EventSource resumes from the last event or snapshot it really got.
//!
//! Bounded like the WebSocket: the server only produces an event when the connection can
//! take it, a viewer that falls behind the fan-out gets a gap and a snapshot, and the third
//! time within a minute a `stream:error` ("too slow") ends the response. A comment is
//! sent every 15 s to keep proxies from closing an idle stream.

use std::{collections::VecDeque, convert::Infallible, pin::Pin, sync::Arc, time::Duration};

use axum::{
    Extension,
    extract::{Query, State},
    http::HeaderMap,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::{
    Encoded, LiveSocketState,
    filter::{StreamQuery, parse_seq},
    viewer::{Outgoing, Update, Viewer},
};

/// How often an idle stream gets a keep-alive comment.
pub const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn live_sse(
    State(state): State<LiveSocketState>,
    Query(query): Query<StreamQuery>,
    signed_in: Option<Extension<crate::access::auth::SignedIn>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = state.origins.check(&headers) {
        return refused.into_response();
    }
    let subscription = match query.subscription() {
        Ok(subscription) => subscription,
        Err(error) => return error.into_response(),
    };
    let header_id = headers.get("last-event-id").and_then(|value| value.to_str().ok());
    let after = match header_id {
        Some(id) => parse_seq("Last-Event-ID", Some(id)),
        None => match query.last_event_id.as_deref() {
            Some(id) => parse_seq("lastEventId", Some(id)),
            None => query.after_seq(),
        },
    };
    let after = match after {
        Ok(after) => after,
        Err(error) => return error.into_response(),
    };
    let mut viewer = Viewer::join(&state.hub, subscription);
    let first = viewer.start(after);
    let over = tokio_util::sync::CancellationToken::new();
    let session_ended =
        crate::access::auth::watch_session(signed_in.map(|Extension(signed_in)| signed_in), over.clone());
    let mut stream = SseStream {
        viewer,
        pending: VecDeque::new(),
        // Made once: a new shutdown future per event is measurable with many viewers.
        shutdown: Box::pin(state.shutdown.clone().cancelled_owned()),
        session_ended: Box::pin(session_ended.cancelled_owned()),
        _over: over.drop_guard(),
        ending: false,
    };
    stream.queue(first);
    let events = futures_util::stream::unfold(stream, |mut stream| async move {
        let event = stream.next_event().await?;
        Some((Ok::<_, Infallible>(event), stream))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(SSE_KEEP_ALIVE))
        .into_response()
}

struct SseStream {
    viewer: Viewer,
    /// Messages already due, sent one event at a time: at most one frame's worth, or a
    /// replay (shared with the history, so it costs pointers, not copies).
    pending: VecDeque<Arc<Encoded>>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The operator's session ended: the stream says so and ends.
    session_ended: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Ends the session's watch when the stream is dropped.
    _over: tokio_util::sync::DropGuard,
    /// The stream ends once `pending` is sent.
    ending: bool,
}

impl SseStream {
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                return Some(event(&message));
            }
            if self.ending {
                return None;
            }
            let viewer = &mut self.viewer;
            let update = tokio::select! {
                () = &mut self.shutdown => return None,
                () = &mut self.session_ended => {
                    self.pending.push_back(viewer.error("session ended: sign in again".into()));
                    self.ending = true;
                    continue;
                }
                update = viewer.next() => update,
            };
            match update {
                Update::Send(outgoing) => self.queue([outgoing]),
                Update::Resync(outgoing) => self.queue(outgoing),
                Update::TooSlow => {
                    viewer.closed_too_slow();
                    let error = "too slow: fell behind the stream 3 times within 60 s";
                    self.pending.push_back(viewer.error(error.into()));
                    self.ending = true;
                }
                Update::Closed => return None,
            }
        }
    }

    fn queue(&mut self, outgoing: impl IntoIterator<Item = Outgoing>) {
        for outgoing in outgoing {
            match outgoing {
                Outgoing::Frame(published) => self.pending.extend(published.events.iter().cloned()),
                Outgoing::Events(events) => self.pending.extend(events),
                Outgoing::Control(message) => self.pending.push_back(message),
            }
        }
    }
}

/// One SSE event: the topic as `event`, the Envelope as `data`, the seq as `id` except for
/// gaps and errors (a client resuming from those would skip what follows them).
fn event(message: &Encoded) -> Event {
    let event = Event::default().event(message.tags.topic).data(message.json().as_str());
    let is_gap_or_error = matches!(message.tags.topic, "stream:gap" | "stream:error");
    if is_gap_or_error {
        event
    } else {
        event.id(message.seq.to_string())
    }
}

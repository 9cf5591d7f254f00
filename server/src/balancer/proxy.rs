//! The proxy itself: forwards each request to the chosen app server and relays the
//! answer; for a WebSocket upgrade it relays the handshake and then tunnels bytes both
//! ways until either side closes.
//!
//! Request bodies are read whole (up to [`MAX_BODY`]) before forwarding so that a
//! request refused at connect time — the server is stopped — can be sent to another
//! server without the caller noticing. A request that reached a server is never re-sent.

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use wire::SystemStage;

use super::Balancer;
use crate::{api_error::ApiError, controls::DelayPoint, telemetry::journeys::kind_of_route};

/// The largest request body the balancer forwards.
pub const MAX_BODY: usize = 1024 * 1024;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");
/// `X-LiveView-Step: <token>` on a request starts it in step mode (it waits at every
/// stage boundary until `POST /api/live-view/requests/{id}/step`) when the token is one
/// the dashboard issued and still valid. The header never goes further than here.
pub static X_LIVEVIEW_STEP: HeaderName = HeaderName::from_static("x-liveview-step");
/// The component name stages of the balancer carry.
const COMPONENT: &str = "load-balancer";

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub async fn proxy(State(balancer): State<Balancer>, request: Request) -> Response {
    let received = std::time::Instant::now();
    let (mut parts, body) = request.into_parts();
    // The app servers hear of one address, the client's, whatever the request claimed.
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<crate::access::Peer>>()
        .map(|info| info.0.0.ip());
    if let Some(peer) = peer {
        let client = balancer.trusted_proxies.client(peer, &parts.headers);
        parts.headers.insert(
            &crate::access::proxies::X_FORWARDED_FOR,
            HeaderValue::from_str(&client.to_string()).expect("an address is a header value"),
        );
    } else {
        parts.headers.remove(&crate::access::proxies::X_FORWARDED_FOR);
    }
    let request_id = ensure_request_id(&mut parts.headers);
    let upgrade = is_websocket_upgrade(&parts.headers);
    // Business actions are traced as journeys; other requests only get their id.
    let kind = kind_of_route(parts.method.as_str(), parts.uri.path()).filter(|_| !upgrade);
    let telemetry = &balancer.telemetry;
    let step_token = parts.headers.remove(&X_LIVEVIEW_STEP);
    let steps = balancer.controls.steps();
    if kind.is_some()
        && step_token
            .as_ref()
            .and_then(|value| value.to_str().ok())
            .is_some_and(|token| steps.token_valid(token))
    {
        steps.start(&request_id);
    }
    balancer.controls.inject(DelayPoint::LoadBalancer).await;
    let client_upgrade = parts.extensions.remove::<OnUpgrade>();
    let sticky_key = if upgrade { sticky_key(&parts) } else { None };
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(_) => {
            let error = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {MAX_BODY} bytes"),
            );
            return with_request_id(error.into_response(), &request_id);
        }
    };

    if let Some(kind) = kind {
        telemetry
            .stage_since(&request_id, SystemStage::LbReceived, COMPONENT, received)
            .kind(kind)
            .meta("method", parts.method.as_str())
            .meta("path", parts.uri.path())
            .done();
        balancer.controls.boundary(&request_id).await;
    }
    let mut refused = Vec::new();
    loop {
        let Some(index) = balancer.choose(sticky_key.as_deref(), &refused) else {
            let error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no healthy app server");
            return with_request_id(error.into_response(), &request_id);
        };
        let backend = balancer.backends[index].clone();
        if kind.is_some() {
            telemetry
                .stage(&request_id, SystemStage::LbForwarded, COMPONENT)
                .meta("server", backend.id.as_str())
                .meta("algorithm", balancer.algorithm().name())
                .meta("retriedAfterRefusal", refused.len())
                .done();
            balancer.controls.boundary(&request_id).await;
        }
        let active = backend.begin();
        let outgoing = match forward_request(&parts, body.clone(), balancer.scheme, backend.addr, upgrade) {
            Ok(outgoing) => outgoing,
            Err(error) => {
                tracing::warn!(%error, "request could not be forwarded");
                return with_request_id(
                    ApiError::new(StatusCode::BAD_REQUEST, "malformed request").into_response(),
                    &request_id,
                );
            }
        };
        let mut response = match balancer.client.request(outgoing).await {
            Ok(response) => response,
            Err(error) if error.is_connect() && server_unreachable(&error) => {
                balancer.eject(index);
                refused.push(index);
                continue;
            }
            Err(error) if error.is_connect() => {
                // This process is out of descriptors (or memory): the server is not at
                // fault, so it keeps its place and the client may try again.
                tracing::warn!(server = %backend.id, %error, "could not open a connection to an app server");
                let error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "balancer overloaded, try again");
                return with_request_id(error.into_response(), &request_id);
            }
            Err(error) => {
                tracing::warn!(server = %backend.id, %error, "app server failed mid-request");
                let error = ApiError::new(StatusCode::BAD_GATEWAY, "app server failed");
                return served_by(with_request_id(error.into_response(), &request_id), &backend.id);
            }
        };
        backend.handled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);

        if upgrade && response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let server_upgrade = hyper::upgrade::on(&mut response);
            let sticky = sticky_key.clone().map(|key| balancer.hold_sticky(key, index));
            let shutdown = balancer.shutdown.clone();
            if let Some(client_upgrade) = client_upgrade {
                balancer.tunnels.spawn(async move {
                    // Both held for as long as the tunnel lives.
                    let _active = active;
                    let _sticky = sticky;
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tunnel(client_upgrade, server_upgrade) => {}
                    }
                });
            }
            let (parts, _) = response.into_parts();
            return served_by(
                with_request_id(Response::from_parts(parts, Body::empty()), &request_id),
                &backend.id,
            );
        }

        let (mut parts, incoming) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        return served_by(
            with_request_id(Response::from_parts(parts, Body::new(incoming)), &request_id),
            &backend.id,
        );
    }
}

/// Whether a failed connect says the server is gone (refused, reset, timed out,
/// unreachable), as opposed to this process being unable to open a socket at all (too
/// many open files, no buffer space), which must not take a healthy server out.
fn server_unreachable(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::TimedOut
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
            );
        }
        source = cause.source();
    }
    // No I/O cause to go by: a failed connect counts against the server.
    true
}

/// Copies bytes both ways between the upgraded client and server connections.
async fn tunnel(client: OnUpgrade, server: OnUpgrade) {
    let (client, server) = match tokio::try_join!(client, server) {
        Ok(both) => both,
        Err(error) => {
            tracing::debug!(%error, "websocket upgrade did not complete");
            return;
        }
    };
    let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

fn forward_request(
    parts: &Parts,
    body: Bytes,
    scheme: &str,
    addr: std::net::SocketAddr,
    upgrade: bool,
) -> Result<Request, axum::http::Error> {
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{scheme}://{addr}{path}"))
        .version(axum::http::Version::HTTP_11);
    if let Some(headers) = builder.headers_mut() {
        *headers = parts.headers.clone();
        if !upgrade {
            strip_hop_by_hop(headers);
        }
        headers.insert(
            header::HOST,
            HeaderValue::from_str(&addr.to_string()).unwrap_or(HeaderValue::from_static("localhost")),
        );
    }
    builder.body(Body::from(body))
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// Keeps a caller's request id if it is sane, otherwise mints one (UUIDv7: sortable by time).
fn ensure_request_id(headers: &mut HeaderMap) -> String {
    let given = headers
        .get(&X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_valid_request_id(id))
        .map(str::to_string);
    let id = given.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(X_REQUEST_ID.clone(), value);
    }
    id
}

fn is_valid_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// The user a WebSocket belongs to, for stickiness: the user part of the session token
/// (`<user id>.<secret>`), from `?token=` or `Authorization: Bearer`. Routing only: the
/// app server still authenticates the whole token.
fn sticky_key(parts: &Parts) -> Option<String> {
    let from_query = parts.uri.query().and_then(|query| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| *name == "token")
            .map(|(_, value)| value.to_string())
    });
    let from_header = || {
        parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::to_string)
    };
    let token = from_query.or_else(from_header)?;
    let user = token.split('.').next().filter(|user| !user.is_empty())?;
    Some(user.to_string())
}

fn with_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}

fn served_by(mut response: Response, server: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(server) {
        response.headers_mut().insert(X_SERVED_BY.clone(), value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::empty()).expect("request").into_parts().0
    }

    #[test]
    fn sticky_key_is_the_user_part_of_the_token() {
        assert_eq!(sticky_key(&parts("/ws?token=u42.secret", &[])), Some("u42".into()));
        assert_eq!(
            sticky_key(&parts("/ws", &[("authorization", "Bearer u7.abc")])),
            Some("u7".into())
        );
        assert_eq!(sticky_key(&parts("/ws?other=1", &[])), None);
        assert_eq!(sticky_key(&parts("/ws?token=.x", &[])), None);
    }

    #[test]
    fn caller_request_ids_are_kept_only_when_sane() {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("abc-123"));
        assert_eq!(ensure_request_id(&mut headers), "abc-123");
        headers.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("has spaces"));
        let minted = ensure_request_id(&mut headers);
        assert_ne!(minted, "has spaces");
        assert!(uuid::Uuid::parse_str(&minted).is_ok());
        assert_eq!(headers[&X_REQUEST_ID], minted.as_str());
    }

    #[test]
    fn hop_by_hop_headers_do_not_cross_the_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-private"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::CONTENT_TYPE));
    }

    /// An error whose cause is `io`, as hyper's connect errors wrap theirs.
    #[derive(Debug)]
    struct Caused(std::io::Error);

    impl std::fmt::Display for Caused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connect error")
        }
    }

    impl std::error::Error for Caused {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn only_a_server_side_connect_failure_takes_the_server_out() {
        use std::io::{Error, ErrorKind};
        assert!(server_unreachable(&Caused(Error::from(ErrorKind::ConnectionRefused))));
        assert!(server_unreachable(&Caused(Error::from(ErrorKind::TimedOut))));
        // EMFILE and ENOBUFS on Linux: this process cannot open a socket at all.
        assert!(!server_unreachable(&Caused(Error::from_raw_os_error(24))));
        assert!(!server_unreachable(&Caused(Error::from_raw_os_error(105))));
    }

    #[tokio::test]
    async fn a_closed_port_is_a_refusal() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address").port()
        };
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
        let request = axum::http::Request::get(format!("http://127.0.0.1:{port}/"))
            .body(Body::empty())
            .expect("request");
        let error = client.request(request).await.expect_err("nothing listens there");
        assert!(error.is_connect());
        assert!(server_unreachable(&error));
    }
}

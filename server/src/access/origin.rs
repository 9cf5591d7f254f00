//! Who may talk to the dashboard from a browser, judged against the dashboard's own
//! configured address and names, never against what a request says about itself: a
//! `Host` header is chosen by whoever controls DNS (rebinding points `evil.example` at
//! 127.0.0.1), so it is checked, not trusted.
//!
//! - **Host**: the dashboard's bound address (any IP literal when bound to all
//!   interfaces; `localhost` and the other loopback literals when bound to loopback) on
//!   its port, or one of `--dashboard-names`. Anything else is refused outright.
//! - **Origin** (sent by browsers on every cross-origin request, on every `POST`/`PUT`,
//!   and on WebSocket and EventSource connects): absent (curl, programs), one of the
//!   dashboard's own origins as above, or in `--allowed-origins` (`*` allows any).

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, StatusCode, Uri, header, uri::Authority};

use crate::api_error::ApiError;

#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// Where the dashboard listens.
    own: SocketAddr,
    /// `--dashboard-names`: lower case, with the port when one was given.
    names: Vec<(String, Option<u16>)>,
    any: bool,
    /// `--allowed-origins`, normalized: `scheme://host:port`, lower case, the port always
    /// written.
    allowed: Vec<String>,
    /// Entries that are not URLs (`null`), compared as given.
    literal: Vec<String>,
}

impl OriginPolicy {
    /// `own` is the bound address (its port, not the configured 0).
    pub fn new(own: SocketAddr, names: &[String], origins: &[String]) -> Self {
        let mut policy = Self {
            own,
            names: Vec::new(),
            any: false,
            allowed: Vec::new(),
            literal: Vec::new(),
        };
        for name in names.iter().map(|name| name.trim()).filter(|name| !name.is_empty()) {
            match name.parse::<Authority>() {
                Ok(authority) => policy.names.push((unbracket(authority.host()), authority.port_u16())),
                Err(_) => tracing::warn!(name, "ignored a --dashboard-names entry that is not a host name"),
            }
        }
        for origin in origins
            .iter()
            .map(|origin| origin.trim())
            .filter(|origin| !origin.is_empty())
        {
            if origin == "*" {
                policy.any = true;
            } else if let Some((scheme, host, port)) = parse_origin(origin) {
                policy.allowed.push(format!("{scheme}://{host}:{port}"));
            } else {
                policy.literal.push(origin.to_string());
            }
        }
        policy
    }

    /// Whether `host` (lower case, no brackets) on `port` is the dashboard itself.
    fn is_own(&self, host: &str, port: u16) -> bool {
        if let Some((_, wanted)) = self.names.iter().find(|(name, _)| name == host) {
            return wanted.is_none_or(|wanted| wanted == port);
        }
        if port != self.own.port() {
            return false;
        }
        let bound = self.own.ip();
        match host.parse::<IpAddr>() {
            Ok(ip) => bound.is_unspecified() || ip == bound || (bound.is_loopback() && ip.is_loopback()),
            Err(_) => host == "localhost" && (bound.is_loopback() || bound.is_unspecified()),
        }
    }

    /// Whether the request names the dashboard in its `Host` header.
    pub fn host_allowed(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<Authority>().ok())
            .is_some_and(|authority| self.is_own(&unbracket(authority.host()), authority.port_u16().unwrap_or(80)))
    }

    /// 421 `{"error": "host not allowed"}` unless the request's `Host` is the dashboard's.
    pub fn check_host(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.host_allowed(headers) {
            return Ok(());
        }
        tracing::debug!(host = ?headers.get(header::HOST), "dashboard refused a foreign Host");
        Err(ApiError::new(StatusCode::MISDIRECTED_REQUEST, "host not allowed"))
    }

    /// 403 `{"error": "origin not allowed"}` unless the request's `Origin` is allowed.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.allows(headers) {
            return Ok(());
        }
        tracing::debug!(origin = ?headers.get(header::ORIGIN), "dashboard refused a foreign origin");
        Err(ApiError::new(StatusCode::FORBIDDEN, "origin not allowed"))
    }

    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        if self.any {
            return true;
        }
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let Some((scheme, host, port)) = parse_origin(origin) else {
            return self.literal.iter().any(|literal| literal == origin.trim());
        };
        self.is_own(&host, port) || self.allowed.contains(&format!("{scheme}://{host}:{port}"))
    }
}

/// `[::1]` → `::1`, lower case.
fn unbracket(host: &str) -> String {
    host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()
}

/// `https://Example.com` → (`https`, `example.com`, 443).
fn parse_origin(origin: &str) -> Option<(String, String, u16)> {
    let uri: Uri = origin.trim().trim_end_matches('/').parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = unbracket(uri.host()?);
    let port = uri.port_u16().unwrap_or(default_port(&scheme));
    Some((scheme, host, port))
}

fn default_port(scheme: &str) -> u16 {
    match scheme {
        "https" | "wss" => 443,
        _ => 80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&'static str>, host: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static(host));
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
        }
        headers
    }

    fn loopback() -> OriginPolicy {
        OriginPolicy::new("127.0.0.1:3000".parse().expect("addr"), &[], &[])
    }

    #[test]
    fn no_origin_and_the_dashboards_own_origins_are_allowed() {
        let policy = loopback();
        assert!(policy.allows(&headers(None, "127.0.0.1:3000")));
        assert!(policy.allows(&headers(Some("http://127.0.0.1:3000"), "127.0.0.1:3000")));
        assert!(policy.allows(&headers(Some("http://LOCALHOST:3000"), "localhost:3000")));
        assert!(policy.allows(&headers(Some("http://[::1]:3000"), "[::1]:3000")));
        assert!(!policy.allows(&headers(Some("http://127.0.0.1:3001"), "127.0.0.1:3000")));
        assert!(!policy.allows(&headers(Some("http://evil.example"), "127.0.0.1:3000")));
        assert!(!policy.allows(&headers(Some("null"), "127.0.0.1:3000")));
    }

    // Regression: same-origin was judged against `Host`, which DNS rebinding controls.
    #[test]
    fn a_rebound_name_is_neither_a_host_nor_an_origin_of_the_dashboard() {
        let policy = loopback();
        let rebound = headers(Some("http://evil.example:3000"), "evil.example:3000");
        assert!(!policy.host_allowed(&rebound));
        assert!(!policy.allows(&rebound), "Origin equal to Host is not enough");
        let error = policy.check_host(&rebound).expect_err("refused");
        assert_eq!(error.status, StatusCode::MISDIRECTED_REQUEST);
        assert!(!policy.host_allowed(&HeaderMap::new()), "no Host at all");
        assert!(policy.host_allowed(&headers(None, "127.0.0.1:3000")));
        assert!(policy.host_allowed(&headers(None, "localhost:3000")));
        assert!(!policy.host_allowed(&headers(None, "127.0.0.1:3001")));
        assert!(
            !policy.host_allowed(&headers(None, "10.0.0.5:3000")),
            "bound to loopback only"
        );
    }

    #[test]
    fn bound_to_every_interface_any_address_is_the_dashboard_but_names_must_be_listed() {
        let policy = OriginPolicy::new(
            "0.0.0.0:3000".parse().expect("addr"),
            &["Ops.Example".into(), "proxy.example:8443".into()],
            &[],
        );
        assert!(policy.host_allowed(&headers(None, "10.0.0.5:3000")));
        assert!(policy.host_allowed(&headers(None, "ops.example")));
        assert!(policy.host_allowed(&headers(None, "proxy.example:8443")));
        assert!(!policy.host_allowed(&headers(None, "proxy.example:3000")));
        assert!(!policy.host_allowed(&headers(None, "evil.example:3000")));
        assert!(policy.allows(&headers(Some("https://ops.example"), "ops.example")));
        assert!(!policy.allows(&headers(Some("https://evil.example"), "ops.example")));
    }

    #[test]
    fn listed_origins_are_allowed_whatever_their_spelling() {
        let own: SocketAddr = "127.0.0.1:3000".parse().expect("addr");
        let policy = OriginPolicy::new(
            own,
            &[],
            &["https://Ops.Example/".into(), "http://localhost:8080".into()],
        );
        assert!(policy.allows(&headers(Some("https://ops.example:443"), "127.0.0.1:3000")));
        assert!(policy.allows(&headers(Some("http://localhost:8080"), "127.0.0.1:3000")));
        assert!(!policy.allows(&headers(Some("http://ops.example"), "127.0.0.1:3000")));
        assert!(OriginPolicy::new(own, &[], &["*".into()]).allows(&headers(Some("http://any.example"), "x:1")));
        assert!(OriginPolicy::new(own, &[], &["null".into()]).allows(&headers(Some("null"), "x:1")));
    }

    #[test]
    fn a_refusal_is_a_403_with_the_error_json() {
        let error = loopback()
            .check(&headers(Some("http://evil.example"), "127.0.0.1:3000"))
            .expect_err("refused");
        assert_eq!(error.status, StatusCode::FORBIDDEN);
        assert_eq!(
            serde_json::to_value(&error).expect("json"),
            serde_json::json!({"error": "origin not allowed"})
        );
    }
}

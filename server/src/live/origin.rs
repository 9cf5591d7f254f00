//! Which web pages may open the live stream. A browser sends `Origin` with every
//! WebSocket and EventSource request; other clients send none. Allowed: no `Origin`, the
//! dashboard's own origin (same host and port as `Host`), and the `--allowed-origins`
//! list (`*` allows any). Anything else is refused with 403 before the upgrade.

use axum::http::{HeaderMap, StatusCode, Uri, header, uri::Authority};

use crate::api_error::ApiError;

#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    any: bool,
    /// Normalized: `scheme://host:port`, lower case, the port always written.
    allowed: Vec<String>,
    /// Entries that are not URLs (`null`), compared as given.
    literal: Vec<String>,
}

impl OriginPolicy {
    pub fn new(origins: &[String]) -> Self {
        let mut policy = Self::default();
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

    /// 403 `{"error": "origin not allowed"}` unless the request's `Origin` is allowed.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.allows(headers) {
            return Ok(());
        }
        tracing::debug!(origin = ?headers.get(header::ORIGIN), "live stream refused a foreign origin");
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
        let same_origin = headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<Authority>().ok())
            .is_some_and(|authority| {
                authority.host().eq_ignore_ascii_case(&host)
                    && authority.port_u16().unwrap_or(default_port(&scheme)) == port
            });
        same_origin || self.allowed.contains(&format!("{scheme}://{host}:{port}"))
    }
}

/// `https://Example.com` → (`https`, `example.com`, 443).
fn parse_origin(origin: &str) -> Option<(String, String, u16)> {
    let uri: Uri = origin.trim().trim_end_matches('/').parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
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

    #[test]
    fn no_origin_and_the_same_origin_are_allowed() {
        let policy = OriginPolicy::new(&[]);
        assert!(policy.allows(&headers(None, "127.0.0.1:3000")));
        assert!(policy.allows(&headers(Some("http://127.0.0.1:3000"), "127.0.0.1:3000")));
        assert!(policy.allows(&headers(Some("http://LOCALHOST:3000"), "localhost:3000")));
        assert!(policy.allows(&headers(Some("https://view.example"), "view.example")));
        assert!(policy.allows(&headers(Some("http://[::1]:3000"), "[::1]:3000")));
        assert!(!policy.allows(&headers(Some("http://127.0.0.1:3001"), "127.0.0.1:3000")));
        assert!(!policy.allows(&headers(Some("http://evil.example"), "127.0.0.1:3000")));
        assert!(!policy.allows(&headers(Some("null"), "127.0.0.1:3000")));
    }

    #[test]
    fn listed_origins_are_allowed_whatever_their_spelling() {
        let policy = OriginPolicy::new(&["https://Ops.Example/".into(), "http://localhost:8080".into()]);
        assert!(policy.allows(&headers(Some("https://ops.example:443"), "127.0.0.1:3000")));
        assert!(policy.allows(&headers(Some("http://localhost:8080"), "127.0.0.1:3000")));
        assert!(!policy.allows(&headers(Some("http://ops.example"), "127.0.0.1:3000")));
        assert!(OriginPolicy::new(&["*".into()]).allows(&headers(Some("http://any.example"), "x:1")));
        assert!(OriginPolicy::new(&["null".into()]).allows(&headers(Some("null"), "x:1")));
    }

    #[test]
    fn a_refusal_is_a_403_with_the_error_json() {
        let error = OriginPolicy::new(&[])
            .check(&headers(Some("http://evil.example"), "127.0.0.1:3000"))
            .expect_err("refused");
        assert_eq!(error.status, StatusCode::FORBIDDEN);
        assert_eq!(
            serde_json::to_value(&error).expect("json"),
            serde_json::json!({"error": "origin not allowed"})
        );
    }
}

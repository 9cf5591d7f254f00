//! The browser application's files, served by two listeners: the dashboard's `/` (the
//! Live View, for operators) and the balancer's `/` (the end users' client). Both are
//! the one Trunk build; the balancer's `index.html` carries
//! `<meta name="liveview-surface" content="client">`, which is how the wasm knows which
//! of the two it is (one bundle instead of two builds; README, "The end users' client").

use std::path::Path;

use axum::{
    Router,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use tower_http::{
    compression::CompressionLayer,
    services::{ServeDir, ServeFile},
};

/// Which application `index.html` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The Live View (the dashboard's listener).
    Dashboard,
    /// The end users' client (the balancer's listener).
    Client,
}

/// The `<meta>` the client's `index.html` carries; `app::spa` reads it.
pub const CLIENT_MARKER: &str = r#"<meta name="liveview-surface" content="client" />"#;

/// Serves the build in `site` with long-lived caching for Trunk's content-hashed files
/// and revalidation for everything else; unknown paths get `index.html` so client-side
/// links work.
pub fn spa(site: &Path, surface: Surface) -> Router {
    let index = site.join("index.html");
    if !index.is_file() {
        tracing::warn!(site = %site.display(), "the SPA is not built here; `/` will say so (run `make build`)");
        return Router::new().fallback(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CACHE_CONTROL, "no-store")],
                "The Live View SPA is not built. Run `make build` (or `make run`), or point --site at Trunk's output.\n",
            )
        });
    }
    let router = match surface {
        Surface::Dashboard => Router::new().fallback_service(ServeDir::new(site).fallback(ServeFile::new(index))),
        Surface::Client => {
            let html = std::fs::read_to_string(&index).unwrap_or_default();
            let page = Html(client_index(&html));
            let serve_page = get(move || std::future::ready(page.clone()));
            Router::new()
                .route("/", serve_page.clone())
                .route("/index.html", serve_page.clone())
                .fallback_service(
                    ServeDir::new(site)
                        .append_index_html_on_directories(false)
                        .fallback(serve_page.with_state(())),
                )
        }
    };
    router
        .layer(middleware::from_fn(cache_headers))
        .layer(CompressionLayer::new())
}

/// The dashboard's `index.html` as the client's: the marker, and its own title.
fn client_index(html: &str) -> String {
    let mut page = html.replacen(
        "<title>Live View</title>",
        "<title>Live View — your notifications</title>",
        1,
    );
    // In the head when there is one; a page without (HTML allows it) gets it up front.
    let at = page.find("</head>").unwrap_or_else(|| {
        let doctype = page
            .get(..9)
            .is_some_and(|start| start.eq_ignore_ascii_case("<!doctype"));
        if doctype {
            page.find('>').map_or(0, |end| end + 1)
        } else {
            0
        }
    });
    page.insert_str(at, CLIENT_MARKER);
    page
}

async fn cache_headers(request: Request, next: Next) -> Response {
    let policy = cache_policy(request.uri().path());
    let mut response = next.run(request).await.into_response();
    if response.status().is_success() {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    }
    response
}

/// Trunk names built assets `name-<hash>[_bg].ext`, the hash a 64-bit number in hex
/// without leading zeros (so up to 16 digits, fewer one build in 16); those never change
/// and may be cached for a year. Everything else (index.html above all) is revalidated.
fn cache_policy(path: &str) -> &'static str {
    let file = path.rsplit('/').next().unwrap_or_default();
    let stem = file.split('.').next().unwrap_or_default().trim_end_matches("_bg");
    let hashed = stem
        .rsplit_once('-')
        .is_some_and(|(_, hash)| (8..=16).contains(&hash.len()) && hash.chars().all(|c| c.is_ascii_hexdigit()));
    if hashed {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_trunk_assets_are_immutable_and_the_rest_revalidates() {
        let immutable = "public, max-age=31536000, immutable";
        assert_eq!(cache_policy("/frontend-3f2a9c1d0b7e6a54_bg.wasm"), immutable);
        assert_eq!(cache_policy("/frontend-3f2a9c1d0b7e6a54.js"), immutable);
        assert_eq!(cache_policy("/main-0123456789abcdef.css"), immutable);
        // A hash with a leading zero is printed one digit shorter (seen: 15 digits).
        assert_eq!(cache_policy("/frontend-6fb5a138611071a_bg.wasm"), immutable);
        assert_eq!(cache_policy("/"), "no-cache");
        assert_eq!(cache_policy("/index.html"), "no-cache");
        assert_eq!(cache_policy("/public/favicon.svg"), "no-cache");
        assert_eq!(cache_policy("/live-view-dashboard.js"), "no-cache");
    }

    #[test]
    fn the_clients_index_carries_the_marker_once_in_the_head() {
        let html = "<html><head><title>Live View</title></head><body></body></html>";
        let client = client_index(html);
        assert_eq!(client.matches(CLIENT_MARKER).count(), 1);
        assert!(client.find(CLIENT_MARKER) < client.find("</head>"));
        assert!(client.contains("<title>Live View — your notifications</title>"));
        let bare = client_index("<!DOCTYPE html><title>spa</title>");
        assert_eq!(bare, format!("<!DOCTYPE html>{CLIENT_MARKER}<title>spa</title>"));
    }
}

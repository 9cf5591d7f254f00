//! The audit log: every control action taken on the dashboard — who, what and when — in
//! the database, listed newest first by `GET /api/audit`. [`record`] is a layer on the
//! dashboard's routes, so no control can be added that escapes it: every request that
//! may change something (any method but `GET`, `HEAD` and `OPTIONS`) and reached a
//! handler is written down with its route, path, body and the status it got. Requests
//! the origin guard refused never reach it (they changed nothing).

use axum::{
    body::Body,
    extract::{MatchedPath, Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use wire::AuditEntry;

use crate::{api_error::ApiError, operators::Actor, storage::Database};

/// The most of a request body the log keeps.
pub const MAX_BODY: usize = 4 * 1024;
/// The largest body a dashboard request may have: axum's default limit, which the
/// handlers' extractors apply too.
const MAX_REQUEST: usize = 2 * 1024 * 1024;
/// Entries one `GET /api/audit` answers at most.
pub const MAX_LIST: u32 = 500;

/// Who acted when no one is known (a failed sign-in).
const NOBODY: &str = "anonymous";

#[derive(Clone)]
pub struct Audit {
    db: Database,
}

impl Audit {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    async fn write(&self, entry: &AuditEntry) -> Result<(), sqlx::Error> {
        crate::with_connection!(&mut self.db.writing().await?, |c| sqlx::query(
            "INSERT INTO audit_log (id, at_ms, actor, method, route, path, body, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&entry.id)
        .bind(entry.at.timestamp_millis())
        .bind(&entry.actor)
        .bind(&entry.method)
        .bind(&entry.route)
        .bind(&entry.path)
        .bind(&entry.body)
        .bind(i64::from(entry.status))
        .execute(c)
        .await.map(|done| done.rows_affected()))
        .map(drop)
    }

    /// The newest `limit` entries, newest first.
    pub async fn recent(&self, limit: u32) -> Result<Vec<AuditEntry>, sqlx::Error> {
        type Row = (String, i64, String, String, String, String, String, i32);
        let rows: Vec<Row> = crate::with_connection!(&mut self.db.read().await?, |c| sqlx::query_as(
            "SELECT id, at_ms, actor, method, route, path, body, status FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit.min(MAX_LIST)))
        .fetch_all(c)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(id, at_ms, actor, method, route, path, body, status)| AuditEntry {
                id,
                at: chrono::DateTime::from_timestamp_millis(at_ms).unwrap_or_default(),
                actor,
                method,
                route,
                path,
                body,
                status: u16::try_from(status).unwrap_or_default(),
            })
            .collect())
    }
}

/// The layer: runs the request, then writes down what it was and what it got. A body
/// over [`MAX_REQUEST`] is answered 413 here, as the extractors would, and logged so.
pub async fn record(State(audit): State<Audit>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let mut actor = request.extensions().get::<Actor>().map(|actor| actor.name.clone());
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| path.clone(), |matched| matched.as_str().to_string());
    let (parts, body) = request.into_parts();
    let (kept, response) = match axum::body::to_bytes(body, MAX_REQUEST).await {
        Ok(bytes) => {
            let kept = kept_body(&bytes);
            (kept, next.run(Request::from_parts(parts, Body::from(bytes))).await)
        }
        Err(_) => (
            format!("(a body over {MAX_REQUEST} bytes)"),
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response(),
        ),
    };
    // A sign-in is made by nobody yet; its answer names who signed in.
    if let Some(signed_in) = response.extensions().get::<Actor>() {
        actor = Some(signed_in.name.clone());
    }
    let entry = AuditEntry {
        id: uuid::Uuid::now_v7().to_string(),
        at: chrono::Utc::now(),
        actor: actor.unwrap_or_else(|| NOBODY.to_string()),
        method,
        route,
        path,
        body: kept,
        status: response.status().as_u16(),
    };
    if let Err(error) = audit.write(&entry).await {
        // The action happened; losing its record is logged, never hidden.
        tracing::error!(%error, route = %entry.route, "could not write the audit log");
    }
    response
}

/// What the log keeps of a body: at most [`MAX_BODY`] of it, and never a password (a
/// sign-in's or a new operator's): a JSON body's `password` is replaced, and a body that
/// mentions one but cannot be read is not kept at all.
fn kept_body(bytes: &[u8]) -> String {
    let mentions_password = bytes.windows(8).any(|window| window.eq_ignore_ascii_case(b"password"));
    if !mentions_password {
        return truncated(bytes);
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(mut fields)) => {
            if fields.contains_key("password") {
                fields.insert("password".into(), serde_json::Value::String("(not recorded)".into()));
            }
            truncated(serde_json::Value::Object(fields).to_string().as_bytes())
        }
        _ => "(not recorded: it may hold a password)".into(),
    }
}

fn truncated(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_BODY)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_the_log() {
        let kept = kept_body(br#"{"name":"ada","password":"correct horse"}"#);
        assert!(!kept.contains("correct horse"), "{kept}");
        assert!(kept.contains("ada"));
        let broken = kept_body(br#"{"name":"ada","password":"correct horse""#);
        assert!(!broken.contains("correct horse"), "{broken}");
        assert_eq!(kept_body(b"{\"rate\":1}"), "{\"rate\":1}");
        assert_eq!(kept_body(&vec![b'x'; MAX_BODY * 2]).len(), MAX_BODY);
    }
}

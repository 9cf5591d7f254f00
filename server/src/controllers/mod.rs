//! The controllers: each handles one business action, writes its rows and its
//! notifications in one transaction, and wakes the workers after the commit.

pub mod auth;
pub mod friends;
pub mod notifications;
pub mod purchases;

use axum::http::request::Parts;

use crate::{
    api_error::ApiError,
    notify::{self, FannedOut, Notice},
    queue::Channel,
    servers::AppServer,
    storage::{WriteBatch, WriteTransaction},
};

/// The request id the balancer (or the request-id middleware) attached.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl axum::extract::FromRequestParts<AppServer> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppServer) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        Ok(Self(id.to_string()))
    }
}

/// Commits a business transaction with its notices — `batch` holds the controller's
/// own writes, the notices' rows and jobs join it, and all run in one round trip —
/// then wakes the workers. For controllers that read inside their transaction first.
pub async fn commit_with_notices(
    server: &AppServer,
    mut tx: WriteTransaction,
    mut batch: WriteBatch,
    notices: &[Notice],
    request_id: &RequestId,
) -> Result<Vec<FannedOut>, ApiError> {
    let written = fan_out(&mut batch, notices, request_id);
    batch.execute(&mut tx).await?;
    tx.commit().await?;
    wake_workers(server, &written);
    Ok(written)
}

/// Like [`commit_with_notices`] for a controller whose writes need no reads: the batch
/// goes to the group committer and shares a transaction with other requests' batches.
pub async fn group_commit_with_notices(
    server: &AppServer,
    mut batch: WriteBatch,
    notices: &[Notice],
    request_id: &RequestId,
) -> Result<Vec<FannedOut>, ApiError> {
    let written = fan_out(&mut batch, notices, request_id);
    server.shared.db.commit(batch).await?;
    wake_workers(server, &written);
    Ok(written)
}

fn fan_out(batch: &mut WriteBatch, notices: &[Notice], request_id: &RequestId) -> Vec<FannedOut> {
    notices
        .iter()
        .map(|notice| notify::fan_out(batch, notice, Some(&request_id.0)))
        .collect()
}

fn wake_workers(server: &AppServer, written: &[FannedOut]) {
    let queues = &server.shared.queues;
    if written.iter().any(|out| out.email_id.is_some()) {
        queues.wake(Channel::Email);
    }
    if written.iter().any(|out| out.notification_id.is_some()) {
        queues.wake(Channel::InApp);
    }
}

/// Checks an email address's shape: one `@`, a dotted domain, no spaces, at most 254
/// characters. Delivery is the real test; this only refuses what cannot be an address.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.chars().all(|c| c.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::valid_email;

    #[test]
    fn email_shapes() {
        for good in ["a@example.com", "first.last+tag@mail.example.org"] {
            assert!(valid_email(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "a@",
            "@example.com",
            "a@example",
            "a b@example.com",
            "a@b@example.com",
            "a@.com",
            "a@example.",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
        assert!(!valid_email(&format!("{}@example.com", "a".repeat(65))));
    }
}

//! The controllers: each handles one business action, writes its rows and its
//! notifications in one transaction, and wakes the workers after the commit.

pub mod announcements;
pub mod auth;
pub mod conversations;
pub mod friends;
pub mod items;
pub mod notifications;
pub mod purchases;

/// The notification system's HTTP API, as the balancer serves it (`GET
/// /api/openapi.json`). The in-app socket (`/api/notifications/ws`) is described in the
/// README: OpenAPI has no words for it.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Live View notification system", description = "The public API of the notification system, through the load balancer (--lb)."),
    paths(
        crate::servers::healthz,
        auth::signup,
        auth::login,
        auth::reset_password,
        auth::confirm_reset,
        auth::me,
        auth::logout,
        purchases::create,
        friends::create,
        friends::accept,
        friends::list,
        items::list,
        items::view,
        notifications::list,
        notifications::mark_read,
        notifications::change_one,
        notifications::snooze,
        notifications::read_all,
        notifications::seen_all,
        notifications::preferences,
        notifications::set_preferences,
        conversations::create,
        conversations::list,
        conversations::messages,
        conversations::send,
        conversations::edit,
        conversations::delete,
        conversations::read,
        conversations::rename,
        conversations::add_participant,
        conversations::leave,
        announcements::list,
    ),
    modifiers(&BearerAuth)
)]
pub struct NotificationApi;

/// Declares the bearer token the authenticated routes take.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(<NotificationApi as utoipa::OpenApi>::openapi())
}

/// The controllers' routes: the notification system's API.
pub fn router() -> axum::Router<AppServer> {
    use axum::routing::{delete, get, patch, post};
    axum::Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/auth/signup", post(auth::signup))
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/reset-password", post(auth::reset_password))
        .route("/api/auth/reset-password/confirm", post(auth::confirm_reset))
        .route("/api/auth/me", get(auth::me))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/friends", get(friends::list))
        .route("/api/announcements", get(announcements::list))
        .route("/api/purchases", post(purchases::create))
        .route("/api/friend-requests", post(friends::create))
        .route("/api/friend-requests/{id}/accept", post(friends::accept))
        .route("/api/items", get(items::list))
        .route("/api/items/{id}", get(items::view))
        .route("/api/notifications", get(notifications::list))
        .route("/api/notifications/read-all", post(notifications::read_all))
        .route("/api/notifications/seen-all", post(notifications::seen_all))
        .route(
            "/api/notifications/preferences",
            get(notifications::preferences).put(notifications::set_preferences),
        )
        .route("/api/notifications/{id}/read", post(notifications::mark_read))
        .route("/api/notifications/{id}/snooze", post(notifications::snooze))
        .route("/api/notifications/{id}/{change}", post(notifications::change_one))
        .route(
            "/api/conversations",
            get(conversations::list).post(conversations::create),
        )
        .route("/api/conversations/{id}", patch(conversations::rename))
        .route(
            "/api/conversations/{id}/messages",
            get(conversations::messages).post(conversations::send),
        )
        .route(
            "/api/conversations/{id}/messages/{message_id}",
            patch(conversations::edit).delete(conversations::delete),
        )
        .route("/api/conversations/{id}/read", post(conversations::read))
        .route(
            "/api/conversations/{id}/participants",
            post(conversations::add_participant),
        )
        .route("/api/conversations/{id}/participants/me", delete(conversations::leave))
}

use std::time::Instant;

use axum::http::request::Parts;
use wire::{Flow, LiveEvent, QueueJobAdded, SystemStage};

use crate::{
    api_error::ApiError,
    controls::DelayPoint,
    middleware::{AppServer, CommitPoint, Received},
    notify::{self, FannedOut, Notice},
    queue::{Channel, QueueName},
    storage::{WriteBatch, WriteTransaction},
};

/// The request id the balancer (or the request-id middleware) attached, and what the
/// controller needs to record its stages. Extracting it records the middleware stage:
/// by then the request id, error handling, body limit, timeout and (for handlers that
/// ask for it first) authentication have run.
#[derive(Debug, Clone)]
pub struct RequestId {
    pub id: String,
    /// Traced as a journey (a business action).
    pub traced: bool,
    /// When the handler itself began.
    pub handler_started: Instant,
    /// Marked when the commit starts: the request is not timed out after that.
    pub commit: CommitPoint,
}

impl axum::extract::FromRequestParts<AppServer> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, server: &AppServer) -> Result<Self, Self::Rejection> {
        let id = crate::middleware::request_id_of(&parts.headers);
        let received = parts.extensions.get::<Received>().copied();
        let traced = received.is_some_and(|received| received.traced);
        if let Some(received) = received.filter(|received| received.traced) {
            let telemetry = &server.shared.telemetry;
            telemetry
                .stage_since(&id, SystemStage::Middleware, &server.id, received.at)
                .meta("pipeline", "request-id, errors, body-limit, timeout, auth")
                .done();
            server.shared.controls.boundary(&id).await;
        }
        Ok(Self {
            id,
            traced,
            handler_started: Instant::now(),
            commit: parts.extensions.get::<CommitPoint>().cloned().unwrap_or_default(),
        })
    }
}

/// Commits a business transaction with its notices — `batch` holds the controller's
/// own writes, the notices' rows and jobs join it, and all run in one round trip —
/// then wakes the workers. For controllers that read inside their transaction first.
pub async fn commit_with_notices(
    server: &AppServer,
    tx: WriteTransaction,
    batch: WriteBatch,
    notices: &[Notice],
    request_id: &RequestId,
) -> Result<Vec<FannedOut>, ApiError> {
    commit(server, Some(tx), batch, notices, request_id).await
}

/// Like [`commit_with_notices`], with the action's item of the activity feed: its row
/// joins the commit, and it is announced on the live stream once committed. Without
/// `tx` (a controller whose writes need no reads) the batch goes to the group committer
/// and shares a transaction with other requests' batches.
pub async fn commit_with_activity(
    server: &AppServer,
    tx: Option<WriteTransaction>,
    mut batch: WriteBatch,
    notices: &[Notice],
    mut event: wire::ActivityEvent,
    request_id: &RequestId,
) -> Result<Vec<FannedOut>, ApiError> {
    event.request_id = (!request_id.id.is_empty()).then(|| request_id.id.clone());
    crate::analytics::activity::record(&mut batch, &event);
    let written = commit(server, tx, batch, notices, request_id).await?;
    crate::analytics::activity::announce(&server.shared.telemetry, event);
    Ok(written)
}

/// The commit itself: in the controller's own transaction, or (`None`) through the
/// group committer; recorded as the request's database stage.
async fn commit(
    server: &AppServer,
    tx: Option<WriteTransaction>,
    mut batch: WriteBatch,
    notices: &[Notice],
    request_id: &RequestId,
) -> Result<Vec<FannedOut>, ApiError> {
    let hold = server.shared.controls.delay(DelayPoint::Queueing);
    let written = fan_out(&mut batch, notices, request_id, hold);
    // Counted only for the journey of a traced request.
    let statements = if request_id.traced { batch.statements() } else { 0 };
    let commit_started = before_commit(server, request_id).await;
    request_id.commit.reached();
    let transaction = match tx {
        Some(mut tx) => {
            batch.execute(&mut tx).await?;
            tx.commit().await?;
            "own"
        }
        None => {
            server.shared.db.commit(batch).await?;
            "group"
        }
    };
    after_commit(
        server,
        request_id,
        commit_started,
        statements,
        transaction,
        &written,
        hold,
    )
    .await;
    wake_workers(server, &written);
    Ok(written)
}

fn fan_out(
    batch: &mut WriteBatch,
    notices: &[Notice],
    request_id: &RequestId,
    hold: std::time::Duration,
) -> Vec<FannedOut> {
    let id = (!request_id.id.is_empty()).then_some(request_id.id.as_str());
    notices
        .iter()
        .map(|notice| notify::fan_out(batch, notice, id, hold))
        .collect()
}

/// Ends the controller stage, waits at its boundary and injects the database delay;
/// returns when the commit starts.
async fn before_commit(server: &AppServer, request_id: &RequestId) -> Instant {
    let telemetry = &server.shared.telemetry;
    if request_id.traced {
        telemetry
            .stage_since(
                &request_id.id,
                SystemStage::Controller,
                &server.id,
                request_id.handler_started,
            )
            .done();
        server.shared.controls.boundary(&request_id.id).await;
    }
    let commit_started = Instant::now();
    // Inside the database stage, so the injected delay shows in its duration.
    server.shared.controls.inject(DelayPoint::Database).await;
    commit_started
}

/// Records the commit, the fan-out and each job added (`queue:job:added` too).
async fn after_commit(
    server: &AppServer,
    request_id: &RequestId,
    commit_started: Instant,
    statements: usize,
    transaction: &str,
    written: &[FannedOut],
    hold: std::time::Duration,
) {
    if !request_id.traced {
        return;
    }
    let telemetry = &server.shared.telemetry;
    let id = &request_id.id;
    telemetry
        .stage_since(id, SystemStage::DbQuery, "database", commit_started)
        .meta("statements", statements)
        .meta("transaction", transaction)
        .done();
    server.shared.controls.boundary(id).await;
    let deliveries = written
        .iter()
        .map(|out| usize::from(out.email_job_id.is_some()) + usize::from(out.inapp_job_id.is_some()))
        .sum::<usize>();
    telemetry
        .stage(id, SystemStage::NotificationFanout, "notification-service")
        .meta("deliveries", deliveries)
        .meta("emails", written.iter().filter(|out| out.email_id.is_some()).count())
        .meta(
            "inApp",
            written.iter().filter(|out| out.notification_id.is_some()).count(),
        )
        .done();
    // When held jobs are due (`hold` is the queueing delay they were written with).
    let run_at = (!hold.is_zero()).then(|| chrono::Utc::now() + chrono::Duration::from_std(hold).unwrap_or_default());
    for out in written {
        for (queue, flow, job, target) in [
            (QueueName::Mail, Flow::Email, &out.email_job_id, &out.email_id),
            (QueueName::Inapp, Flow::InApp, &out.inapp_job_id, &out.notification_id),
        ] {
            if let (Some(job), Some(target)) = (job, target) {
                // One boundary per job: in step mode each queue-add is its own step.
                server.shared.controls.boundary(id).await;
                telemetry
                    .stage(id, SystemStage::QueueAdd, "queue-manager")
                    .meta("queue", queue.as_str())
                    .meta("jobId", job.as_str())
                    .meta("notificationId", target.as_str())
                    .done();
                telemetry.event(LiveEvent::QueueJobAdded(QueueJobAdded {
                    queue: queue.as_str().to_string(),
                    job_id: job.clone(),
                    notification_id: target.clone(),
                    request_id: Some(id.clone()),
                    flow,
                    run_at,
                }));
            }
        }
    }
    server.shared.controls.boundary(id).await;
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

//! The user's notification center: the inbox and the archive, newest first and
//! paginated, with the unread count; a notification's states (seen, read, archived,
//! snoozed), one at a time or all at once; and the preferences per category and channel,
//! which the workers honour.
//!
//! Every change of state is one write transaction that also makes the user's
//! `inbox_version` one more and takes the unread count after it, so the count and its
//! version agree; then every socket of the user (every tab and device, in every
//! process) gets it as a `notification:update` ([`wire::InboxUpdate`]).

use axum::{
    Json,
    extract::{Path, State},
};
use serde::Deserialize;
use wire::{
    CategoryPreference, Flow, InboxChange, InboxUpdate, Notification, NotificationCategory, NotificationPage,
    Preferences, ReadReceipt, SystemStage, UserFrame,
};

use crate::{
    api_error::ApiError,
    middleware::{
        AppServer, CommitPoint,
        extract::{AuthUser, FieldErrors, ValidJson, ValidQuery, Validate},
    },
    now_ms,
    storage::{Connect, WriteTransaction},
    websocket::rooms::Room,
};

/// The longest a notification may be snoozed: a week.
const MAX_SNOOZE_MINUTES: u32 = 7 * 24 * 60;

/// Which notifications a list shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// Neither archived nor snoozed.
    #[default]
    Inbox,
    Archived,
    /// Snoozed and not yet back.
    Snoozed,
    All,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Page {
    limit: Option<u32>,
    /// Only notifications with a smaller `seq` (the previous page's `nextBefore`).
    before: Option<i64>,
    /// `inbox` (the default), `archived`, `snoozed` or `all`.
    view: Option<View>,
    /// Only this category's.
    category: Option<NotificationCategory>,
}

/// What makes a notification shown at all: not skipped by its worker, and not of a
/// category the user switched off in the app since (critical ones always are).
fn visible() -> String {
    format!(
        "skipped IS NULL AND NOT {}",
        crate::notify::muted_sql("notifications", Flow::InApp)
    )
}

/// What makes a notification part of the inbox at `now` (with `$2` = now).
fn in_inbox() -> String {
    format!(
        "{} AND archived_at_ms IS NULL AND (snoozed_until_ms IS NULL OR snoozed_until_ms <= $2)",
        visible()
    )
}

/// `GET /api/notifications?limit=20&before=SEQ&view=inbox&category=social`.
#[utoipa::path(get, path = "/api/notifications", params(Page), responses((status = 200, description = "newest first", body = wire::NotificationPage), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 401, description = "no valid bearer token", body = wire::ErrorBody)), tag = "notifications")]
pub async fn list(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    ValidQuery(page): ValidQuery<Page>,
) -> Result<Json<NotificationPage>, ApiError> {
    let limit = page.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid([("limit", "must be between 1 and 100".to_string())]));
    }
    let shown = match page.view.unwrap_or_default() {
        View::Inbox => in_inbox(),
        View::Archived => format!("{} AND archived_at_ms IS NOT NULL AND $2 = $2", visible()),
        View::Snoozed => format!("{} AND archived_at_ms IS NULL AND snoozed_until_ms > $2", visible()),
        View::All => format!("{} AND $2 = $2", visible()),
    };
    let category = page.category.map_or("", NotificationCategory::as_str);
    let sql = format!(
        "SELECT id, seq, kind, category, title, body, created_at_ms, delivered_at_ms, seen_at_ms, read_at_ms, \
         archived_at_ms, snoozed_until_ms FROM notifications \
         WHERE user_id = $1 AND {shown} AND seq < $3 AND ($4 = '' OR category = $4) ORDER BY seq DESC LIMIT $5"
    );
    let mut read = server.shared.db.read().await?;
    let notifications: Vec<Notification> =
        crate::with_connection!(&mut read, |c| sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(&user.id)
            .bind(now_ms())
            .bind(page.before.unwrap_or(i64::MAX))
            .bind(category)
            .bind(i64::from(limit))
            .fetch_all(c)
            .await)?;
    let next_before = (notifications.len() == limit as usize)
        .then(|| notifications.last().map(|n| n.seq))
        .flatten();
    let count = inbox_count(&mut read, &user.id).await?;
    Ok(Json(NotificationPage {
        notifications,
        unread_count: count.unread,
        next_before,
        inbox_version: count.version,
        up_to_seq: count.up_to_seq,
    }))
}

/// The unread count with what it is as of.
pub(crate) struct InboxCount {
    unread: i64,
    up_to_seq: i64,
    version: i64,
}

impl InboxCount {
    /// The update a change of `ids` makes, with this count after it.
    pub(crate) fn update(&self, ids: Vec<String>, change: InboxChange, snoozed_until_ms: Option<i64>) -> InboxUpdate {
        InboxUpdate {
            ids,
            change,
            snoozed_until_ms,
            unread_count: self.unread,
            up_to_seq: self.up_to_seq,
            inbox_version: self.version,
        }
    }
}

/// One more inbox version for the user: their state changed (within its transaction).
pub(crate) async fn bump_version(tx: &mut WriteTransaction, user_id: &str) -> Result<(), sqlx::Error> {
    crate::with_connection!(tx, |c| sqlx::query(
        "UPDATE users SET inbox_version = inbox_version + 1 WHERE id = $1"
    )
    .bind(user_id)
    .execute(c)
    .await
    .map(|_| ()))
}

/// Counts in one statement, so the three agree (inside a write transaction, with the
/// change just made).
pub(crate) async fn inbox_count(on: &mut impl Connect, user_id: &str) -> Result<InboxCount, sqlx::Error> {
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND read_at_ms IS NULL AND {}), \
         (SELECT COALESCE(MAX(seq), 0) FROM notifications WHERE user_id = $1), \
         (SELECT inbox_version FROM users WHERE id = $1)",
        in_inbox()
    );
    let (unread, up_to_seq, version): (i64, i64, i64) =
        crate::with_connection!(on, |c| sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(user_id)
            .bind(now_ms())
            .fetch_one(c)
            .await)?;
    Ok(InboxCount {
        unread,
        up_to_seq,
        version,
    })
}

/// Which notifications a change applies to.
enum Target<'a> {
    One(&'a str),
    /// Every one up to this seq (of this category, when given) not yet in the new state.
    UpTo {
        seq: i64,
        category: Option<NotificationCategory>,
    },
}

/// Applies `change` and bumps the version in one transaction; tells every device of
/// the user. Returns the update (with no ids when nothing changed: the version then
/// stays) and the requests behind the notifications changed.
async fn apply(
    server: &AppServer,
    user_id: &str,
    change: InboxChange,
    target: Target<'_>,
    snoozed_until_ms: Option<i64>,
    commit: &CommitPoint,
) -> Result<(InboxUpdate, Vec<Option<String>>), ApiError> {
    let now = now_ms();
    let set = match change {
        InboxChange::Seen => "seen_at_ms = COALESCE(seen_at_ms, $1)",
        // Read implies seen.
        InboxChange::Read => "read_at_ms = COALESCE(read_at_ms, $1), seen_at_ms = COALESCE(seen_at_ms, $1)",
        InboxChange::Archived => "archived_at_ms = $1",
        InboxChange::Unarchived => "archived_at_ms = NULL, snoozed_until_ms = NULL",
        InboxChange::Snoozed => "snoozed_until_ms = $1",
        InboxChange::Preferences | InboxChange::Returned => {
            return Err(ApiError::internal("not a change a request makes"));
        }
    };
    // Only rows whose state this changes, so the ids are what changed.
    let unchanged = match change {
        InboxChange::Seen => "seen_at_ms IS NULL",
        InboxChange::Read => "read_at_ms IS NULL",
        InboxChange::Archived => "archived_at_ms IS NULL",
        InboxChange::Unarchived => "archived_at_ms IS NOT NULL",
        InboxChange::Snoozed | InboxChange::Preferences | InboxChange::Returned => "archived_at_ms IS NULL",
    };
    let value = snoozed_until_ms.unwrap_or(now);
    let mut tx: WriteTransaction = server.shared.db.begin_write().await?;
    commit.reached();
    let changed: Vec<(String, Option<String>)> = match target {
        Target::One(id) => {
            let sql = format!(
                "UPDATE notifications SET {set} WHERE user_id = $2 AND id = $3 AND skipped IS NULL AND {unchanged} \
                 RETURNING id, request_id"
            );
            let changed: Vec<(String, Option<String>)> =
                crate::with_connection!(&mut tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(value)
                    .bind(user_id)
                    .bind(id)
                    .fetch_all(c)
                    .await)?;
            if changed.is_empty() {
                let exists: Option<i64> = crate::with_connection!(&mut tx, |c| sqlx::query_scalar(
                    "SELECT seq FROM notifications WHERE user_id = $1 AND id = $2 AND skipped IS NULL"
                )
                .bind(user_id)
                .bind(id)
                .fetch_optional(c)
                .await)?;
                if exists.is_none() {
                    return Err(ApiError::not_found("no such notification"));
                }
            }
            changed
        }
        Target::UpTo { seq, category } => {
            let sql = format!(
                "UPDATE notifications SET {set} WHERE user_id = $2 AND seq <= $3 AND ($4 = '' OR category = $4) \
                 AND skipped IS NULL AND {unchanged} RETURNING id, request_id"
            );
            crate::with_connection!(&mut tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(value)
                .bind(user_id)
                .bind(seq)
                .bind(category.map_or("", NotificationCategory::as_str))
                .fetch_all(c)
                .await)?
        }
    };
    if !changed.is_empty() {
        bump_version(&mut tx, user_id).await?;
    }
    let count = inbox_count(&mut tx, user_id).await?;
    tx.commit().await?;
    let (ids, requests): (Vec<String>, Vec<Option<String>>) = changed.into_iter().unzip();
    let update = count.update(ids, change, (change == InboxChange::Snoozed).then_some(value));
    if !update.ids.is_empty() {
        server
            .shared
            .rooms
            .send(
                Room::User(user_id.to_string()),
                &UserFrame::NotificationUpdate(update.clone()),
            )
            .await;
    }
    Ok((update, requests))
}

/// How often the snoozed notifications whose time came are brought back.
const RETURN_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// Notifications brought back in one pass at most.
const RETURN_BATCH: i64 = 500;

/// In every process that serves: brings snoozed notifications back when their time
/// comes, with one more inbox version and a `notification:update` (`returned`) to every
/// device of their user, so the badges count them at once. Each row is taken by one
/// process only (the update re-checks it is still snoozed), so none is announced twice.
pub async fn return_snoozed(
    db: crate::storage::Database,
    rooms: crate::websocket::rooms::Rooms,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut every = tokio::time::interval(RETURN_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match return_due(&db).await {
            Ok(updates) => {
                for (user_id, update) in updates {
                    rooms
                        .send(Room::User(user_id), &UserFrame::NotificationUpdate(update))
                        .await;
                }
            }
            Err(error) => tracing::warn!(%error, "could not bring back snoozed notifications"),
        }
    }
}

/// One pass: the notifications due, back in the inbox; each user's update.
async fn return_due(db: &crate::storage::Database) -> Result<Vec<(String, InboxUpdate)>, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let returned: Vec<(String, String)> = crate::with_connection!(&mut tx, |c| {
        sqlx::query_as(
        "UPDATE notifications SET snoozed_until_ms = NULL WHERE snoozed_until_ms IS NOT NULL AND id IN \
         (SELECT id FROM notifications WHERE snoozed_until_ms IS NOT NULL AND snoozed_until_ms <= $1 ORDER BY snoozed_until_ms LIMIT $2) \
         RETURNING id, user_id"
    )
    .bind(now_ms())
    .bind(RETURN_BATCH)
    .fetch_all(c)
    .await
    })?;
    if returned.is_empty() {
        return Ok(Vec::new());
    }
    let mut by_user: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for (id, user_id) in returned {
        by_user.entry(user_id).or_default().push(id);
    }
    let mut updates = Vec::with_capacity(by_user.len());
    for (user_id, ids) in by_user {
        bump_version(&mut tx, &user_id).await?;
        let count = inbox_count(&mut tx, &user_id).await?;
        updates.push((user_id, count.update(ids, InboxChange::Returned, None)));
    }
    tx.commit().await?;
    Ok(updates)
}

/// The read receipts end the journeys that created the notifications.
fn record_reads(server: &AppServer, ids: &[String], requests: &[Option<String>]) {
    for (id, request_id) in ids.iter().zip(requests) {
        server
            .shared
            .telemetry
            .stage(request_id.as_deref().unwrap_or_default(), SystemStage::Read, &server.id)
            .meta("notificationId", id.as_str())
            .done();
    }
}

/// `POST /api/notifications/{id}/read`: idempotent; the first read time is kept.
#[utoipa::path(post, path = "/api/notifications/{id}/read", params(("id" = String, Path, description = "the notification")), responses((status = 200, description = "read (the first read time is kept), with the unread count after", body = wire::ReadReceipt), (status = 401, description = "no valid bearer token", body = wire::ErrorBody), (status = 404, description = "no such notification for this user", body = wire::ErrorBody)), tag = "notifications")]
pub async fn mark_read(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    commit: CommitPoint,
) -> Result<Json<ReadReceipt>, ApiError> {
    let (update, requests) = apply(&server, &user.id, InboxChange::Read, Target::One(&id), None, &commit).await?;
    record_reads(&server, &update.ids, &requests);
    let read_at: i64 = crate::with_connection!(&mut server.shared.db.read().await?, |c| sqlx::query_scalar(
        "SELECT read_at_ms FROM notifications WHERE id = $1 AND user_id = $2"
    )
    .bind(&id)
    .bind(&user.id)
    .fetch_one(c)
    .await)?;
    Ok(Json(ReadReceipt {
        id,
        read_at_ms: read_at,
        unread_count: update.unread_count,
        inbox_version: update.inbox_version,
        up_to_seq: update.up_to_seq,
    }))
}

/// `POST /api/notifications/{id}/seen`, `/archive`, `/unarchive`: one notification's
/// state; what changed and the count after (no ids: it was already so).
#[utoipa::path(post, path = "/api/notifications/{id}/{change}", params(("id" = String, Path, description = "the notification"), ("change" = String, Path, description = "`seen`, `archive` or `unarchive`")), responses((status = 200, description = "what changed and the unread count after", body = wire::InboxUpdate), (status = 401, description = "no valid bearer token", body = wire::ErrorBody), (status = 404, description = "no such notification for this user, or no such change", body = wire::ErrorBody)), tag = "notifications")]
pub async fn change_one(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    Path((id, change)): Path<(String, String)>,
    commit: CommitPoint,
) -> Result<Json<InboxUpdate>, ApiError> {
    let change = match change.as_str() {
        "seen" => InboxChange::Seen,
        "archive" => InboxChange::Archived,
        "unarchive" => InboxChange::Unarchived,
        _ => {
            return Err(ApiError::not_found(
                "no such change: seen, read, archive, unarchive or snooze",
            ));
        }
    };
    let (update, _) = apply(&server, &user.id, change, Target::One(&id), None, &commit).await?;
    Ok(Json(update))
}

/// `POST /api/notifications/{id}/snooze`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Snooze {
    /// From now, at most a week.
    minutes: u32,
}

impl Validate for Snooze {
    fn validate(&self, errors: &mut FieldErrors) {
        if !(1..=MAX_SNOOZE_MINUTES).contains(&self.minutes) {
            errors.add("minutes", format!("must be between 1 and {MAX_SNOOZE_MINUTES}"));
        }
    }
}

/// `POST /api/notifications/{id}/snooze {"minutes": 60}`: out of the inbox until then
/// (and not counted unread meanwhile).
#[utoipa::path(post, path = "/api/notifications/{id}/snooze", request_body = Snooze, params(("id" = String, Path, description = "the notification")), responses((status = 200, description = "snoozed, with the unread count after", body = wire::InboxUpdate), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 401, description = "no valid bearer token", body = wire::ErrorBody), (status = 404, description = "no such notification for this user", body = wire::ErrorBody)), tag = "notifications")]
pub async fn snooze(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    commit: CommitPoint,
    ValidJson(body): ValidJson<Snooze>,
) -> Result<Json<InboxUpdate>, ApiError> {
    let until = now_ms() + i64::from(body.minutes) * 60_000;
    let (update, _) = apply(
        &server,
        &user.id,
        InboxChange::Snoozed,
        Target::One(&id),
        Some(until),
        &commit,
    )
    .await?;
    Ok(Json(update))
}

/// `POST /api/notifications/read-all` and `/seen-all`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AllUpTo {
    /// Up to this seq (the newest the client shows), so one arriving meanwhile stays
    /// unread; every one when left out.
    up_to_seq: Option<i64>,
    /// Only this category's.
    category: Option<NotificationCategory>,
}

impl AllUpTo {
    fn target(&self) -> Target<'static> {
        Target::UpTo {
            seq: self.up_to_seq.unwrap_or(i64::MAX),
            category: self.category,
        }
    }
}

impl Validate for AllUpTo {
    fn validate(&self, errors: &mut FieldErrors) {
        if self.up_to_seq.is_some_and(|seq| seq < 0) {
            errors.add("upToSeq", "must not be negative");
        }
    }
}

/// `POST /api/notifications/read-all {"upToSeq": 41}`: every one read.
#[utoipa::path(post, path = "/api/notifications/read-all", request_body = AllUpTo, responses((status = 200, description = "what changed and the unread count after", body = wire::InboxUpdate), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 401, description = "no valid bearer token", body = wire::ErrorBody)), tag = "notifications")]
pub async fn read_all(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    commit: CommitPoint,
    ValidJson(body): ValidJson<AllUpTo>,
) -> Result<Json<InboxUpdate>, ApiError> {
    let (update, requests) = apply(&server, &user.id, InboxChange::Read, body.target(), None, &commit).await?;
    record_reads(&server, &update.ids, &requests);
    Ok(Json(update))
}

/// `POST /api/notifications/seen-all {"upToSeq": 41}`: the list showed them.
#[utoipa::path(post, path = "/api/notifications/seen-all", request_body = AllUpTo, responses((status = 200, description = "what changed and the unread count after", body = wire::InboxUpdate), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 401, description = "no valid bearer token", body = wire::ErrorBody)), tag = "notifications")]
pub async fn seen_all(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    commit: CommitPoint,
    ValidJson(body): ValidJson<AllUpTo>,
) -> Result<Json<InboxUpdate>, ApiError> {
    let (update, _) = apply(&server, &user.id, InboxChange::Seen, body.target(), None, &commit).await?;
    Ok(Json(update))
}

/// The user's preferences, every category in order.
pub async fn preferences_of(db: &crate::storage::Database, user_id: &str) -> Result<Preferences, sqlx::Error> {
    let muted: Vec<(String, String)> = crate::with_connection!(&mut db.read().await?, |c| sqlx::query_as(
        "SELECT category, channel FROM notification_mutes WHERE user_id = $1"
    )
    .bind(user_id)
    .fetch_all(c)
    .await)?;
    let wants = |category: NotificationCategory, channel: Flow| {
        !muted
            .iter()
            .any(|(c, ch)| c == category.as_str() && ch == channel.name())
    };
    Ok(Preferences {
        categories: NotificationCategory::ALL
            .into_iter()
            .map(|category| CategoryPreference {
                category,
                email: wants(category, Flow::Email),
                in_app: wants(category, Flow::InApp),
            })
            .collect(),
    })
}

/// `GET /api/notifications/preferences`.
#[utoipa::path(get, path = "/api/notifications/preferences", responses((status = 200, description = "every category's channels", body = wire::Preferences), (status = 401, description = "no valid bearer token", body = wire::ErrorBody)), tag = "notifications")]
pub async fn preferences(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
) -> Result<Json<Preferences>, ApiError> {
    Ok(Json(preferences_of(&server.shared.db, &user.id).await?))
}

impl Validate for Preferences {
    fn validate(&self, errors: &mut FieldErrors) {
        let mut seen = std::collections::HashSet::new();
        if self
            .categories
            .iter()
            .any(|preference| !seen.insert(preference.category))
        {
            errors.add("categories", "names a category twice");
        }
    }
}

/// `PUT /api/notifications/preferences`: sets the categories given; answers all.
/// Critical notifications (a password reset, a new sign-in) are sent whatever these say.
#[utoipa::path(put, path = "/api/notifications/preferences", request_body = wire::Preferences, responses((status = 200, description = "every category's channels after the change", body = wire::Preferences), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 401, description = "no valid bearer token", body = wire::ErrorBody)), tag = "notifications")]
pub async fn set_preferences(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    commit: CommitPoint,
    ValidJson(body): ValidJson<Preferences>,
) -> Result<Json<Preferences>, ApiError> {
    let mut tx = server.shared.db.begin_write().await?;
    commit.reached();
    for preference in &body.categories {
        crate::with_connection!(&mut tx, |c| sqlx::query(
            "DELETE FROM notification_mutes WHERE user_id = $1 AND category = $2"
        )
        .bind(&user.id)
        .bind(preference.category.as_str())
        .execute(c)
        .await
        .map(|_| ()))?;
        for channel in [Flow::Email, Flow::InApp] {
            if !preference.wants(channel) {
                crate::with_connection!(&mut tx, |c| sqlx::query(
                    "INSERT INTO notification_mutes (user_id, category, channel) VALUES ($1, $2, $3)"
                )
                .bind(&user.id)
                .bind(preference.category.as_str())
                .bind(channel.name())
                .execute(c)
                .await
                .map(|_| ()))?;
            }
        }
    }
    // What the app shows may have changed: every device asks again.
    bump_version(&mut tx, &user.id).await?;
    let count = inbox_count(&mut tx, &user.id).await?;
    tx.commit().await?;
    let update = count.update(Vec::new(), InboxChange::Preferences, None);
    server
        .shared
        .rooms
        .send(Room::User(user.id.clone()), &UserFrame::NotificationUpdate(update))
        .await;
    Ok(Json(preferences_of(&server.shared.db, &user.id).await?))
}

//! The catalogue (`GET /api/items`, `GET /api/items/{id}`): a fixed set of items (from
//! migration 0013) whose views and purchases make the content figures real. Every view
//! of one item is a row of `item_views`.

use axum::{
    Json,
    extract::{Path, State},
    http::request::Parts,
};
use wire::{Item, Items};

use crate::{
    accounts::{self, new_id},
    analytics::sessions::{Touch, session_id},
    api_error::ApiError,
    middleware::{AppServer, extract::bearer_token},
    now_ms,
    storage::{Database, WriteBatch},
};

/// The catalogue, read once at start: its rows never change while the system runs, and
/// a purchase naming an item is checked against it without a read.
#[derive(Debug, Default)]
pub struct Catalogue {
    items: Vec<Item>,
}

impl Catalogue {
    pub async fn load(db: &Database) -> Result<Self, sqlx::Error> {
        let items: Vec<Item> = crate::with_connection!(&mut db.read().await?, |c| sqlx::query_as(
            "SELECT id, name, description, price_cents, currency FROM items ORDER BY id"
        )
        .fetch_all(c)
        .await)?;
        Ok(Self { items })
    }

    pub fn get(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|item| item.id == id)
    }
}

/// `GET /api/items`.
#[utoipa::path(get, path = "/api/items", responses((status = 200, description = "the catalogue", body = wire::Items)), tag = "catalogue")]
pub async fn list(State(server): State<AppServer>) -> Json<Items> {
    Json(Items {
        items: server.shared.catalogue.items.clone(),
    })
}

/// `GET /api/items/{id}`: one item, counted as a view (and, with a bearer token, as a
/// page view of that session).
#[utoipa::path(get, path = "/api/items/{id}", params(("id" = String, Path, description = "the item")), responses((status = 200, description = "the item; the view is counted", body = wire::Item), (status = 404, description = "no such item", body = wire::ErrorBody)), tag = "catalogue")]
pub async fn view(
    State(server): State<AppServer>,
    Path(id): Path<String>,
    parts: Parts,
) -> Result<Json<Item>, ApiError> {
    let item = server
        .shared
        .catalogue
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("no such item"))?;
    // A view with a token that is not (or no longer) valid is a view all the same.
    let user = match bearer_token(&parts) {
        Some(token) => accounts::authenticate(&server.shared.db, &server.shared.sessions, &token)
            .await?
            .zip(session_id(&token)),
        None => None,
    };
    let mut batch = WriteBatch::default();
    batch
        .statement("INSERT INTO item_views (id, item_id, user_id, created_at_ms) VALUES (?, ?, ?, ?)")
        .bind(new_id())
        .bind(item.id.clone())
        .bind(user.as_ref().map(|(user, _)| user.id.clone()))
        .bind(now_ms());
    server.shared.db.commit(batch).await?;
    if let Some((user, session)) = user {
        let client = crate::middleware::extract::client(&parts, &server);
        server.shared.activity.touch(session, &user.id, Touch::PageView, client);
    }
    Ok(Json(item))
}

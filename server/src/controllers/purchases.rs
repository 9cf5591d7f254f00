//! Purchases: a receipt by email and in-app.

use axum::{Json, extract::State, http::StatusCode};
use wire::{ActivityType, NewPurchase, NotificationType, Purchase};

use super::{RequestId, commit_with_activity};
use crate::{
    accounts::new_id,
    analytics::{
        activity,
        figures::{major, minor_digits},
    },
    api_error::ApiError,
    middleware::{
        AppServer,
        extract::{AuthUser, FieldErrors, ValidJson, Validate},
    },
    notify::{EmailDraft, InAppDraft, Notice},
    now_ms,
    storage::WriteBatch,
};

/// The largest single purchase accepted: one million in the currency's main unit.
const MAX_AMOUNT_CENTS: i64 = 100_000_000;

impl Validate for NewPurchase {
    fn validate(&self, errors: &mut FieldErrors) {
        errors.length("item", self.item.trim(), 1, 200);
        if !(1..=MAX_AMOUNT_CENTS).contains(&self.amount_cents) {
            errors.add("amountCents", format!("must be between 1 and {MAX_AMOUNT_CENTS}"));
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            errors.add("currency", "must be a three-letter ISO 4217 code such as EUR");
        }
        if let Some(item_id) = &self.item_id {
            errors.length("itemId", item_id, 1, 64);
        }
    }
}

/// `POST /api/purchases` (auth) → 201; a receipt email and in-app message.
#[utoipa::path(post, path = "/api/purchases", request_body = wire::NewPurchase, responses((status = 201, description = "bought; a receipt email and in-app message follow", body = wire::Purchase), (status = 400, description = "invalid input, naming each bad field", body = wire::ErrorBody), (status = 401, description = "no valid bearer token", body = wire::ErrorBody)), tag = "purchases")]
pub async fn create(
    State(server): State<AppServer>,
    AuthUser(user): AuthUser,
    request_id: RequestId,
    ValidJson(body): ValidJson<NewPurchase>,
) -> Result<(StatusCode, Json<Purchase>), ApiError> {
    if let Some(item_id) = &body.item_id
        && server.shared.catalogue.get(item_id).is_none()
    {
        return Err(ApiError::invalid([(
            "itemId",
            "no such item in the catalogue".to_string(),
        )]));
    }
    let purchase = Purchase {
        id: new_id(),
        item: body.item.trim().to_string(),
        amount_cents: body.amount_cents,
        currency: body.currency,
        item_id: body.item_id,
        created_at_ms: now_ms(),
    };
    // The purchase row, its notifications and their jobs go in one round trip.
    let mut batch = WriteBatch::default();
    batch
        .statement("INSERT INTO purchases (id, user_id, item, amount_cents, currency, item_id, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)")
        .bind(purchase.id.clone())
        .bind(user.id.clone())
        .bind(purchase.item.clone())
        .bind(purchase.amount_cents)
        .bind(purchase.currency.clone())
        .bind(purchase.item_id.clone())
        .bind(purchase.created_at_ms);
    let value = major(purchase.amount_cents, &purchase.currency);
    let digits = minor_digits(&purchase.currency) as usize;
    let amount = format!("{value:.digits$} {}", purchase.currency);
    let notice = Notice {
        kind: NotificationType::Purchase,
        user_id: Some(user.id.clone()),
        email: Some(EmailDraft {
            unless_read: None,
            to: user.email.clone(),
            subject: format!("Your receipt for {}", purchase.item),
            body: format!(
                "Hello {},\n\nthank you for buying {} for {amount}.\nOrder: {}\n",
                user.name, purchase.item, purchase.id
            ),
        }),
        in_app: Some(InAppDraft {
            title: "Purchase confirmed".into(),
            body: format!("{} for {amount}", purchase.item),
        }),
        subject_id: Some(purchase.id.clone()),
    };
    let mut paid = activity::event(
        ActivityType::Payment,
        (&user.id, &user.name),
        format!("{} bought {} for {amount}", user.name, purchase.item),
        [
            ("purchaseId", purchase.id.clone()),
            ("item", purchase.item.clone()),
            ("currency", purchase.currency.clone()),
        ]
        .into_iter()
        .chain(purchase.item_id.clone().map(|id| ("itemId", id))),
    );
    paid.value = Some(value);
    commit_with_activity(&server, None, batch, &[notice], paid, &request_id).await?;
    Ok((StatusCode::CREATED, Json(purchase)))
}

//! The notification system's HTTP API through the real balancer: each controller's rows
//! and notifications, and every kind of bad input getting a JSON 4xx that changes nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::TestSystem;

mod support;

use liveview::config::Config;

/// The flags every test here starts the system with.
fn flags(config: &mut Config) {
    config.servers = 2;
}

impl TestSystem {
    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut request = self.http.post(self.lb(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("answers");
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.lb(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("answers");
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    async fn signup_and_login(&self, email: &str, name: &str) -> (String, String) {
        let (status, user) = self
            .post(
                "/api/auth/signup",
                None,
                json!({ "email": email, "name": name, "password": "s3cret-pass" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        let (status, login) = self
            .post(
                "/api/auth/login",
                None,
                json!({ "email": email, "password": "s3cret-pass" }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{login}");
        (
            user["id"].as_str().expect("id").to_string(),
            login["token"].as_str().expect("token").to_string(),
        )
    }
}

#[tokio::test]
async fn signup_login_and_purchase_write_rows_emails_notifications_and_jobs_together() {
    let system = TestSystem::start(flags).await;
    let (user_id, token) = system.signup_and_login("Ada@Example.com", "Ada").await;
    assert!(
        token.starts_with(&format!("{user_id}.")),
        "token names its user for sticky routing"
    );

    let (status, purchase) = system
        .post(
            "/api/purchases",
            Some(&token),
            json!({ "item": "Lamp", "amountCents": 1999, "currency": "EUR" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{purchase}");
    assert_eq!(purchase["amountCents"], 1999);

    // signup + login + purchase: one email and one in-app notification each, each with its job.
    assert_eq!(
        system
            .count("SELECT COUNT(*) FROM emails WHERE to_address = 'ada@example.com'")
            .await,
        3
    );
    assert_eq!(system.count("SELECT COUNT(*) FROM notifications").await, 3);
    assert_eq!(
        system.count("SELECT COUNT(*) FROM jobs WHERE channel = 'email'").await,
        3
    );
    assert_eq!(
        system.count("SELECT COUNT(*) FROM jobs WHERE channel = 'in-app'").await,
        3
    );
    assert_eq!(
        system
            .count("SELECT COUNT(*) FROM jobs j JOIN emails e ON e.id = j.target_id WHERE j.request_id = e.request_id")
            .await,
        3,
        "each job carries its request's id"
    );

    let (status, page) = system.get("/api/notifications", &token).await;
    assert_eq!(status, StatusCode::OK);
    let seqs: Vec<i64> = page["notifications"]
        .as_array()
        .expect("list")
        .iter()
        .map(|n| n["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, [3, 2, 1], "newest first, gapless per user");
    assert_eq!(page["unreadCount"], 3);

    let first = page["notifications"][2]["id"].as_str().expect("id").to_string();
    let (status, _) = system
        .post(&format!("/api/notifications/{first}/read"), Some(&token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, page) = system.get("/api/notifications?limit=2", &token).await;
    assert_eq!(page["unreadCount"], 2);
    assert_eq!(page["nextBefore"], 2);
    let (_, older) = system.get("/api/notifications?limit=2&before=2", &token).await;
    assert_eq!(older["notifications"][0]["seq"], 1);
    system.stop().await;
}

#[tokio::test]
async fn friend_requests_notify_the_recipient_then_the_sender() {
    let system = TestSystem::start(flags).await;
    let (_, ada) = system.signup_and_login("ada@example.com", "Ada").await;
    let (bob_id, bob) = system.signup_and_login("bob@example.com", "Bob").await;
    let (status, request) = system
        .post(
            "/api/friend-requests",
            Some(&ada),
            json!({ "toEmail": "bob@example.com" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{request}");
    assert_eq!(request["toUserId"], bob_id.as_str());
    let id = request["id"].as_str().expect("id");

    let (status, _) = system
        .post(
            "/api/friend-requests",
            Some(&ada),
            json!({ "toEmail": "bob@example.com" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "no duplicate requests");
    let (status, _) = system
        .post(&format!("/api/friend-requests/{id}/accept"), Some(&ada), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "only the recipient accepts");
    let (status, accepted) = system
        .post(&format!("/api/friend-requests/{id}/accept"), Some(&bob), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(accepted["status"], "accepted");
    let (status, _) = system
        .post(&format!("/api/friend-requests/{id}/accept"), Some(&bob), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (_, bobs) = system.get("/api/notifications", &bob).await;
    assert_eq!(bobs["notifications"][0]["kind"], "friend-request");
    let (_, adas) = system.get("/api/notifications", &ada).await;
    assert_eq!(adas["notifications"][0]["kind"], "friend-accept");
    system.stop().await;
}

#[tokio::test]
async fn password_reset_reveals_nothing_and_its_token_works_once() {
    let system = TestSystem::start(flags).await;
    let (_, old_token) = system.signup_and_login("ada@example.com", "Ada").await;
    // Used once, so the app servers have it in their session cache when the reset comes.
    let (status, _) = system.get("/api/notifications", &old_token).await;
    assert_eq!(status, StatusCode::OK);
    let (known, _) = system
        .post("/api/auth/reset-password", None, json!({ "email": "ada@example.com" }))
        .await;
    let (unknown, _) = system
        .post(
            "/api/auth/reset-password",
            None,
            json!({ "email": "nobody@example.com" }),
        )
        .await;
    assert_eq!((known, unknown), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(
        system
            .count("SELECT COUNT(*) FROM emails WHERE kind = 'reset-password'")
            .await,
        1,
        "only for a real account"
    );

    let body: String = liveview::with_connection!(&mut system.running.database.writing().await.expect("db"), |c| {
        sqlx::query_scalar("SELECT body FROM emails WHERE kind = 'reset-password'")
            .fetch_one(c)
            .await
    })
    .expect("email");
    let token = body
        .split("token=")
        .nth(1)
        .expect("link")
        .split_whitespace()
        .next()
        .expect("token");
    let confirm = json!({ "token": token, "newPassword": "brand-new-pass" });
    let (status, _) = system
        .post("/api/auth/reset-password/confirm", None, confirm.clone())
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, error) = system
        .post(
            "/api/auth/reset-password/confirm",
            None,
            json!({ "token": token, "newPassword": "another-pass-1" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a token works once: {error}");

    let (status, _) = system.get("/api/notifications", &old_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a reset ends every session");
    let (status, _) = system
        .post(
            "/api/auth/login",
            None,
            json!({ "email": "ada@example.com", "password": "brand-new-pass" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = system
        .post(
            "/api/auth/login",
            None,
            json!({ "email": "ada@example.com", "password": "another-pass-1" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the second confirm changed nothing");
    system.stop().await;
}

/// Every bad input gets a JSON 4xx and leaves the database as it was.
#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let system = TestSystem::start(flags).await;
    let (user_id, token) = system.signup_and_login("ada@example.com", "Ada").await;
    // A session that ran out yesterday.
    let expired_secret = liveview::accounts::new_secret();
    let yesterday = liveview::now_ms() - 86_400_000;
    liveview::with_connection!(&mut system.running.database.writing().await.expect("db"), |c| {
        sqlx::query("INSERT INTO sessions (secret_hash, user_id, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)")
            .bind(liveview::accounts::digest(&expired_secret))
            .bind(&user_id)
            .bind(yesterday - 1000)
            .bind(yesterday)
            .execute(c)
            .await
            .map(|done| done.rows_affected())
    })
    .expect("expired session");
    let expired = format!("{user_id}.{expired_secret}");
    let rows = "SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM purchases) + (SELECT COUNT(*) FROM jobs) + (SELECT COUNT(*) FROM sessions)";
    let before = system.count(rows).await;
    let url = |path: &str| system.lb(path);
    // The same token with its last hex digit changed.
    let last = if token.ends_with('0') { "1" } else { "0" };
    let forged = format!("{}{last}", &token[..token.len() - 1]);
    let http = &system.http;

    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, Option<&str>)> = vec![
        (
            "malformed JSON",
            http.post(url("/api/auth/signup"))
                .header("content-type", "application/json")
                .body("{\"email\":"),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "wrong type",
            http.post(url("/api/auth/signup"))
                .json(&json!({ "email": 5, "name": "A", "password": "longenough" })),
            StatusCode::BAD_REQUEST,
            Some("email"),
        ),
        (
            "missing field",
            http.post(url("/api/auth/signup"))
                .json(&json!({ "email": "x@example.com", "name": "A" })),
            StatusCode::BAD_REQUEST,
            Some("password"),
        ),
        (
            "unknown field",
            http.post(url("/api/auth/signup"))
                .json(&json!({ "email": "x@example.com", "name": "A", "password": "longenough", "admin": true })),
            StatusCode::BAD_REQUEST,
            Some("admin"),
        ),
        (
            "bad email",
            http.post(url("/api/auth/signup"))
                .json(&json!({ "email": "not-an-email", "name": "A", "password": "longenough" })),
            StatusCode::BAD_REQUEST,
            Some("email"),
        ),
        (
            "short password",
            http.post(url("/api/auth/signup"))
                .json(&json!({ "email": "x@example.com", "name": "A", "password": "short" })),
            StatusCode::BAD_REQUEST,
            Some("password"),
        ),
        (
            "over-long name",
            http.post(url("/api/auth/signup"))
                .json(&json!({ "email": "x@example.com", "name": "A".repeat(101), "password": "longenough" })),
            StatusCode::BAD_REQUEST,
            Some("name"),
        ),
        (
            "array body",
            http.post(url("/api/auth/signup"))
                .json(&json!(["x@example.com", "A", "longenough"])),
            StatusCode::BAD_REQUEST,
            Some("body"),
        ),
        (
            "duplicate email",
            http.post(url("/api/auth/signup"))
                .json(&json!({ "email": "ADA@example.com", "name": "A", "password": "longenough" })),
            StatusCode::CONFLICT,
            None,
        ),
        (
            "not JSON content",
            http.post(url("/api/auth/signup")).body("email=x"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
        ),
        (
            "oversize body",
            http.post(url("/api/auth/signup"))
                .header("content-type", "application/json")
                .body(format!("{{\"email\":\"{}\"}}", "x".repeat(70_000))),
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
        (
            "wrong password",
            http.post(url("/api/auth/login"))
                .json(&json!({ "email": "ada@example.com", "password": "wrong-password" })),
            StatusCode::UNAUTHORIZED,
            None,
        ),
        (
            "expired token",
            http.post(url("/api/purchases"))
                .bearer_auth(&expired)
                .json(&json!({ "item": "Lamp", "amountCents": 1, "currency": "EUR" })),
            StatusCode::UNAUTHORIZED,
            None,
        ),
        (
            "no token",
            http.post(url("/api/purchases"))
                .json(&json!({ "item": "Lamp", "amountCents": 1, "currency": "EUR" })),
            StatusCode::UNAUTHORIZED,
            None,
        ),
        (
            "bad token",
            http.post(url("/api/purchases"))
                .bearer_auth("nobody.0000")
                .json(&json!({ "item": "Lamp", "amountCents": 1, "currency": "EUR" })),
            StatusCode::UNAUTHORIZED,
            None,
        ),
        (
            "forged token",
            http.post(url("/api/purchases"))
                .bearer_auth(&forged)
                .json(&json!({ "item": "Lamp", "amountCents": 1, "currency": "EUR" })),
            StatusCode::UNAUTHORIZED,
            None,
        ),
        (
            "negative amount",
            http.post(url("/api/purchases"))
                .bearer_auth(&token)
                .json(&json!({ "item": "Lamp", "amountCents": -5, "currency": "EUR" })),
            StatusCode::BAD_REQUEST,
            Some("amountCents"),
        ),
        (
            "bad currency",
            http.post(url("/api/purchases"))
                .bearer_auth(&token)
                .json(&json!({ "item": "Lamp", "amountCents": 5, "currency": "euro" })),
            StatusCode::BAD_REQUEST,
            Some("currency"),
        ),
        (
            "amount as string",
            http.post(url("/api/purchases"))
                .bearer_auth(&token)
                .json(&json!({ "item": "Lamp", "amountCents": "5", "currency": "EUR" })),
            StatusCode::BAD_REQUEST,
            Some("amountCents"),
        ),
        (
            "friend yourself",
            http.post(url("/api/friend-requests"))
                .bearer_auth(&token)
                .json(&json!({ "toEmail": "ada@example.com" })),
            StatusCode::BAD_REQUEST,
            Some("toEmail"),
        ),
        (
            "unknown friend",
            http.post(url("/api/friend-requests"))
                .bearer_auth(&token)
                .json(&json!({ "toEmail": "nobody@example.com" })),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            "unknown route",
            http.get(url("/api/nothing-here")),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            "wrong method",
            http.get(url("/api/auth/signup")),
            StatusCode::METHOD_NOT_ALLOWED,
            None,
        ),
        (
            "bad page size",
            http.get(url("/api/notifications?limit=1000")).bearer_auth(&token),
            StatusCode::BAD_REQUEST,
            Some("limit"),
        ),
        (
            "bad page query",
            http.get(url("/api/notifications?limit=lots")).bearer_auth(&token),
            StatusCode::BAD_REQUEST,
            Some("query"),
        ),
        (
            "read someone else's",
            http.post(url("/api/notifications/nope/read")).bearer_auth(&token),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            "reset with a bad token",
            http.post(url("/api/auth/reset-password/confirm"))
                .json(&json!({ "token": "abc", "newPassword": "longenough" })),
            StatusCode::BAD_REQUEST,
            None,
        ),
    ];
    for (case, request, expected, field) in cases {
        let response = request.send().await.expect("answers");
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|error| panic!("{case}: body is not JSON: {error}"));
        assert_eq!(status, expected, "{case}: {body}");
        assert!(body["error"].is_string(), "{case}: stable error shape: {body}");
        if let Some(field) = field {
            assert!(
                body["fields"][field].is_string(),
                "{case}: names the field {field}: {body}"
            );
        }
    }
    assert_eq!(system.count(rows).await, before, "no bad request changed anything");
    system.stop().await;
}

//! The business figures (`GET /api/v1/analytics/realtime-metrics`) against a known set of
//! actions through the real balancer: every figure an exact value.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Sse, TestSystem};

mod support;

impl TestSystem {
    async fn send(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut request = self.http.post(self.lb(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("answers");
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    /// Signs a user up with `extra` fields and logs them in: their id and token.
    async fn user(&self, email: &str, name: &str, extra: Value) -> (String, String) {
        let mut body = json!({ "email": email, "name": name, "password": "s3cret-pass" });
        body.as_object_mut()
            .expect("an object")
            .extend(extra.as_object().expect("an object").clone());
        let (status, user) = self.send("/api/auth/signup", None, body).await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        let login = json!({ "email": email, "password": "s3cret-pass" });
        let (status, session) = self.send("/api/auth/login", None, login).await;
        assert_eq!(status, StatusCode::OK, "{session}");
        (
            user["id"].as_str().expect("id").into(),
            session["token"].as_str().expect("token").into(),
        )
    }

    async fn buy(&self, token: &str, body: Value) -> Value {
        let (status, purchase) = self.send("/api/purchases", Some(token), body).await;
        assert_eq!(status, StatusCode::CREATED, "{purchase}");
        purchase
    }

    async fn view(&self, item: &str, token: Option<&str>) -> StatusCode {
        let mut request = self.http.get(self.lb(&format!("/api/items/{item}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("answers").status()
    }

    async fn figures(&self) -> Value {
        self.dashboard_json("/api/v1/analytics/realtime-metrics").await
    }

    /// The figures once `ready` holds for them (the sessions' touches are written every
    /// second and the receipts go out on their own).
    async fn figures_when(&self, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        support::eventually(what, Duration::from_secs(15), || async {
            let figures = self.figures().await;
            ready(&figures).then_some(figures)
        })
        .await
    }
}

#[tokio::test]
async fn every_figure_follows_a_known_set_of_actions() {
    let system = TestSystem::start(|config| {
        config.servers = 2;
        config.timezone = chrono_tz::Europe::Berlin;
    })
    .await;
    let mut stream = Sse::open(&system, "", None).await;

    // Five signups: three customers (the default segment and source), two vendors who
    // came from the newsletter. Every one logs in.
    let (ada, ada_token) = system.user("ada@example.com", "Ada", json!({})).await;
    let (_, bob_token) = system.user("bob@example.com", "Bob", json!({})).await;
    let (_, cy_token) = system.user("cy@example.com", "Cy", json!({})).await;
    let vendor = json!({ "userType": "vendor", "source": "newsletter" });
    let (_, dee_token) = system.user("dee@example.com", "Dee", vendor.clone()).await;
    system.user("eve@example.com", "Eve", vendor).await;

    // The catalogue, and four views of it: three of the lamp by Ada, one of the
    // keyboard by nobody signed in.
    let items = system.lb_json("/api/items").await;
    let lamp = items["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|item| item["id"] == "lamp")
        .expect("the lamp")
        .clone();
    assert_eq!(lamp["priceCents"], 3900);
    for _ in 0..3 {
        assert_eq!(system.view("lamp", Some(&ada_token)).await, StatusCode::OK);
    }
    assert_eq!(system.view("keyboard", None).await, StatusCode::OK);
    assert_eq!(system.view("nothing-like-it", None).await, StatusCode::NOT_FOUND);

    // Three purchases: the lamp (39.00 EUR) and a keyboard (119.00 USD) from the
    // catalogue, and 12.50 EUR of something that is not in it.
    system
        .buy(
            &ada_token,
            json!({ "item": "Desk lamp", "amountCents": 3900, "currency": "EUR", "itemId": "lamp" }),
        )
        .await;
    system
        .buy(
            &bob_token,
            json!({ "item": "Keyboard", "amountCents": 11900, "currency": "USD", "itemId": "keyboard" }),
        )
        .await;
    system
        .buy(
            &cy_token,
            json!({ "item": "Tea", "amountCents": 1250, "currency": "EUR" }),
        )
        .await;

    // Ada invites Bob, who accepts; Cy asks for a password reset.
    let (status, request) = system
        .send(
            "/api/friend-requests",
            Some(&ada_token),
            json!({ "toEmail": "bob@example.com" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{request}");
    let accept = format!("/api/friend-requests/{}/accept", request["id"].as_str().expect("id"));
    let (status, _) = system.send(&accept, Some(&bob_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = system
        .send("/api/auth/reset-password", None, json!({ "email": "cy@example.com" }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Dee does nothing but keep her in-app socket open: she is active too.
    let url = format!("ws://{}/api/notifications/ws?token={dee_token}", system.running.lb());
    let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("upgrade");
    let _acking = support::clients::ack_every_frame(socket);

    let figures = system
        .figures_when("every receipt delivered and every session written", |figures| {
            figures["transactions"]["completed"] == 3 && figures["activeUsers"]["current"] == 4
        })
        .await;
    assert_eq!(figures["revenue"]["currency"], "EUR");
    for period in ["total", "today", "thisWeek", "thisMonth"] {
        assert_eq!(figures["revenue"][period], 51.5, "{period}: {figures}");
        assert_eq!(figures["revenue"]["byCurrency"]["EUR"][period], 51.5, "{period}");
        assert_eq!(figures["revenue"]["byCurrency"]["USD"][period], 119.0, "{period}");
    }
    let active = &figures["activeUsers"];
    // Ada, Bob and Cy made authenticated requests; Dee holds a socket; Eve only logged in.
    assert_eq!(active["current"], 4, "{active}");
    assert_eq!(active["today"], 4);
    assert_eq!(active["peak24h"], 4);
    assert_eq!(active["trend"], 4, "nobody was active an hour ago");
    assert_eq!(active["bySegment"], json!({ "customer": 3, "vendor": 1 }));
    assert_eq!(active["bySource"], json!({ "direct": 3, "newsletter": 1 }));
    assert_eq!(
        figures["transactions"],
        json!({ "total": 3, "pending": 0, "completed": 3, "failed": 0 })
    );
    assert_eq!(
        figures["content"],
        json!({ "totalViews": 4, "totalPurchases": 2, "conversionRate": 50.0 })
    );

    let activity = &figures["liveActivity"];
    let names = |kind: &str| -> Vec<String> {
        activity[kind]
            .as_array()
            .expect("a list")
            .iter()
            .map(|event| event["userName"].as_str().expect("a name").to_string())
            .collect()
    };
    assert_eq!(names("signups"), ["Eve", "Dee", "Cy", "Bob", "Ada"], "newest first");
    assert_eq!(names("logins"), ["Eve", "Dee", "Cy", "Bob", "Ada"]);
    assert_eq!(names("payments"), ["Cy", "Bob", "Ada"]);
    assert_eq!(names("invitations"), ["Bob", "Ada"]);
    assert_eq!(names("passwordResets"), ["Cy"]);
    let payments = activity["payments"].as_array().expect("payments");
    assert_eq!(payments[2]["value"], 39.0);
    assert_eq!(payments[2]["userId"], ada.as_str());
    assert_eq!(payments[2]["metadata"]["itemId"], "lamp");
    assert_eq!(payments[1]["value"], 119.0);
    assert_eq!(payments[1]["metadata"]["currency"], "USD");
    assert!(payments[0]["requestId"].is_string(), "links to its journey");
    assert_eq!(activity["signups"][0]["metadata"]["email"], "e***@example.com");
    assert_eq!(activity["signups"][0]["description"], "New vendor signed up");
    let text = activity.to_string();
    for address in ["ada@", "bob@", "cy@", "dee@", "eve@"] {
        assert!(!text.contains(address), "{address} is masked: {text}");
    }

    // The live stream announced them as they were committed.
    let mut seen = Vec::new();
    while !(seen.contains(&"new_signup".to_string()) && seen.contains(&"payment_success".to_string())) {
        let event = stream.next().await.envelope();
        seen.push(event.event.topic().to_string());
        assert!(seen.len() < 10_000, "no new_signup and payment_success among {seen:?}");
    }

    // A receipt that cannot be delivered makes its purchase failed; one held in a
    // paused queue keeps its purchase pending (and in the queue's depth).
    let refuse = system
        .dashboard_put("/api/faults", &json!({ "smtp5xxRate": 1.0 }))
        .await;
    assert_eq!(refuse.status(), 200);
    system
        .buy(
            &ada_token,
            json!({ "item": "Mug", "amountCents": 1450, "currency": "EUR", "itemId": "mug" }),
        )
        .await;
    system
        .figures_when("the refused receipt is dead-lettered", |figures| {
            figures["transactions"]["failed"] == 1
        })
        .await;
    assert_eq!(system.dashboard_put("/api/faults", &json!({})).await.status(), 200);
    let paused = system.dashboard_post("/api/queues/mail/pause", &json!({})).await;
    assert_eq!(paused.status(), 200);
    system
        .buy(
            &bob_token,
            json!({ "item": "Pen", "amountCents": 300, "currency": "EUR" }),
        )
        .await;
    let figures = system
        .figures_when("the held receipt is pending", |figures| {
            figures["transactions"]["pending"] == 1
        })
        .await;
    assert_eq!(
        figures["transactions"],
        json!({ "total": 5, "pending": 1, "completed": 3, "failed": 1 })
    );
    assert_eq!(figures["systemLoad"]["queueDepth"], 1, "the held email");
    assert_eq!(figures["revenue"]["total"], 51.5 + 14.5 + 3.0);
    assert_eq!(figures["content"]["totalPurchases"], 3);
    assert_eq!(figures["content"]["conversionRate"], 75.0);

    system.stop().await;
}

#[tokio::test]
async fn bad_segments_and_unknown_items_are_refused_and_change_nothing() {
    let system = TestSystem::start(|_| {}).await;
    let (status, body) = system
        .send(
            "/api/auth/signup",
            None,
            json!({ "email": "ada@example.com", "name": "Ada", "password": "s3cret-pass", "userType": "Big Spender", "source": "" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields: Vec<&String> = body["fields"].as_object().expect("fields").keys().collect();
    assert_eq!(fields, ["source", "userType"], "{body}");
    assert_eq!(system.count("SELECT COUNT(*) FROM users").await, 0);

    let (_, token) = system.user("ada@example.com", "Ada", json!({})).await;
    let (status, body) = system
        .send(
            "/api/purchases",
            Some(&token),
            json!({ "item": "Lamp", "amountCents": 100, "currency": "EUR", "itemId": "no-such-item" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["fields"]["itemId"].is_string(), "{body}");
    assert_eq!(system.count("SELECT COUNT(*) FROM purchases").await, 0);
    assert_eq!(
        system
            .count("SELECT COUNT(*) FROM activity_stream WHERE event_type = 'payment'")
            .await,
        0
    );
    system.stop().await;
}

/// The next `/ws/metrics` message, as JSON.
async fn next_message(socket: &mut support::clients::Socket) -> Value {
    use futures_util::StreamExt;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("socket open")
            .expect("a message");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON");
        }
    }
}

async fn say(socket: &mut support::clients::Socket, message: Value) {
    use futures_util::SinkExt;
    socket
        .send(tokio_tungstenite::tungstenite::Message::text(message.to_string()))
        .await
        .expect("sent");
}

#[tokio::test]
async fn ws_metrics_sends_the_figures_at_once_and_every_5_s_and_the_activity_to_who_asks() {
    let system = TestSystem::start(|_| {}).await;
    let url = format!("ws://{}/ws/metrics", system.running.dash());
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("upgrade");

    // At once on connect, before any feed tick could have made one.
    let first = next_message(&mut socket).await;
    assert_eq!(first["type"], "metrics", "{first}");
    assert_eq!(first["data"]["transactions"]["total"], 0);
    assert!(first["data"]["revenue"]["byCurrency"].is_object());

    say(&mut socket, json!({ "type": "ping" })).await;
    assert_eq!(next_message(&mut socket).await, json!({ "type": "pong" }));
    say(
        &mut socket,
        json!({ "type": "subscribe", "channels": ["activity", "metrics"] }),
    )
    .await;
    assert_eq!(
        next_message(&mut socket).await,
        json!({ "type": "subscribed", "channels": ["metrics", "activity"] })
    );
    say(&mut socket, json!({ "type": "subscribe", "channels": ["gossip"] })).await;
    let refused = next_message(&mut socket).await;
    assert_eq!(refused["type"], "error", "{refused}");

    // A signup arrives as activity, and the next snapshot counts its user's purchase.
    let (_, token) = system.user("ada@example.com", "Ada", json!({})).await;
    system
        .buy(&token, json!({ "item": "Tea", "amountCents": 1250, "currency": "EUR" }))
        .await;
    let mut kinds = Vec::new();
    let snapshot = loop {
        let message = next_message(&mut socket).await;
        match message["type"].as_str() {
            Some("activity") => kinds.push(message["data"]["type"].as_str().expect("a type").to_string()),
            Some("metrics") if message["data"]["transactions"]["total"] == 1 => break message,
            _ => {}
        }
    };
    assert_eq!(snapshot["data"]["revenue"]["total"], 12.5);
    assert_eq!(kinds, ["signup", "login", "payment"], "in the order they happened");

    // Only the snapshot for a client that asks for it alone.
    say(&mut socket, json!({ "type": "subscribe", "channels": ["metrics"] })).await;
    assert_eq!(next_message(&mut socket).await["type"], "subscribed");
    system
        .send("/api/auth/reset-password", None, json!({ "email": "ada@example.com" }))
        .await;
    let next = next_message(&mut socket).await;
    assert_eq!(next["type"], "metrics", "no activity now: {next}");

    // The live stream carries seed 001's system_metrics and active_users, and seed 002's
    // analytics:update.
    let mut stream = Sse::open(&system, "", None).await;
    let mut topics = std::collections::BTreeSet::new();
    while !["system_metrics", "active_users", "analytics:update"]
        .iter()
        .all(|topic| topics.contains(*topic))
    {
        topics.insert(stream.next().await.envelope().event.topic().to_string());
    }
    system.stop().await;
}

#[tokio::test]
async fn the_figures_follow_the_dashboards_sign_in() {
    let system = TestSystem::start(|config| config.dashboard_auth = Some(wire::AuthMode::Login)).await;
    let response = system
        .http
        .get(system.dashboard("/api/v1/analytics/realtime-metrics"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let url = format!("ws://{}/ws/metrics", system.running.dash());
    let refused = tokio_tungstenite::connect_async(url).await.expect_err("no upgrade");
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(response) => assert_eq!(response.status(), 401),
        other => panic!("refused as {other}"),
    }
    system.stop().await;
}

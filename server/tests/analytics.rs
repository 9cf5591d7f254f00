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

/// `t` as Unix milliseconds.
fn ms(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .expect("a time")
        .timestamp_millis()
}

impl TestSystem {
    /// Writes `sql` with `binds`, as the rows of what happened at known times.
    async fn write(&self, sql: &'static str, binds: &[&dyn ToString]) {
        let binds: Vec<String> = binds.iter().map(|bind| bind.to_string()).collect();
        let mut writing = self.running.database.writing().await.expect("db");
        liveview::with_connection!(&mut writing, |c| {
            let mut query = sqlx::query(sql);
            for bind in &binds {
                query = match bind.parse::<i64>() {
                    Ok(number) => query.bind(number),
                    Err(_) => query.bind(bind.clone()),
                };
            }
            query.execute(c).await.map(drop)
        })
        .expect("written");
    }

    async fn series(&self, query: &str) -> Vec<(String, f64, bool)> {
        let series = self.dashboard_json(&format!("/api/v1/analytics/series?{query}")).await;
        series["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|point| {
                (
                    point["t"].as_str().expect("t").to_string(),
                    point["value"].as_f64().expect("a value"),
                    point["partial"].as_bool().expect("partial"),
                )
            })
            .collect()
    }
}

#[tokio::test]
async fn series_count_what_happened_in_each_bucket_of_the_reporting_zone() {
    let system = TestSystem::start(|config| config.timezone = chrono_tz::Europe::Berlin).await;
    let insert_purchase = "INSERT INTO purchases (id, user_id, item, amount_cents, currency, created_at_ms) VALUES ($1, 'u1', 'x', $2, $3, $4)";
    system
        .write(
            "INSERT INTO users (id, email, name, password_hash, created_at_ms) VALUES ('u1', 'a@example.com', 'A', 'x', $1)",
            &[&ms("2026-11-30T10:05:00Z")],
        )
        .await;
    for (id, cents, currency, at) in [
        ("p1", 1000, "EUR", "2026-11-30T10:15:00Z"),
        ("p2", 2000, "EUR", "2026-11-30T10:45:00Z"),
        ("p3", 500, "USD", "2026-11-30T10:50:00Z"),
        // 00:30 on 1 December in Berlin.
        ("p4", 3000, "EUR", "2026-11-30T23:30:00Z"),
    ] {
        system.write(insert_purchase, &[&id, &cents, &currency, &ms(at)]).await;
    }

    let hours = system
        .series("metric=revenue&step=hour&from=2026-11-30T10:00:00Z&to=2026-11-30T12:00:00Z")
        .await;
    assert_eq!(
        hours,
        [
            ("2026-11-30T10:00:00Z".to_string(), 30.0, false),
            ("2026-11-30T11:00:00Z".to_string(), 0.0, false),
        ]
    );
    // Berlin's days: 30 November began at 23:00 UTC the day before.
    let days = system
        .series("metric=revenue&step=day&from=2026-11-29T23:00:00Z&to=2026-12-01T23:00:00Z")
        .await;
    assert_eq!(
        days,
        [
            ("2026-11-29T23:00:00Z".to_string(), 30.0, false),
            ("2026-11-30T23:00:00Z".to_string(), 30.0, false),
        ]
    );
    let purchases = system
        .series("metric=purchases&step=day&from=2026-11-29T23:00:00Z&to=2026-12-01T23:00:00Z")
        .await;
    assert_eq!(purchases.iter().map(|point| point.1).collect::<Vec<_>>(), [3.0, 1.0]);
    let signups = system
        .series("metric=signups&step=minute&from=2026-11-30T10:04:00Z&to=2026-11-30T10:07:00Z")
        .await;
    assert_eq!(signups.iter().map(|point| point.1).collect::<Vec<_>>(), [0.0, 1.0, 0.0]);

    let csv = system
        .http
        .get(system.dashboard(
            "/api/v1/analytics/series?metric=revenue&step=hour&from=2026-11-30T10:00:00Z&to=2026-11-30T12:00:00Z&format=csv",
        ))
        .send()
        .await
        .expect("answers");
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        csv.text().await.expect("text"),
        "bucket,value,partial\n2026-11-30T10:00:00Z,30,false\n2026-11-30T11:00:00Z,0,false\n"
    );

    // Active users are sampled: each bucket keeps its highest sample.
    let berlin = chrono_tz::Europe::Berlin;
    for (users, at) in [
        (3, "2026-11-30T10:01:00Z"),
        (5, "2026-11-30T10:59:00Z"),
        (2, "2026-11-30T11:30:00Z"),
    ] {
        liveview::analytics::series::record_active_users(&system.running.database, users, ms(at), berlin)
            .await
            .expect("recorded");
    }
    let active = system
        .series("metric=activeUsers&step=hour&from=2026-11-30T10:00:00Z&to=2026-11-30T12:00:00Z")
        .await;
    assert_eq!(active.iter().map(|point| point.1).collect::<Vec<_>>(), [5.0, 2.0]);

    // The bucket now is in is still filling; today so far against yesterday.
    let now = chrono::Utc::now();
    let recent = system.series("metric=purchases&step=minute").await;
    assert_eq!(recent.len(), 61, "an hour of minutes, the one now in included");
    assert!(recent.last().expect("a point").2, "the last is partial");
    assert!(recent[..60].iter().all(|point| !point.2));
    let today_start = liveview::analytics::figures::periods(now, berlin).day_ms;
    if now.timestamp_millis() - today_start > 5_000 {
        let just_now = now.timestamp_millis() - 2_000;
        system.write(insert_purchase, &[&"p5", &700, &"EUR", &just_now]).await;
        system
            .write(insert_purchase, &[&"p6", &900, &"EUR", &(just_now - 86_400_000)])
            .await;
        let compared = system.dashboard_json("/api/v1/analytics/compare?metric=revenue").await;
        // The fixed purchases above count too when they fall in either window.
        let yesterday_start = liveview::analytics::figures::periods(
            chrono::DateTime::from_timestamp_millis(today_start - 1).expect("a time"),
            berlin,
        )
        .day_ms;
        let so_far = now.timestamp_millis() - today_start;
        let fixed = |from: i64, to: i64| -> f64 {
            [
                (10.0, "2026-11-30T10:15:00Z"),
                (20.0, "2026-11-30T10:45:00Z"),
                (30.0, "2026-11-30T23:30:00Z"),
            ]
            .iter()
            .filter(|(_, at)| (from..=to).contains(&ms(at)))
            .map(|(euros, _)| euros)
            .sum()
        };
        let today = 7.0 + fixed(today_start, now.timestamp_millis());
        let yesterday = 9.0 + fixed(yesterday_start, yesterday_start + so_far);
        assert_eq!(compared["todaySoFar"], today, "{compared}");
        assert_eq!(compared["yesterdayToSameTime"], yesterday, "{compared}");
    }

    for bad in [
        "metric=gossip",
        "metric=revenue&step=fortnight",
        "metric=revenue&from=2026-11-30T12:00:00Z&to=2026-11-30T10:00:00Z",
        "metric=revenue&step=minute&from=2026-01-01T00:00:00Z&to=2026-11-30T00:00:00Z",
        "metric=revenue&format=xml",
    ] {
        let response = system
            .http
            .get(system.dashboard(&format!("/api/v1/analytics/series?{bad}")))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    system.stop().await;
}

/// The geography files `make setup` installs, where the tests (run in `server/`) find them.
fn geography(config: &mut liveview::config::Config) {
    let tools = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/node_modules");
    config.geoip_db = tools.join("@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb");
    config.world_atlas = tools.join("world-atlas/countries-110m.json");
}

impl TestSystem {
    /// Views an item as `token`, from `address` by way of a proxy on loopback.
    async fn view_from(&self, token: &str, address: &str) {
        let response = self
            .http
            .get(self.lb("/api/items/lamp"))
            .bearer_auth(token)
            .header("x-forwarded-for", address)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn active_users_are_placed_by_the_address_their_proxy_names() {
    let system = TestSystem::start(geography).await;
    // Deutsche Telekom's and Google's addresses; 10.0.0.5 is private (and, not being a
    // trusted proxy, is the client): in no country.
    let (_, ada) = system.user("ada@example.com", "Ada", json!({})).await;
    let (_, bob) = system.user("bob@example.com", "Bob", json!({})).await;
    let (_, cy) = system.user("cy@example.com", "Cy", json!({})).await;
    let (_, dee) = system.user("dee@example.com", "Dee", json!({})).await;
    system.view_from(&ada, "80.156.1.1").await;
    system.view_from(&bob, "80.156.200.7").await;
    // A client that claims an address to a proxy that appends the real one: the proxy's
    // own entry (the rightmost untrusted) wins.
    system.view_from(&cy, "80.156.1.1, 8.8.8.8").await;
    system.view_from(&dee, "10.0.0.5").await;
    let figures = system
        .figures_when("four users placed", |figures| {
            figures["activeUsers"]["current"] == 4
                && figures["activeUsers"]["locations"]
                    .as_array()
                    .is_some_and(|l| l.len() == 2)
        })
        .await;
    assert_eq!(
        figures["activeUsers"]["locations"],
        json!([
            {"country": "DE", "name": "Germany", "users": 2},
            {"country": "US", "name": "United States of America", "users": 1},
        ])
    );
    let row: (Option<String>, Option<String>) = liveview::with_connection!(
        &mut system.running.database.read().await.expect("db"),
        |c| sqlx::query_as("SELECT s.ip_address, s.country FROM active_sessions s JOIN users u ON u.id = s.user_id WHERE u.email = 'dee@example.com'")
            .fetch_one(c)
            .await
    )
    .expect("row");
    assert_eq!(row, (Some("10.0.0.5".into()), None));

    let world = system.dashboard_json("/api/v1/analytics/world").await;
    let countries = world["countries"].as_array().expect("countries");
    assert!(countries.len() > 170, "{} countries", countries.len());
    let germany = countries
        .iter()
        .find(|shape| shape["country"] == "DE")
        .expect("Germany");
    let ring = germany["rings"][0].as_array().expect("a ring");
    assert!(ring.iter().all(|point| {
        let (lon, lat) = (point[0].as_f64().expect("lon"), point[1].as_f64().expect("lat"));
        (5.0..16.0).contains(&lon) && (47.0..56.0).contains(&lat)
    }));
    system.stop().await;
}

#[tokio::test]
async fn an_address_from_an_untrusted_peer_is_not_believed() {
    let system = TestSystem::start(|config| {
        geography(config);
        config.trusted_proxies = Vec::new();
    })
    .await;
    let (_, ada) = system.user("ada@example.com", "Ada", json!({})).await;
    system.view_from(&ada, "80.156.1.1").await;
    let figures = system
        .figures_when("ada active", |figures| figures["activeUsers"]["current"] == 1)
        .await;
    assert_eq!(figures["activeUsers"]["locations"], json!([]));
    system.stop().await;
}

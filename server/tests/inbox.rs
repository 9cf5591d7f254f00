//! The notification center end to end through the balancer, with real sockets: every
//! device of a user gets every notification and every change of state, the unread count
//! and its version agree everywhere, and the preferences are honoured by the workers
//! (the journey says what was skipped). Bad input changes nothing.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    TestSystem, eventually,
    users::{EndUsers, next_of},
};

mod support;

fn flags(config: &mut liveview::config::Config) {
    config.servers = 2;
}

#[tokio::test]
async fn every_device_gets_every_notification_and_every_change_with_the_same_count() {
    let system = TestSystem::start(flags).await;
    let token = system.user("ada@example.com", "Ada").await;
    let mut phone = system.device(&token).await;
    let mut laptop = system.device(&token).await;
    // Both devices get what waited (signup, login), in order.
    for device in [&mut phone, &mut laptop] {
        assert_eq!(next_of(device, "notification:new").await["seq"], 1);
        assert_eq!(next_of(device, "notification:new").await["seq"], 2);
    }
    system.purchase(&token).await;
    let on_phone = next_of(&mut phone, "notification:new").await;
    let on_laptop = next_of(&mut laptop, "notification:new").await;
    assert_eq!(
        (on_phone["seq"].as_i64(), on_phone["kind"].as_str()),
        (Some(3), Some("purchase"))
    );
    assert_eq!(on_phone["id"], on_laptop["id"], "the same notification on both");

    let page = system.get_as("/api/notifications", &token).await;
    assert_eq!(page["unreadCount"], 3, "{page}");
    assert_eq!(page["upToSeq"], 3);
    let version = page["inboxVersion"].as_i64().expect("version");

    // Read on the phone: both devices hear it, with the count after and the next version.
    let receipt = on_phone["id"].as_str().expect("id");
    let (status, read) = system
        .post_as(&format!("/api/notifications/{receipt}/read"), &token, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(
        (read["unreadCount"].as_i64(), read["inboxVersion"].as_i64()),
        (Some(2), Some(version + 1))
    );
    for device in [&mut phone, &mut laptop] {
        let update = next_of(device, "notification:update").await;
        assert_eq!(update["ids"], json!([receipt]));
        assert_eq!(update["change"], "read");
        assert_eq!(update["unreadCount"], 2);
        assert_eq!(update["inboxVersion"], version + 1);
        assert_eq!(update["upToSeq"], 3);
    }
    // Reading it again changes nothing, and no device hears of it.
    let (_, again) = system
        .post_as(&format!("/api/notifications/{receipt}/read"), &token, json!({}))
        .await;
    assert_eq!(
        (again["unreadCount"].as_i64(), again["inboxVersion"].as_i64()),
        (Some(2), Some(version + 1))
    );

    // Archive the signup, snooze the login: the inbox is empty of unread, the archive has one.
    let page = system.get_as("/api/notifications", &token).await;
    let id_of = |seq: i64| {
        page["notifications"]
            .as_array()
            .expect("list")
            .iter()
            .find(|n| n["seq"] == seq)
            .map(|n| n["id"].as_str().expect("id").to_string())
            .expect("listed")
    };
    let (signup, login) = (id_of(1), id_of(2));
    let (status, archived) = system
        .post_as(&format!("/api/notifications/{signup}/archive"), &token, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{archived}");
    assert_eq!(archived["unreadCount"], 1);
    let (status, snoozed) = system
        .post_as(
            &format!("/api/notifications/{login}/snooze"),
            &token,
            json!({"minutes": 60}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{snoozed}");
    assert_eq!(
        (snoozed["unreadCount"].as_i64(), snoozed["inboxVersion"].as_i64()),
        (Some(0), Some(version + 3))
    );
    let laptop_update = next_of(&mut laptop, "notification:update").await;
    assert_eq!(laptop_update["change"], "archived");
    let laptop_update = next_of(&mut laptop, "notification:update").await;
    assert_eq!(laptop_update["change"], "snoozed");
    assert!(laptop_update["snoozedUntilMs"].as_i64().is_some(), "{laptop_update}");

    let inbox = system.get_as("/api/notifications", &token).await;
    assert_eq!(
        inbox["notifications"].as_array().map(Vec::len),
        Some(1),
        "only the receipt: {inbox}"
    );
    let archive = system.get_as("/api/notifications?view=archived", &token).await;
    assert_eq!(archive["notifications"][0]["id"], signup.as_str());
    let later = system.get_as("/api/notifications?view=snoozed", &token).await;
    assert_eq!(later["notifications"][0]["id"], login.as_str());
    let purchases = system
        .get_as("/api/notifications?view=all&category=purchases", &token)
        .await;
    assert_eq!(purchases["notifications"].as_array().map(Vec::len), Some(1));
    assert_eq!(purchases["notifications"][0]["category"], "purchases");

    // Unarchive brings the signup back unread; read-all up to seq 3 reads it.
    system
        .post_as(&format!("/api/notifications/{signup}/unarchive"), &token, json!({}))
        .await;
    system.purchase(&token).await;
    let fourth = next_of(&mut phone, "notification:new").await;
    assert_eq!(fourth["seq"], 4);
    let (status, all) = system
        .post_as("/api/notifications/read-all", &token, json!({"upToSeq": 3}))
        .await;
    assert_eq!(status, StatusCode::OK, "{all}");
    // Unread up to seq 3: the signup, and the login (snoozed, still unread).
    let mut ids: Vec<&str> = all["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ids.sort_unstable();
    let mut expected = vec![signup.as_str(), login.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected, "only what was unread up to seq 3");
    assert_eq!(all["unreadCount"], 1, "the fourth, which came after, stays unread");
    let final_page = system.get_as("/api/notifications", &token).await;
    assert_eq!(
        (final_page["unreadCount"].clone(), final_page["inboxVersion"].clone()),
        (all["unreadCount"].clone(), all["inboxVersion"].clone()),
        "the list and the last update agree"
    );
    system.stop().await;
}

#[tokio::test]
async fn a_category_switched_off_is_skipped_by_its_worker_and_the_journey_says_so() {
    let system = TestSystem::start(flags).await;
    let token = system.user("ada@example.com", "Ada").await;
    let preferences = system.get_as("/api/notifications/preferences", &token).await;
    assert_eq!(preferences["categories"].as_array().map(Vec::len), Some(5));
    assert!(
        preferences["categories"]
            .as_array()
            .expect("categories")
            .iter()
            .all(|c| c["email"] == true && c["inApp"] == true),
        "everything on by default: {preferences}"
    );
    let off = json!({"categories": [
        {"category": "purchases", "email": false, "inApp": true},
        {"category": "account", "email": false, "inApp": false},
    ]});
    let (status, set) = system
        .call(
            reqwest::Method::PUT,
            "/api/notifications/preferences",
            &token,
            Some(off),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(
        set["categories"][1],
        json!({"category": "purchases", "email": false, "inApp": true})
    );

    let mut device = system.device(&token).await;
    // The signup and login notices wait from before; the login one is critical.
    system.purchase(&token).await;
    let receipt = next_of(&mut device, "notification:new").await;
    let receipt = if receipt["kind"] == "purchase" {
        receipt
    } else {
        next_of(&mut device, "notification:new").await
    };
    assert_eq!(receipt["kind"], "purchase", "in-app is still on for purchases");

    eventually("the receipt's email skipped", Duration::from_secs(10), || async {
        (system
            .count("SELECT COUNT(*) FROM emails WHERE kind = 'purchase' AND skipped = 'preference'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(
        system
            .count("SELECT COUNT(*) FROM emails WHERE kind = 'purchase' AND sent_at_ms IS NOT NULL")
            .await,
        0
    );
    assert_eq!(
        system
            .count("SELECT COUNT(*) FROM mailbox WHERE subject LIKE 'Your receipt%'")
            .await,
        0,
        "nothing reached the SMTP server"
    );
    // Its job is done, not waiting: the purchase is not pending for ever.
    assert_eq!(
        system
            .count("SELECT COUNT(*) FROM jobs j JOIN emails e ON e.id = j.target_id WHERE e.kind = 'purchase' AND j.state <> 'completed'")
            .await,
        0
    );
    // A new sign-in is critical: it is sent although account emails are off.
    let login = json!({ "email": "ada@example.com", "password": "long-enough" });
    system
        .http
        .post(system.lb("/api/auth/login"))
        .json(&login)
        .send()
        .await
        .expect("login");
    eventually("the sign-in email sent", Duration::from_secs(10), || async {
        (system
            .count("SELECT COUNT(*) FROM emails WHERE kind = 'login' AND sent_at_ms IS NOT NULL")
            .await
            >= 1)
            .then_some(())
    })
    .await;
    // The signup notice (account, in-app off, not critical) is in no list.
    let all = system.get_as("/api/notifications?view=all", &token).await;
    let kinds: Vec<&str> = all["notifications"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|n| n["kind"].as_str())
        .collect();
    assert!(!kinds.contains(&"signup"), "{kinds:?}");
    assert!(kinds.contains(&"purchase") && kinds.contains(&"login"), "{kinds:?}");

    // The purchase's journey ends its email delivery with a skipped stage.
    let mut read = system.running.database.read().await.expect("db");
    let request_id: String = liveview::with_connection!(&mut read, |c| sqlx::query_scalar(
        "SELECT request_id FROM emails WHERE kind = 'purchase'"
    )
    .fetch_one(c)
    .await)
    .expect("request id");
    drop(read);
    let journey = eventually("the journey with its skip", Duration::from_secs(10), || async {
        let journey = system
            .dashboard_json(&format!("/api/live-view/requests/{request_id}"))
            .await;
        let stages = journey["request"]["stages"].as_array()?.clone();
        (stages.iter().any(|s| s["stage"] == "skipped") && journey["outcome"] == "completed").then_some(journey)
    })
    .await;
    let skipped = journey["request"]["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["stage"] == "skipped")
        .cloned()
        .expect("skipped");
    assert_eq!(skipped["metadata"]["channel"], "email", "{skipped}");
    assert_eq!(skipped["metadata"]["reason"], "preference");
    system.stop().await;
}

#[tokio::test]
async fn bad_notification_center_input_gets_a_clear_4xx_and_changes_nothing() {
    let system = TestSystem::start(flags).await;
    let token = system.user("ada@example.com", "Ada").await;
    let other = system.user("bob@example.com", "Bob").await;
    let page = system.get_as("/api/notifications", &token).await;
    let mine = page["notifications"][0]["id"].as_str().expect("id").to_string();
    let version = page["inboxVersion"].clone();
    let cases = [
        (
            format!("/api/notifications/{mine}/dance"),
            json!({}),
            StatusCode::NOT_FOUND,
            &token,
        ),
        (
            "/api/notifications/nope/archive".to_string(),
            json!({}),
            StatusCode::NOT_FOUND,
            &token,
        ),
        (
            format!("/api/notifications/{mine}/archive"),
            json!({}),
            StatusCode::NOT_FOUND,
            &other,
        ),
        (
            format!("/api/notifications/{mine}/read"),
            json!({}),
            StatusCode::NOT_FOUND,
            &other,
        ),
        (
            format!("/api/notifications/{mine}/snooze"),
            json!({"minutes": 0}),
            StatusCode::BAD_REQUEST,
            &token,
        ),
        (
            format!("/api/notifications/{mine}/snooze"),
            json!({"minutes": 99_999}),
            StatusCode::BAD_REQUEST,
            &token,
        ),
        (
            format!("/api/notifications/{mine}/snooze"),
            json!({"hours": 1}),
            StatusCode::BAD_REQUEST,
            &token,
        ),
        (
            "/api/notifications/read-all".to_string(),
            json!({"upToSeq": -1}),
            StatusCode::BAD_REQUEST,
            &token,
        ),
        (
            "/api/notifications/read-all".to_string(),
            json!({"category": "spam"}),
            StatusCode::BAD_REQUEST,
            &token,
        ),
    ];
    for (path, body, expected, who) in cases {
        let (status, answer) = system.post_as(&path, who, body.clone()).await;
        assert_eq!(status, expected, "{path} {body}: {answer}");
        assert!(answer["error"].is_string(), "a structured error: {answer}");
    }
    for body in [
        json!({"categories": [{"category": "social", "email": false, "inApp": true}, {"category": "social", "email": true, "inApp": true}]}),
        json!({"categories": [{"category": "spam", "email": false, "inApp": true}]}),
        json!({"categories": [{"category": "social", "email": "no", "inApp": true}]}),
    ] {
        let (status, answer) = system
            .call(
                reqwest::Method::PUT,
                "/api/notifications/preferences",
                &token,
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
    }
    let (status, _) = system
        .call(reqwest::Method::GET, "/api/notifications?view=everything", &token, None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let after = system.get_as("/api/notifications", &token).await;
    assert_eq!(after["inboxVersion"], version, "nothing changed");
    assert_eq!(after["unreadCount"], page["unreadCount"]);
    assert_eq!(system.count("SELECT COUNT(*) FROM notification_mutes").await, 0);
    system.stop().await;
}

#[tokio::test]
async fn a_client_checks_its_token_signs_out_and_finds_its_friends() {
    let system = TestSystem::start(flags).await;
    let ada = system.user("ada@example.com", "Ada").await;
    let bob = system.user("bob@example.com", "Bob").await;
    let me = system.get_as("/api/auth/me", &ada).await;
    assert_eq!(me["name"], "Ada");
    assert!(me.get("passwordHash").is_none() && me["email"] == "ada@example.com");

    // A request one way: outgoing for Ada, incoming for Bob, no friends yet.
    let (status, request) = system
        .post_as("/api/friend-requests", &ada, json!({ "toEmail": "bob@example.com" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{request}");
    let ada_friends = system.get_as("/api/friends", &ada).await;
    assert_eq!(ada_friends["outgoing"][0]["person"]["name"], "Bob");
    assert_eq!(ada_friends["incoming"], json!([]));
    assert_eq!(ada_friends["friends"], json!([]));
    let bob_friends = system.get_as("/api/friends", &bob).await;
    assert_eq!(bob_friends["incoming"][0]["id"], request["id"]);
    assert_eq!(bob_friends["incoming"][0]["person"]["name"], "Ada");
    assert!(
        bob_friends["incoming"][0]["person"].get("email").is_none(),
        "no address shown"
    );

    // Accepted: friends both ways, nothing pending.
    let accept = format!("/api/friend-requests/{}/accept", request["id"].as_str().expect("id"));
    let (status, _) = system.post_as(&accept, &bob, json!(null)).await;
    assert_eq!(status, StatusCode::OK);
    for (token, friend) in [(&ada, "Bob"), (&bob, "Ada")] {
        let friends = system.get_as("/api/friends", token).await;
        assert_eq!(friends["friends"].as_array().map(Vec::len), Some(1));
        assert_eq!(friends["friends"][0]["name"], friend);
        assert_eq!(friends["incoming"], json!([]));
        assert_eq!(friends["outgoing"], json!([]));
    }

    // Signing out ends this token only, at once (the same process's cache forgets it).
    let second = system.user_login("ada@example.com").await;
    let (status, done) = system.post_as("/api/auth/logout", &ada, json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    for path in ["/api/auth/me", "/api/notifications", "/api/friends"] {
        let (status, body) = system.call(reqwest::Method::GET, path, &ada, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert!(body["error"].is_string());
    }
    let (status, _) = system.post_as("/api/auth/logout", &ada, json!(null)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "an ended session cannot sign out twice"
    );
    assert_eq!(system.get_as("/api/auth/me", &second).await["name"], "Ada");
    system.stop().await;
}

#[tokio::test]
async fn an_operators_announcement_reaches_every_socket_and_stays_a_week() {
    let system = TestSystem::start(flags).await;
    let ada = system.user("ada@example.com", "Ada").await;
    let bob = system.user("bob@example.com", "Bob").await;
    let mut ada_device = system.device(&ada).await;
    let mut bob_device = system.device(&bob).await;

    for bad in [
        json!({ "title": "", "body": "something" }),
        json!({ "title": "Maintenance", "body": "x".repeat(1001) }),
        json!({ "title": "Maintenance" }),
    ] {
        let response = system.dashboard_post("/api/announcements", &bad).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(system.count("SELECT COUNT(*) FROM announcements").await, 0);

    let said = json!({ "title": "Maintenance tonight", "body": "From 22:00 UTC, for ten minutes." });
    let response = system.dashboard_post("/api/announcements", &said).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let stored: Value = response.json().await.expect("json");
    for device in [&mut ada_device, &mut bob_device] {
        let frame = next_of(device, "system:announcement").await;
        assert_eq!(frame["id"], stored["id"]);
        assert_eq!(frame["title"], "Maintenance tonight");
    }
    // A client that was not connected finds it in the list.
    let list = system.get_as("/api/announcements", &bob).await;
    assert_eq!(list["announcements"][0]["body"], "From 22:00 UTC, for ten minutes.");
    // An end user's token is not an operator's: the dashboard is elsewhere, and the
    // balancer has no such POST.
    let (status, _) = system.post_as("/api/announcements", &ada, said.clone()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let audit = system.dashboard_json("/api/audit?limit=5").await;
    assert!(
        audit["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|entry| entry["path"] == "/api/announcements" && entry["status"] == 201),
        "{audit}"
    );
    system.stop().await;
}

#[tokio::test]
async fn a_snoozed_notification_comes_back_on_time_and_every_device_counts_it() {
    let system = TestSystem::start(flags).await;
    let ada = system.user("ada@example.com", "Ada").await;
    let mut phone = system.device(&ada).await;
    let page = system.get_as("/api/notifications", &ada).await;
    let login = page["notifications"][0]["id"].as_str().expect("id").to_string();
    let (status, snoozed) = system
        .post_as(
            &format!("/api/notifications/{login}/snooze"),
            &ada,
            json!({ "minutes": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{snoozed}");
    assert_eq!(next_of(&mut phone, "notification:update").await["change"], "snoozed");
    // The clock moves on: the snooze ends a moment from now rather than in a minute.
    liveview::with_connection!(&mut system.running.database.writing().await.expect("db"), |c| {
        sqlx::query("UPDATE notifications SET snoozed_until_ms = $1 WHERE id = $2")
            .bind(liveview::now_ms() + 300)
            .bind(&login)
            .execute(c)
            .await
            .map(|_| ())
    })
    .expect("moved");
    // Checked every 5 s, so this waits longer than next_of's 5 s.
    let back = tokio::time::timeout(Duration::from_secs(15), async {
        use futures_util::StreamExt;
        loop {
            let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = phone.next().await else {
                panic!("the socket closed");
            };
            let frame: Value = serde_json::from_str(&text).expect("JSON");
            if frame["type"] == "notification:update" {
                return frame;
            }
        }
    })
    .await
    .expect("back within the check's period");
    assert_eq!(back["change"], "returned");
    assert_eq!(back["ids"], json!([login]));
    assert_eq!(back["unreadCount"], snoozed["unreadCount"].as_i64().expect("count") + 1);
    assert_eq!(
        back["inboxVersion"],
        snoozed["inboxVersion"].as_i64().expect("version") + 1
    );
    let inbox = system.get_as("/api/notifications", &ada).await;
    assert_eq!(inbox["unreadCount"], back["unreadCount"]);
    assert_eq!(inbox["inboxVersion"], back["inboxVersion"]);
    assert!(
        inbox["notifications"]
            .as_array()
            .expect("list")
            .iter()
            .any(|item| item["id"] == login.as_str())
    );
    system.stop().await;
}

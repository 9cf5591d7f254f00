//! Messaging between friends end to end through the balancer, with real sockets:
//! conversations, a gapless seq, a resend that is not a second message, delivery and
//! read states reaching the sender live, store and forward for an offline recipient,
//! edits and deletions, participants joining and leaving, typing, and every kind of bad
//! input refused with nothing changed.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{
    TestSystem,
    clients::Socket,
    eventually,
    users::{EndUsers, next_of},
};
use tokio_tungstenite::tungstenite::Message;

mod support;

fn flags(config: &mut liveview::config::Config) {
    config.servers = 2;
}

/// A signed-up user: their token and id.
struct Person {
    token: String,
    id: String,
}

async fn person(system: &TestSystem, name: &str) -> Person {
    let token = system.user(&format!("{}@example.com", name.to_lowercase()), name).await;
    let id = system.get_as("/api/auth/me", &token).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    Person { token, id }
}

async fn befriend(system: &TestSystem, a: &Person, b: &Person, b_email: &str) {
    let (status, request) = system
        .post_as("/api/friend-requests", &a.token, json!({ "toEmail": b_email }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{request}");
    let accept = format!("/api/friend-requests/{}/accept", request["id"].as_str().expect("id"));
    let (status, body) = system.post_as(&accept, &b.token, json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn send(
    system: &TestSystem,
    who: &Person,
    conversation: &str,
    client_id: &str,
    body: &str,
) -> (StatusCode, Value) {
    system
        .post_as(
            &format!("/api/conversations/{conversation}/messages"),
            &who.token,
            json!({ "clientId": client_id, "body": body }),
        )
        .await
}

async fn frame(socket: &mut Socket, text: Value) {
    socket.send(Message::text(text.to_string())).await.expect("send");
}

/// Ada, Bob and Cy, where Ada is friends with both and Bob and Cy are not friends.
async fn three(system: &TestSystem) -> (Person, Person, Person) {
    let ada = person(system, "Ada").await;
    let bob = person(system, "Bob").await;
    let cy = person(system, "Cy").await;
    befriend(system, &ada, &bob, "bob@example.com").await;
    befriend(system, &ada, &cy, "cy@example.com").await;
    (ada, bob, cy)
}

async fn conversation_with(system: &TestSystem, creator: &Person, others: &[&Person]) -> String {
    let ids: Vec<&str> = others.iter().map(|other| other.id.as_str()).collect();
    let (status, conversation) = system
        .post_as("/api/conversations", &creator.token, json!({ "participants": ids }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{conversation}");
    conversation["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn messages_are_stored_once_in_order_and_their_states_reach_the_sender_live() {
    let system = TestSystem::start(flags).await;
    let (ada, bob, _) = three(&system).await;
    let mut ada_device = system.device(&ada.token).await;
    let conversation = conversation_with(&system, &ada, &[&bob]).await;
    // A one-to-one conversation is not doubled: asking again finds it.
    let (status, again) = system
        .post_as("/api/conversations", &bob.token, json!({ "participants": [ada.id] }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["id"], conversation.as_str());

    // Bob is away: three messages wait for him. A resend is the same message.
    let mut seqs = Vec::new();
    for (n, text) in ["one", "two", "three"].iter().enumerate() {
        let (status, message) = send(&system, &ada, &conversation, &format!("temp-{n}"), text).await;
        assert_eq!(status, StatusCode::CREATED, "{message}");
        seqs.push(message["seq"].as_i64().expect("seq"));
        assert_eq!(
            next_of(&mut ada_device, "message:new").await["id"],
            message["id"],
            "the sender's devices hear it"
        );
    }
    assert_eq!(seqs, [1, 2, 3], "gapless from 1");
    let (status, resent) = send(&system, &ada, &conversation, "temp-1", "two").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resent["seq"], 2);
    assert_eq!(system.count("SELECT COUNT(*) FROM messages").await, 3);

    // Bob comes online: the three, in order, then what is sent live.
    let mut bob_device = system.device(&bob.token).await;
    for seq in 1..=3 {
        let message = next_of(&mut bob_device, "message:new").await;
        assert_eq!(message["seq"], seq);
        assert_eq!(message["conversationId"], conversation.as_str());
    }
    // Sent, not delivered, until a device acks.
    let page = system
        .get_as(&format!("/api/conversations/{conversation}/messages"), &ada.token)
        .await;
    let bob_state = page["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|participant| participant["id"] == bob.id.as_str())
        .cloned()
        .expect("bob");
    assert_eq!(bob_state["deliveredSeq"], 0);
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(3));
    assert_eq!(page["messages"][0]["body"], "one");

    frame(
        &mut bob_device,
        json!({ "type": "message:ack", "conversationId": conversation, "upToSeq": 3 }),
    )
    .await;
    let delivered = next_of(&mut ada_device, "conversation.state_update").await;
    assert_eq!(delivered["userId"], bob.id.as_str());
    assert_eq!(delivered["deliveredSeq"], 3);
    assert_eq!(delivered["readSeq"], 0);
    frame(
        &mut bob_device,
        json!({ "type": "message:read", "conversationId": conversation, "upToSeq": 2 }),
    )
    .await;
    let read = next_of(&mut ada_device, "conversation.state_update").await;
    assert_eq!(
        (read["deliveredSeq"].as_i64(), read["readSeq"].as_i64()),
        (Some(3), Some(2))
    );
    // A horizon never moves back, and a seq past the end is the end.
    let (status, horizon) = system
        .post_as(
            &format!("/api/conversations/{conversation}/read"),
            &bob.token,
            json!({ "upToSeq": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(horizon["readSeq"], 2);
    let (_, horizon) = system
        .post_as(
            &format!("/api/conversations/{conversation}/read"),
            &bob.token,
            json!({ "upToSeq": 99 }),
        )
        .await;
    assert_eq!(horizon["readSeq"], 3);

    // Bob answers over the socket; Ada's device hears it, Bob's other device too.
    let mut bob_phone = system.device(&bob.token).await;
    frame(
        &mut bob_device,
        json!({ "type": "message:send", "conversationId": conversation, "clientId": "bob-1", "body": "hi Ada" }),
    )
    .await;
    let answer = next_of(&mut ada_device, "message:new").await;
    assert_eq!(
        (answer["seq"].as_i64(), answer["body"].as_str()),
        (Some(4), Some("hi Ada"))
    );
    assert_eq!(next_of(&mut bob_phone, "message:new").await["clientId"], "bob-1");

    // The list: the newest message and what each has unread.
    let ada_list = system.get_as("/api/conversations", &ada.token).await;
    assert_eq!(ada_list["conversations"][0]["lastMessage"]["body"], "hi Ada");
    assert_eq!(ada_list["conversations"][0]["unread"], 1);
    let bob_list = system.get_as("/api/conversations", &bob.token).await;
    assert_eq!(
        bob_list["conversations"][0]["unread"], 0,
        "his own message is not unread"
    );

    // Reconnecting, Bob is sent nothing again: everything was delivered.
    drop(bob_device);
    let mut bob_device = system.device(&bob.token).await;
    frame(
        &mut bob_device,
        json!({ "type": "conversation.typing", "conversationId": conversation, "isTyping": true }),
    )
    .await;
    let typing = next_of(&mut ada_device, "conversation.typing").await;
    assert_eq!(typing["userId"], bob.id.as_str(), "the server says who types");
    assert_eq!(typing["isTyping"], true);
    let waited = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            match bob_device.next().await {
                Some(Ok(Message::Text(text))) if text.contains("message:new") => return text.to_string(),
                Some(Ok(_)) => continue,
                _ => return String::new(),
            }
        }
    })
    .await;
    assert!(waited.is_err(), "nothing pushed twice: {waited:?}");
    system.stop().await;
}

#[tokio::test]
async fn edits_deletions_and_participants_reach_every_member() {
    let system = TestSystem::start(flags).await;
    let (ada, bob, cy) = three(&system).await;
    let conversation = conversation_with(&system, &ada, &[&bob]).await;
    let (_, first) = send(&system, &ada, &conversation, "a-1", "before Cy").await;
    let mut bob_device = system.device(&bob.token).await;
    next_of(&mut bob_device, "message:new").await;

    // Only the sender edits or deletes; everyone sees it.
    let path = format!(
        "/api/conversations/{conversation}/messages/{}",
        first["id"].as_str().expect("id")
    );
    let (status, _) = system
        .call(Method::PATCH, &path, &bob.token, Some(json!({ "body": "forged" })))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, edited) = system
        .call(
            Method::PATCH,
            &path,
            &ada.token,
            Some(json!({ "body": "before Cy joined" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    let update = next_of(&mut bob_device, "message:update").await;
    assert_eq!(update["body"], "before Cy joined");
    assert!(update["editedAtMs"].is_i64());

    // Cy joins (a friend of Ada's): he sees what is said from now on, not before.
    let (status, joined) = system
        .post_as(
            &format!("/api/conversations/{conversation}/participants"),
            &ada.token,
            json!({ "userId": cy.id }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let change = next_of(&mut bob_device, "conversation.update_participant").await;
    assert_eq!(change["change"], "joined");
    assert_eq!(change["person"]["name"], "Cy");
    assert_eq!(change["conversation"]["participants"].as_array().map(Vec::len), Some(3));
    // Bob may not add Cy again (and is not Cy's friend anyway).
    let (status, _) = system
        .post_as(
            &format!("/api/conversations/{conversation}/participants"),
            &bob.token,
            json!({ "userId": cy.id }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, second) = send(&system, &bob, &conversation, "b-1", "hello Cy").await;
    let cy_page = system
        .get_as(&format!("/api/conversations/{conversation}/messages"), &cy.token)
        .await;
    let bodies: Vec<&str> = cy_page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|message| message["body"].as_str())
        .collect();
    assert_eq!(bodies, ["hello Cy"]);
    let mut cy_device = system.device(&cy.token).await;
    assert_eq!(
        next_of(&mut cy_device, "message:new").await["id"],
        second["id"],
        "forwarded to him"
    );

    // Deleted: the text goes, the seq stays.
    let (status, deleted) = system.call(Method::DELETE, &path, &ada.token, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted["body"], "");
    let update = next_of(&mut bob_device, "message:update").await;
    assert!(update["deletedAtMs"].is_i64());
    let (status, _) = system.call(Method::DELETE, &path, &ada.token, None).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Renamed; then Bob leaves: he keeps what was said, and can no longer write.
    let (status, renamed) = system
        .call(
            Method::PATCH,
            &format!("/api/conversations/{conversation}"),
            &cy.token,
            Some(json!({ "title": "Trip" })),
        )
        .await;
    assert_eq!((status, renamed["title"].as_str()), (StatusCode::OK, Some("Trip")));
    assert_eq!(
        next_of(&mut bob_device, "conversation.update_participant").await["change"],
        "renamed"
    );
    let (status, _) = system
        .call(
            Method::DELETE,
            &format!("/api/conversations/{conversation}/participants/me"),
            &bob.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Cy's device heard his rename first.
    let renamed = next_of(&mut cy_device, "conversation.update_participant").await;
    assert_eq!(renamed["change"], "renamed");
    let left = next_of(&mut cy_device, "conversation.update_participant").await;
    assert_eq!(
        (left["change"].as_str(), left["person"]["name"].as_str()),
        (Some("left"), Some("Bob"))
    );
    let (status, _) = send(&system, &bob, &conversation, "b-2", "still here?").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, later) = send(&system, &cy, &conversation, "c-1", "after Bob").await;
    let bob_page = system
        .get_as(&format!("/api/conversations/{conversation}/messages"), &bob.token)
        .await;
    let seqs: Vec<i64> = bob_page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|message| message["seq"].as_i64())
        .collect();
    assert!(
        !seqs.contains(&later["seq"].as_i64().expect("seq")),
        "not what came after he left"
    );
    assert_eq!(seqs, [1, 2]);
    system.stop().await;
}

#[tokio::test]
async fn bad_messaging_input_gets_a_clear_refusal_and_changes_nothing() {
    let system = TestSystem::start(flags).await;
    let (ada, bob, cy) = three(&system).await;
    let stranger = person(&system, "Dee").await;
    let conversation = conversation_with(&system, &ada, &[&bob]).await;
    let before = system.count("SELECT COUNT(*) FROM messages").await;
    let conversations = system.count("SELECT COUNT(*) FROM conversations").await;

    let refusals: Vec<(Method, String, &Person, Option<Value>, StatusCode)> = vec![
        // Not a friend; not a user; nobody.
        (
            Method::POST,
            "/api/conversations".into(),
            &bob,
            Some(json!({ "participants": [cy.id] })),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "/api/conversations".into(),
            &ada,
            Some(json!({ "participants": ["nobody"] })),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/api/conversations".into(),
            &ada,
            Some(json!({ "participants": [] })),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/conversations".into(),
            &ada,
            Some(json!({ "participants": [ada.id] })),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/conversations".into(),
            &ada,
            Some(json!({ "participants": "bob" })),
            StatusCode::BAD_REQUEST,
        ),
        // A conversation one is not in; one that does not exist.
        (
            Method::GET,
            format!("/api/conversations/{conversation}/messages"),
            &stranger,
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            format!("/api/conversations/{conversation}/messages"),
            &cy,
            Some(json!({ "clientId": "x1", "body": "hi" })),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::GET,
            "/api/conversations/nope/messages".into(),
            &ada,
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/api/conversations/nope/messages".into(),
            &ada,
            Some(json!({ "clientId": "x2", "body": "hi" })),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/api/conversations/nope/read".into(),
            &ada,
            Some(json!({ "upToSeq": 1 })),
            StatusCode::NOT_FOUND,
        ),
        // Empty, oversize, badly named.
        (
            Method::POST,
            format!("/api/conversations/{conversation}/messages"),
            &ada,
            Some(json!({ "clientId": "x3", "body": "   " })),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("/api/conversations/{conversation}/messages"),
            &ada,
            Some(json!({ "clientId": "x4", "body": "x".repeat(4001) })),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Method::POST,
            format!("/api/conversations/{conversation}/messages"),
            &ada,
            Some(json!({ "clientId": "", "body": "hi" })),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("/api/conversations/{conversation}/messages"),
            &ada,
            Some(json!({ "clientId": "x5" })),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("/api/conversations/{conversation}/messages"),
            &ada,
            Some(json!({ "clientId": "x6", "body": "hi", "seq": 9 })),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/api/conversations/{conversation}/messages?limit=0"),
            &ada,
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/api/conversations/{conversation}/messages?before=-1"),
            &ada,
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("/api/conversations/{conversation}/read"),
            &ada,
            Some(json!({ "upToSeq": -1 })),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            format!("/api/conversations/{conversation}"),
            &ada,
            Some(json!({ "title": "x".repeat(101) })),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            format!("/api/conversations/{conversation}/messages/nope"),
            &ada,
            Some(json!({ "body": "hi" })),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, path, who, body, expected) in refusals {
        let (status, answer) = system.call(method.clone(), &path, &who.token, body.clone()).await;
        assert_eq!(status, expected, "{method} {path} {body:?}: {answer}");
        assert!(answer["error"].is_string(), "{method} {path}: {answer}");
    }
    let (status, _) = system
        .call(Method::GET, "/api/conversations", "ada.not-a-token", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(system.count("SELECT COUNT(*) FROM messages").await, before);
    assert_eq!(system.count("SELECT COUNT(*) FROM conversations").await, conversations);

    // On the socket: a clear error frame for each, naming the clientId; malformed ones
    // in a row close it.
    let mut cy_device = system.device(&cy.token).await;
    frame(
        &mut cy_device,
        json!({ "type": "message:send", "conversationId": conversation, "clientId": "c-9", "body": "let me in" }),
    )
    .await;
    let refused = next_of(&mut cy_device, "error").await;
    assert_eq!(refused["code"], "forbidden");
    assert_eq!(refused["clientId"], "c-9");
    frame(
        &mut cy_device,
        json!({ "type": "conversation.typing", "conversationId": conversation, "isTyping": true }),
    )
    .await;
    assert_eq!(next_of(&mut cy_device, "error").await["code"], "forbidden");
    for n in 0..5 {
        cy_device
            .send(Message::text(format!("{{\"type\":\"nonsense\",\"n\":{n}}}")))
            .await
            .expect("send");
        assert_eq!(next_of(&mut cy_device, "error").await["code"], "malformed");
    }
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match cy_device.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|frame| u16::from(frame.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("closed within 5 s");
    assert_eq!(closed, Some(1008));
    assert_eq!(system.count("SELECT COUNT(*) FROM messages").await, before);
    system.stop().await;
}

#[tokio::test]
async fn a_flood_from_one_socket_is_throttled_and_others_are_served() {
    let system = TestSystem::start(flags).await;
    let (ada, bob, _) = three(&system).await;
    let conversation = conversation_with(&system, &ada, &[&bob]).await;
    let mut flood = system.device(&ada.token).await;
    let mut bob_device = system.device(&bob.token).await;
    for _ in 0..200 {
        frame(
            &mut flood,
            json!({ "type": "conversation.typing", "conversationId": conversation, "isTyping": true }),
        )
        .await;
    }
    assert_eq!(next_of(&mut flood, "error").await["code"], "rate-limited");
    // Bob heard typing, throttled to about one a second, not two hundred.
    let mut typing = 0;
    let _ = tokio::time::timeout(Duration::from_millis(1500), async {
        while let Some(Ok(message)) = bob_device.next().await {
            if let Message::Text(text) = message
                && text.contains("conversation.typing")
            {
                typing += 1;
            }
        }
    })
    .await;
    assert!((1..=3).contains(&typing), "{typing} typing frames");
    // Someone else still sends at once.
    let (status, _) = send(&system, &bob, &conversation, "b-1", "still fast").await;
    assert_eq!(status, StatusCode::CREATED);
    system.stop().await;
}

#[tokio::test]
async fn a_new_message_notifies_in_the_app_and_by_email_only_while_unread() {
    // Ten minutes unread become six seconds.
    let system = TestSystem::start(|config| {
        flags(config);
        config.time_scale = 0.01;
    })
    .await;
    let (ada, bob, _) = three(&system).await;
    let conversation = conversation_with(&system, &ada, &[&bob]).await;

    // Through the balancer, the send is a journey of its own kind.
    let response = system
        .http
        .post(system.lb(&format!("/api/conversations/{conversation}/messages")))
        .bearer_auth(&ada.token)
        .json(&json!({ "clientId": "a-1", "body": "are you there?" }))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::CREATED);
    let request_id = response.headers()["x-request-id"].to_str().expect("id").to_string();
    let unread: Value = response.json().await.expect("json");
    let journey = system
        .dashboard_json(&format!("/api/live-view/requests/{request_id}"))
        .await;
    assert_eq!(journey["request"]["type"], "message", "{journey}");

    // Bob's notification center has it, under messages.
    let notifications = eventually("Bob's message notification", Duration::from_secs(10), || async {
        let page = system.get_as("/api/notifications?category=messages", &bob.token).await;
        (page["notifications"].as_array().map(Vec::len) == Some(1)).then_some(page)
    })
    .await;
    assert_eq!(notifications["notifications"][0]["title"], "New message from Ada");
    assert_eq!(notifications["notifications"][0]["body"], "are you there?");

    // Unread when its time comes: the reminder goes, a real email.
    eventually("the first reminder is sent", Duration::from_secs(30), || async {
        let sent = system
            .count("SELECT COUNT(*) FROM emails WHERE kind = 'message' AND sent_at_ms IS NOT NULL")
            .await;
        (sent == 1).then_some(())
    })
    .await;
    let mailbox = system.dashboard_json("/api/mailbox?limit=50").await;
    let reminder = mailbox["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|mail| mail["subject"] == "Ada sent you a message")
        .cloned()
        .expect("the reminder in the mailbox");
    assert!(
        reminder["rcptTo"]
            .as_str()
            .is_some_and(|to| to.contains("bob@example.com"))
    );
    assert!(unread["id"].is_string());

    // One Bob reads at once: its reminder is skipped, and says why.
    let (_, read) = send(&system, &ada, &conversation, "a-2", "never mind").await;
    let (status, _) = system
        .post_as(
            &format!("/api/conversations/{conversation}/read"),
            &bob.token,
            json!({ "upToSeq": read["seq"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Reading the messages read their notifications: the bell agrees with the thread.
    let page = system.get_as("/api/notifications?category=messages", &bob.token).await;
    assert_eq!(page["notifications"].as_array().map(Vec::len), Some(2));
    assert!(
        page["notifications"]
            .as_array()
            .expect("list")
            .iter()
            .all(|item| item["readAtMs"].is_i64()),
        "{page}"
    );
    eventually("the read reminder is skipped", Duration::from_secs(30), || async {
        let skipped = system
            .count("SELECT COUNT(*) FROM emails WHERE kind = 'message' AND skipped = 'read'")
            .await;
        (skipped == 1).then_some(())
    })
    .await;
    assert_eq!(
        system
            .count("SELECT COUNT(*) FROM emails WHERE kind = 'message' AND sent_at_ms IS NOT NULL")
            .await,
        1
    );

    // Email for messages switched off: none at all, the in-app one still comes.
    let (status, _) = system
        .call(
            Method::PUT,
            "/api/notifications/preferences",
            &bob.token,
            Some(json!({ "categories": [{ "category": "messages", "email": false, "inApp": true }] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    send(&system, &ada, &conversation, "a-3", "one more").await;
    eventually("the muted reminder is skipped", Duration::from_secs(30), || async {
        let skipped = system
            .count("SELECT COUNT(*) FROM emails WHERE kind = 'message' AND skipped = 'preference'")
            .await;
        (skipped == 1).then_some(())
    })
    .await;
    let page = system.get_as("/api/notifications?category=messages", &bob.token).await;
    assert_eq!(page["notifications"].as_array().map(Vec::len), Some(3));
    system.stop().await;
}

#[tokio::test]
async fn the_simulator_sends_messages_as_journeys_of_their_own_type() {
    let system = TestSystem::start(flags).await;
    let response = system
        .dashboard_post("/api/live-view/simulate", &json!({ "type": "message", "count": 2 }))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let started: Value = response.json().await.expect("json");
    let ids: Vec<String> = started["requestIds"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(|id| id.as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 2);
    eventually("both messages stored", Duration::from_secs(20), || async {
        (system.count("SELECT COUNT(*) FROM messages").await == 2).then_some(())
    })
    .await;
    for id in ids {
        let journey = system.dashboard_json(&format!("/api/live-view/requests/{id}")).await;
        assert_eq!(journey["request"]["type"], "message", "{journey}");
    }
    // Each recipient has the in-app notification of it, under messages.
    assert_eq!(
        system
            .count("SELECT COUNT(*) FROM notifications WHERE kind = 'message' AND category = 'messages'")
            .await,
        2
    );
    system.stop().await;
}

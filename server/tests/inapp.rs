//! In-app delivery end to end over real sockets through the balancer: store and forward
//! in seq order, live pushes acked by the client, resume with lastSeq, and un-acked
//! pushes walking inapp-retry to inapp-dlq.

use std::time::Duration;
use support::TestSystem;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

mod support;

use liveview::config::Config;

/// The flags every test here starts the system with.
/// `--time-scale 0.001`: inapp-retry's minute → 60 ms; the ack timeout → its 200 ms floor.
fn flags(config: &mut Config) {
    config.servers = 2;
    config.time_scale = 0.001;
}

impl TestSystem {
    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Value {
        let mut request = self
            .http
            .post(format!("http://{}{path}", self.running.lb()))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("answers");
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.expect("json")
    }

    /// Signs up and logs in: two notifications (seq 1 and 2) wait for the user.
    async fn user(&self, email: &str) -> String {
        self.post(
            "/api/auth/signup",
            None,
            json!({ "email": email, "name": "Ada", "password": "long-enough" }),
        )
        .await;
        let login = self
            .post(
                "/api/auth/login",
                None,
                json!({ "email": email, "password": "long-enough" }),
            )
            .await;
        login["token"].as_str().expect("token").to_string()
    }

    /// A purchase: one email and one in-app notification for the buyer.
    async fn purchase(&self, token: &str) {
        self.post(
            "/api/purchases",
            Some(token),
            json!({ "item": "Lamp", "amountCents": 500, "currency": "EUR" }),
        )
        .await;
    }

    async fn first_user_id(&self) -> String {
        let mut read = self.running.database.read().await.expect("db");
        liveview::with_connection!(&mut read, |c| sqlx::query_scalar("SELECT id FROM users LIMIT 1")
            .fetch_one(c)
            .await)
        .expect("a user")
    }

    async fn connect(&self, token: &str, last_seq: Option<i64>) -> (Socket, String) {
        let resume = last_seq.map(|seq| format!("&lastSeq={seq}")).unwrap_or_default();
        let url = format!("ws://{}/api/notifications/ws?token={token}{resume}", self.running.lb());
        let (socket, response) = tokio_tungstenite::connect_async(url)
            .await
            .expect("upgrade through the balancer");
        let server = response.headers()["x-served-by"].to_str().expect("ascii").to_string();
        (socket, server)
    }
}

async fn next_frame(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON frame");
        }
    }
}

async fn ack(socket: &mut Socket, frame: &Value) {
    let ack = json!({ "ack": frame["id"] }).to_string();
    socket.send(Message::text(ack)).await.expect("ack sent");
}

async fn no_frame_within(socket: &mut Socket, wait: Duration) {
    if let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(wait, socket.next()).await {
        panic!("unexpected frame: {text}");
    }
}

#[tokio::test]
async fn stored_notifications_arrive_in_order_then_live_ones_and_acks_mark_them_delivered() {
    let system = TestSystem::start(flags).await;
    let token = system.user("ada@example.com").await;
    let (mut socket, _) = system.connect(&token, None).await;

    let welcome = next_frame(&mut socket).await;
    let login = next_frame(&mut socket).await;
    assert_eq!(
        (welcome["seq"].as_i64(), welcome["kind"].as_str()),
        (Some(1), Some("signup"))
    );
    assert_eq!(
        (login["seq"].as_i64(), login["kind"].as_str()),
        (Some(2), Some("login"))
    );
    for field in ["id", "title", "body", "createdAt"] {
        assert!(welcome[field].is_string(), "frame has {field}: {welcome}");
    }
    ack(&mut socket, &welcome).await;
    ack(&mut socket, &login).await;

    system.purchase(&token).await;
    let receipt = next_frame(&mut socket).await;
    assert_eq!(
        (receipt["seq"].as_i64(), receipt["kind"].as_str()),
        (Some(3), Some("purchase"))
    );
    ack(&mut socket, &receipt).await;

    support::eventually(
        "three in-app jobs done and delivered",
        Duration::from_secs(5),
        || async {
            let completed = system
                .count("SELECT COUNT(*) FROM jobs WHERE channel = 'in-app' AND state = 'completed'")
                .await;
            let delivered = system
                .count("SELECT COUNT(*) FROM notifications WHERE delivered_at_ms IS NOT NULL")
                .await;
            (completed == 3 && delivered == 3).then_some(())
        },
    )
    .await;
    assert_eq!(
        system
            .count("SELECT COUNT(*) FROM notifications WHERE delivered_at_ms IS NOT NULL")
            .await,
        3
    );
    assert_eq!(
        system
            .count("SELECT COUNT(*) FROM jobs WHERE channel = 'in-app' AND state = 'completed'")
            .await,
        3
    );
    no_frame_within(&mut socket, Duration::from_millis(500)).await;
    system.stop().await;
}

#[tokio::test]
async fn a_push_again_of_what_the_client_acked_gets_no_second_frame() {
    // A worker that handed the client's ack over and died before recording the delivery
    // (under kill -9 in the cluster test) leaves the notification undelivered; the next
    // worker pushes it again to the same connection, which must answer with the ack it
    // already has rather than show the user the receipt twice.
    let system = TestSystem::start(flags).await;
    let token = system.user("ada@example.com").await;
    let (mut socket, _) = system.connect(&token, None).await;
    for _ in 0..2 {
        let frame = next_frame(&mut socket).await;
        ack(&mut socket, &frame).await;
    }
    system.purchase(&token).await;
    let receipt = next_frame(&mut socket).await;
    ack(&mut socket, &receipt).await;
    let id = receipt["id"].as_str().expect("id").to_string();
    support::eventually("the receipt is delivered", Duration::from_secs(5), || async {
        (system
            .count("SELECT COUNT(*) FROM notifications WHERE delivered_at_ms IS NOT NULL")
            .await
            == 3)
            .then_some(())
    })
    .await;
    // The state a dead worker leaves: the ack was never recorded.
    let mut writing = system.running.database.writing().await.expect("db");
    liveview::with_connection!(&mut writing, |c| sqlx::query(
        "UPDATE notifications SET delivered_at_ms = NULL WHERE id = $1"
    )
    .bind(&id)
    .execute(c)
    .await
    .map(drop))
    .expect("undelivered again");
    drop(writing);
    let frame: liveview::websocket::Frame = serde_json::from_value(receipt).expect("a frame");
    let user_id = system.first_user_id().await;
    let (acked, _) = system
        .running
        .registry
        .push(&user_id, frame)
        .expect("the user is online");
    tokio::time::timeout(Duration::from_secs(2), acked)
        .await
        .expect("answered at once")
        .expect("as acked");
    no_frame_within(&mut socket, Duration::from_millis(500)).await;
    system.stop().await;
}

#[tokio::test]
async fn a_reconnecting_client_gets_only_what_it_lacks_and_stays_on_its_server() {
    let system = TestSystem::start(flags).await;
    let token = system.user("ada@example.com").await;
    let (mut socket, first_server) = system.connect(&token, None).await;
    let welcome = next_frame(&mut socket).await;
    let _login = next_frame(&mut socket).await;
    // The client keeps seq 1 and 2 but its acks never make it: it drops the socket, and
    // the purchase comes once its server has let go of it.
    drop(socket);
    support::eventually(
        "the server lets go of the dropped socket",
        Duration::from_secs(5),
        || async { (system.running.registry.counts() == (0, 0)).then_some(()) },
    )
    .await;
    system.purchase(&token).await;

    let (mut socket, server) = system.connect(&token, Some(2)).await;
    assert_eq!(server, first_server, "sticky through the balancer");
    let receipt = next_frame(&mut socket).await;
    assert_eq!(receipt["seq"], 3, "seq 1 and 2 are not pushed again");
    assert_ne!(receipt["id"], welcome["id"]);
    ack(&mut socket, &receipt).await;
    no_frame_within(&mut socket, Duration::from_millis(500)).await;
    assert_eq!(
        system
            .count("SELECT COUNT(*) FROM notifications WHERE delivered_at_ms IS NULL")
            .await,
        0
    );
    system.stop().await;
}

#[tokio::test]
async fn pushes_nobody_acks_go_to_inapp_retry_then_inapp_dlq() {
    let system = TestSystem::start(flags).await;
    let token = system.user("ada@example.com").await;
    // Let the workers find the user offline, so seq 1 and 2 wait as stored notifications
    // (store and forward, no jobs left) rather than as live pushes.
    support::eventually("no in-app job left", Duration::from_millis(2_500), || async {
        let left = system
            .count("SELECT COUNT(*) FROM jobs WHERE channel = 'in-app' AND state <> 'completed'")
            .await;
        (left == 0).then_some(())
    })
    .await;
    let (mut socket, _) = system.connect(&token, None).await;
    next_frame(&mut socket).await;
    next_frame(&mut socket).await;
    system.purchase(&token).await;
    // Read everything, ack nothing.
    let reader = tokio::spawn(async move {
        let mut frames = 0;
        while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
            if message.is_text() {
                frames += 1;
            }
        }
        frames
    });
    support::eventually(
        "the live push is dead-lettered after inapp-retry",
        Duration::from_secs(10),
        || async {
            let dead = system
                .count("SELECT COUNT(*) FROM jobs WHERE queue = 'inapp-dlq' AND state = 'failed'")
                .await;
            (dead == 1).then_some(())
        },
    )
    .await;
    let attempts: i64 = system
        .count("SELECT CAST(MIN(attempts) AS BIGINT) FROM jobs WHERE queue = 'inapp-dlq'")
        .await;
    assert_eq!(attempts, 2, "inapp, then inapp-retry");
    assert_eq!(
        system
            .count("SELECT COUNT(*) FROM notifications WHERE delivered_at_ms IS NOT NULL")
            .await,
        0
    );
    system.stop().await;
    // The retry finds it still in flight on the same socket: no duplicate frame is sent.
    assert_eq!(reader.await.expect("reader"), 1, "pushed exactly once");
}

#[tokio::test]
async fn a_socket_without_a_valid_token_is_refused() {
    let system = TestSystem::start(flags).await;
    let url = format!(
        "ws://{}/api/notifications/ws?token=nobody.{}",
        system.running.lb(),
        "0".repeat(64)
    );
    let error = tokio_tungstenite::connect_async(url).await.expect_err("refused");
    let tokio_tungstenite::tungstenite::Error::Http(response) = error else {
        panic!("an HTTP refusal, got {error}")
    };
    assert_eq!(response.status(), 401);
    system.stop().await;
}

//! One end user's calls through the balancer, as the notification center and
//! messaging tests make them: their own token on every request, their devices' sockets.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{TestSystem, clients::Socket};

/// One end user's calls, on the system under test (a trait so that test files with
/// helpers of the same names keep theirs).
#[allow(async_fn_in_trait)]
pub trait EndUsers {
    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value);
    async fn post_as(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value);
    async fn get_as(&self, path: &str, token: &str) -> Value;
    /// Signs up and logs in; the signup and login notifications are seq 1 and 2.
    async fn user(&self, email: &str, name: &str) -> String;
    /// A new session of a user [`EndUsers::user`] made.
    async fn user_login(&self, email: &str) -> String;
    async fn purchase(&self, token: &str);
    async fn device(&self, token: &str) -> Socket;
}

impl EndUsers for TestSystem {
    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.lb(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post_as(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body)).await
    }

    async fn get_as(&self, path: &str, token: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, token, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    /// Signs up and logs in; the signup and login notifications are seq 1 and 2.
    async fn user(&self, email: &str, name: &str) -> String {
        let signup = json!({ "email": email, "name": name, "password": "long-enough" });
        let response = self
            .http
            .post(self.lb("/api/auth/signup"))
            .json(&signup)
            .send()
            .await
            .expect("signup");
        assert_eq!(response.status(), StatusCode::CREATED);
        self.user_login(email).await
    }

    /// A new session of a user [`EndUsers::user`] made.
    async fn user_login(&self, email: &str) -> String {
        let login = json!({ "email": email, "password": "long-enough" });
        let session: Value = self
            .http
            .post(self.lb("/api/auth/login"))
            .json(&login)
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        session["token"].as_str().expect("token").to_string()
    }

    async fn purchase(&self, token: &str) {
        let (status, body) = self
            .post_as(
                "/api/purchases",
                token,
                json!({ "item": "Lamp", "amountCents": 500, "currency": "EUR" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    async fn device(&self, token: &str) -> Socket {
        let url = format!("ws://{}/api/notifications/ws?token={token}", self.running.lb());
        tokio_tungstenite::connect_async(url).await.expect("upgrade").0
    }
}

/// The next frame of `kind` (`notification:new`, …), acking notifications on the way.
pub async fn next_of(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .unwrap_or_else(|_| panic!("a {kind} within 5 s"))
            .expect("open")
            .expect("frame");
        let Message::Text(text) = message else { continue };
        let frame: Value = serde_json::from_str(&text).expect("JSON");
        if frame["type"] == "notification:new" {
            let ack = json!({ "ack": frame["id"] }).to_string();
            socket.send(Message::text(ack)).await.expect("ack");
        }
        if frame["type"] == kind {
            return frame;
        }
    }
}

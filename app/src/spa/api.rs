//! Calls to the dashboard's JSON API. Every action a card or control takes goes through
//! here; an error answer (the server's `{"error": ...}`) comes back as its message.

use gloo_net::http::{Request, Response};
use serde::{Serialize, de::DeserializeOwned};

/// The server's message for a failed call, or what went wrong on the way.
pub type ApiResult<T> = Result<T, String>;

async fn read<T: DeserializeOwned>(response: Result<Response, gloo_net::Error>) -> ApiResult<T> {
    let response = response.map_err(|error| format!("the dashboard did not answer: {error}"))?;
    if response.ok() {
        return response
            .json::<T>()
            .await
            .map_err(|error| format!("unexpected answer: {error}"));
    }
    let status = response.status();
    let message = match response.json::<serde_json::Value>().await {
        Ok(body) => body["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string()),
        Err(_) => String::new(),
    };
    Err(format!("{status}: {message}"))
}

pub async fn get<T: DeserializeOwned>(path: &str) -> ApiResult<T> {
    read(Request::get(path).send().await).await
}

async fn send<T: DeserializeOwned>(request: gloo_net::http::RequestBuilder, body: &impl Serialize) -> ApiResult<T> {
    let request = request.json(body).map_err(|error| error.to_string())?;
    read(request.send().await).await
}

pub async fn post<T: DeserializeOwned>(path: &str, body: &impl Serialize) -> ApiResult<T> {
    send(Request::post(path), body).await
}

pub async fn put<T: DeserializeOwned>(path: &str, body: &impl Serialize) -> ApiResult<T> {
    send(Request::put(path), body).await
}

/// Percent-encodes one query value.
pub fn encode(value: &str) -> String {
    js_sys::encode_uri_component(value).into()
}

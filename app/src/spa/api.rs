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
    // The session ended (expired, signed out in another tab, removed): back to the
    // sign-in page. A failed sign-in is answered 401 too, and is the sign-in page's.
    if response.status() == 401 && !response.url().ends_with("/api/session") {
        super::sign_in::reload();
    }
    Err(failure(response).await)
}

/// A failed answer as one line: its status and the server's message, naming each bad
/// field (`400: invalid input (email must be an email address)`).
pub(crate) async fn failure(response: Response) -> String {
    let status = response.status();
    let message = match response.json::<crate::wire::ErrorBody>().await {
        Ok(body) if body.fields.is_empty() => body.error,
        Ok(body) => {
            let fields: Vec<String> = body
                .fields
                .iter()
                .map(|(field, why)| format!("{field} {why}"))
                .collect();
            format!("{} ({})", body.error, fields.join("; "))
        }
        Err(_) => String::new(),
    };
    format!("{status}: {message}")
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

/// A `POST` that carries no body (stop a server, pause a queue, step a request).
pub async fn post_empty<T: DeserializeOwned>(path: &str) -> ApiResult<T> {
    read(Request::post(path).send().await).await
}

pub async fn put<T: DeserializeOwned>(path: &str, body: &impl Serialize) -> ApiResult<T> {
    send(Request::put(path), body).await
}

/// Percent-encodes one query value.
pub fn encode(value: &str) -> String {
    js_sys::encode_uri_component(value).into()
}

//! Calls to the notification system's API through the balancer, with the user's bearer
//! token. The token is kept in `localStorage` (`liveview-session`) so a reload or a new
//! tab stays signed in; a 401 on an authenticated call means the session ended (signed
//! out elsewhere, expired, password reset): the token is dropped and the page reloads
//! at the sign-in form.

use std::cell::RefCell;

use gloo_net::http::{Request, RequestBuilder, Response};
use serde::{Serialize, de::DeserializeOwned};

use crate::spa::api::failure;

/// The `localStorage` key the session token is kept under.
pub const TOKEN_KEY: &str = "liveview-session";

thread_local! {
    static TOKEN: RefCell<Option<String>> = RefCell::new(stored_token());
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

fn stored_token() -> Option<String> {
    storage()?
        .get_item(TOKEN_KEY)
        .ok()
        .flatten()
        .filter(|token| !token.is_empty())
}

/// The session token, when signed in.
pub fn token() -> Option<String> {
    TOKEN.with(|token| token.borrow().clone())
}

/// Keeps a new session's token (or forgets it with `None`) here and for other tabs.
pub fn set_token(new: Option<&str>) {
    TOKEN.with(|token| *token.borrow_mut() = new.map(str::to_string));
    if let Some(storage) = storage() {
        let _ = match new {
            Some(value) => storage.set_item(TOKEN_KEY, value),
            None => storage.remove_item(TOKEN_KEY),
        };
    }
}

pub type ApiResult<T> = Result<T, String>;

fn authorized(request: RequestBuilder) -> RequestBuilder {
    match token() {
        Some(token) => request.header("Authorization", &format!("Bearer {token}")),
        None => request,
    }
}

async fn read<T: DeserializeOwned>(response: Result<Response, gloo_net::Error>) -> ApiResult<T> {
    let response = response.map_err(|error| format!("the service did not answer: {error}"))?;
    if response.ok() {
        return response
            .json::<T>()
            .await
            .map_err(|error| format!("unexpected answer: {error}"));
    }
    if response.status() == 401 && token().is_some() {
        set_token(None);
        crate::spa::sign_in::reload();
    }
    Err(failure(response).await)
}

pub async fn get<T: DeserializeOwned>(path: &str) -> ApiResult<T> {
    read(authorized(Request::get(path)).send().await).await
}

pub async fn post<T: DeserializeOwned>(path: &str, body: &impl Serialize) -> ApiResult<T> {
    let request = authorized(Request::post(path))
        .json(body)
        .map_err(|error| error.to_string())?;
    read(request.send().await).await
}

pub async fn put<T: DeserializeOwned>(path: &str, body: &impl Serialize) -> ApiResult<T> {
    let request = authorized(Request::put(path))
        .json(body)
        .map_err(|error| error.to_string())?;
    read(request.send().await).await
}

/// A `POST` without a body (mark read, archive, sign out).
pub async fn post_empty<T: DeserializeOwned>(path: &str) -> ApiResult<T> {
    read(authorized(Request::post(path)).send().await).await
}

//! Signing in, before the dashboard: the root asks `GET /api/session` who this page is;
//! without a session (`--dashboard-auth login`) it shows [`SignInPage`], and the
//! dashboard once someone has signed in. Signing out ends the session and reloads the
//! page, so nothing of the last person's view stays in memory.

use leptos::{prelude::*, task::spawn_local};

use super::api;
use crate::wire::{SessionInfo, SignIn};

/// What the page knows about who it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Who {
    Asking,
    /// No session: the sign-in page.
    Nobody,
    /// The dashboard could not be asked (down, or the network): said, and asked again.
    Unreachable(String),
    Known(SessionInfo),
}

/// Asks the dashboard who this page is, until it answers.
pub async fn ask(who: RwSignal<Who>) {
    loop {
        match api::get::<SessionInfo>("/api/session").await {
            Ok(info) => return who.set(Who::Known(info)),
            Err(error) if error.starts_with("401") => return who.set(Who::Nobody),
            Err(error) => who.set(Who::Unreachable(error)),
        }
        gloo_timers::future::sleep(std::time::Duration::from_secs(2)).await;
    }
}

#[component]
pub fn SignInPage(who: RwSignal<Who>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        busy.set(true);
        let body = SignIn {
            name: name.get_untracked().trim().to_string(),
            password: password.get_untracked(),
        };
        spawn_local(async move {
            match api::post::<SessionInfo>("/api/session", &body).await {
                Ok(info) => who.set(Who::Known(info)),
                Err(message) => {
                    let shown = if message.starts_with("401") {
                        "Wrong name or password.".to_string()
                    } else {
                        format!("Could not sign in: {message}")
                    };
                    error.set(Some(shown));
                    password.set(String::new());
                }
            }
            busy.set(false);
        });
    };
    view! {
        <form class="sign-in" data-testid="sign-in" on:submit=submit>
            <h1>"Live View"</h1>
            <p class="hint">"This dashboard asks operators to sign in."</p>
            <label>
                "Name"
                <input
                    name="name"
                    autocomplete="username"
                    required
                    maxlength="64"
                    data-testid="sign-in-name"
                    prop:value=move || name.get()
                    on:input=move |event| name.set(event_target_value(&event))
                />
            </label>
            <label>
                "Password"
                <input
                    name="password"
                    type="password"
                    autocomplete="current-password"
                    required
                    maxlength="1024"
                    data-testid="sign-in-password"
                    prop:value=move || password.get()
                    on:input=move |event| password.set(event_target_value(&event))
                />
            </label>
            {move || error.get().map(|message| view! { <p class="error" role="alert" data-testid="sign-in-error">{message}</p> })}
            <button class="primary" type="submit" data-testid="sign-in-submit" prop:disabled=move || busy.get()>
                "Sign in"
            </button>
        </form>
    }
}

/// Ends the session, then reloads: the page comes back at the sign-in form.
pub fn sign_out() {
    spawn_local(async move {
        let _ = gloo_net::http::Request::delete("/api/session").send().await;
        reload();
    });
}

pub fn reload() {
    if let Some(window) = web_sys::window() {
        let _ = window.location().reload();
    }
}

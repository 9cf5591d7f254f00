//! Before the notification center: signing in, creating an account, asking for a
//! password reset and setting the new password from the emailed link
//! (`/reset-password?token=…`, the link the reset email carries).

use leptos::{prelude::*, task::spawn_local};

use super::{Signed, api};
use crate::wire::{Done, Login, ResetConfirm, ResetRequest, Session, Signup, User};

/// Which form the page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    SignIn,
    SignUp,
    Forgot,
}

/// Checks the token this browser kept: signed in when it still works.
pub async fn restore(signed: RwSignal<Signed>) {
    if api::token().is_none() {
        return signed.set(Signed::Out);
    }
    match api::get::<User>("/api/auth/me").await {
        Ok(user) => signed.set(Signed::In(user)),
        // A 401 has dropped the token already; anything else (the service down) asks
        // again in a moment rather than signing the user out.
        Err(error) if error.starts_with("401") => signed.set(Signed::Out),
        Err(_) => {
            gloo_timers::future::sleep(std::time::Duration::from_secs(2)).await;
            spawn_local(restore(signed));
        }
    }
}

/// Ends this session on the server, forgets the token and starts over.
pub fn sign_out() {
    spawn_local(async move {
        let _ = api::post_empty::<Done>("/api/auth/logout").await;
        api::set_token(None);
        crate::spa::sign_in::reload();
    });
}

/// The reset token of an emailed link, when the page is one.
fn reset_token() -> Option<String> {
    let location = window().location();
    if location.pathname().ok()?.trim_end_matches('/') != "/reset-password" {
        return None;
    }
    let search = location.search().ok()?;
    let params = web_sys::UrlSearchParams::new_with_str(&search).ok()?;
    params.get("token").filter(|token| !token.is_empty())
}

/// Shows a failed call's message the way a person reads it.
fn explain(error: &str) -> String {
    match error.split_once(": ") {
        Some((_, message)) if !message.is_empty() => message.to_string(),
        _ => error.to_string(),
    }
}

#[component]
pub fn AccountPage(signed: RwSignal<Signed>) -> impl IntoView {
    if let Some(token) = reset_token() {
        return view! { <ResetForm token /> }.into_any();
    }
    let form = RwSignal::new(Form::SignIn);
    let tab = move |which: Form, label: &'static str, id: &'static str| super::tab(form, which, label, id);
    view! {
        <div class="account">
            <h1>"Live View"</h1>
            <p class="hint">"Your notifications, live."</p>
            <div class="tabs" role="tablist">
                {tab(Form::SignIn, "Sign in", "tab-sign-in")}
                {tab(Form::SignUp, "Create account", "tab-sign-up")}
                {tab(Form::Forgot, "Forgot password", "tab-forgot")}
            </div>
            {move || match form.get() {
                Form::SignIn => view! { <SignInForm signed /> }.into_any(),
                Form::SignUp => view! { <SignUpForm signed /> }.into_any(),
                Form::Forgot => view! { <ForgotForm /> }.into_any(),
            }}
        </div>
    }
    .into_any()
}

/// One labelled input bound to `value`.
fn field(
    label: &'static str,
    kind: &'static str,
    autocomplete: &'static str,
    testid: &'static str,
    value: RwSignal<String>,
) -> impl IntoView {
    view! {
        <label>
            {label}
            <input
                type=kind
                autocomplete=autocomplete
                required
                maxlength="254"
                data-testid=testid
                prop:value=move || value.get()
                on:input=move |event| value.set(event_target_value(&event))
            />
        </label>
    }
}

/// Signs in with `email` and `password`: keeps the token and shows the center.
async fn sign_in_as(signed: RwSignal<Signed>, email: String, password: String) -> Result<(), String> {
    let session = api::post::<Session>("/api/auth/login", &Login { email, password }).await?;
    api::set_token(Some(&session.token));
    signed.set(Signed::In(session.user));
    Ok(())
}

#[component]
fn SignInForm(signed: RwSignal<Signed>) -> impl IntoView {
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        busy.set(true);
        spawn_local(async move {
            if let Err(message) =
                sign_in_as(signed, email.get_untracked().trim().into(), password.get_untracked()).await
            {
                error.set(Some(if message.starts_with("401") {
                    "Wrong email or password.".into()
                } else {
                    explain(&message)
                }));
                password.set(String::new());
            }
            busy.set(false);
        });
    };
    view! {
        <form data-testid="sign-in-form" on:submit=submit>
            {field("Email", "email", "username", "email", email)}
            {field("Password", "password", "current-password", "password", password)}
            {super::error_line(error)}
            <button class="primary" type="submit" data-testid="submit" prop:disabled=move || busy.get()>"Sign in"</button>
        </form>
    }
}

#[component]
fn SignUpForm(signed: RwSignal<Signed>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        busy.set(true);
        let body = Signup {
            email: email.get_untracked().trim().to_string(),
            name: name.get_untracked().trim().to_string(),
            password: password.get_untracked(),
            user_type: None,
            source: Some("web".into()),
        };
        spawn_local(async move {
            let signed_up = match api::post::<User>("/api/auth/signup", &body).await {
                Ok(_) => sign_in_as(signed, body.email, body.password).await,
                Err(message) => Err(message),
            };
            if let Err(message) = signed_up {
                error.set(Some(explain(&message)));
            }
            busy.set(false);
        });
    };
    view! {
        <form data-testid="sign-up-form" on:submit=submit>
            {field("Name", "text", "name", "name", name)}
            {field("Email", "email", "email", "email", email)}
            {field("Password (8 characters or more)", "password", "new-password", "password", password)}
            {super::error_line(error)}
            <button class="primary" type="submit" data-testid="submit" prop:disabled=move || busy.get()>"Create account"</button>
        </form>
    }
}

#[component]
fn ForgotForm() -> impl IntoView {
    let email = RwSignal::new(String::new());
    let said = RwSignal::new(None::<Result<String, String>>);
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let body = ResetRequest {
            email: email.get_untracked().trim().to_string(),
        };
        spawn_local(async move {
            let answer = api::post::<Done>("/api/auth/reset-password", &body).await;
            said.set(Some(answer.map(|done| done.status).map_err(|error| explain(&error))));
        });
    };
    view! {
        <form data-testid="forgot-form" on:submit=submit>
            {field("Email", "email", "email", "email", email)}
            {move || said.get().map(|answer| match answer {
                Ok(status) => view! { <p class="ok" role="status" data-testid="account-said">{status}</p> }.into_any(),
                Err(message) => view! { <p class="error" role="alert" data-testid="account-error">{message}</p> }.into_any(),
            })}
            <button class="primary" type="submit" data-testid="submit">"Email me a reset link"</button>
        </form>
    }
}

#[component]
fn ResetForm(token: String) -> impl IntoView {
    let password = RwSignal::new(String::new());
    let said = RwSignal::new(None::<Result<String, String>>);
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let body = ResetConfirm {
            token: token.clone(),
            new_password: password.get_untracked(),
        };
        spawn_local(async move {
            let answer = api::post::<Done>("/api/auth/reset-password/confirm", &body).await;
            // Every session ended with the change, this browser's too.
            if answer.is_ok() {
                api::set_token(None);
            }
            said.set(Some(answer.map(|done| done.status).map_err(|error| explain(&error))));
        });
    };
    view! {
        <div class="account">
            <h1>"Choose a new password"</h1>
            <form data-testid="reset-form" on:submit=submit>
                {field("New password (8 characters or more)", "password", "new-password", "password", password)}
                {move || said.get().map(|answer| match answer {
                    Ok(status) => view! {
                        <p class="ok" role="status" data-testid="account-said">
                            {status} ". " <a href="/">"Sign in"</a>
                        </p>
                    }.into_any(),
                    Err(message) => view! { <p class="error" role="alert" data-testid="account-error">{message}</p> }.into_any(),
                })}
                <button class="primary" type="submit" data-testid="submit">"Set password"</button>
            </form>
        </div>
    }
}

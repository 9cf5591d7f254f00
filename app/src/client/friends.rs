//! Friends: ask someone by email, accept what others asked, and the friends one has (the
//! people messaging will reach). Reloads when a social notification arrives.

use leptos::{prelude::*, task::spawn_local};

use super::{Panel, api, center::Center, chat::Chat};
use crate::wire::{FriendRequest, Friends, NewFriendRequest};

#[component]
pub fn FriendsPanel(center: Center, chat: Chat, panel: RwSignal<Panel>) -> impl IntoView {
    let friends = RwSignal::new(Friends::default());
    let said = RwSignal::new(None::<String>);
    let email = RwSignal::new(String::new());
    let load = move || {
        spawn_local(async move {
            match api::get::<Friends>("/api/friends").await {
                Ok(loaded) => friends.set(loaded),
                Err(error) => said.set(Some(error)),
            }
        });
    };
    Effect::new(move |_| {
        center.social.track();
        load();
    });
    let ask = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let body = NewFriendRequest {
            to_email: email.get_untracked().trim().to_string(),
        };
        spawn_local(async move {
            match api::post::<FriendRequest>("/api/friend-requests", &body).await {
                Ok(_) => {
                    email.set(String::new());
                    said.set(Some("Request sent.".into()));
                    load();
                }
                Err(error) => said.set(Some(error)),
            }
        });
    };
    let accept = move |id: String| {
        spawn_local(async move {
            match api::post_empty::<FriendRequest>(&format!("/api/friend-requests/{id}/accept")).await {
                Ok(_) => load(),
                Err(error) => said.set(Some(error)),
            }
        });
    };
    view! {
        <section class="friends" data-testid="friends">
            <form class="inline" on:submit=ask>
                <label>
                    "Add a friend by email"
                    <input type="email" required maxlength="254" data-testid="friend-email"
                        prop:value=move || email.get()
                        on:input=move |event| email.set(event_target_value(&event)) />
                </label>
                <button class="primary" type="submit" data-testid="friend-send">"Send request"</button>
            </form>
            {move || said.get().map(|message| view! { <p class="muted" role="status" data-testid="friends-said">{message}</p> })}
            <h2>"Waiting for you"</h2>
            <ul class="people" data-testid="incoming">
                {move || friends.get().incoming.into_iter().map(|request| {
                    let id = request.id.clone();
                    view! {
                        <li data-testid="incoming-request">
                            <span>{request.person.name}</span>
                            <button type="button" data-testid="accept" on:click=move |_| accept(id.clone())>"Accept"</button>
                        </li>
                    }
                }).collect_view()}
            </ul>
            <h2>"Friends"</h2>
            <ul class="people" data-testid="friend-list">
                {move || friends.get().friends.into_iter().map(|person| {
                    let id = person.id.clone();
                    view! {
                        <li data-testid="friend">
                            <span>{person.name}</span>
                            <button type="button" data-testid="message-friend" on:click=move |_| {
                                chat.start(vec![id.clone()], None);
                                panel.set(Panel::Messages);
                            }>"Message"</button>
                        </li>
                    }
                }).collect_view()}
            </ul>
            <h2>"Asked"</h2>
            <ul class="people" data-testid="outgoing">
                {move || friends.get().outgoing.into_iter().map(|request| view! { <li>{request.person.name} <span class="muted">"pending"</span></li> }).collect_view()}
            </ul>
        </section>
    }
}

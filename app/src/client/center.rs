//! The notification center: the bell's list with its views (inbox, archived, snoozed)
//! and categories, grouped runs, mark read one or all, archive, snooze, older pages; the
//! toasts for what arrives while the page is open; and the preferences per category and
//! channel. What it holds is an [`Inbox`], kept in agreement with the user's other tabs
//! and devices by the socket's frames (`notification:new`, `notification:update`).

use leptos::{prelude::*, task::spawn_local};

use super::api;
use crate::{
    inbox::{Applied, Group, Inbox, View, ago, category_label},
    wire::{
        Announcement, Announcements, CategoryPreference, InAppFrame, InboxChange, InboxUpdate, Notification,
        NotificationCategory, NotificationPage, Preferences, ReadReceipt,
    },
};

/// How many notifications a page asks for.
const PAGE: u32 = 20;
/// Toasts shown at once; older ones make room.
const MAX_TOASTS: usize = 3;
/// How long a toast stays.
const TOAST_MS: u32 = 6_000;

/// A notification that arrived while the page was open.
#[derive(Debug, Clone, PartialEq)]
pub struct Toast {
    pub id: String,
    pub title: String,
    pub body: String,
}

/// The center's state, shared by the socket and the views.
#[derive(Clone, Copy)]
pub struct Center {
    pub inbox: RwSignal<Inbox>,
    pub toasts: RwSignal<Vec<Toast>>,
    /// The last failed action, shown above the list.
    pub error: RwSignal<Option<String>>,
    /// Bumped when a social notification arrives: the friends panel reloads.
    pub social: RwSignal<u32>,
    /// The newest operators' announcement this browser has not dismissed.
    pub announcement: RwSignal<Option<Announcement>>,
    /// The messages panel is showing: messages need no toast there.
    pub in_chat: RwSignal<bool>,
}

/// The `localStorage` key of the newest announcement dismissed (its time).
const DISMISSED_KEY: &str = "liveview-announcement-dismissed";

fn dismissed_at() -> i64 {
    web_sys::window()
        .and_then(|window| window.local_storage().ok().flatten())
        .and_then(|storage| storage.get_item(DISMISSED_KEY).ok().flatten())
        .and_then(|at| at.parse().ok())
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

fn page_path(view: View, category: Option<NotificationCategory>, before: Option<i64>) -> String {
    let mut path = format!("/api/notifications?limit={PAGE}&view={}", view.as_str());
    if let Some(category) = category {
        path.push_str(&format!("&category={}", category.as_str()));
    }
    if let Some(before) = before {
        path.push_str(&format!("&before={before}"));
    }
    path
}

impl Center {
    pub fn new() -> Self {
        Self {
            inbox: RwSignal::new(Inbox::default()),
            toasts: RwSignal::new(Vec::new()),
            error: RwSignal::new(None),
            social: RwSignal::new(0),
            announcement: RwSignal::new(None),
            in_chat: RwSignal::new(false),
        }
    }

    /// An announcement, live or from the list: shown unless dismissed here before.
    pub fn on_announcement(&self, announcement: Announcement) {
        let newer = self.announcement.with_untracked(|held| {
            held.as_ref()
                .is_none_or(|held| held.created_at_ms < announcement.created_at_ms)
        });
        if newer && announcement.created_at_ms > dismissed_at() {
            self.announcement.set(Some(announcement));
        }
    }

    fn dismiss_announcement(self) {
        if let Some(announcement) = self.announcement.get_untracked() {
            if let Some(storage) = web_sys::window().and_then(|window| window.local_storage().ok().flatten()) {
                let _ = storage.set_item(DISMISSED_KEY, &announcement.created_at_ms.to_string());
            }
            self.announcement.set(None);
        }
    }

    pub fn newest_seq(&self) -> i64 {
        self.inbox.with_untracked(|inbox| inbox.newest_seq)
    }

    /// Asks for the first page of the current view again.
    pub async fn reload(&self) -> Result<(), String> {
        let (view, category) = self.inbox.with_untracked(|inbox| (inbox.view, inbox.category));
        self.show(view, category).await?;
        // What the operators said while this page was away.
        if let Ok(list) = api::get::<Announcements>("/api/announcements").await
            && let Some(newest) = list.announcements.into_iter().next()
        {
            self.on_announcement(newest);
        }
        Ok(())
    }

    /// Switches the list to `view` and `category`.
    pub async fn show(&self, view: View, category: Option<NotificationCategory>) -> Result<(), String> {
        let page = api::get::<NotificationPage>(&page_path(view, category, None)).await?;
        let mut fresh = Inbox::from_page(view, category, page);
        let known = self.newest_seq();
        fresh.newest_seq = fresh.newest_seq.max(known);
        self.inbox.set(fresh);
        Ok(())
    }

    fn switch(self, view: View, category: Option<NotificationCategory>) {
        spawn_local(async move {
            let shown = self.show(view, category).await;
            self.error.set(shown.err());
        });
    }

    fn load_older(self) {
        let (view, category, before) = self
            .inbox
            .with_untracked(|inbox| (inbox.view, inbox.category, inbox.next_before));
        let Some(before) = before else {
            return;
        };
        spawn_local(async move {
            match api::get::<NotificationPage>(&page_path(view, category, Some(before))).await {
                Ok(page) => self.inbox.update(|inbox| inbox.append_page(page)),
                Err(error) => self.error.set(Some(error)),
            }
        });
    }

    pub fn on_new(&self, frame: &InAppFrame) {
        let Some(item) = self.inbox.try_update(|inbox| inbox.on_new(frame)).flatten() else {
            return;
        };
        if item.category == NotificationCategory::Social.as_str() {
            self.social.update(|bumped| *bumped += 1);
        }
        if item.kind == crate::wire::NotificationType::Message.name() && self.in_chat.get_untracked() {
            return;
        }
        let toast = Toast {
            id: item.id.clone(),
            title: item.title,
            body: item.body,
        };
        self.toasts.update(|toasts| {
            toasts.push(toast);
            let extra = toasts.len().saturating_sub(MAX_TOASTS);
            toasts.drain(..extra);
        });
        let (toasts, id) = (self.toasts, item.id);
        spawn_local(async move {
            gloo_timers::future::TimeoutFuture::new(TOAST_MS).await;
            toasts.update(|toasts| toasts.retain(|toast| toast.id != id));
        });
    }

    pub fn on_update(&self, update: &InboxUpdate) {
        let applied = self
            .inbox
            .try_update(|inbox| inbox.on_update(update, now_ms()))
            .unwrap_or(Applied::Stale);
        if applied == Applied::Gap {
            let center = *self;
            spawn_local(async move {
                let _ = center.reload().await;
            });
        }
    }

    /// Runs a change of state and applies the server's answer at once (the socket brings
    /// the same update a moment later; its version makes it a no-op).
    fn change(self, path: String, body: Option<serde_json::Value>) {
        spawn_local(async move {
            let answer = match body {
                Some(body) => api::post::<InboxUpdate>(&path, &body).await,
                None => api::post_empty::<InboxUpdate>(&path).await,
            };
            match answer {
                Ok(update) => {
                    self.error.set(None);
                    self.on_update(&update);
                }
                Err(error) => self.error.set(Some(error)),
            }
        });
    }

    fn mark_read(self, id: String) {
        spawn_local(async move {
            match api::post_empty::<ReadReceipt>(&format!("/api/notifications/{id}/read")).await {
                Ok(receipt) => self.on_update(&InboxUpdate {
                    ids: vec![receipt.id],
                    change: InboxChange::Read,
                    snoozed_until_ms: None,
                    unread_count: receipt.unread_count,
                    up_to_seq: receipt.up_to_seq,
                    inbox_version: receipt.inbox_version,
                }),
                Err(error) => self.error.set(Some(error)),
            }
        });
    }

    fn read_all(self) {
        let (up_to, category) = self.inbox.with_untracked(|inbox| (inbox.newest_seq, inbox.category));
        let body = serde_json::json!({"upToSeq": up_to, "category": category});
        self.change("/api/notifications/read-all".into(), Some(body));
    }

    /// The list was opened: what it shows is seen (the bell's dot stops pulsing).
    pub fn seen_all(self) {
        let up_to = self.newest_seq();
        let unseen = self
            .inbox
            .with_untracked(|inbox| inbox.items.iter().any(|item| item.seen_at_ms.is_none()));
        if unseen {
            self.change(
                "/api/notifications/seen-all".into(),
                Some(serde_json::json!({"upToSeq": up_to})),
            );
        }
    }
}

/// The list with its views, categories and actions.
#[component]
pub fn NotificationList(center: Center) -> impl IntoView {
    let expanded = RwSignal::new(None::<String>);
    let view_tab = move |view: View| {
        view! {
            <button
                type="button"
                role="tab"
                data-testid=format!("view-{}", view.as_str())
                class:active=move || center.inbox.with(|inbox| inbox.view == view)
                on:click=move |_| {
                    let category = center.inbox.with_untracked(|inbox| inbox.category);
                    center.switch(view, category);
                }
            >
                {view.label()}
            </button>
        }
    };
    let category_chip = move |category: Option<NotificationCategory>| {
        let (label, id) = match category {
            Some(category) => (category_label(category), category.as_str()),
            None => ("All", "all"),
        };
        view! {
            <button
                type="button"
                class="chip"
                data-testid=format!("category-{id}")
                class:active=move || center.inbox.with(|inbox| inbox.category == category)
                on:click=move |_| {
                    let view = center.inbox.with_untracked(|inbox| inbox.view);
                    center.switch(view, category);
                }
            >
                {label}
            </button>
        }
    };
    view! {
        <section class="center" data-testid="notification-center">
            <div class="center-head">
                <div class="tabs" role="tablist">{View::ALL.map(view_tab)}</div>
                <button
                    type="button"
                    data-testid="read-all"
                    prop:disabled=move || center.inbox.with(|inbox| inbox.unread() == 0)
                    on:click=move |_| center.read_all()
                >
                    "Mark all read"
                </button>
            </div>
            <div class="chips">
                {category_chip(None)}
                {NotificationCategory::ALL.map(|category| category_chip(Some(category)))}
            </div>
            {move || center.error.get().map(|error| view! { <p class="error" role="alert">{error}</p> })}
            <ul class="notifications" data-testid="notifications">
                <For
                    each=move || center.inbox.with(Inbox::groups)
                    key=|group| (group.key(), group.items.len(), group.items.iter().map(|item| (item.read_at_ms, item.seen_at_ms)).collect::<Vec<_>>())
                    children=move |group| view! { <GroupRow center group expanded /> }
                />
            </ul>
            {move || center.inbox.with(|inbox| inbox.items.is_empty()).then(|| view! {
                <p class="empty" data-testid="empty">"Nothing here."</p>
            })}
            {move || center.inbox.with(|inbox| inbox.next_before.is_some()).then(|| view! {
                <button type="button" class="more" data-testid="load-older" on:click=move |_| center.load_older()>
                    "Older notifications"
                </button>
            })}
        </section>
    }
}

/// One row: a notification, or a group of alike unread ones that opens into its items.
#[component]
fn GroupRow(center: Center, group: Group, expanded: RwSignal<Option<String>>) -> impl IntoView {
    if group.items.len() == 1 {
        let item = group.items[0].clone();
        return view! { <ItemRow center item /> }.into_any();
    }
    let key = group.key();
    let title = group.title();
    let ids: Vec<String> = group.items.iter().map(|item| item.id.clone()).collect();
    let open = {
        let key = key.clone();
        move || expanded.get().as_deref() == Some(key.as_str())
    };
    let items = group.items.clone();
    view! {
        <li class="group unread" data-testid="group">
            <button
                type="button"
                class="group-head"
                data-testid="group-toggle"
                on:click=move |_| expanded.update(|open| *open = if open.as_deref() == Some(key.as_str()) { None } else { Some(key.clone()) })
            >
                <span class="dot unread-dot"></span>
                <strong data-testid="group-title">{title}</strong>
                <span class="muted">{format!("{} items", ids.len())}</span>
            </button>
            {move || open().then(|| {
                let items = items.clone();
                view! {
                    <ul class="group-items">
                        {items.into_iter().map(|item| view! { <ItemRow center item /> }).collect_view()}
                    </ul>
                }
            })}
        </li>
    }
    .into_any()
}

#[component]
fn ItemRow(center: Center, item: Notification) -> impl IntoView {
    let state = if item.read_at_ms.is_some() {
        "read"
    } else if item.seen_at_ms.is_some() {
        "seen"
    } else {
        "unseen"
    };
    let archived = item.archived_at_ms.is_some();
    let snoozed = item.snoozed_until_ms.is_some_and(|until| until > now_ms());
    let (read_id, archive_id, snooze_id) = (item.id.clone(), item.id.clone(), item.id.clone());
    let category = item.category.clone();
    let label = NotificationCategory::parse(&category).map_or("Other", category_label);
    view! {
        <li class=format!("item {state}") data-testid="notification" data-id=item.id.clone() data-state=state>
            <span class="dot unread-dot" class:hidden=state == "read"></span>
            <div class="item-text">
                <div class="item-title"><strong>{item.title.clone()}</strong><span class=format!("pill pill-{category}")>{label}</span></div>
                <div class="item-body">{item.body.clone()}</div>
                <div class="muted item-time">
                    {ago(item.created_at_ms, now_ms())}
                    {item.snoozed_until_ms.filter(|_| snoozed).and_then(chrono::DateTime::from_timestamp_millis).map(|at| format!(" · back {}", crate::clock::date_time(at)))}
                </div>
            </div>
            <div class="item-actions">
                {(state != "read").then(|| view! {
                    <button type="button" data-testid="mark-read" on:click=move |_| center.mark_read(read_id.clone())>"Mark read"</button>
                })}
                {if archived {
                    view! { <button type="button" data-testid="unarchive" on:click=move |_| center.change(format!("/api/notifications/{archive_id}/unarchive"), None)>"Unarchive"</button> }.into_any()
                } else {
                    view! { <button type="button" data-testid="archive" on:click=move |_| center.change(format!("/api/notifications/{archive_id}/archive"), None)>"Archive"</button> }.into_any()
                }}
                {(!archived).then(|| view! {
                    <select
                        data-testid="snooze"
                        aria-label="Snooze"
                        on:change=move |event| {
                            let minutes: u32 = event_target_value(&event).parse().unwrap_or(0);
                            if minutes > 0 {
                                center.change(format!("/api/notifications/{snooze_id}/snooze"), Some(serde_json::json!({"minutes": minutes})));
                            }
                        }
                    >
                        <option value="" selected>"Snooze…"</option>
                        <option value="60">"1 hour"</option>
                        <option value="1440">"1 day"</option>
                        <option value="10080">"1 week"</option>
                    </select>
                })}
            </div>
        </li>
    }
}

/// What arrived while the page was open, for a few seconds each.
#[component]
pub fn Toasts(center: Center) -> impl IntoView {
    view! {
        <div class="toasts" aria-live="polite" data-testid="toasts">
            <For
                each=move || center.toasts.get()
                key=|toast| toast.id.clone()
                children=move |toast| {
                    let id = toast.id.clone();
                    view! {
                        <div class="toast" role="status" data-testid="toast">
                            <strong>{toast.title}</strong>
                            <span>{toast.body}</span>
                            <button type="button" class="close" aria-label="Dismiss" on:click=move |_| center.toasts.update(|toasts| toasts.retain(|toast| toast.id != id))>"×"</button>
                        </div>
                    }
                }
            />
        </div>
    }
}

/// Category × channel switches, stored on the server and honoured by the pipeline.
#[component]
pub fn PreferencesPanel() -> impl IntoView {
    let preferences = RwSignal::new(None::<Preferences>);
    let said = RwSignal::new(None::<String>);
    spawn_local(async move {
        match api::get::<Preferences>("/api/notifications/preferences").await {
            Ok(loaded) => preferences.set(Some(loaded)),
            Err(error) => said.set(Some(error)),
        }
    });
    let save = move |changed: CategoryPreference| {
        spawn_local(async move {
            let body = Preferences {
                categories: vec![changed],
            };
            match api::put::<Preferences>("/api/notifications/preferences", &body).await {
                Ok(saved) => {
                    preferences.set(Some(saved));
                    said.set(Some("Saved.".into()));
                }
                Err(error) => said.set(Some(error)),
            }
        });
    };
    let switch = move |preference: CategoryPreference, email: bool| {
        let on = if email { preference.email } else { preference.in_app };
        let channel = if email { "email" } else { "in-app" };
        view! {
            <td>
                <input
                    type="checkbox"
                    data-testid=format!("pref-{}-{channel}", preference.category.as_str())
                    aria-label=format!("{} by {channel}", category_label(preference.category))
                    prop:checked=on
                    on:change=move |event| {
                        let checked = event_target_checked(&event);
                        let mut changed = preference;
                        if email { changed.email = checked } else { changed.in_app = checked }
                        save(changed);
                    }
                />
            </td>
        }
    };
    view! {
        <section class="preferences" data-testid="preferences">
            <h2>"Notify me"</h2>
            <table>
                <thead><tr><th>"Category"</th><th>"Email"</th><th>"In the app"</th></tr></thead>
                <tbody>
                    {move || preferences.get().map(|loaded| loaded.categories.into_iter().map(|preference| view! {
                        <tr>
                            <th scope="row">{category_label(preference.category)}</th>
                            {switch(preference, true)}
                            {switch(preference, false)}
                        </tr>
                    }).collect_view())}
                </tbody>
            </table>
            <p class="hint">"Password resets and new sign-in notices are always sent: they are how you keep your account yours."</p>
            {move || said.get().map(|message| view! { <p class="muted" role="status" data-testid="preferences-said">{message}</p> })}
        </section>
    }
}

/// The operators' newest announcement, until dismissed.
#[component]
pub fn AnnouncementBanner(center: Center) -> impl IntoView {
    move || {
        center.announcement.get().map(|announcement| {
            view! {
                <div class="announcement" role="status" data-testid="announcement">
                    <strong>{announcement.title}</strong>
                    <span>{announcement.body}</span>
                    <button type="button" class="close" aria-label="Dismiss" data-testid="dismiss-announcement" on:click=move |_| center.dismiss_announcement()>"×"</button>
                </div>
            }
        })
    }
}

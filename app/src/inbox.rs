//! What the end users' client holds of its notification center, and the rules that keep
//! it in agreement with the server and with the user's other tabs and devices (README,
//! "The notification center"): the list the server gave (`GET /api/notifications`), the
//! notifications pushed since (`notification:new`), and the newest `notification:update`.
//!
//! The unread count is the last update's count, taken as of its `upToSeq`, plus the
//! unread notifications pushed with a larger `seq`; an update older than the one held is
//! ignored, and one that skips a version means one was missed: the client asks for the
//! list again. Pure logic, tested on the host; the views are in `client`.

use std::collections::BTreeMap;

use crate::wire::{
    InAppFrame, InboxChange, InboxUpdate, Notification, NotificationCategory, NotificationPage, NotificationType,
};

/// Which notifications a list shows (`?view=` of `GET /api/notifications`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    #[default]
    Inbox,
    Archived,
    Snoozed,
}

impl View {
    pub const ALL: [Self; 3] = [Self::Inbox, Self::Archived, Self::Snoozed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbox => "inbox",
            Self::Archived => "archived",
            Self::Snoozed => "snoozed",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Inbox => "Inbox",
            Self::Archived => "Archived",
            Self::Snoozed => "Snoozed",
        }
    }
}

/// What became of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Older than (or the same as) the one held: nothing changed.
    Stale,
    /// One or more updates were missed: ask for the list again.
    Gap,
}

/// One user's notification center as this tab holds it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inbox {
    pub view: View,
    /// Only this category, or all.
    pub category: Option<NotificationCategory>,
    /// The list shown, newest first.
    pub items: Vec<Notification>,
    /// The `before` of the next (older) page; none at the end of the history.
    pub next_before: Option<i64>,
    /// The unread count as of `counted_up_to`.
    counted_unread: i64,
    counted_up_to: i64,
    /// Unread notifications pushed with a `seq` above `counted_up_to`, by seq.
    fresh_unread: BTreeMap<i64, String>,
    /// The newest `inboxVersion` applied.
    pub version: i64,
    /// The user's newest notification seq this tab knows of (what a reconnect resumes after).
    pub newest_seq: i64,
}

impl Inbox {
    /// The first page of `view`, as the server sent it.
    pub fn from_page(view: View, category: Option<NotificationCategory>, page: NotificationPage) -> Self {
        let newest_seq = page
            .up_to_seq
            .max(page.notifications.iter().map(|item| item.seq).max().unwrap_or(0));
        Self {
            view,
            category,
            items: page.notifications,
            next_before: page.next_before,
            counted_unread: page.unread_count,
            counted_up_to: page.up_to_seq,
            fresh_unread: BTreeMap::new(),
            version: page.inbox_version,
            newest_seq,
        }
    }

    /// An older page appended (history); the count stays the newer one's.
    pub fn append_page(&mut self, page: NotificationPage) {
        for item in page.notifications {
            if !self.items.iter().any(|held| held.id == item.id) {
                self.items.push(item);
            }
        }
        self.next_before = page.next_before;
    }

    /// Unread notifications in the inbox, on every device alike.
    pub fn unread(&self) -> i64 {
        self.counted_unread + self.fresh_unread.len() as i64
    }

    /// A pushed notification. Returns it as a list item when it is new to this tab (a
    /// frame pushed again after a reconnect is not).
    pub fn on_new(&mut self, frame: &InAppFrame) -> Option<Notification> {
        let known = frame.seq <= self.counted_up_to
            || self.fresh_unread.contains_key(&frame.seq)
            || self.items.iter().any(|item| item.id == frame.id);
        self.newest_seq = self.newest_seq.max(frame.seq);
        if known {
            return None;
        }
        self.fresh_unread.insert(frame.seq, frame.id.clone());
        let item = Notification {
            id: frame.id.clone(),
            seq: frame.seq,
            kind: frame.kind.clone(),
            category: category_of(&frame.kind).as_str().to_string(),
            title: frame.title.clone(),
            body: frame.body.clone(),
            created_at_ms: frame.created_at,
            delivered_at_ms: Some(frame.created_at),
            seen_at_ms: None,
            read_at_ms: None,
            archived_at_ms: None,
            snoozed_until_ms: None,
        };
        let shown = self.view == View::Inbox && self.category.is_none_or(|category| category.as_str() == item.category);
        if shown {
            let at = self
                .items
                .iter()
                .position(|held| held.seq < item.seq)
                .unwrap_or(self.items.len());
            self.items.insert(at, item.clone());
        }
        Some(item)
    }

    /// A `notification:update` from any device of the user (this one too), at `now_ms`.
    pub fn on_update(&mut self, update: &InboxUpdate, now_ms: i64) -> Applied {
        if update.inbox_version <= self.version {
            return Applied::Stale;
        }
        let missed = update.inbox_version > self.version + 1;
        self.version = update.inbox_version;
        self.counted_unread = update.unread_count;
        self.counted_up_to = self.counted_up_to.max(update.up_to_seq);
        let counted_up_to = self.counted_up_to;
        self.fresh_unread.retain(|seq, _| *seq > counted_up_to);
        self.newest_seq = self.newest_seq.max(update.up_to_seq);
        // What the list should now show is not all in it: ask again.
        if missed || matches!(update.change, InboxChange::Preferences | InboxChange::Returned) {
            return Applied::Gap;
        }
        let view = self.view;
        for item in self.items.iter_mut().filter(|item| update.ids.contains(&item.id)) {
            match update.change {
                InboxChange::Seen => {
                    item.seen_at_ms.get_or_insert(now_ms);
                }
                InboxChange::Read => {
                    item.seen_at_ms.get_or_insert(now_ms);
                    item.read_at_ms.get_or_insert(now_ms);
                }
                InboxChange::Archived => item.archived_at_ms = Some(now_ms),
                InboxChange::Unarchived => item.archived_at_ms = None,
                InboxChange::Snoozed => item.snoozed_until_ms = update.snoozed_until_ms,
                InboxChange::Preferences | InboxChange::Returned => {}
            }
        }
        // What moved out of this view leaves the list.
        self.items.retain(|item| match view {
            View::Inbox => item.archived_at_ms.is_none() && item.snoozed_until_ms.is_none_or(|until| until <= now_ms),
            View::Archived => item.archived_at_ms.is_some(),
            View::Snoozed => item.archived_at_ms.is_none() && item.snoozed_until_ms.is_some_and(|until| until > now_ms),
        });
        Applied::Applied
    }

    /// The list as shown: runs of unread notifications of one kind side by side become
    /// one group ("3 new friend requests"); everything else stands alone.
    pub fn groups(&self) -> Vec<Group> {
        let mut groups: Vec<Group> = Vec::new();
        for item in &self.items {
            let unread = item.read_at_ms.is_none();
            match groups.last_mut() {
                Some(group) if unread && group.unread && group.kind == item.kind => group.items.push(item.clone()),
                _ => groups.push(Group {
                    kind: item.kind.clone(),
                    unread,
                    items: vec![item.clone()],
                }),
            }
        }
        groups
    }
}

/// Notifications shown as one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub kind: String,
    pub unread: bool,
    pub items: Vec<Notification>,
}

impl Group {
    /// "3 new friend requests"; a single notification's own title.
    pub fn title(&self) -> String {
        match self.items.as_slice() {
            [one] => one.title.clone(),
            many => format!("{} new {}", many.len(), plural(&self.kind)),
        }
    }

    /// The first notification's id: the group's key in the list.
    pub fn key(&self) -> String {
        self.items.first().map(|item| item.id.clone()).unwrap_or_default()
    }
}

fn kind_of(name: &str) -> Option<NotificationType> {
    NotificationType::ALL.into_iter().find(|kind| kind.name() == name)
}

/// The category a notification kind is filed under (`system` for kinds this build does
/// not know).
pub fn category_of(kind: &str) -> NotificationCategory {
    kind_of(kind).map_or(NotificationCategory::System, NotificationType::category)
}

fn plural(kind: &str) -> &'static str {
    match kind_of(kind) {
        Some(NotificationType::Signup) => "welcome messages",
        Some(NotificationType::Login) => "sign-ins",
        Some(NotificationType::ResetPassword) => "password notices",
        Some(NotificationType::Purchase) => "purchase receipts",
        Some(NotificationType::FriendRequest) => "friend requests",
        Some(NotificationType::FriendAccept) => "accepted friend requests",
        Some(NotificationType::Message) => "messages",
        None => "notifications",
    }
}

/// A category's name as the client shows it.
pub fn category_label(category: NotificationCategory) -> &'static str {
    match category {
        NotificationCategory::Account => "Account",
        NotificationCategory::Purchases => "Purchases",
        NotificationCategory::Social => "Social",
        NotificationCategory::Messages => "Messages",
        NotificationCategory::System => "System",
    }
}

/// How long ago `then_ms` was, as a list says it ("just now", "5 min ago", "3 h ago").
pub fn ago(then_ms: i64, now_ms: i64) -> String {
    let seconds = (now_ms - then_ms).max(0) / 1000;
    match seconds {
        0..60 => "just now".into(),
        60..3_600 => format!("{} min ago", seconds / 60),
        3_600..86_400 => format!("{} h ago", seconds / 3_600),
        _ => format!("{} d ago", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(seq: i64, kind: &str, read: bool) -> Notification {
        Notification {
            id: format!("n{seq}"),
            seq,
            kind: kind.into(),
            category: category_of(kind).as_str().into(),
            title: format!("title {seq}"),
            body: String::new(),
            created_at_ms: seq * 1000,
            delivered_at_ms: Some(seq * 1000),
            seen_at_ms: None,
            read_at_ms: read.then_some(seq * 1000),
            archived_at_ms: None,
            snoozed_until_ms: None,
        }
    }

    fn frame(seq: i64, kind: &str) -> InAppFrame {
        InAppFrame {
            id: format!("n{seq}"),
            seq,
            kind: kind.into(),
            title: format!("title {seq}"),
            body: String::new(),
            created_at: seq * 1000,
        }
    }

    fn update(version: i64, change: InboxChange, ids: &[&str], unread: i64, up_to_seq: i64) -> InboxUpdate {
        InboxUpdate {
            ids: ids.iter().map(|id| id.to_string()).collect(),
            change,
            snoozed_until_ms: None,
            unread_count: unread,
            up_to_seq,
            inbox_version: version,
        }
    }

    /// Three notifications, two unread, as of seq 3 and version 5.
    fn inbox() -> Inbox {
        Inbox::from_page(
            View::Inbox,
            None,
            NotificationPage {
                notifications: vec![
                    stored(3, "purchase", false),
                    stored(2, "purchase", false),
                    stored(1, "signup", true),
                ],
                unread_count: 2,
                next_before: None,
                inbox_version: 5,
                up_to_seq: 3,
            },
        )
    }

    #[test]
    fn a_push_adds_one_unread_and_a_repeated_push_adds_nothing() {
        let mut inbox = inbox();
        assert!(inbox.on_new(&frame(4, "friend-request")).is_some());
        assert_eq!(inbox.unread(), 3);
        assert_eq!(inbox.items[0].seq, 4);
        assert_eq!(inbox.items[0].category, "social");
        // Pushed again after a reconnect, or one the list already had.
        assert!(inbox.on_new(&frame(4, "friend-request")).is_none());
        assert!(inbox.on_new(&frame(2, "purchase")).is_none());
        assert_eq!(inbox.unread(), 3);
        assert_eq!(inbox.newest_seq, 4);
    }

    #[test]
    fn an_update_counts_as_of_its_seq_and_keeps_what_came_later() {
        let mut inbox = inbox();
        inbox.on_new(&frame(4, "purchase"));
        inbox.on_new(&frame(5, "purchase"));
        // Another device read seq 3 when the newest was 4: 2 unread then (2 and 4), and 5
        // came after the count.
        assert_eq!(
            inbox.on_update(&update(6, InboxChange::Read, &["n3"], 2, 4), 9_000),
            Applied::Applied
        );
        assert_eq!(inbox.unread(), 3);
        assert!(
            inbox
                .items
                .iter()
                .find(|item| item.id == "n3")
                .is_some_and(|item| item.read_at_ms == Some(9_000))
        );
        // The same update again, or an older one, changes nothing.
        assert_eq!(
            inbox.on_update(&update(6, InboxChange::Read, &["n3"], 2, 4), 9_000),
            Applied::Stale
        );
        assert_eq!(
            inbox.on_update(&update(4, InboxChange::Read, &["n2"], 0, 1), 9_000),
            Applied::Stale
        );
        assert_eq!(inbox.unread(), 3);
    }

    #[test]
    fn a_skipped_version_asks_for_the_list_again() {
        let mut inbox = inbox();
        assert_eq!(
            inbox.on_update(&update(7, InboxChange::Read, &["n2"], 1, 3), 0),
            Applied::Gap
        );
        // The count is still the newest one known.
        assert_eq!(inbox.unread(), 1);
        assert_eq!(inbox.version, 7);
        let mut inbox = self::inbox();
        assert_eq!(
            inbox.on_update(&update(6, InboxChange::Preferences, &[], 0, 3), 0),
            Applied::Gap
        );
        // A snoozed one came back: it is not in the list, so the list is asked again.
        assert_eq!(
            inbox.on_update(&update(7, InboxChange::Returned, &["n9"], 1, 3), 0),
            Applied::Gap
        );
        assert_eq!(inbox.unread(), 1);
    }

    #[test]
    fn archived_and_snoozed_leave_the_inbox_and_unarchived_come_back_to_their_view() {
        let mut inbox = inbox();
        inbox.on_update(&update(6, InboxChange::Archived, &["n3"], 1, 3), 1_000);
        assert_eq!(inbox.items.iter().map(|item| item.seq).collect::<Vec<_>>(), [2, 1]);
        let mut snoozed = update(7, InboxChange::Snoozed, &["n2"], 0, 3);
        snoozed.snoozed_until_ms = Some(60_000);
        inbox.on_update(&snoozed, 1_000);
        assert_eq!(inbox.items.iter().map(|item| item.seq).collect::<Vec<_>>(), [1]);
        assert_eq!(inbox.unread(), 0);

        let mut archived = Inbox::from_page(
            View::Archived,
            None,
            NotificationPage {
                notifications: vec![Notification {
                    archived_at_ms: Some(1),
                    ..stored(3, "purchase", false)
                }],
                unread_count: 0,
                next_before: None,
                inbox_version: 6,
                up_to_seq: 3,
            },
        );
        archived.on_update(&update(7, InboxChange::Unarchived, &["n3"], 1, 3), 2_000);
        assert!(archived.items.is_empty());
        // A push lands in the inbox, not in the archive's list, but counts.
        assert!(archived.on_new(&frame(4, "purchase")).is_some());
        assert!(archived.items.is_empty());
        assert_eq!(archived.unread(), 2);
    }

    #[test]
    fn a_category_list_shows_only_its_pushes() {
        let mut social = Inbox::from_page(
            View::Inbox,
            Some(NotificationCategory::Social),
            NotificationPage {
                notifications: Vec::new(),
                unread_count: 0,
                next_before: None,
                inbox_version: 1,
                up_to_seq: 0,
            },
        );
        social.on_new(&frame(1, "purchase"));
        social.on_new(&frame(2, "friend-request"));
        assert_eq!(social.items.iter().map(|item| item.seq).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn runs_of_unread_of_one_kind_are_grouped() {
        let mut inbox = inbox();
        for seq in 4..=6 {
            inbox.on_new(&frame(seq, "friend-request"));
        }
        let groups = inbox.groups();
        let titles: Vec<String> = groups.iter().map(Group::title).collect();
        assert_eq!(titles, ["3 new friend requests", "2 new purchase receipts", "title 1"]);
        assert_eq!(groups[0].key(), "n6");
        // Read ones stand alone even when they are alike.
        inbox.on_update(&update(6, InboxChange::Read, &["n5"], 4, 6), 0);
        let titles: Vec<String> = inbox.groups().iter().map(Group::title).collect();
        assert_eq!(
            titles,
            ["title 6", "title 5", "title 4", "2 new purchase receipts", "title 1"]
        );
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(ago(1_000, 30_000), "just now");
        assert_eq!(ago(0, 5 * 60_000 + 59_000), "5 min ago");
        assert_eq!(ago(0, 3 * 3_600_000), "3 h ago");
        assert_eq!(ago(0, 2 * 86_400_000 + 5), "2 d ago");
        assert_eq!(ago(10_000, 0), "just now", "a clock a little behind the server's");
    }

    #[test]
    fn older_pages_append_without_repeats() {
        let mut inbox = inbox();
        inbox.append_page(NotificationPage {
            notifications: vec![stored(1, "signup", true), stored(0, "signup", true)],
            unread_count: 99,
            next_before: None,
            inbox_version: 1,
            up_to_seq: 0,
        });
        assert_eq!(
            inbox.items.iter().map(|item| item.seq).collect::<Vec<_>>(),
            [3, 2, 1, 0]
        );
        assert_eq!(inbox.unread(), 2, "the newer count stands");
    }
}

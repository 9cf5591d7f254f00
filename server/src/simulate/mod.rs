//! The load simulator: virtual users who send real requests through the balancer and
//! hold real in-app sockets that ack every frame, exactly as a person's browser would.
//! Nothing is short-cut: a simulated purchase is an HTTP request through the proxy, a
//! commit, an SMTP conversation and a WebSocket frame like any other.
//!
//! Two ways in: `POST /api/live-view/simulate {type, count, interval, step}` sends a
//! fixed run, and the `simulateLoad` / `simulationRate` / `simulationMix` controls keep
//! a steady stream going until switched off.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use std::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use wire::NotificationType;
use wire::{Ack, FriendRequest, InAppFrame, Login, NewFriendRequest, NewPurchase, ResetRequest, Session, Signup};

use crate::{access::proxies::X_FORWARDED_FOR, controls::Controls};

/// Virtual users kept signed in with a socket open.
const POOL_SIZE: usize = 8;
const PASSWORD: &str = "virtual-user-password";
/// How long a newly signed-up virtual user keeps their socket open: long enough for the
/// welcome to be delivered even in step mode, where each of a worker's two boundaries
/// passes by itself after 15 s.
const NEWCOMER_ONLINE: Duration = Duration::from_secs(60);
/// Simulated requests waiting for their answer at once, at most (fixed runs wait for a
/// place; the continuous load skips what does not fit).
const MAX_IN_FLIGHT: usize = 1_024;
/// Newly signed-up virtual users online at once, at most.
const MAX_NEWCOMERS_ONLINE: usize = 256;
/// The most requests one `simulate` call may send, and the longest pause between them.
pub const MAX_COUNT: u32 = 10_000;
pub const MAX_INTERVAL_MS: u64 = 60_000;

/// Virtual users' names, numbered so each is told apart in the activity feed.
const FIRST_NAMES: [&str; 12] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Radia", "Tim", "Frances", "Linus",
];

#[derive(Clone)]
struct VirtualUser {
    email: String,
    token: String,
}

/// One place in a pool of virtual users, signed up on first use. Each place has its own
/// cell, so filling the pool signs users up side by side: a lock held across a whole
/// signup made every simulated request wait for the one before it.
type Slot = Arc<tokio::sync::OnceCell<VirtualUser>>;

fn empty_slots() -> Vec<Slot> {
    (0..POOL_SIZE).map(|_| Slot::default()).collect()
}

/// Users for friend requests: every pair is used once (a second request between the same
/// two people is refused with 409, as it should be), then the pool is retired and a fresh
/// one signed up. A retired pool's sockets stay open one more generation, then close, so
/// the simulator's sockets stay bounded.
#[derive(Default)]
struct FriendPool {
    users: Vec<Slot>,
    /// Closes the current pool's sockets.
    sockets: Option<CancellationToken>,
    /// The previous pool's, closed when the current one retires in turn.
    retired: Option<CancellationToken>,
    /// The next unordered pair, counted over the pool's `n·(n−1)/2` pairs.
    next_pair: usize,
}

/// The segments virtual users sign up as, in turn.
const SEGMENTS: [&str; 3] = ["customer", "customer", "vendor"];
/// Where virtual users say they came from, in turn.
const SOURCES: [&str; 4] = ["direct", "search", "newsletter", "social"];

pub struct Simulator {
    /// `http://<balancer>` (`https` with TLS).
    balancer: String,
    /// The virtual users' sockets' TLS, when the cluster runs it.
    sockets: Option<Arc<rustls::ClientConfig>>,
    /// Where step tokens for `"step": true` come from.
    controls: Arc<Controls>,
    http: reqwest::Client,
    /// [`POOL_SIZE`] places, used in turn.
    users: Vec<Slot>,
    friends: Mutex<FriendPool>,
    /// Numbers simulations and virtual users.
    counter: AtomicU64,
    /// A random tag per process, so virtual users of different runs never collide.
    run_tag: String,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Permits for [`MAX_NEWCOMERS_ONLINE`].
    newcomers_online: Arc<tokio::sync::Semaphore>,
    /// Permits for [`MAX_IN_FLIGHT`].
    in_flight: Arc<tokio::sync::Semaphore>,
    /// The catalogue (`GET /api/items`), asked for at the first purchase.
    catalogue: tokio::sync::OnceCell<Vec<wire::Item>>,
}

/// One fixed run, as asked for.
#[derive(Debug, Clone)]
pub struct Plan {
    pub kind: NotificationType,
    pub count: u32,
    pub interval: Duration,
    pub step: bool,
}

impl Simulator {
    pub fn new(
        balancer: std::net::SocketAddr,
        tls: Option<&crate::tls::Tls>,
        controls: Arc<Controls>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let mut http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30));
        if let Some(tls) = tls {
            http = http.use_preconfigured_tls(tls.client_config());
        }
        let http = http.build().unwrap_or_default();
        Arc::new(Self {
            balancer: format!("{}://{balancer}", crate::tls::scheme(tls)),
            sockets: tls.map(|tls| Arc::new(tls.client_config())),
            controls,
            http,
            users: empty_slots(),
            friends: Mutex::new(FriendPool::default()),
            counter: AtomicU64::new(1),
            run_tag: uuid::Uuid::now_v7().simple().to_string()[20..].to_string(),
            tasks,
            shutdown,
            newcomers_online: Arc::new(tokio::sync::Semaphore::new(MAX_NEWCOMERS_ONLINE)),
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            catalogue: tokio::sync::OnceCell::new(),
        })
    }

    /// Starts a fixed run in the background; returns its id and the request ids it will
    /// use, in order, so a caller can follow each journey.
    pub fn start(self: &Arc<Self>, plan: Plan) -> (String, Vec<String>) {
        let number = self.counter.fetch_add(1, Ordering::Relaxed);
        let simulation = format!("sim-{}-{number}", self.run_tag);
        let ids: Vec<String> = (1..=plan.count).map(|n| format!("{simulation}-{n}")).collect();
        let this = self.clone();
        let run_ids = ids.clone();
        self.tasks.spawn(async move {
            for (index, id) in run_ids.iter().enumerate() {
                if this.shutdown.is_cancelled() {
                    return;
                }
                if index > 0 && !plan.interval.is_zero() {
                    tokio::time::sleep(plan.interval).await;
                }
                // At most MAX_IN_FLIGHT unanswered (a run of 10,000 with no interval
                // would otherwise open 10,000 connections at once); the rest wait here.
                let Ok(permit) = this.in_flight.clone().acquire_owned().await else {
                    return;
                };
                let this = this.clone();
                let id = id.clone();
                // Each request on its own task: a stepped one waits for its steps
                // without holding up the rest of the run.
                this.tasks.clone().spawn(async move {
                    let _permit = permit;
                    if let Err(error) = this.send(plan.kind, &id, plan.step).await {
                        tracing::warn!(request = %id, %error, "simulated request failed");
                    }
                });
            }
        });
        (simulation, ids)
    }

    /// Keeps sending at the controls' rate and mix while `simulateLoad` is on.
    pub async fn run_continuous(self: Arc<Self>) {
        let tick = Duration::from_millis(100);
        let mut owed = 0.0;
        let mut turn = 0usize;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(tick) => {}
            }
            let settings = self.controls.settings();
            if !settings.simulate_load || settings.simulation_rate <= 0.0 {
                owed = 0.0;
                continue;
            }
            owed += settings.simulation_rate * tick.as_secs_f64();
            while owed >= 1.0 {
                owed -= 1.0;
                let kind = match settings.simulation_mix.len() {
                    0 => NotificationType::Purchase,
                    len => settings.simulation_mix[turn % len],
                };
                turn += 1;
                // A system that cannot keep up gets no more than this at once: the rest
                // of the tick's requests are not sent, rather than queued without bound.
                let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                    owed = 0.0;
                    break;
                };
                let number = self.counter.fetch_add(1, Ordering::Relaxed);
                let id = format!("load-{}-{number}", self.run_tag);
                let this = self.clone();
                self.tasks.spawn(async move {
                    let _permit = permit;
                    if let Err(error) = this.send(kind, &id, false).await {
                        tracing::debug!(request = %id, %error, "simulated request failed");
                    }
                });
            }
        }
    }

    /// Sends one request of `kind` with the given id; answers its HTTP status.
    async fn send(&self, kind: NotificationType, request_id: &str, step: bool) -> anyhow::Result<u16> {
        let traced = Some(request_id);
        let (status, _) = match kind {
            NotificationType::Signup => {
                let email = self.new_email();
                let body = self.signup_body(&email);
                let answer = self
                    .post("/api/auth/signup", &email, None, Some(&body), traced, step)
                    .await?;
                if answer.0 == 201 {
                    self.come_online_for_a_while(email);
                }
                answer
            }
            NotificationType::Login => {
                let user = self.user().await?;
                let body = Login {
                    email: user.email.clone(),
                    password: PASSWORD.into(),
                };
                self.post("/api/auth/login", &user.email, None, Some(&body), traced, step)
                    .await?
            }
            NotificationType::ResetPassword => {
                let user = self.user().await?;
                let body = ResetRequest {
                    email: user.email.clone(),
                };
                self.post("/api/auth/reset-password", &user.email, None, Some(&body), traced, step)
                    .await?
            }
            NotificationType::Purchase => {
                let user = self.user().await?;
                let number = self.counter.fetch_add(1, Ordering::Relaxed);
                let body = match self.browse(&user, number).await? {
                    // As a shopper does: a look at an item or two, then one of them.
                    Some(item) => NewPurchase {
                        item: item.name,
                        amount_cents: item.price_cents,
                        currency: item.currency,
                        item_id: Some(item.id),
                    },
                    None => NewPurchase {
                        item: format!("Item #{}", number % 50 + 1),
                        amount_cents: 500 + (number % 20) as i64 * 125,
                        currency: "EUR".into(),
                        item_id: None,
                    },
                };
                self.post(
                    "/api/purchases",
                    &user.email,
                    Some(&user.token),
                    Some(&body),
                    traced,
                    step,
                )
                .await?
            }
            NotificationType::FriendRequest => {
                let (from, to) = self.two_users().await?;
                let body = NewFriendRequest { to_email: to.email };
                self.post(
                    "/api/friend-requests",
                    &from.email,
                    Some(&from.token),
                    Some(&body),
                    traced,
                    step,
                )
                .await?
            }
            NotificationType::FriendAccept => {
                let (from, to) = self.two_users().await?;
                self.befriend(&from, &to, traced, step)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("the two were asked to be friends before"))?
            }
            NotificationType::Message => {
                let (from, to) = self.two_users().await?;
                // Befriended (unless they are) and the conversation found or made first,
                // untraced: the message is the journey.
                self.befriend(&from, &to, None, false).await?;
                let to_id = to.token.split('.').next().unwrap_or_default().to_string();
                let body = wire::NewConversation {
                    participants: vec![to_id],
                    title: None,
                };
                let (_, conversation) = self
                    .post(
                        "/api/conversations",
                        &from.email,
                        Some(&from.token),
                        Some(&body),
                        None,
                        false,
                    )
                    .await?;
                let conversation: wire::Conversation = serde_json::from_slice(&conversation)?;
                let number = self.counter.fetch_add(1, Ordering::Relaxed);
                let body = wire::NewMessage {
                    client_id: format!("sim-{}-{number}", self.run_tag),
                    body: format!("Message {number} from the simulation"),
                };
                let path = format!("/api/conversations/{}/messages", conversation.id);
                self.post(&path, &from.email, Some(&from.token), Some(&body), traced, step)
                    .await?
            }
        };
        Ok(status)
    }

    /// `from` asks `to` to be friends (untraced) and `to` accepts, traced as `traced`
    /// says: the accept's answer, or none when the request was refused (asked before).
    async fn befriend(
        &self,
        from: &VirtualUser,
        to: &VirtualUser,
        traced: Option<&str>,
        step: bool,
    ) -> anyhow::Result<Option<(u16, bytes::Bytes)>> {
        let body = NewFriendRequest {
            to_email: to.email.clone(),
        };
        let (status, created) = self
            .post(
                "/api/friend-requests",
                &from.email,
                Some(&from.token),
                Some(&body),
                None,
                false,
            )
            .await?;
        if status != 201 {
            return Ok(None);
        }
        let created: FriendRequest = serde_json::from_slice(&created)?;
        let path = format!("/api/friend-requests/{}/accept", created.id);
        let answer = self
            .post::<()>(&path, &to.email, Some(&to.token), None, traced, step)
            .await?;
        Ok(Some(answer))
    }

    fn signup_body(&self, email: &str) -> Signup {
        let number = self.counter.fetch_add(1, Ordering::Relaxed) as usize;
        Signup {
            email: email.to_string(),
            name: format!("{} {}", FIRST_NAMES[number % FIRST_NAMES.len()], number),
            password: PASSWORD.into(),
            user_type: Some(SEGMENTS[number % SEGMENTS.len()].into()),
            source: Some(SOURCES[number % SOURCES.len()].into()),
        }
    }

    /// Views one to three catalogue items as `user` and answers the last one seen (none
    /// when the catalogue cannot be read: the purchase then names no item).
    async fn browse(&self, user: &VirtualUser, number: u64) -> anyhow::Result<Option<wire::Item>> {
        let catalogue = self
            .catalogue
            .get_or_try_init(|| async {
                let response = self.http.get(format!("{}/api/items", self.balancer)).send().await?;
                anyhow::Ok(response.json::<wire::Items>().await?.items)
            })
            .await?;
        if catalogue.is_empty() {
            return Ok(None);
        }
        let mut seen = None;
        for look in 0..=(number % 3) {
            let item = &catalogue[(number as usize + look as usize * 3) % catalogue.len()];
            let url = format!("{}/api/items/{}", self.balancer, item.id);
            self.http
                .get(url)
                .bearer_auth(&user.token)
                .header(&X_FORWARDED_FOR, address_of(&user.email).to_string())
                .send()
                .await?;
            seen = Some(item.clone());
        }
        Ok(seen)
    }

    /// A newly signed-up virtual user does what a person does next: logs in and opens
    /// the notification socket, where the welcome waiting for them is delivered (store
    /// and forward) and acked, so the signup's journey completes. The socket closes
    /// after [`NEWCOMER_ONLINE`]; at most [`MAX_NEWCOMERS_ONLINE`] are open at once (a
    /// newcomer beyond that stays offline and their welcome stays stored, as for anyone
    /// who has not connected).
    fn come_online_for_a_while(&self, email: String) {
        let Ok(permit) = self.newcomers_online.clone().try_acquire_owned() else {
            return;
        };
        let (http, balancer, shutdown) = (self.http.clone(), self.balancer.clone(), self.shutdown.clone());
        let (base, tls) = (self.socket_base(), self.sockets.clone());
        self.tasks.spawn(async move {
            let _permit = permit;
            let Ok(token) = log_in(&http, &balancer, &email).await else {
                return;
            };
            let online = acking_client(base, tls, token, address_of(&email), shutdown);
            // Dropping the client closes its socket.
            let _ = tokio::time::timeout(NEWCOMER_ONLINE, online).await;
        });
    }

    /// Posts `body` (none for `None`) as the virtual user `email` and answers the status
    /// and the body's bytes.
    #[allow(clippy::too_many_arguments)]
    async fn post<B: serde::Serialize>(
        &self,
        path: &str,
        email: &str,
        token: Option<&str>,
        body: Option<&B>,
        request_id: Option<&str>,
        step: bool,
    ) -> anyhow::Result<(u16, bytes::Bytes)> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.balancer))
            .header(&X_FORWARDED_FOR, address_of(email).to_string());
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        if step {
            request = request.header("x-liveview-step", self.controls.steps().issue_token().value);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        Ok((status, body))
    }

    fn new_email(&self) -> String {
        let number = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("virtual-{}-{number}@liveview.example", self.run_tag)
    }

    /// A signed-in virtual user with an open, acking socket; the pool grows to
    /// [`POOL_SIZE`] and then users are reused in turn.
    async fn user(&self) -> anyhow::Result<VirtualUser> {
        let turn = self.counter.fetch_add(1, Ordering::Relaxed) as usize;
        let slot = &self.users[turn % POOL_SIZE];
        slot.get_or_try_init(|| self.new_user()).await.cloned()
    }

    /// Two virtual users who have never had a friend request between them.
    async fn two_users(&self) -> anyhow::Result<(VirtualUser, VirtualUser)> {
        let (first, second, sockets) = self.next_pair();
        let sign_up = |slot: Slot| {
            let sockets = sockets.clone();
            async move { slot.get_or_try_init(|| self.new_user_until(sockets)).await.cloned() }
        };
        tokio::try_join!(sign_up(first), sign_up(second))
    }

    /// The places of the next pair of friends and the token that closes their pool's
    /// sockets; retires the pool when its pairs are used up.
    fn next_pair(&self) -> (Slot, Slot, CancellationToken) {
        let mut pool = self.friends.lock().unwrap_or_else(|poison| poison.into_inner());
        let pairs = POOL_SIZE * (POOL_SIZE - 1) / 2;
        if pool.next_pair >= pairs || pool.sockets.is_none() {
            // The pool before the last one goes offline; the last one stays connected a
            // generation longer, so notifications still on their way to it are delivered.
            if let Some(oldest) = pool.retired.take() {
                oldest.cancel();
            }
            let retired = pool.sockets.take();
            *pool = FriendPool {
                users: empty_slots(),
                sockets: Some(self.shutdown.child_token()),
                retired,
                next_pair: 0,
            };
        }
        let (first, second) = nth_pair(pool.next_pair, POOL_SIZE);
        pool.next_pair += 1;
        let sockets = pool.sockets.clone().unwrap_or_else(|| self.shutdown.child_token());
        (pool.users[first].clone(), pool.users[second].clone(), sockets)
    }

    async fn new_user(&self) -> anyhow::Result<VirtualUser> {
        self.new_user_until(self.shutdown.clone()).await
    }

    /// `ws://<balancer>` (`wss` with TLS): where the virtual users' sockets go.
    fn socket_base(&self) -> String {
        self.balancer.replacen("http", "ws", 1)
    }

    /// Signs a virtual user up and in, with an acking socket open until `sockets` is cancelled.
    async fn new_user_until(&self, sockets: CancellationToken) -> anyhow::Result<VirtualUser> {
        let email = self.new_email();
        let signup = self.signup_body(&email);
        self.post("/api/auth/signup", &email, None, Some(&signup), None, false)
            .await?;
        let token = log_in(&self.http, &self.balancer, &email).await?;
        self.tasks.spawn(acking_client(
            self.socket_base(),
            self.sockets.clone(),
            token.clone(),
            address_of(&email),
            sockets,
        ));
        Ok(VirtualUser { email, token })
    }
}

/// Where the virtual user `email` connects from: a public IPv4 address drawn from the
/// email's hash, uniformly over the public address space, so that countries appear in
/// the figures and on the map in proportion to the addresses registered to them. The
/// same user always has the same address; it reaches the app servers because the
/// simulator's peer, loopback, is a trusted proxy by default.
fn address_of(email: &str) -> std::net::IpAddr {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    email.hash(&mut hasher);
    let mut bits = hasher.finish() as u32;
    loop {
        let address = std::net::IpAddr::V4(bits.into());
        if crate::access::proxies::is_public(address) {
            return address;
        }
        bits = bits.wrapping_mul(2_654_435_761).wrapping_add(1);
    }
}

/// The `index`-th unordered pair `(i, j)`, `i < j`, of `n` items, row by row.
fn nth_pair(index: usize, n: usize) -> (usize, usize) {
    let mut rest = index;
    for first in 0..n {
        let row = n - first - 1;
        if rest < row {
            return (first, first + 1 + rest);
        }
        rest -= row;
    }
    (0, 1)
}

/// Logs a virtual user in (untraced); answers the session token.
async fn log_in(http: &reqwest::Client, balancer: &str, email: &str) -> anyhow::Result<String> {
    let login = Login {
        email: email.to_string(),
        password: PASSWORD.into(),
    };
    let response = http
        .post(format!("{balancer}/api/auth/login"))
        .header(&X_FORWARDED_FOR, address_of(email).to_string())
        .json(&login)
        .send()
        .await?;
    let status = response.status().as_u16();
    anyhow::ensure!(status == 200, "virtual user could not log in: HTTP {status}");
    Ok(response.json::<Session>().await?.token)
}

/// A virtual user's in-app socket from `address`: acks every frame, reconnects (resuming
/// after the last seq) if the socket drops, until shutdown.
async fn acking_client(
    base: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    token: String,
    address: std::net::IpAddr,
    shutdown: CancellationToken,
) {
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue};
    let mut last_seq = 0;
    while !shutdown.is_cancelled() {
        let url = format!("{base}/api/notifications/ws?token={token}&lastSeq={last_seq}");
        let Ok(mut request) = url.into_client_request() else {
            return;
        };
        if let Ok(address) = HeaderValue::from_str(&address.to_string()) {
            request.headers_mut().insert("x-forwarded-for", address);
        }
        let config = Some(crate::websocket::client_config());
        let connector = tls.clone().map(tokio_tungstenite::Connector::Rustls);
        let connected = tokio_tungstenite::connect_async_tls_with_config(request, config, true, connector).await;
        if let Ok((mut socket, _)) = connected {
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => return,
                    message = socket.next() => message,
                };
                let Some(Ok(message)) = message else {
                    break;
                };
                if let Message::Text(text) = message {
                    let Ok(frame) = serde_json::from_str::<InAppFrame>(&text) else {
                        continue;
                    };
                    last_seq = frame.seq;
                    let ack = serde_json::to_string(&Ack { ack: frame.id }).unwrap_or_default();
                    if socket.send(Message::text(ack)).await.is_err() {
                        break;
                    }
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{address_of, nth_pair};

    #[test]
    fn virtual_users_come_from_public_addresses_of_their_own() {
        let addresses: std::collections::BTreeSet<_> = (0..1000)
            .map(|n| address_of(&format!("virtual-{n}@liveview.example")))
            .collect();
        assert!(addresses.len() > 990, "spread: {} distinct", addresses.len());
        assert!(
            addresses
                .iter()
                .all(|address| crate::access::proxies::is_public(*address))
        );
        assert_eq!(address_of("a@example.com"), address_of("a@example.com"));
    }

    #[test]
    fn pairs_cover_every_two_users_once() {
        let n = 5;
        let pairs: Vec<_> = (0..n * (n - 1) / 2).map(|index| nth_pair(index, n)).collect();
        let mut unique = pairs.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), pairs.len(), "no pair twice");
        assert!(pairs.iter().all(|(a, b)| a < b && *b < n));
        assert_eq!(pairs[0], (0, 1));
        assert_eq!(pairs[n - 1], (1, 2), "row two starts after the first row's n-1 pairs");
    }
}

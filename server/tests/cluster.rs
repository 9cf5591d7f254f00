//! The system as a cluster of processes in roles on a real PostgreSQL and a real Redis
//! (each started by the test): 1 lb, 2 app, 2 worker and 1 dashboard process, each a
//! separate [`liveview::start`] sharing nothing but the database and the bus. Signups and a purchase go through the lb; the email reaches
//! the capture server once; the in-app notification reaches the socket the lb put on an
//! app process, pushed by a worker in another process; the dashboard lists every
//! process and their servers, folds journeys from the lb, app and worker processes, and
//! stops and starts an app server in its own process. Then a worker
//! process that stopped heartbeating holding a lease: the workers that are left release
//! it at once. And a dashboard with `--autoscale` starting and stopping the servers of
//! the app processes.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use liveview::{Running, config::Config};
use serde_json::{Value, json};
use support::{postgres::PostgresServer, redis::RedisServer};
use tokio_tungstenite::tungstenite::Message;
use wire::ProcessRole;

mod support;

const SECRET: &str = "a cluster secret for the tests";

struct Cluster {
    _postgres: PostgresServer,
    _redis: RedisServer,
    _dirs: Vec<tempfile::TempDir>,
    lb: Running,
    apps: Vec<Running>,
    worker: Running,
    second_worker: Running,
    watcher: Running,
    http: reqwest::Client,
}

/// A process in `role` on the cluster's database and bus.
async fn process(
    postgres: &PostgresServer,
    redis: &RedisServer,
    dirs: &mut Vec<tempfile::TempDir>,
    role: ProcessRole,
    configure: impl FnOnce(&mut Config),
) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::ephemeral(dir.path());
    config.role = role;
    config.database_url = Some(postgres.url());
    config.bus_url = Some(redis.url());
    config.cluster_secret = Some(SECRET.into());
    config.time_scale = 0.001;
    config.smtp_sink = None;
    configure(&mut config);
    dirs.push(dir);
    liveview::start(&config).await.expect("the process starts")
}

/// Two app processes, each running one server on a free port, and an lb process
/// balancing over them.
async fn apps_behind_a_balancer(
    postgres: &PostgresServer,
    redis: &RedisServer,
    dirs: &mut Vec<tempfile::TempDir>,
) -> (Vec<Running>, Running) {
    let loopback = "127.0.0.1:0".parse().expect("address");
    let mut apps = Vec::new();
    for _ in 0..2 {
        apps.push(
            process(postgres, redis, dirs, ProcessRole::App, |config| {
                config.listen = Some(loopback);
            })
            .await,
        );
    }
    let backends: Vec<_> = apps.iter().map(|app| app.servers[0].1).collect();
    let lb = process(postgres, redis, dirs, ProcessRole::Lb, |config| {
        config.backends = backends;
        config.health_interval_ms = 200;
    })
    .await;
    (apps, lb)
}

impl Cluster {
    async fn start() -> Self {
        let postgres = PostgresServer::start().await;
        let redis = RedisServer::start().await;
        let mut dirs = Vec::new();
        let loopback = "127.0.0.1:0".parse().expect("address");
        let (apps, lb) = apps_behind_a_balancer(&postgres, &redis, &mut dirs).await;
        // The first worker runs the capture SMTP server both send to.
        let worker = process(&postgres, &redis, &mut dirs, ProcessRole::Worker, |config| {
            config.smtp_sink = Some(loopback);
        })
        .await;
        let smtp = format!("smtp://{}", worker.smtp_sink.expect("capture server"));
        let second_worker = process(&postgres, &redis, &mut dirs, ProcessRole::Worker, |config| {
            config.smtp_url = Some(smtp);
        })
        .await;
        let lb_addr = lb.lb();
        let watcher = process(&postgres, &redis, &mut dirs, ProcessRole::Dashboard, |config| {
            config.lb = lb_addr;
        })
        .await;
        Self {
            _postgres: postgres,
            _redis: redis,
            _dirs: dirs,
            lb,
            apps,
            worker,
            second_worker,
            watcher,
            http: reqwest::Client::builder().no_proxy().build().expect("client"),
        }
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Value {
        let mut request = self.http.post(format!("http://{}{path}", self.lb.lb())).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("answers");
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.expect("json")
    }

    async fn dashboard(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("http://{}{path}", self.watcher.dash()))
            .send()
            .await
            .expect("answers");
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.expect("json")
    }

    async fn count(&self, sql: &'static str) -> i64 {
        liveview::with_connection!(&mut self.watcher.database.read().await.expect("db"), |c| {
            sqlx::query_scalar(sql).fetch_one(c).await
        })
        .expect("count")
    }

    async fn stop(self) {
        self.lb.shutdown().await;
        self.watcher.shutdown().await;
        self.worker.shutdown().await;
        self.second_worker.shutdown().await;
        for app in self.apps {
            app.shutdown().await;
        }
    }
}

use support::clients::Socket;

async fn next_frame(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON frame");
        }
    }
}

#[tokio::test]
async fn processes_in_roles_share_the_work_through_postgresql_and_redis() {
    let cluster = Cluster::start().await;

    // Every process registered and is up.
    let listed = cluster.dashboard("/api/processes").await;
    let roles: Vec<&str> = listed["processes"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|process| process["up"] == true)
        .map(|process| process["role"].as_str().expect("a role"))
        .collect();
    let mut sorted = roles.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        ["app", "app", "dashboard", "lb", "worker", "worker"],
        "{listed}"
    );

    // The dashboard shows the servers the app processes report, healthy at the lb.
    let app_ids: Vec<String> = cluster.apps.iter().map(|app| app.servers[0].0.clone()).collect();
    let servers = support::eventually(
        "the dashboard lists both app servers",
        Duration::from_secs(10),
        || async {
            let servers = cluster.dashboard("/api/servers").await;
            let healthy = servers["servers"].as_array().is_some_and(|rows| {
                rows.len() == 2 && rows.iter().all(|row| row["healthy"] == true && row["running"] == true)
            });
            healthy.then_some(servers)
        },
    )
    .await;
    for id in &app_ids {
        assert!(servers.to_string().contains(id.as_str()), "{servers}");
    }
    assert_eq!(
        cluster.dashboard("/api/balancer").await["servers"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "the lb's own figures, from its report"
    );

    // A user through the lb, with a socket the lb puts on one of the app processes.
    cluster
        .post(
            "/api/auth/signup",
            None,
            json!({ "email": "ada@example.com", "name": "Ada", "password": "long-enough" }),
        )
        .await;
    let login = cluster
        .post(
            "/api/auth/login",
            None,
            json!({ "email": "ada@example.com", "password": "long-enough" }),
        )
        .await;
    let token = login["token"].as_str().expect("token").to_string();
    let url = format!("ws://{}/api/notifications/ws?token={token}", cluster.lb.lb());
    let (mut socket, response) = tokio_tungstenite::connect_async(url).await.expect("upgrade");
    let served_by = response.headers()["x-served-by"].to_str().expect("ascii").to_string();
    assert!(app_ids.contains(&served_by), "{served_by} is one of {app_ids:?}");

    // The welcome and login notifications, pushed by a worker in another process.
    let mut seqs = Vec::new();
    for _ in 0..2 {
        let frame = next_frame(&mut socket).await;
        seqs.push(frame["seq"].as_i64().expect("seq"));
        socket
            .send(Message::text(json!({ "ack": frame["id"] }).to_string()))
            .await
            .expect("ack");
    }
    assert_eq!(seqs, [1, 2]);

    // A purchase: its receipt arrives live and is acked.
    cluster
        .post(
            "/api/purchases",
            Some(&token),
            json!({ "item": "Lamp", "amountCents": 500, "currency": "EUR" }),
        )
        .await;
    let receipt = next_frame(&mut socket).await;
    assert_eq!(
        (receipt["seq"].as_i64(), receipt["kind"].as_str()),
        (Some(3), Some("purchase"))
    );
    socket
        .send(Message::text(json!({ "ack": receipt["id"] }).to_string()))
        .await
        .expect("ack");
    support::eventually("every notification is delivered", Duration::from_secs(10), || async {
        (cluster
            .count("SELECT COUNT(*) FROM notifications WHERE delivered_at_ms IS NOT NULL")
            .await
            == 3)
            .then_some(())
    })
    .await;

    // Three emails (welcome, login, receipt), each stored once by the capture server.
    support::eventually("the three emails arrive", Duration::from_secs(10), || async {
        (cluster.count("SELECT COUNT(*) FROM mailbox").await == 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cluster.count("SELECT COUNT(*) FROM mailbox").await, 3, "none twice");
    assert_eq!(
        cluster
            .count("SELECT CAST(COALESCE(SUM(repeats), 0) AS BIGINT) FROM mailbox")
            .await,
        0,
        "no Message-ID arrived twice"
    );

    // The watcher's dashboard folded the purchase's journey from the stages the lb,
    // the app process and the worker process recorded, each in its own process.
    let path = format!("/api/live-view/requests?type=purchase&server={served_by}");
    let journey = support::eventually(
        "the dashboard has the whole purchase",
        Duration::from_secs(10),
        || async {
            let list = cluster.dashboard(&path).await;
            let text = list.to_string();
            ["lb-received", "server-received", "db-query", "inapp-push", "client-ack"]
                .iter()
                .all(|stage| text.contains(stage))
                .then_some(list)
        },
    )
    .await;
    assert_eq!(journey.as_array().map(Vec::len), Some(1), "{journey}");

    // A worker process that died holding a lease (its heartbeats stopped a minute
    // ago; its job leased for another hour): the worker that is left releases it, and
    // the email goes out now rather than in an hour.
    let now = liveview::now_ms();
    let mut writing = cluster.watcher.database.writing().await.expect("db");
    for (sql, binds) in [
        (
            "INSERT INTO processes (id, role, address, version, started_at_ms, heartbeat_at_ms) VALUES ('dead', 'worker', '', '0', $1, $1)",
            vec![now - 60_000],
        ),
        (
            "INSERT INTO emails (id, kind, to_address, subject, body, created_at_ms) VALUES ('e-dead', 'signup', 'bob@example.com', 'Hi', 'Hello', $1)",
            vec![now],
        ),
        (
            "INSERT INTO jobs (id, queue, channel, target_id, state, attempts, run_at_ms, lease_owner, lease_until_ms, created_at_ms, updated_at_ms) \
             VALUES ('j-dead', 'mail', 'email', 'e-dead', 'active', 1, $1, 'dead/mail-worker-1', $2, $1, $1)",
            vec![now, now + 3_600_000],
        ),
    ] {
        liveview::with_connection!(&mut writing, |c| {
            let mut query = sqlx::query(sql);
            for bind in binds {
                query = query.bind(bind);
            }
            query.execute(c).await.map(drop)
        })
        .expect("a row of the dead process");
    }
    drop(writing);
    support::eventually("the dead worker's email goes out", Duration::from_secs(15), || async {
        (cluster
            .count("SELECT COUNT(*) FROM mailbox WHERE message_id = '<e-dead@liveview.local>'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    // The watcher runs no capture server of its own: it shows the worker's mailbox and
    // sets the faults the worker's capture server applies, through the database.
    let mailbox = cluster.dashboard("/api/mailbox").await;
    assert_eq!(mailbox["total"], 4, "{mailbox}");
    let faults = format!("http://{}/api/faults", cluster.watcher.dash());
    let set = cluster
        .http
        .put(&faults)
        .json(&json!({ "smtp5xxRate": 1.0 }))
        .send()
        .await
        .expect("answers");
    assert_eq!(set.status(), 200);
    assert_eq!(cluster.dashboard("/api/faults").await["smtp5xxRate"], 1.0);
    // Within a refresh (1 s) the worker's capture server refuses every message.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster
        .post(
            "/api/auth/signup",
            None,
            json!({ "email": "bob@example.com", "name": "Bob", "password": "long-enough" }),
        )
        .await;
    support::eventually("Bob's welcome is refused", Duration::from_secs(15), || async {
        (cluster
            .count("SELECT COUNT(*) FROM jobs WHERE queue = 'mail-dlq' AND state = 'failed'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let clear = cluster
        .http
        .put(&faults)
        .json(&json!({}))
        .send()
        .await
        .expect("answers");
    assert_eq!(clear.status(), 200);

    let listed = cluster.dashboard("/api/processes").await;
    let dead = listed["processes"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|process| process["id"] == "dead")
        .expect("still listed");
    assert_eq!(dead["up"], false, "{dead}");

    // Stopping an app server from the dashboard stops it in its own process; the lb
    // sees it go; starting it brings it back. A second stop of a stopped one is a 409.
    let other = app_ids
        .iter()
        .find(|id| **id != served_by)
        .expect("the other app")
        .clone();
    let action = |verb: &'static str| {
        let url = format!("http://{}/api/servers/{other}/{verb}", cluster.watcher.dash());
        let http = cluster.http.clone();
        async move { http.post(url).send().await.expect("answers") }
    };
    let stopped = action("stop").await;
    assert_eq!(stopped.status(), 200);
    assert_eq!(stopped.json::<Value>().await.expect("json")["running"], false);
    assert!(
        !cluster
            .apps
            .iter()
            .find(|app| app.servers[0].0 == other)
            .expect("app")
            .pool
            .list()[0]
            .running
    );
    assert_eq!(action("stop").await.status(), 409, "already stopped");
    support::eventually("the lb takes it out", Duration::from_secs(10), || async {
        let balancer = cluster.dashboard("/api/balancer").await;
        let out = balancer["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .any(|server| server["id"] == other.as_str() && server["healthy"] == false);
        out.then_some(())
    })
    .await;
    assert_eq!(action("start").await.status(), 200);
    let unknown = cluster
        .http
        .post(format!(
            "http://{}/api/servers/app@127.0.0.1:1/stop",
            cluster.watcher.dash()
        ))
        .send()
        .await
        .expect("answers");
    assert_eq!(unknown.status(), 404, "no process runs it");

    // Step mode across the processes: the lb starts it, the lb, the app process and the
    // worker processes each hold the request at their boundaries, and the dashboard's
    // steps (sent over the bus) let it on, until its journey ends.
    let acking = support::clients::ack_every_frame(socket);
    let step_token = cluster
        .http
        .post(format!("http://{}/api/live-view/step-token", cluster.watcher.dash()))
        .send()
        .await
        .expect("answers")
        .json::<Value>()
        .await
        .expect("json")["token"]
        .as_str()
        .expect("a token")
        .to_string();
    let stepped = {
        let request = cluster
            .http
            .post(format!("http://{}/api/purchases", cluster.lb.lb()))
            .bearer_auth(&token)
            .header("x-request-id", "stepped-on-the-cluster")
            .header("x-liveview-step", step_token)
            .json(&json!({ "item": "Lamp", "amountCents": 500, "currency": "EUR" }));
        tokio::spawn(async move { request.send().await.expect("answers").status().as_u16() })
    };
    let stages = || async {
        let url = format!(
            "http://{}/api/live-view/requests/stepped-on-the-cluster",
            cluster.watcher.dash()
        );
        let response = cluster.http.get(url).send().await.expect("answers");
        let journey: Value = response.json().await.ok()?;
        let names: Vec<String> = journey["request"]["stages"]
            .as_array()?
            .iter()
            .map(|stage| stage["stage"].as_str().unwrap_or_default().to_string())
            .collect();
        Some((names, journey["outcome"] == "completed"))
    };
    let held = support::eventually("the stepped purchase is seen", Duration::from_secs(10), || async {
        stages().await.filter(|(names, _)| !names.is_empty())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(held.0, ["lb-received"], "held at the lb's first boundary");
    assert_eq!(stages().await.expect("kept").0, held.0, "no further without a step");
    let step_url = format!(
        "http://{}/api/live-view/requests/stepped-on-the-cluster/step",
        cluster.watcher.dash()
    );
    let mut steps = 0;
    let mut seen = held.0.len();
    loop {
        let (names, completed) = stages().await.expect("kept");
        if completed {
            break;
        }
        assert!(steps < 40, "the journey ends: {names:?}");
        let status = cluster.http.post(&step_url).send().await.expect("answers").status();
        assert_eq!(status, 200, "stepping, after {names:?}");
        steps += 1;
        seen = support::eventually("a step moves it on", Duration::from_secs(10), || async {
            let (names, completed) = stages().await?;
            (names.len() > seen || completed).then_some(names.len())
        })
        .await;
    }
    assert_eq!(stepped.await.expect("request task"), 201);
    let (names, _) = stages().await.expect("kept");
    for stage in [
        "server-received",
        "response",
        "smtp-attempt",
        "inapp-push",
        "client-ack",
    ] {
        assert!(names.iter().any(|name| name == stage), "{stage} in {names:?}");
    }
    assert!(
        steps >= 10,
        "it waited at the boundaries of every process: {steps} steps, {names:?}"
    );
    acking.abort();
    cluster.stop().await;
}

/// `--autoscale` in a cluster: the dashboard decides from the reports of the app
/// processes and the lb, and asks the app process that runs a server to stop or start
/// it over the bus.
#[tokio::test]
async fn a_dashboard_autoscales_the_app_processes_it_does_not_run() {
    let postgres = PostgresServer::start().await;
    let redis = RedisServer::start().await;
    let mut dirs = Vec::new();
    let (apps, lb) = apps_behind_a_balancer(&postgres, &redis, &mut dirs).await;
    let lb_addr = lb.lb();
    let scaler = process(&postgres, &redis, &mut dirs, ProcessRole::Dashboard, |config| {
        config.lb = lb_addr;
        config.autoscale = Some("1..2".parse().expect("range"));
        config.autoscale_every_ms = 200;
    })
    .await;
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let running_apps = || apps.iter().filter(|app| app.pool.list()[0].running).count();
    let decisions = || async {
        liveview::with_connection!(&mut scaler.database.read().await.expect("db"), |c| {
            sqlx::query_scalar::<_, String>(
                "SELECT description FROM activity_stream WHERE event_type = 'autoscale' ORDER BY created_at_ms",
            )
            .fetch_all(c)
            .await
        })
        .expect("rows")
    };

    // Both app processes start their server; the autoscaler brings them to MIN (and
    // announces each stop once it is done).
    let first = support::eventually("one app server stopped", Duration::from_secs(15), || async {
        let all = decisions().await;
        (running_apps() == 1 && !all.is_empty()).then_some(all)
    })
    .await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        first[0].starts_with("Stopped app@127.0.0.1:")
            && first[0].ends_with("(2 → 1 servers): keeping the autoscaler's count of 1, not 2"),
        "{first:?}"
    );

    // Slow responses at the app processes (the delay reaches them over the bus): the
    // autoscaler asks the stopped one to start.
    let ada = json!({"email": "ada@example.com", "name": "Ada", "password": "s3cret-pass"});
    let signed_up = http
        .post(format!("http://{lb_addr}/api/auth/signup"))
        .json(&ada)
        .send()
        .await
        .expect("signup");
    assert_eq!(signed_up.status(), 201);
    let put = |delay: u64| {
        http.put(format!("http://{}/api/live-view/controls", scaler.dash()))
            .json(&json!({"delays": {"databaseOperation": delay}}))
            .send()
    };
    assert_eq!(put(2_500).await.expect("controls").status(), 200);
    let load = tokio_util::sync::CancellationToken::new();
    for _ in 0..3 {
        let (http, stop) = (http.clone(), load.clone());
        tokio::spawn(async move {
            let login = json!({"email": "ada@example.com", "password": "s3cret-pass"});
            while !stop.is_cancelled() {
                let _ = http
                    .post(format!("http://{lb_addr}/api/auth/login"))
                    .json(&login)
                    .send()
                    .await;
            }
        });
    }
    support::eventually("the stopped app server started", Duration::from_secs(30), || async {
        (running_apps() == 2).then_some(())
    })
    .await;
    let started = support::eventually("the start recorded", Duration::from_secs(5), || async {
        let all = decisions().await;
        (all.len() == 2).then_some(all)
    })
    .await;
    assert!(
        started[1].starts_with("Started app@127.0.0.1:") && started[1].contains("(1 → 2 servers): response time"),
        "{started:?}"
    );

    // Quiet again: one goes back.
    load.cancel();
    assert_eq!(put(0).await.expect("controls").status(), 200);
    support::eventually("back to one", Duration::from_secs(40), || async {
        (running_apps() == 1).then_some(())
    })
    .await;
    // The stop is announced once it is done.
    let after = support::eventually("the stop recorded", Duration::from_secs(5), || async {
        let all = decisions().await;
        (all.len() >= 3).then_some(all)
    })
    .await;
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(after[2].contains("(2 → 1 servers): quiet"), "{after:?}");
    let count: i64 = liveview::with_connection!(&mut scaler.database.read().await.expect("db"), |c| {
        sqlx::query_scalar("SELECT servers FROM autoscale").fetch_one(c).await
    })
    .expect("the count");
    assert_eq!(count, 1, "the count of servers to run is in the database");

    scaler.shutdown().await;
    lb.shutdown().await;
    for app in apps {
        app.shutdown().await;
    }
    drop(dirs);
}

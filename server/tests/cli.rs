//! The `liveview` binary as a user runs it: flags, environment fallbacks, one-line
//! errors with a non-zero exit, logged addresses, and graceful exit on SIGTERM.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

mod support;

const BINARY: &str = env!("CARGO_BIN_EXE_liveview");

/// Runs liveview to completion (it must fail fast in these cases).
async fn run_expecting_exit(args: &[&str]) -> Output {
    let mut child = tokio::process::Command::new(BINARY)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Killed if it is still running when the wait below gives up.
        .kill_on_drop(true)
        .spawn()
        .expect("spawns");
    support::eventually(
        &format!("liveview {args:?} exits (it should not keep running)"),
        Duration::from_secs(20),
        || std::future::ready(child.try_wait().expect("waits")),
    )
    .await;
    child.wait_with_output().await.expect("output")
}

fn ephemeral(data: &str) -> Vec<String> {
    [
        "--dashboard",
        "127.0.0.1:0",
        "--lb",
        "127.0.0.1:0",
        "--server-port-base",
        "0",
        "--smtp-sink",
        "127.0.0.1:0",
        "--data",
        data,
    ]
    .map(String::from)
    .to_vec()
}

fn assert_one_line_error(output: &Output, needle: &str) {
    assert!(!output.status.success(), "exit status {:?}", output.status);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|line| line.contains("error")).collect();
    assert_eq!(errors.len(), 1, "exactly one error line in:\n{stderr}");
    assert!(errors[0].contains(needle), "{needle:?} named in {:?}", errors[0]);
    assert!(!stderr.contains("panicked"), "no panic trace:\n{stderr}");
}

#[tokio::test]
async fn help_documents_every_flag_and_its_environment_variable() {
    let output = run_expecting_exit(&["--help"]).await;
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for (flag, env) in [
        ("--dashboard", "LIVEVIEW_DASHBOARD"),
        ("--lb", "LIVEVIEW_LB"),
        ("--servers", "LIVEVIEW_SERVERS"),
        ("--server-port-base", "LIVEVIEW_SERVER_PORT_BASE"),
        ("--data", "LIVEVIEW_DATA"),
        ("--database-url", "LIVEVIEW_DATABASE_URL"),
    ] {
        assert!(help.contains(flag), "{flag} in --help");
        assert!(help.contains(env), "{env} in --help");
    }
}

#[tokio::test]
async fn a_bad_flag_is_one_line_and_exit_code_2() {
    let output = run_expecting_exit(&["--servers", "lots"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert_one_line_error(&output, "--servers");
    assert_eq!(String::from_utf8_lossy(&output.stderr).lines().count(), 1);

    let output = run_expecting_exit(&["--no-such-flag"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert_one_line_error(&output, "--no-such-flag");
}

#[tokio::test]
async fn a_port_in_use_names_the_listener_and_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = ephemeral(dir.path().to_str().expect("utf-8"));
    args[3] = addr.clone(); // --lb
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run_expecting_exit(&args).await;
    assert_one_line_error(
        &output,
        &format!("cannot listen on {addr} for the load balancer: address already in use"),
    );
}

#[tokio::test]
async fn an_unusable_data_dir_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"not a directory").expect("write");
    let data = blocker.join("data");
    let args = ephemeral(data.to_str().expect("utf-8"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run_expecting_exit(&args).await;
    assert_one_line_error(&output, &format!("data directory {} is not usable", data.display()));
}

#[test]
fn environment_variables_stand_in_for_flags() {
    let output = Command::new(BINARY)
        .env("LIVEVIEW_SERVERS", "none")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert_one_line_error(&output, "--servers");
}

/// `bench hops` runs each hop for real (a 400 with the field named, an SMTP 250, a
/// client's ack) and exits non-zero if any of them did not answer so.
#[tokio::test]
async fn the_hops_benchmark_answers_every_operation() {
    let output = run_expecting_exit(&[
        "bench",
        "hops",
        "--rates",
        "30",
        "--seconds",
        "1",
        "--users",
        "3",
        "--smtp-conversations",
        "4",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}:\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for hop in ["http", "smtp", "ws", "all:http", "all:smtp", "all:ws"] {
        let row = stdout
            .lines()
            .find(|line| line.split_whitespace().nth(1) == Some(hop))
            .unwrap_or_else(|| panic!("a row for {hop} in:\n{stdout}"));
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert_eq!((columns[2], columns[3]), ("30", "0"), "30 done, 0 failed: {row}");
    }
    assert!(stdout.contains("µs of CPU per purchase"), "{stdout}");
}
/// Starts liveview on ephemeral ports and reads the dashboard URL it prints.
fn start_ephemeral(data: &str, extra_env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(BINARY)
        .args(ephemeral(data))
        .envs(extra_env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let url = first
        .strip_prefix("Live View dashboard: ")
        .expect("prints the dashboard URL")
        .to_string();
    (child, url)
}

async fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(sent.success());
    support::eventually("liveview exits after SIGTERM", Duration::from_secs(15), || {
        std::future::ready(child.try_wait().expect("waits"))
    })
    .await
}

#[tokio::test]
async fn starts_on_ephemeral_ports_logs_every_address_and_exits_cleanly_on_sigterm() {
    const SERVERS: usize = 2;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let servers = SERVERS.to_string();
    let (mut child, url) = start_ephemeral(data.to_str().expect("utf-8"), &[("LIVEVIEW_SERVERS", &servers)]);
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.starts_with("http://127.0.0.1:0/"),
        "{url}"
    );
    let health: serde_json::Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("{url}healthz"))
        .send()
        .await
        .expect("dashboard answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(health["component"], "dashboard");

    let status = terminate(&mut child).await;
    assert!(status.success(), "graceful exit: {status:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("read");
    let roles = ["dashboard".to_string(), "load balancer".to_string()]
        .into_iter()
        .chain((1..=SERVERS).map(|i| format!("server-{i}")));
    for role in roles {
        assert!(
            stderr.contains(&format!("{role} listening on http://127.0.0.1:")),
            "{role} logged:\n{stderr}"
        );
    }
    let one_more = format!("server-{}", SERVERS + 1);
    assert!(!stderr.contains(&one_more), "LIVEVIEW_SERVERS={SERVERS} was honoured");
    assert!(stderr.contains("stopped"), "{stderr}");
    assert!(data.join("liveview.db").is_file(), "the SQLite file is in the data dir");
}

/// Runs `liveview operators …` on `data`, with `stdin` piped in.
async fn operators(data: &str, args: &[&str], stdin: &str) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(BINARY)
        .args(["operators"])
        .args(args)
        .args(["--data", data])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawns");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).await.expect("writes");
    drop(input);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("exits")
        .expect("output")
}

#[tokio::test]
async fn operators_are_added_listed_and_removed_from_the_command_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8");
    let added = operators(data, &["add", "ada", "--role", "admin"], "a long password\n").await;
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    assert_eq!(String::from_utf8_lossy(&added.stdout), "added ada (admin)\n");

    let generated = operators(data, &["add", "vic", "--role", "viewer", "--generate-password"], "").await;
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let stdout = String::from_utf8_lossy(&generated.stdout).to_string();
    let password = stdout
        .lines()
        .find_map(|line| line.strip_prefix("password (shown once): "))
        .expect("the generated password is printed once");
    assert_eq!(password.len(), 24);

    // Piped with nothing, or a short one, or a name taken: one line, non-zero.
    let empty = operators(data, &["add", "eve", "--role", "viewer"], "").await;
    assert_one_line_error(&empty, "no password on standard input");
    let short = operators(data, &["add", "eve", "--role", "viewer"], "short\n").await;
    assert_one_line_error(&short, "a password is 10 to");
    let taken = operators(data, &["add", "ada", "--role", "viewer"], "another long one\n").await;
    assert_one_line_error(&taken, "already an operator named \"ada\"");
    let role = operators(data, &["add", "eve", "--role", "root"], "a long password\n").await;
    assert!(!role.status.success());

    let listed = operators(data, &["list"], "").await;
    let lines: Vec<Vec<String>> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|line| line.split('\t').take(2).map(String::from).collect())
        .collect();
    assert_eq!(lines, [["ada", "admin"], ["vic", "viewer"]]);

    // The accounts work: the passwords verify against what was stored.
    let url = format!("sqlite://{}/liveview.db", data);
    let database = liveview::storage::Database::open(&url).await.expect("database");
    let accounts = liveview::operators::Operators::new(database.clone());
    assert!(
        accounts
            .verify("ada", "a long password")
            .await
            .expect("verify")
            .is_some()
    );
    assert!(accounts.verify("vic", password).await.expect("verify").is_some());
    database.close().await;

    let removed = operators(data, &["remove", "vic"], "").await;
    assert!(removed.status.success());
    let last = operators(data, &["remove", "ada"], "").await;
    assert_one_line_error(&last, "the last admin");
    let listed = operators(data, &["list"], "").await;
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 1);
}

#[tokio::test]
async fn a_dashboard_beyond_loopback_without_login_does_not_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = ephemeral(dir.path().to_str().expect("utf-8"));
    args.extend(["--dashboard".to_string(), "0.0.0.0:0".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run_expecting_exit(&args).await;
    assert_one_line_error(&output, "start it with --dashboard-auth login");
}

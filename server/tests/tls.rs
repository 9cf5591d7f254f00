//! TLS on every listener (`--tls-cert`, `--tls-key`): a process started with a throwaway
//! self-signed certificate serves HTTPS and WSS on its balancer, its app servers and its
//! dashboard, and speaks TLS to its own app servers (the balancer's proxying and health
//! checks, the dashboard's probes). A client that does not trust the certificate, or
//! speaks plain HTTP, gets nothing; a certificate that cannot be read stops the start
//! with the file's name.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use liveview::config::Config;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

mod support;

/// A certificate for 127.0.0.1, its key and a client configuration that trusts it.
struct Certificate {
    dir: tempfile::TempDir,
    pem: String,
}

impl Certificate {
    fn new() -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("a certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let pem = made.cert.pem();
        std::fs::write(dir.path().join("cert.pem"), &pem).expect("written");
        std::fs::write(dir.path().join("key.pem"), made.signing_key.serialize_pem()).expect("written");
        Self { dir, pem }
    }

    /// A process's configuration in `dir` with TLS on this certificate.
    fn config(&self, dir: &tempfile::TempDir) -> Config {
        let mut config = Config::ephemeral(dir.path());
        config.tls_cert = Some(self.dir.path().join("cert.pem"));
        config.tls_key = Some(self.dir.path().join("key.pem"));
        config
    }

    fn https(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(self.pem.as_bytes()).expect("pem"))
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    fn rustls(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(self.pem.as_bytes()) {
            roots.add(certificate.expect("a certificate")).expect("trusted");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

#[tokio::test]
async fn every_listener_speaks_tls_and_the_process_speaks_it_to_itself() {
    let certificate = Certificate::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = certificate.config(&dir);
    let running = liveview::start(&config).await.expect("starts with TLS");
    let https = certificate.https();
    let (lb, dashboard) = (running.lb(), running.dash());

    // The balancer's health checks reach the app servers over TLS.
    support::eventually(
        "the balancer finds its app servers healthy",
        Duration::from_secs(10),
        || async {
            let servers: Value = https
                .get(format!("https://{dashboard}/api/balancer"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let rows = servers["servers"].as_array()?.clone();
            (!rows.is_empty() && rows.iter().all(|row| row["healthy"] == true)).then_some(())
        },
    )
    .await;

    // Through the balancer, which forwards to an app server over TLS.
    let signup = json!({ "email": "ada@example.com", "name": "Ada", "password": "long-enough-secret" });
    let response = https
        .post(format!("https://{lb}/api/auth/signup"))
        .json(&signup)
        .send()
        .await
        .expect("answers over TLS");
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let login: Value = https
        .post(format!("https://{lb}/api/auth/login"))
        .json(&json!({ "email": "ada@example.com", "password": "long-enough-secret" }))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let token = login["token"].as_str().expect("token");

    // An in-app socket over wss, through the balancer to an app server over TLS: the
    // welcome notification arrives.
    let url = format!("wss://{lb}/api/notifications/ws?token={token}");
    let connector = tokio_tungstenite::Connector::Rustls(certificate.rustls());
    let (mut socket, _) = tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
        .await
        .expect("a wss socket");
    let frame = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("a frame");
        if let Message::Text(text) = message {
            break serde_json::from_str::<Value>(&text).expect("json");
        }
    };
    assert_eq!(frame["kind"], "signup", "{frame}");

    // The dashboard over TLS; its probes reach the app servers over TLS too.
    let status = support::eventually("/status sees the app servers", Duration::from_secs(10), || async {
        let status: Value = https
            .get(format!("https://{dashboard}/status"))
            .header("accept", "application/json")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (status["status"] == "healthy").then_some(status)
    })
    .await;
    let servers = status["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter(|component| component["kind"] == "server" && component["health"] == "healthy")
        .count();
    assert_eq!(servers, 3, "every app server probed over TLS: {status}");

    // With TLS, an operator's session cookie is never sent in the clear.
    let dir_login = tempfile::tempdir().expect("temp dir");
    let mut login_config = certificate.config(&dir_login);
    login_config.dashboard_auth = Some(wire::AuthMode::Login);
    let secured = liveview::start(&login_config).await.expect("starts");
    liveview::operators::Operators::new(secured.database.clone())
        .add("ada", wire::Role::Admin, "ada's long password")
        .await
        .expect("operator added");
    let signed_in = https
        .post(format!("https://{}/api/session", secured.dash()))
        .json(&json!({"name": "ada", "password": "ada's long password"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(signed_in.status(), 200);
    let cookie = signed_in.headers()["set-cookie"].to_str().expect("ascii").to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
    secured.shutdown().await;

    // Plain HTTP, and TLS from a client that does not trust the certificate: nothing.
    let plain = reqwest::Client::builder().no_proxy().build().expect("client");
    for addr in [lb, dashboard] {
        assert!(
            plain.get(format!("http://{addr}/healthz")).send().await.is_err(),
            "plain HTTP to {addr}"
        );
        let stranger = reqwest::Client::builder().no_proxy().build().expect("client");
        let error = stranger
            .get(format!("https://{addr}/healthz"))
            .send()
            .await
            .expect_err("an untrusted certificate");
        assert!(error.is_connect(), "{error:?}");
    }
    running.shutdown().await;
}

#[tokio::test]
async fn a_certificate_that_cannot_be_read_stops_the_start_with_its_name() {
    let certificate = Certificate::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = certificate.config(&dir);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("written");
    config.tls_cert = Some(garbage.clone());
    let error = liveview::start(&config).await.err().expect("refused").to_string();
    assert!(error.contains("garbage.pem"), "{error}");
    // A key without its certificate.
    config.tls_cert = None;
    let error = liveview::start(&config).await.err().expect("refused").to_string();
    assert!(error.contains("--tls-cert"), "{error}");
}

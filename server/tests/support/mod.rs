//! Shared by the integration tests: the whole system started in-process on ephemeral
//! ports, a temp data directory, and the embedded capture SMTP server.

// Each test file compiles its own copy and uses only part of it.
#![allow(dead_code)]

use std::path::Path;

use clap::Parser;
use liveview::{Running, config::Config};

pub struct TestSystem {
    pub running: Running,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl TestSystem {
    /// Starts with every listener on port 0; `extra` adds or overrides flags.
    pub async fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let site = dir.path().join("site");
        let mut args = vec![
            "liveview",
            "--dashboard",
            "127.0.0.1:0",
            "--lb",
            "127.0.0.1:0",
            "--server-port-base",
            "0",
            "--smtp-sink",
            "127.0.0.1:0",
            "--data",
            data.to_str().expect("utf-8"),
            "--site",
            site.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        let config = Config::try_parse_from(args).expect("flags parse");
        let running = liveview::start(&config).await.expect("system starts");
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        Self { running, http, dir }
    }

    /// Where `TestSystem::start` looks for the SPA: write files here before starting.
    pub fn site_dir(dir: &Path) -> std::path::PathBuf {
        dir.join("site")
    }

    /// A URL on the load balancer.
    pub fn lb(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.balancer)
    }

    /// A URL on the dashboard.
    pub fn dashboard(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.dashboard)
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.running.database.pool)
            .await
            .expect("count")
    }

    pub async fn stop(self) {
        self.running.shutdown().await;
    }
}

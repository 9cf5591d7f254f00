//! A `liveview` binary run as a child process, for the tests that kill it with SIGKILL
//! and start it again on the same flags and data.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

const BINARY: &str = env!("CARGO_BIN_EXE_liveview");

pub struct Process {
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// Where it answers `/healthz` once it is up (none for a worker, which listens
    /// nowhere).
    health: Option<String>,
}

impl Process {
    /// Spawns `liveview ARGS` with `env` and waits until `health` answers.
    pub async fn start(args: Vec<String>, env: &[(String, String)], health: Option<String>) -> Self {
        let mut process = Self {
            args,
            env: env.to_vec(),
            child: None,
            health,
        };
        process.spawn().await;
        process
    }

    /// Starts it (again), on the same flags.
    pub async fn spawn(&mut self) {
        let child = Command::new(BINARY)
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawns");
        self.child = Some(child);
        let Some(health) = self.health.clone() else {
            // Nothing to ask: give it a moment to register and claim.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        };
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        super::eventually("liveview comes up", Duration::from_secs(20), || async {
            let answer = http.get(&health).send().await;
            answer.is_ok_and(|r| r.status().is_success()).then_some(())
        })
        .await;
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("killed");
            child.wait().expect("reaped");
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

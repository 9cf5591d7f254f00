//! A real Redis for the tests that need one: Debian's `redis-server` (installed by
//! `make setup-test`), started on a free loopback port with nothing saved to disk, and
//! killed when dropped.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub async fn start() -> Self {
        let port = super::free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self { port, child: None, dir };
        server.run().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (or starts again) on the same port.
    pub async fn run(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (make setup-test installs it)");
        self.child = Some(child);
        let port = self.port;
        super::eventually("redis-server answers", Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()
        })
        .await;
    }

    /// Kills it at once, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

//! A real PostgreSQL for the tests that need one: Debian's `postgresql` (installed by
//! `make setup-test`), a throwaway cluster made with `initdb` in a temporary directory,
//! started on a free loopback port (trust authentication, the socket in that directory,
//! no system service), and stopped when dropped. As root it runs as the `postgres` user,
//! which PostgreSQL requires.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

pub struct PostgresServer {
    pub port: u16,
    child: Child,
    data: PathBuf,
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

/// The newest installed server's `bin` directory.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (make setup-test installs it)")
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("postgres").is_file())
        .collect();
    found.sort_by_key(|bin| {
        bin.parent()
            .and_then(|version| version.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().expect("a postgres binary under /usr/lib/postgresql/*/bin")
}

fn as_postgres(program: &Path) -> Command {
    // Root or not, from `id -u` (std has no geteuid, and unsafe code is forbidden).
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0");
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl PostgresServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // The postgres user must own its directory (and reach it: tempdirs are 0700).
        let _ = Command::new("chown").arg("postgres").arg(dir.path()).status();
        let data = dir.path().join("data");
        let bin = bin_dir();
        let initdb = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("initdb runs");
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        // A port found free may be taken by another test's PostgreSQL before this one
        // binds it; then this one exits and the other answers on the port. So the
        // server that answers must show this one's data directory, or it is tried
        // again on another port.
        for _ in 0..5 {
            let port = super::free_port();
            let child = as_postgres(&bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-p",
                    &port.to_string(),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                ])
                .arg("-k")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("postgres runs");
            let mut server = Self {
                port,
                child,
                data: data.clone(),
                bin: bin.clone(),
                _dir: tempfile::tempdir().expect("a placeholder"),
            };
            if server.answers_as_itself().await {
                server._dir = dir;
                return server;
            }
            // Dropping it stops it, if it runs at all.
        }
        panic!("PostgreSQL did not start on any of 5 free ports");
    }

    /// Whether this server (not another on its port) accepts connections within 30 s.
    async fn answers_as_itself(&mut self) -> bool {
        let url = self.url();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let ours = self.data.canonicalize().unwrap_or_else(|_| self.data.clone());
        while std::time::Instant::now() < deadline {
            if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                let directory: Option<String> = sqlx::query_scalar("SELECT current_setting('data_directory')")
                    .fetch_one(&pool)
                    .await
                    .ok();
                pool.close().await;
                if let Some(directory) = directory {
                    return Path::new(&directory)
                        .canonicalize()
                        .unwrap_or_else(|_| directory.into())
                        == ours;
                }
            }
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // pg_ctl's fast shutdown, not a signal to the child: as root the child is
        // `runuser`, which does not pass signals on.
        let stopped = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "fast", "-w", "-t", "20"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

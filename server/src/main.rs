//! `liveview`: parses flags, starts the system, and waits for SIGINT or SIGTERM.

use std::{io::Write, process::ExitCode};

use clap::{Parser, error::ErrorKind};
use liveview::config::Cli;

/// mimalloc instead of glibc's allocator: under load, malloc, free and glibc's arena
/// consolidation were a large share of the CPU (the profiles in BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Raises the soft limit on open files to the hard limit, as Go's runtime and most
/// servers do. Every connection through the balancer holds three descriptors in this one
/// process (the client's, the balancer's to its app server, the app server's), and a login
/// shell's soft limit (1,024 on Debian) runs out at a few hundred concurrent connections,
/// well before the dashboard's thousands of viewers.
fn raise_open_file_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            // One line that names the problem; `--help` has the rest.
            let text = error.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first} (try 'liveview --help')");
            return ExitCode::from(2);
        }
    };
    let open_files = raise_open_file_limit();
    if let Some(liveview::config::Command::Operators(command)) = cli.command.clone() {
        return match command.run(&cli.config, &mut std::io::stdout()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        };
    }
    #[cfg(feature = "bench")]
    if let Some(liveview::config::Command::Bench(bench)) = cli.command {
        // Benchmarks print a table; only warnings go to the log.
        tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_writer(std::io::stderr)
            .init();
        return match bench.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let config = cli.config;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match open_files {
        Ok(limit) => tracing::info!(limit, "open files"),
        Err(error) => tracing::warn!(%error, "could not raise the open files limit"),
    }

    // Listen for signals before printing the URL: a supervisor may send SIGTERM as
    // soon as it sees the process is up.
    let signals = Signals::install();
    let running = match liveview::start(&config).await {
        Ok(running) => running,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Written, not println!: a closed stdout (a supervisor that read the first line and
    // went away) must not panic the process.
    let mut urls = String::new();
    let http = if config.tls_cert.is_some() { "https" } else { "http" };
    if let Some(dashboard) = running.dashboard {
        urls +=
            &format!("Live View dashboard: {http}://{dashboard}/\nStatus page:         {http}://{dashboard}/status\n");
    }
    if let Some(balancer) = running.balancer {
        urls += &format!("Load balancer:       {http}://{balancer}/\n");
    }
    for (id, addr) in running
        .servers
        .iter()
        .filter(|_| running.role == wire::ProcessRole::App)
    {
        urls += &format!("App server {id}:  {http}://{addr}/\n");
    }
    if running.role == wire::ProcessRole::Worker {
        urls += &format!("Worker process {} (no listener)\n", running.process.me().0);
    }
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(urls.as_bytes()).and_then(|()| stdout.flush());

    signals.wait().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// SIGINT and SIGTERM, registered up front.
struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        Self {
            #[cfg(unix)]
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    async fn wait(mut self) {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        if let Some(terminate) = self.terminate.as_mut() {
            tokio::select! {
                _ = interrupt => {}
                _ = terminate.recv() => {}
            }
            return;
        }
        let _ = interrupt.await;
    }
}

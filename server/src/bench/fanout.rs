//! `liveview bench fanout`: the live stream's fan-out. Starts the whole system in this
//! process, then for each viewer count N: opens N idle viewers of `/api/live-view/ws` in a
//! child process (see [`super::viewers`]), measures this process's resident memory before
//! and after (the server's side of an idle viewer, alone), then publishes probe events at
//! `--rate` per second through the telemetry channel, optionally with real purchases
//! through the balancer at `--pipeline-rate`, and reports what the viewers received:
//! deliveries per second, event-to-client latency (creation, before the aggregator's
//! batching, to received and parsed), the hub's resyncs and too-slow closes, and the CPU
//! both processes spent.
//!
//! With `--socket metrics` the viewers watch the business socket `/ws/metrics` instead,
//! subscribed to the snapshots and the activity feed; the probes are activity items
//! committed to the database as the controllers commit theirs (the feed finds them
//! there, as it finds every process's), and the snapshot every 5 s is timed too.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use super::{
    Arrivals, client, cores, cpu_seconds, kernel_kib, post_accepted, purchase, resyncs_and_closes, rss_kib,
    sign_up_users, start_system, tcp_kernel_kib,
    viewers::{Socket, ViewerProcess, probe, probe_label},
};
use crate::{Running, storage::WriteBatch};

#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Viewer counts to try, each with a fresh set of viewers, smallest first.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub viewers: Vec<usize>,
    /// Probe events published per second (each to every viewer), through the telemetry
    /// channel as the components publish theirs.
    #[arg(long, default_value_t = 10)]
    pub rate: u32,
    /// Seconds of publishing for each viewer count.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Purchases per second sent through the balancer meanwhile (0 for none); their
    /// telemetry is on the stream too, batched by the aggregator.
    #[arg(long, default_value_t = 0)]
    pub pipeline_rate: u32,
    /// Users (each with an open in-app socket) the purchases are spread over.
    #[arg(long, default_value_t = 8)]
    pub users: usize,
    /// One viewer in this many times every pipeline event it gets (every viewer times
    /// every probe).
    #[arg(long, default_value_t = 10)]
    pub sample_every: usize,
    /// Seconds idle viewers are left alone before their memory is measured.
    #[arg(long, default_value_t = 3)]
    pub settle: u64,
    /// The socket the viewers watch.
    #[arg(long, value_enum, default_value_t = Socket::Live)]
    pub socket: Socket,
}

/// Seconds after publishing stops for what is in flight to arrive.
const GRACE: Duration = Duration::from_secs(1);

pub async fn fanout(args: FanoutArgs) -> anyhow::Result<()> {
    let (running, dir) = start_system(16, 8, false).await?;
    let http = client()?;
    let lb = running.lb().to_string();
    println!(
        "liveview bench fanout: {}, probes {}/s, purchases {}/s, {} s per viewer count, cores={}",
        args.socket.path(),
        args.rate,
        args.pipeline_rate,
        args.seconds,
        cores()
    );
    let tokens: Vec<String> = if args.pipeline_rate > 0 {
        let arrivals: Arrivals = Arc::default();
        let users = sign_up_users(&http, &lb, args.users, &arrivals).await?;
        users.into_iter().map(|user| user.token).collect()
    } else {
        Vec::new()
    };
    // The sampler's first ticks, the history file's first pages: not the viewers' memory.
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    // Memory is measured against what the process held before any viewer: the allocator
    // keeps what closed viewers freed and gives it to the next ones, so a baseline taken
    // between counts would hide it. Smallest first, each count reuses and then exceeds it.
    let mut counts = args.viewers.clone();
    counts.sort_unstable();
    let rss_before = rss_kib();
    let kernel_before = kernel_kib();

    println!(
        "{:>7} {:>7} {:>8} {:>9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "viewers",
        "ev/s",
        "frames/s",
        "deliv/s",
        "got",
        "probe p50",
        "probe p99",
        "probe max",
        if args.socket == Socket::Live {
            "pipe p50"
        } else {
            "snap p50"
        },
        if args.socket == Socket::Live {
            "pipe p99"
        } else {
            "snap p99"
        },
        "resync",
        "srv/view",
        "cli/view",
        "krn/view",
        "srv cpu",
        "cli cpu",
        "srv/deliv"
    );
    let mut serial = 0usize;
    let mut notes = Vec::new();
    for &count in &counts {
        let mut viewers = ViewerProcess::spawn(running.dash(), args.socket, count, args.sample_every).await?;
        tokio::time::sleep(Duration::from_secs(args.settle)).await;
        let rss_idle = rss_kib();
        let kernel_idle = kernel_kib();
        let ready = viewers.ready.clone();
        let open = ready.connected.max(1) as f64;
        let server_per_viewer = rss_idle.saturating_sub(rss_before) as f64 / open;
        let client_per_viewer = ready.rss_after_kib.saturating_sub(ready.rss_before_kib) as f64 / open;
        let kernel_per_viewer = kernel_idle.saturating_sub(kernel_before) as f64 / open;

        let stats_before = running.hub.stats();
        let cpu_before = cpu_seconds(std::process::id());
        let client_cpu_before = viewers.cpu_seconds();
        viewers.start().await?;
        let (probes, accepted) = publish(&args, &running, &http, &lb, &tokens, &mut serial).await;
        tokio::time::sleep(GRACE).await;
        let report = viewers.stop().await?;
        let stats = running.hub.stats();
        let seconds = report.seconds.max(1e-3);
        let server_cpu = cpu_seconds(std::process::id()) - cpu_before;
        let client_cpu = viewers.cpu_seconds() - client_cpu_before;
        let rss_after = rss_kib();

        let (events, got) = match args.socket {
            Socket::Live => (stats.last_seq - stats_before.last_seq, report.expected),
            // Every viewer is due every probe.
            Socket::Metrics => (probes, probes * ready.connected as u64),
        };
        println!(
            "{:>7} {:>7.0} {:>8.0} {:>9.0} {:>5.1}% {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>5.1} KiB {:>4.1} KiB {:>4.1} KiB {:>7.0}% {:>7.0}% {:>6.1} µs",
            ready.connected,
            events as f64 / seconds,
            report.frames as f64 / seconds,
            report.deliveries as f64 / seconds,
            100.0
                * match args.socket {
                    Socket::Live => report.deliveries,
                    Socket::Metrics => report.probes.count,
                } as f64
                / got.max(1) as f64,
            report.probes.p50(),
            report.probes.p99(),
            report.probes.max(),
            report.pipeline.p50(),
            report.pipeline.p99(),
            resyncs_and_closes(&stats, &stats_before),
            server_per_viewer,
            client_per_viewer,
            kernel_per_viewer,
            server_cpu * 100.0 / seconds,
            client_cpu * 100.0 / seconds,
            server_cpu * 1e6 / (report.deliveries.max(1) as f64),
        );
        notes.push(format!(
            "{count} viewers: opened {} ({} failed) in {:.1} s; probes published {probes}, \
             timed {} of {} expected; purchases accepted {accepted}; gaps {} closed {} (too slow {}); \
             server RSS {} → {} (idle) → {} (after) MiB, i.e. {:.1} KiB per viewer after the load; \
             kernel TCP buffers {} KiB",
            ready.connected,
            ready.failed,
            ready.seconds,
            report.probes.count,
            probes * ready.connected as u64,
            report.gaps,
            report.closed,
            report.closed_too_slow,
            rss_before / 1024,
            rss_idle / 1024,
            rss_after / 1024,
            rss_after.saturating_sub(rss_before) as f64 / open,
            tcp_kernel_kib(),
        ));
        viewers.close().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while running.hub.viewer_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for note in notes {
        println!("{note}");
    }
    println!(
        "got: events received / events due (live: each viewer's span of seqs while counting; metrics: the probes \
         published, to every viewer); snap: a /ws/metrics snapshot from its computation to its arrival; srv/view, cli/view: resident memory per idle \
         viewer of this process (the server) and of the viewers' process; krn/view: the kernel's \
         unreclaimable slab (socket objects; system-wide) per viewer, both ends; cpu: % of one core; \
         srv/deliv: server process CPU per delivery"
    );
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Publishes probes at `--rate` for `--seconds` (and purchases at `--pipeline-rate`);
/// returns the probes published and the purchases accepted.
async fn publish(
    args: &FanoutArgs,
    running: &Running,
    http: &reqwest::Client,
    lb: &str,
    tokens: &[String],
    serial: &mut usize,
) -> (u64, usize) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let purchases = (args.pipeline_rate > 0 && !tokens.is_empty()).then(|| {
        let total = (u64::from(args.pipeline_rate) * args.seconds) as usize;
        let first = *serial;
        *serial += total;
        let (http, lb, tokens, accepted) = (http.clone(), lb.to_string(), tokens.to_vec(), accepted.clone());
        let period = Duration::from_secs_f64(1.0 / f64::from(args.pipeline_rate));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut requests = Vec::with_capacity(total);
            for serial in first..first + total {
                ticker.tick().await;
                let (path, token, body) = purchase(&tokens, serial);
                let (http, lb, accepted) = (http.clone(), lb.clone(), accepted.clone());
                requests.push(tokio::spawn(async move {
                    if post_accepted(&http, &lb, path, token.as_deref(), body).await.is_ok() {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            for request in requests {
                let _ = request.await;
            }
        })
    });
    let mut published = 0;
    if args.rate > 0 {
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for _ in 0..u64::from(args.rate) * args.seconds {
            ticker.tick().await;
            match args.socket {
                Socket::Live => running.telemetry.event(probe()),
                Socket::Metrics => {
                    let probe =
                        crate::analytics::activity::event(wire::ActivityType::Login, ("", "bench"), probe_label(), []);
                    let mut batch = WriteBatch::default();
                    crate::analytics::activity::record(&mut batch, &probe);
                    if running.database.commit(batch).await.is_err() {
                        continue;
                    }
                    crate::analytics::activity::announce(&running.telemetry, probe);
                }
            }
            published += 1;
        }
    } else {
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    }
    if let Some(purchases) = purchases {
        let _ = purchases.await;
    }
    (published, accepted.load(Ordering::Relaxed))
}

//! The figures of a cluster's other processes. Every process samples its own
//! components once a second ([`super::sampler`]); one without a dashboard publishes its
//! [`Sample`] on the bus ([`report`]), and a dashboard takes in the fresh ones
//! ([`Reports::merge`]) before it shows its own: the balancer's card from the `lb`, a
//! server card per app process, and the shared cards (queues, sockets, database, SMTP,
//! the header's figures) as the sum of every process's part. A report is a current
//! figure: one lost to a Redis outage is replaced by the next a second later.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wire::{ComponentMetrics, Sample, SocketEvent};

use super::sampler::{SAMPLE_EVERY, Sampler};
use crate::bus::{Bus, Channel, ProcessId};

/// A report older than this is from a process that stopped: it no longer counts.
pub const FRESH_FOR: Duration = Duration::from_secs(3);
/// Socket events the merged card keeps, newest first.
const RECENT_EVENTS: usize = 20;

/// One process's sample, as it travels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub process: ProcessId,
    pub sample: Sample,
}

/// In a process without a dashboard: samples its components every second and
/// publishes them, until shutdown.
pub async fn report(sampler: Arc<Sampler>, bus: Bus, shutdown: CancellationToken) {
    crate::every(SAMPLE_EVERY, shutdown, || async {
        let report = Report {
            process: bus.me().clone(),
            sample: sampler.sample().await,
        };
        if let Err(error) = bus.publish(Channel::Reports, &report).await {
            tracing::debug!(%error, "this process's figures were not published");
        }
    })
    .await;
}

/// The latest report of every other process, as a dashboard holds them.
#[derive(Default)]
pub struct Reports {
    latest: Mutex<HashMap<ProcessId, (Instant, Sample)>>,
    /// The cluster's SMTP totals at the last merge, for the rates.
    smtp_totals: Mutex<Option<(u64, u64)>>,
}

impl Reports {
    /// Keeps the reports other processes publish, until shutdown.
    pub async fn gather(self: Arc<Self>, bus: Bus, shutdown: CancellationToken) {
        bus.from_others(Channel::Reports, "the cluster's figures", shutdown, |report: Report| {
            self.latest
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .insert(report.process, (Instant::now(), report.sample));
            std::future::ready(())
        })
        .await;
    }

    /// The reports received in the last [`FRESH_FOR`] (older ones are forgotten).
    fn fresh(&self) -> Vec<Sample> {
        let mut latest = self.latest.lock().unwrap_or_else(|poison| poison.into_inner());
        latest.retain(|_, (at, _)| at.elapsed() < FRESH_FOR);
        latest.values().map(|(_, sample)| sample.clone()).collect()
    }

    /// This dashboard's own sample with the other processes' parts taken in.
    pub fn merge(&self, own: Sample) -> Sample {
        let others = self.fresh();
        let mut smtp_totals = self.smtp_totals.lock().unwrap_or_else(|poison| poison.into_inner());
        let merged = merge(own, &others, *smtp_totals);
        if let Some(ComponentMetrics::Smtp(smtp)) = merged
            .components
            .iter()
            .find(|component| matches!(component, ComponentMetrics::Smtp(_)))
        {
            *smtp_totals = Some((smtp.sent, smtp.failed));
        }
        merged
    }
}

/// `own` with `others` taken in; `smtp_before` is the cluster's SMTP totals at the
/// previous merge (the success and failure rates are of what changed since).
pub fn merge(own: Sample, others: &[Sample], smtp_before: Option<(u64, u64)>) -> Sample {
    if others.is_empty() {
        return own;
    }
    let all: Vec<&Sample> = std::iter::once(&own).chain(others).collect();
    let components_of = |pick: fn(&ComponentMetrics) -> bool| {
        all.iter()
            .flat_map(|sample| sample.components.iter())
            .filter(move |component| pick(component))
    };
    let mut components = Vec::new();
    // The balancer: this process's, else the first other one's.
    if let Some(balancer) = components_of(|c| matches!(c, ComponentMetrics::LoadBalancer(_))).next() {
        components.push(balancer.clone());
    }
    // A card per app server, wherever it runs.
    let mut seen = std::collections::HashSet::new();
    for server in components_of(|c| matches!(c, ComponentMetrics::Server(_))) {
        if let ComponentMetrics::Server(metrics) = server
            && seen.insert(metrics.id.clone())
        {
            components.push(server.clone());
        }
    }
    // Queues: the counts are the database's (the same in every report); the work is
    // the sum of every process's workers.
    for component in &own.components {
        let ComponentMetrics::Queue(queue) = component else {
            continue;
        };
        let mut merged = queue.clone();
        let parts: Vec<_> = others
            .iter()
            .flat_map(|sample| sample.components.iter())
            .filter_map(|c| match c {
                ComponentMetrics::Queue(other) if other.counts.name == queue.counts.name => Some(other),
                _ => None,
            })
            .collect();
        let mut waited = queue.average_wait_time * queue.processing_rate;
        for part in parts {
            merged.processing_rate += part.processing_rate;
            waited += part.average_wait_time * part.processing_rate;
            merged.workers.active += part.workers.active;
            merged.workers.idle += part.workers.idle;
        }
        merged.average_wait_time = if merged.processing_rate > 0.0 {
            waited / merged.processing_rate
        } else {
            0.0
        };
        components.push(ComponentMetrics::Queue(merged));
    }
    // Sockets: every app process holds its own.
    let mut sockets: Option<wire::WebSocketMetrics> = None;
    for component in components_of(|c| matches!(c, ComponentMetrics::Websocket(_))) {
        let ComponentMetrics::Websocket(part) = component else {
            continue;
        };
        match &mut sockets {
            None => sockets = Some(part.clone()),
            Some(sum) => {
                sum.total_connections += part.total_connections;
                sum.authenticated_users += part.authenticated_users;
                sum.messages_per_second += part.messages_per_second;
                sum.rooms.extend(part.rooms.iter().cloned());
                sum.recent_events.extend(part.recent_events.iter().cloned());
            }
        }
    }
    if let Some(mut sockets) = sockets {
        sockets.rooms.sort_by(|a, b| a.name.cmp(&b.name));
        sockets
            .recent_events
            .sort_by_key(|event: &SocketEvent| std::cmp::Reverse(event.timestamp));
        sockets.recent_events.truncate(RECENT_EVENTS);
        components.push(ComponentMetrics::Websocket(sockets));
    }
    // The database: every process's reads and writes; the slowest commits.
    let mut database: Option<wire::DatabaseMetrics> = None;
    for component in components_of(|c| matches!(c, ComponentMetrics::Database(_))) {
        let ComponentMetrics::Database(part) = component else {
            continue;
        };
        match &mut database {
            None => database = Some(part.clone()),
            Some(sum) => {
                sum.reads_per_second += part.reads_per_second;
                sum.writes_per_second += part.writes_per_second;
                sum.commit_latency_p50 = sum.commit_latency_p50.max(part.commit_latency_p50);
                sum.commit_latency_p99 = sum.commit_latency_p99.max(part.commit_latency_p99);
            }
        }
    }
    components.extend(database.map(ComponentMetrics::Database));
    // SMTP: every mail worker's sends.
    let mut smtp: Option<wire::SmtpMetrics> = None;
    for component in components_of(|c| matches!(c, ComponentMetrics::Smtp(_))) {
        let ComponentMetrics::Smtp(part) = component else {
            continue;
        };
        match &mut smtp {
            None => smtp = Some(part.clone()),
            Some(sum) => {
                sum.sent_per_second += part.sent_per_second;
                sum.sent += part.sent;
                sum.failed += part.failed;
                sum.circuit = sum.circuit.max(part.circuit);
                if part.last_reply.as_ref().map(|reply| reply.at) > sum.last_reply.as_ref().map(|reply| reply.at) {
                    sum.last_reply = part.last_reply.clone();
                }
            }
        }
    }
    if let Some(mut smtp) = smtp {
        let (sent, failed) = smtp_before.map_or((0, 0), |(sent_before, failed_before)| {
            (
                smtp.sent.saturating_sub(sent_before),
                smtp.failed.saturating_sub(failed_before),
            )
        });
        let attempts = sent + failed;
        smtp.success_rate = (attempts > 0).then(|| sent as f64 / attempts as f64);
        smtp.failure_rate = (attempts > 0).then(|| failed as f64 / attempts as f64);
        components.push(ComponentMetrics::Smtp(smtp));
    }
    // The header: requests are the app servers', wherever they run.
    let mut metrics = own.metrics.clone();
    let (mut latency_weight, mut errors_weight) = (
        own.metrics.average_latency * own.metrics.requests_per_second,
        own.metrics.error_rate * own.metrics.requests_per_second,
    );
    for other in others {
        metrics.active_requests += other.metrics.active_requests;
        metrics.requests_per_second += other.metrics.requests_per_second;
        latency_weight += other.metrics.average_latency * other.metrics.requests_per_second;
        errors_weight += other.metrics.error_rate * other.metrics.requests_per_second;
    }
    if metrics.requests_per_second > 0.0 {
        metrics.average_latency = latency_weight / metrics.requests_per_second;
        metrics.error_rate = errors_weight / metrics.requests_per_second;
    }
    // The busiest process that runs app servers; in a cluster without them, this one.
    let load = all
        .iter()
        .filter(|sample| {
            sample
                .components
                .iter()
                .any(|c| matches!(c, ComponentMetrics::Server(_)))
        })
        .map(|sample| sample.load)
        .max_by(|a, b| a.cpu.total_cmp(&b.cpu))
        .unwrap_or(own.load);
    Sample {
        metrics,
        components,
        load,
    }
}

//! The live figure written under a node's label on the flow canvas (a queue's depth, a
//! server's requests per second, ...), made from the latest component metrics. Apart
//! from the canvas so it can be tested on the host.

use std::collections::BTreeMap;

use crate::wire::ComponentMetrics;

use super::{Node, NodeId};

/// Whether a node shows a live figure under its label (and so has its label raised).
pub fn has_figure(node: &Node) -> bool {
    node.half_height > 16.0
        && matches!(
            node.id,
            NodeId::Queue(_)
                | NodeId::Server(_)
                | NodeId::Balancer
                | NodeId::Database
                | NodeId::EmailService
                | NodeId::WebSocketService
                | NodeId::MailWorker
                | NodeId::InAppWorker
        )
}

/// The live figure drawn under a node's label.
pub fn figure(node: &NodeId, components: &BTreeMap<String, ComponentMetrics>) -> Option<String> {
    let metrics = |key: String| components.get(&key);
    match node {
        NodeId::Queue(_)
        | NodeId::Server(_)
        | NodeId::Balancer
        | NodeId::Database
        | NodeId::EmailService
        | NodeId::WebSocketService => match metrics(node.key())? {
            // A dead-letter queue's jobs are failed, never waiting: its figure is how many.
            ComponentMetrics::Queue(queue) if queue.is_dead_letter() => Some(format!("{} dead", queue.counts.failed)),
            ComponentMetrics::Queue(queue) if queue.counts.paused => Some(format!("paused · {}", queue.counts.waiting)),
            ComponentMetrics::Queue(queue) => Some(format!(
                "{} waiting · {} due",
                queue.counts.waiting, queue.counts.delayed
            )),
            ComponentMetrics::Server(server) if !server.running => Some("stopped".into()),
            ComponentMetrics::Server(server) => Some(format!("{:.1} req/s", server.requests_per_second)),
            ComponentMetrics::LoadBalancer(balancer) => {
                let connections: u64 = balancer.servers.iter().map(|server| server.active_connections).sum();
                Some(format!("{connections} conns · {}", balancer.algorithm.name()))
            }
            ComponentMetrics::Database(database) => Some(format!(
                "{:.0} r/s · {:.0} w/s",
                database.reads_per_second, database.writes_per_second
            )),
            ComponentMetrics::Smtp(smtp) if smtp.circuit != crate::wire::CircuitState::Closed => {
                Some(format!("circuit {}", smtp.circuit.label()))
            }
            ComponentMetrics::Smtp(smtp) => Some(format!("{:.1} sent/s", smtp.sent_per_second)),
            ComponentMetrics::Websocket(socket) => Some(format!("{} sockets", socket.total_connections)),
        },
        NodeId::MailWorker | NodeId::InAppWorker => {
            // Every queue of a channel reports the channel's one worker pool: read it
            // once, from the main queue (adding the tiers up counted each worker 3–4 times).
            let main = if node == &NodeId::MailWorker { "mail" } else { "inapp" };
            match metrics(NodeId::Queue(main.into()).key())? {
                ComponentMetrics::Queue(queue) => Some(format!("{} busy", queue.workers.active)),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{QueueCounts, QueueMetrics, WorkerCounts};

    fn queue(name: &str, waiting: u64, delayed: u64, failed: u64) -> (String, ComponentMetrics) {
        let metrics = ComponentMetrics::Queue(QueueMetrics {
            counts: QueueCounts {
                name: name.into(),
                waiting,
                failed,
                delayed,
                ..QueueCounts::default()
            },
            processing_rate: 0.0,
            average_wait_time: 0.0,
            workers: WorkerCounts { active: 2, idle: 14 },
        });
        (NodeId::Queue(name.into()).key(), metrics)
    }

    #[test]
    fn a_queue_shows_its_depth_and_a_dead_letter_queue_its_dead() {
        let components: BTreeMap<String, ComponentMetrics> = [queue("mail", 12, 3, 0), queue("mail-dlq", 0, 0, 97)]
            .into_iter()
            .collect();
        assert_eq!(
            figure(&NodeId::Queue("mail".into()), &components).as_deref(),
            Some("12 waiting · 3 due")
        );
        // Dead letters are failed jobs, never waiting: "0 waiting" there hid 97 of them.
        assert_eq!(
            figure(&NodeId::Queue("mail-dlq".into()), &components).as_deref(),
            Some("97 dead")
        );
        assert_eq!(figure(&NodeId::MailWorker, &components).as_deref(), Some("2 busy"));
        assert_eq!(
            figure(&NodeId::Queue("inapp".into()), &components),
            None,
            "no figures yet"
        );
    }
}

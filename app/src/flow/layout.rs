//! Where every component sits on the flow canvas, and the edges between them, laid out
//! like the design's diagram: the request path left to right along the top (users, load
//! balancer, app servers, middleware, controllers, database), the notification path below
//! it (notification service, queue manager, every queue with its retry tiers and
//! dead-letter queue, the two workers, the email service and the client).
//!
//! Positions are in world units; the camera maps them to pixels. App servers come and go
//! with the balancer's list, so the layout is rebuilt whenever that list changes.

use std::fmt;

/// World size the layout fills; "fit to screen" shows exactly this rectangle.
pub const WORLD_WIDTH: f64 = 1380.0;
pub const WORLD_HEIGHT: f64 = 720.0;

/// What a node is, which decides its color and shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// Users, the SMTP server, the end user's client: outside the system.
    External,
    Balancer,
    Server,
    /// Middleware, controllers, notification service, queue manager, WebSocket service.
    Service,
    Database,
    Queue,
    DeadLetter,
    Worker,
}

impl NodeKind {
    /// The design's colors: balancer #8B5CF6, server #06B6D4, database #EC4899,
    /// queue #F97316, worker #84CC16, external #64748B.
    pub fn color(self) -> &'static str {
        match self {
            Self::External => "#64748B",
            Self::Balancer => "#8B5CF6",
            Self::Server => "#06B6D4",
            Self::Service => "#0EA5E9",
            Self::Database => "#EC4899",
            Self::Queue => "#F97316",
            Self::DeadLetter => "#EF4444",
            Self::Worker => "#84CC16",
        }
    }
}

/// A component on the canvas, named by the ids the server uses (`server-2`, `mail-retry-1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeId {
    Users,
    Balancer,
    Server(String),
    Middleware,
    Controllers,
    Database,
    NotificationService,
    QueueManager,
    /// One of the queues, by its wire name (`mail`, `mail-retry-1`, `mail-dlq`, `inapp`, ...).
    Queue(String),
    MailWorker,
    InAppWorker,
    EmailService,
    WebSocketService,
    Client,
}

impl NodeId {
    /// A stable id for tests, links and the DOM (`data-node`).
    pub fn key(&self) -> String {
        match self {
            Self::Users => "users".into(),
            Self::Balancer => "load-balancer".into(),
            Self::Server(id) => id.clone(),
            Self::Middleware => "middleware".into(),
            Self::Controllers => "controllers".into(),
            Self::Database => "database".into(),
            Self::NotificationService => "notification-service".into(),
            Self::QueueManager => "queue-manager".into(),
            Self::Queue(name) => format!("queue:{name}"),
            Self::MailWorker => "mail-worker".into(),
            Self::InAppWorker => "inapp-worker".into(),
            Self::EmailService => "smtp".into(),
            Self::WebSocketService => "websocket".into(),
            Self::Client => "client".into(),
        }
    }

    /// Reads a [`key`](Self::key) back (from a link or a test).
    pub fn from_key(key: &str) -> Option<Self> {
        Some(match key {
            "users" => Self::Users,
            "load-balancer" => Self::Balancer,
            "middleware" => Self::Middleware,
            "controllers" => Self::Controllers,
            "database" => Self::Database,
            "notification-service" => Self::NotificationService,
            "queue-manager" => Self::QueueManager,
            "mail-worker" => Self::MailWorker,
            "inapp-worker" => Self::InAppWorker,
            "smtp" => Self::EmailService,
            "websocket" => Self::WebSocketService,
            "client" => Self::Client,
            other => match other.strip_prefix("queue:") {
                Some(queue) if QUEUES.iter().any(|(name, ..)| *name == queue) => Self::Queue(queue.into()),
                Some(_) => return None,
                None if other.starts_with("server-") => Self::Server(other.into()),
                None => return None,
            },
        })
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// The queues on the canvas: wire name, label, row (y) and whether it is a dead-letter queue.
pub const QUEUES: [(&str, &str, f64, bool); 7] = [
    ("mail", "mail", 170.0, false),
    ("mail-retry-1", "retry 5 min", 245.0, false),
    ("mail-retry-2", "retry 30 min", 320.0, false),
    ("mail-dlq", "mail DLQ", 395.0, true),
    ("inapp", "in-app", 500.0, false),
    ("inapp-retry", "retry 1 min", 575.0, false),
    ("inapp-dlq", "in-app DLQ", 650.0, true),
];

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: NodeId,
    pub kind: NodeKind,
    pub label: String,
    pub x: f64,
    pub y: f64,
    /// Half the width and half the height of its box.
    pub half_width: f64,
    pub half_height: f64,
}

impl Node {
    pub fn contains(&self, x: f64, y: f64) -> bool {
        (x - self.x).abs() <= self.half_width && (y - self.y).abs() <= self.half_height
    }
}

/// How an edge is drawn when nothing flows on it; any edge with recent traffic is animated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeStyle {
    Solid,
    /// Retries, dead-lettering and requeues: paths taken only when something went wrong.
    Dashed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub from: NodeId,
    pub to: NodeId,
    pub style: EdgeStyle,
}

/// Every node and edge for one list of app servers.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub servers: Vec<String>,
}

const REQUEST_ROW: f64 = 250.0;

impl Layout {
    /// The layout for these app servers (ids such as `server-1`), in the order given.
    pub fn new(servers: &[String]) -> Self {
        let mut nodes = Vec::new();
        let mut add = |id: NodeId, kind: NodeKind, label: &str, x: f64, y: f64| {
            let (half_width, half_height) = match kind {
                NodeKind::Queue | NodeKind::DeadLetter => (58.0, 26.0),
                _ => (56.0, 28.0),
            };
            nodes.push(Node {
                id,
                kind,
                label: label.into(),
                x,
                y,
                half_width,
                half_height,
            });
        };
        add(NodeId::Users, NodeKind::External, "users", 60.0, REQUEST_ROW);
        add(
            NodeId::Balancer,
            NodeKind::Balancer,
            "load balancer",
            190.0,
            REQUEST_ROW,
        );
        // Servers stack in one column around the request row; many servers get closer
        // together and slimmer, and the column slides down rather than off the top.
        let gaps = servers.len().saturating_sub(1).max(1) as f64;
        let spacing = (600.0 / gaps).min(100.0);
        let top = (REQUEST_ROW - spacing * (servers.len().saturating_sub(1)) as f64 / 2.0).max(40.0);
        for (index, server) in servers.iter().enumerate() {
            add(
                NodeId::Server(server.clone()),
                NodeKind::Server,
                server,
                325.0,
                top + spacing * index as f64,
            );
        }
        add(NodeId::Middleware, NodeKind::Service, "middleware", 460.0, REQUEST_ROW);
        add(
            NodeId::Controllers,
            NodeKind::Service,
            "controllers",
            595.0,
            REQUEST_ROW,
        );
        add(NodeId::Database, NodeKind::Database, "database", 730.0, 110.0);
        add(
            NodeId::NotificationService,
            NodeKind::Service,
            "notifications",
            595.0,
            470.0,
        );
        add(NodeId::QueueManager, NodeKind::Service, "queue manager", 740.0, 470.0);
        for (name, label, y, dead) in QUEUES {
            let kind = if dead { NodeKind::DeadLetter } else { NodeKind::Queue };
            add(NodeId::Queue(name.into()), kind, label, 895.0, y);
        }
        add(NodeId::MailWorker, NodeKind::Worker, "mail worker", 1045.0, 245.0);
        add(NodeId::InAppWorker, NodeKind::Worker, "in-app worker", 1045.0, 575.0);
        add(NodeId::EmailService, NodeKind::External, "SMTP server", 1190.0, 245.0);
        add(NodeId::WebSocketService, NodeKind::Service, "WebSocket", 1190.0, 575.0);
        add(NodeId::Client, NodeKind::External, "client", 1315.0, 575.0);
        for node in nodes.iter_mut().filter(|node| node.kind == NodeKind::Server) {
            node.half_height = node.half_height.min(spacing / 2.0 - 4.0);
        }

        let mut edges = Vec::new();
        let mut link = |from: NodeId, to: NodeId, style: EdgeStyle| edges.push(Edge { from, to, style });
        link(NodeId::Users, NodeId::Balancer, EdgeStyle::Solid);
        for server in servers {
            link(NodeId::Balancer, NodeId::Server(server.clone()), EdgeStyle::Solid);
            link(NodeId::Server(server.clone()), NodeId::Middleware, EdgeStyle::Solid);
        }
        link(NodeId::Middleware, NodeId::Controllers, EdgeStyle::Solid);
        link(NodeId::Controllers, NodeId::Database, EdgeStyle::Solid);
        link(NodeId::Database, NodeId::NotificationService, EdgeStyle::Solid);
        link(NodeId::NotificationService, NodeId::QueueManager, EdgeStyle::Solid);
        let queue = |name: &str| NodeId::Queue(name.into());
        link(NodeId::QueueManager, queue("mail"), EdgeStyle::Solid);
        link(NodeId::QueueManager, queue("inapp"), EdgeStyle::Solid);
        for name in ["mail", "mail-retry-1", "mail-retry-2"] {
            link(queue(name), NodeId::MailWorker, EdgeStyle::Solid);
        }
        for name in ["mail-retry-1", "mail-retry-2", "mail-dlq"] {
            link(NodeId::MailWorker, queue(name), EdgeStyle::Dashed);
        }
        link(queue("mail-dlq"), queue("mail"), EdgeStyle::Dashed);
        link(NodeId::MailWorker, NodeId::EmailService, EdgeStyle::Solid);
        for name in ["inapp", "inapp-retry"] {
            link(queue(name), NodeId::InAppWorker, EdgeStyle::Solid);
        }
        for name in ["inapp-retry", "inapp-dlq"] {
            link(NodeId::InAppWorker, queue(name), EdgeStyle::Dashed);
        }
        link(queue("inapp-dlq"), queue("inapp"), EdgeStyle::Dashed);
        link(NodeId::InAppWorker, NodeId::WebSocketService, EdgeStyle::Solid);
        link(NodeId::WebSocketService, NodeId::Client, EdgeStyle::Solid);

        Self {
            nodes,
            edges,
            servers: servers.to_vec(),
        }
    }

    pub fn node(&self, id: &NodeId) -> Option<&Node> {
        self.nodes.iter().find(|node| &node.id == id)
    }

    pub fn position(&self, id: &NodeId) -> Option<(f64, f64)> {
        self.node(id).map(|node| (node.x, node.y))
    }

    /// The topmost node under a world point.
    pub fn node_at(&self, x: f64, y: f64) -> Option<&Node> {
        self.nodes.iter().rev().find(|node| node.contains(x, y))
    }

    /// The edges that touch a node, for hover highlighting.
    pub fn edges_of<'a>(&'a self, id: &'a NodeId) -> impl Iterator<Item = &'a Edge> + 'a {
        self.edges.iter().filter(move |edge| &edge.from == id || &edge.to == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Vec<String> {
        ["server-1", "server-2", "server-3"].map(String::from).to_vec()
    }

    #[test]
    fn every_component_of_the_design_has_a_node_inside_the_world() {
        let layout = Layout::new(&three());
        for key in [
            "users",
            "load-balancer",
            "server-1",
            "server-2",
            "server-3",
            "middleware",
            "controllers",
            "database",
            "notification-service",
            "queue-manager",
            "queue:mail",
            "queue:mail-retry-1",
            "queue:mail-retry-2",
            "queue:mail-dlq",
            "queue:inapp",
            "queue:inapp-retry",
            "queue:inapp-dlq",
            "mail-worker",
            "inapp-worker",
            "smtp",
            "websocket",
            "client",
        ] {
            let id = NodeId::from_key(key).unwrap_or_else(|| panic!("{key} parses"));
            assert_eq!(id.key(), key);
            let node = layout.node(&id).unwrap_or_else(|| panic!("{key} has a node"));
            assert!(
                node.x - node.half_width >= 0.0 && node.x + node.half_width <= WORLD_WIDTH,
                "{key}"
            );
            assert!(
                node.y - node.half_height >= 0.0 && node.y + node.half_height <= WORLD_HEIGHT,
                "{key}"
            );
        }
        assert_eq!(NodeId::from_key("queue:nope"), None);
        assert_eq!(NodeId::from_key("nope"), None);
    }

    #[test]
    fn no_two_nodes_overlap_whatever_the_number_of_servers() {
        for count in 1..=12 {
            let servers: Vec<String> = (1..=count).map(|n| format!("server-{n}")).collect();
            let layout = Layout::new(&servers);
            for (index, a) in layout.nodes.iter().enumerate() {
                for b in &layout.nodes[index + 1..] {
                    let apart_x = (a.x - b.x).abs() >= a.half_width + b.half_width;
                    let apart_y = (a.y - b.y).abs() >= a.half_height + b.half_height;
                    assert!(apart_x || apart_y, "{} overlaps {} with {count} servers", a.id, b.id);
                }
            }
        }
    }

    #[test]
    fn servers_appear_and_disappear_with_their_edges() {
        let layout = Layout::new(&["server-1".to_string(), "server-3".to_string()]);
        assert!(layout.node(&NodeId::Server("server-2".into())).is_none());
        let server_3 = NodeId::Server("server-3".into());
        assert_eq!(
            layout.edges_of(&server_3).count(),
            2,
            "balancer → server-3 → middleware"
        );
        // Every edge joins two nodes that exist.
        for edge in &layout.edges {
            assert!(
                layout.node(&edge.from).is_some() && layout.node(&edge.to).is_some(),
                "{edge:?}"
            );
        }
    }

    #[test]
    fn hit_testing_finds_the_node_under_a_point() {
        let layout = Layout::new(&three());
        let (x, y) = layout.position(&NodeId::Database).expect("database");
        assert_eq!(
            layout.node_at(x + 10.0, y - 5.0).map(|node| &node.id),
            Some(&NodeId::Database)
        );
        assert_eq!(layout.node_at(5.0, WORLD_HEIGHT - 5.0), None);
    }
}

//! What the daemon serves on `--metrics-addr` (`crate::metrics::serve`): the data plane's
//! counters from this node's pins (the families of `hive mesh stats`), and, on managers, Raft
//! and the cluster's tasks, nodes and services as this manager's store holds them.
//!
//! Everything is read when Prometheus scrapes: nothing is kept between scrapes, and a node
//! that is not (yet) in a swarm serves `hive_swarm_active 0` and nothing else.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use hive_dataplane::node_pins::NodePins;

use super::node::SwarmNode;
use crate::metrics::{Collector, DataplaneCollector, MetricType, MetricsWriter, Registry};
use crate::store::ReadView;
use crate::store::objects::{Node, Service, Task, TaskState};

/// The registry the daemon serves.
pub fn registry(node: &Arc<SwarmNode>) -> Registry {
    let mut registry = Registry::new();
    registry.register(Arc::new(NodeCollector {
        node: Arc::downgrade(node),
    }));
    registry
}

struct NodeCollector {
    node: Weak<SwarmNode>,
}

impl Collector for NodeCollector {
    fn collect(&self, out: &mut MetricsWriter) {
        let active = self.node.upgrade().and_then(|n| n.active());
        out.family(
            "hive_swarm_active",
            MetricType::Gauge,
            "1 while this node is a member of a swarm",
        );
        out.sample(
            "hive_swarm_active",
            &[],
            f64::from(u8::from(active.is_some())),
        );
        let Some(active) = active else { return };
        if let Some(mesh) = &active.agent.mesh {
            DataplaneCollector::new(vec![NodePins {
                name: active.file.node_id.clone(),
                dir: mesh.pin_dir().to_owned(),
            }])
            .collect(out);
        }
        gossip(out, &active.agent);
        if let Some(manager) = &active.manager {
            raft(out, manager);
            cluster(out, manager);
        }
    }
}

/// Gossip as this node sees it: each peer up or not, and the datagrams its keyring dropped
/// (no key, a bad tag, a removed sender: docs/security.md, "Gossip authentication").
fn gossip(out: &mut MetricsWriter, agent: &super::agent::NodeAgent) {
    out.family(
        "hive_gossip_dropped_datagrams_total",
        MetricType::Counter,
        "Gossip datagrams dropped as unauthenticated (no or wrong key, removed sender, malformed)",
    );
    out.sample(
        "hive_gossip_dropped_datagrams_total",
        &[],
        agent.gossip_auth.dropped() as f64,
    );
    let Some(members) = agent.gossip_members() else {
        return;
    };
    out.family(
        "hive_gossip_peer_up",
        MetricType::Gauge,
        "1 while gossip sees the peer node up",
    );
    for member in members.iter().filter(|m| !m.local) {
        out.sample(
            "hive_gossip_peer_up",
            &[("node", member.node_id.as_str())],
            f64::from(u8::from(member.is_up())),
        );
    }
}

fn raft(out: &mut MetricsWriter, manager: &crate::manager::Manager) {
    let metrics = manager.store.metrics().borrow().clone();
    let leader = metrics.current_leader == Some(manager.raft_id);
    out.family(
        "hive_raft_is_leader",
        MetricType::Gauge,
        "1 on the manager that leads the Raft group",
    );
    out.sample("hive_raft_is_leader", &[], f64::from(u8::from(leader)));
    out.family("hive_raft_term", MetricType::Gauge, "Current Raft term");
    out.sample("hive_raft_term", &[], metrics.current_term as f64);
    out.family(
        "hive_raft_last_applied_index",
        MetricType::Gauge,
        "Index of the last Raft log entry applied to this manager's store",
    );
    let applied = metrics.last_applied.map_or(0, |id| id.index);
    out.sample("hive_raft_last_applied_index", &[], applied as f64);
}

/// Tasks by state (those the orchestrator wants running), nodes by state, services.
fn cluster(out: &mut MetricsWriter, manager: &crate::manager::Manager) {
    let read = manager.store.view(|tx| {
        Ok::<_, crate::store::StoreError>((
            tx.list::<Task>()?,
            tx.list::<Node>()?,
            tx.list::<Service>()?.len(),
        ))
    });
    let (tasks, nodes, services) = match read {
        Ok(read) => read,
        Err(err) => {
            tracing::warn!(%err, "metrics: reading the store");
            return;
        }
    };
    let mut by_state: BTreeMap<&str, u64> =
        TaskState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for task in tasks
        .iter()
        .filter(|t| t.desired_state <= TaskState::Running)
    {
        *by_state.entry(task.status.state.as_str()).or_default() += 1;
    }
    out.family(
        "hive_tasks",
        MetricType::Gauge,
        "Tasks the orchestrator wants running, by current state (pending: not placed yet)",
    );
    for (state, n) in &by_state {
        out.sample("hive_tasks", &[("state", state)], *n as f64);
    }
    let mut node_states: BTreeMap<String, u64> = BTreeMap::new();
    for node in &nodes {
        *node_states
            .entry(format!("{:?}", node.status.state).to_ascii_lowercase())
            .or_default() += 1;
    }
    out.family("hive_nodes", MetricType::Gauge, "Nodes by state");
    for (state, n) in &node_states {
        out.sample("hive_nodes", &[("state", state)], *n as f64);
    }
    out.family("hive_services", MetricType::Gauge, "Services in the swarm");
    out.sample("hive_services", &[], services as f64);
}

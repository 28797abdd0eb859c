//! The scheduler's filter pipeline (SwarmKit `manager/scheduler/{filter,pipeline}.go`): each
//! filter says whether a node can take a task, and how to explain the nodes it turned down.

use std::collections::{BTreeMap, BTreeSet};

use super::constraint::{Constraint, all_match};
use crate::store::objects::{
    Node, NodeAvailability, NodeState, PortConfig, Protocol, PublishMode, Resources, Task,
};

/// What the scheduler knows about a node: the node and what its tasks hold.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Node,
    /// Tasks on the node that have not stopped, per service.
    pub tasks_by_service: BTreeMap<String, usize>,
    pub total_tasks: usize,
    pub reserved: Resources,
    /// Host-mode published ports bound by tasks there.
    pub host_ports: BTreeSet<(Protocol, u16)>,
}

impl NodeInfo {
    pub fn new(node: Node) -> Self {
        Self {
            node,
            tasks_by_service: BTreeMap::new(),
            total_tasks: 0,
            reserved: Resources::default(),
            host_ports: BTreeSet::new(),
        }
    }

    /// Counts `task` as running here.
    pub fn add_task(&mut self, task: &Task) {
        *self
            .tasks_by_service
            .entry(task.service_id.clone())
            .or_default() += 1;
        self.total_tasks += 1;
        let want = task.spec.resources.reservations;
        self.reserved.nano_cpus = self.reserved.nano_cpus.saturating_add(want.nano_cpus);
        self.reserved.memory_bytes = self.reserved.memory_bytes.saturating_add(want.memory_bytes);
        self.host_ports.extend(host_ports(task));
    }

    /// Stops counting `task` here (it stopped, moved or was deleted).
    pub fn remove_task(&mut self, task: &Task) {
        if let Some(count) = self.tasks_by_service.get_mut(&task.service_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.tasks_by_service.remove(&task.service_id);
            }
        }
        self.total_tasks = self.total_tasks.saturating_sub(1);
        let want = task.spec.resources.reservations;
        self.reserved.nano_cpus = self.reserved.nano_cpus.saturating_sub(want.nano_cpus);
        self.reserved.memory_bytes = self.reserved.memory_bytes.saturating_sub(want.memory_bytes);
        for port in host_ports(task) {
            self.host_ports.remove(&port);
        }
    }

    pub fn service_tasks(&self, service_id: &str) -> usize {
        self.tasks_by_service.get(service_id).copied().unwrap_or(0)
    }
}

/// Host-mode published ports a task binds on its node.
pub fn host_ports(task: &Task) -> impl Iterator<Item = (Protocol, u16)> + '_ {
    let ports: &[PortConfig] = task
        .endpoint
        .as_ref()
        .map_or(&[], |endpoint| endpoint.ports.as_slice());
    ports
        .iter()
        .filter(|p| p.publish_mode == PublishMode::Host && p.published_port != 0)
        .map(|p| (p.protocol, p.published_port))
}

/// The filters, in SwarmKit's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Filter {
    Ready,
    Resources,
    Constraints,
    HostPorts,
    /// `--replicas-max-per-node` (SwarmKit's `MaxReplicasFilter`).
    MaxReplicas,
    /// A task on a network needs the node's data plane (SwarmKit's plugin filter turns down
    /// nodes that lack a task's network driver the same way).
    Dataplane,
}

impl Filter {
    pub const ALL: [Filter; 6] = [
        Self::Ready,
        Self::Resources,
        Self::Constraints,
        Self::HostPorts,
        Self::MaxReplicas,
        Self::Dataplane,
    ];

    /// Whether `info` passes this filter for `task` (with its parsed `constraints`).
    pub fn check(self, info: &NodeInfo, task: &Task, constraints: &[Constraint]) -> bool {
        match self {
            Self::Ready => {
                info.node.status.state == NodeState::Ready
                    && info.node.spec.availability == NodeAvailability::Active
            }
            Self::Resources => {
                let want = task.spec.resources.reservations;
                if want.nano_cpus <= 0 && want.memory_bytes <= 0 {
                    return true;
                }
                let have = info
                    .node
                    .description
                    .as_ref()
                    .map(|d| d.resources)
                    .unwrap_or_default();
                info.reserved
                    .nano_cpus
                    .saturating_add(want.nano_cpus.max(0))
                    <= have.nano_cpus
                    && info
                        .reserved
                        .memory_bytes
                        .saturating_add(want.memory_bytes.max(0))
                        <= have.memory_bytes
            }
            Self::Constraints => all_match(constraints, &info.node),
            Self::HostPorts => host_ports(task).all(|port| !info.host_ports.contains(&port)),
            Self::MaxReplicas => {
                let max = task.spec.placement.max_replicas;
                max == 0 || (info.service_tasks(&task.service_id) as u64) < max
            }
            Self::Dataplane => {
                task.networks.is_empty()
                    || info
                        .node
                        .description
                        .as_ref()
                        .is_none_or(|d| d.dataplane_error.is_empty())
            }
        }
    }

    /// SwarmKit's explanation for `nodes` nodes this filter turned down.
    pub fn explain(self, nodes: usize) -> String {
        let (one, many) = match self {
            Self::Ready => (
                "1 node not available for new tasks".to_owned(),
                format!("{nodes} nodes not available for new tasks"),
            ),
            Self::Resources => (
                "insufficient resources on 1 node".to_owned(),
                format!("insufficient resources on {nodes} nodes"),
            ),
            Self::Constraints => (
                "scheduling constraints not satisfied on 1 node".to_owned(),
                format!("scheduling constraints not satisfied on {nodes} nodes"),
            ),
            Self::HostPorts => (
                "host-mode port already in use on 1 node".to_owned(),
                format!("host-mode port already in use on {nodes} nodes"),
            ),
            // SwarmKit's text, the same for any number of nodes.
            Self::MaxReplicas => (
                "max replicas per node limit exceed".to_owned(),
                "max replicas per node limit exceed".to_owned(),
            ),
            Self::Dataplane => (
                "data plane failed to load on 1 node".to_owned(),
                format!("data plane failed to load on {nodes} nodes"),
            ),
        };
        if nodes == 1 { one } else { many }
    }
}

/// Runs the pipeline on one node: the first filter that turns it down, if any.
pub fn first_failure(info: &NodeInfo, task: &Task, constraints: &[Constraint]) -> Option<Filter> {
    Filter::ALL
        .into_iter()
        .find(|f| !f.check(info, task, constraints))
}

/// `no suitable node (…)`: the filters that turned nodes down, most nodes first (SwarmKit
/// `Pipeline.Explain`), ties in pipeline order.
pub fn explain(failures: &BTreeMap<Filter, usize>) -> String {
    let mut entries: Vec<(Filter, usize)> = failures
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(f, n)| (*f, *n))
        .collect();
    entries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    if entries.is_empty() {
        return "no suitable node".to_owned();
    }
    let reasons: Vec<String> = entries.iter().map(|(f, n)| f.explain(*n)).collect();
    format!("no suitable node ({})", reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_most_common_reason_first() {
        let failures = BTreeMap::from([(Filter::Ready, 1), (Filter::Resources, 2)]);
        assert_eq!(
            explain(&failures),
            "no suitable node (insufficient resources on 2 nodes; 1 node not available for new \
             tasks)"
        );
        let failures = BTreeMap::from([(Filter::Constraints, 3)]);
        assert_eq!(
            explain(&failures),
            "no suitable node (scheduling constraints not satisfied on 3 nodes)"
        );
    }

    #[test]
    fn a_node_whose_data_plane_failed_takes_no_task_on_a_network() {
        use crate::store::objects::{NodeDescription, NodeStatus};

        let node = |dataplane_error: &str| {
            NodeInfo::new(Node {
                status: NodeStatus {
                    state: NodeState::Ready,
                    ..NodeStatus::default()
                },
                description: Some(NodeDescription {
                    dataplane_error: dataplane_error.to_owned(),
                    ..NodeDescription::default()
                }),
                ..Node::default()
            })
        };
        let failed = node("no MTU on eth0");
        let healthy = node("");
        let mut on_network = Task::default();
        on_network.networks.push(Default::default());
        let loopback_only = Task::default();

        assert_eq!(
            first_failure(&failed, &on_network, &[]),
            Some(Filter::Dataplane)
        );
        assert_eq!(first_failure(&failed, &loopback_only, &[]), None);
        assert_eq!(first_failure(&healthy, &on_network, &[]), None);
        assert_eq!(
            explain(&BTreeMap::from([(Filter::Dataplane, 2)])),
            "no suitable node (data plane failed to load on 2 nodes)"
        );
    }
}

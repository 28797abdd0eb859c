//! [`MeshView`]: what every node's mesh needs to know of the whole cluster, as the leader's
//! dispatcher sends it in each `AssignmentSet` (`mesh_json`). It is cut from the store's own
//! objects (only the fields the mesh reads) so that the agent never needs a store, and it is
//! the same for every node: the agent adds what only it knows (its veths, gossip's view of
//! which nodes are dead) when it turns the view into a `MeshState` ([`super::mesh_state`]).

use serde::{Deserialize, Serialize};

use crate::store::objects::{
    Cluster, Endpoint, NetworkAttachment, Node, NodeState, Service, Task, TaskState,
};
use crate::store::{ReadView, StoreError};

/// The cluster as the mesh sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MeshView {
    /// Seed of the flow hash and Maglev tables, equal on every node (derived from the
    /// cluster ID, so it survives leader changes and restarts).
    pub hash_seed: u32,
    /// `--data-path-port` of the swarm (VXLAN's UDP port).
    pub vxlan_port: u16,
    /// Networks with a VNI and a subnet (allocated ones).
    pub networks: Vec<MeshNetwork>,
    /// Services with an allocated endpoint.
    pub services: Vec<MeshService>,
    /// Tasks that run (reported `RUNNING`), wherever they run: those the manager keeps, and
    /// those it is shutting down ([`MeshTask::draining`]).
    pub tasks: Vec<MeshTask>,
    pub nodes: Vec<MeshNode>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MeshNetwork {
    pub id: String,
    pub name: String,
    pub vni: u32,
    /// CIDR, e.g. `10.0.0.0/24`.
    pub subnet: String,
    /// Empty if the allocator left it to the default (the subnet's first host).
    pub gateway: String,
    pub ingress: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MeshService {
    pub id: String,
    pub name: String,
    /// VIPs per network and ports with their published port, as allocated.
    pub endpoint: Endpoint,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MeshTask {
    pub id: String,
    pub service_id: String,
    pub node_id: String,
    /// Addresses per network (CIDR strings), as allocated.
    pub networks: Vec<NetworkAttachment>,
    /// The manager is shutting the task down but it still runs: no backend any more (new
    /// flows avoid it), still an endpoint (its established connections drain). When it
    /// stops running it leaves the view, and each node's data plane forgets its flows.
    pub draining: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MeshNode {
    pub id: String,
    /// Underlay address (the address its session comes from, `Node.status.addr`).
    pub addr: String,
    /// MAC of its underlay NIC (`aa:bb:cc:dd:ee:ff`); empty if it did not report one.
    pub mac: String,
    pub state: NodeState,
}

/// The cluster's hash seed: FNV-1a of the cluster ID (never 0, which the data plane might
/// read as "unset").
pub fn hash_seed(cluster_id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in cluster_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.max(1)
}

/// Whether a task is a backend of its service: it runs, and the manager wants it to.
/// A task the manager is shutting down leaves the balancer at once (its connections drain).
pub fn is_serving(task: &Task) -> bool {
    task.status.state == TaskState::Running && task.desired_state == TaskState::Running
}

/// Whether a task is draining: it still runs, but the manager is shutting it down.
pub fn is_draining(task: &Task) -> bool {
    task.status.state == TaskState::Running && task.desired_state != TaskState::Running
}

impl MeshView {
    /// The view of the state `tx` reads.
    pub fn read(tx: &impl ReadView) -> Result<Self, StoreError> {
        let cluster = tx.list::<Cluster>()?.into_iter().next();
        let (hash_seed, vxlan_port) = cluster.as_ref().map_or(
            (
                hash_seed(""),
                crate::manager::cluster::DEFAULT_DATA_PATH_PORT,
            ),
            |c| {
                (
                    hash_seed(&c.id),
                    crate::manager::cluster::network_settings(c).2,
                )
            },
        );
        let networks = tx
            .list::<crate::store::objects::Network>()?
            .into_iter()
            .filter_map(|n| {
                let vni = n.vni?;
                let ipam = n.ipam.first().or(n.spec.ipam.configs.first())?;
                Some(MeshNetwork {
                    id: n.id.clone(),
                    name: n.spec.annotations.name.clone(),
                    vni,
                    subnet: ipam.subnet.clone(),
                    gateway: ipam.gateway.clone(),
                    ingress: n.spec.ingress,
                })
            })
            .collect();
        let services = tx
            .list::<Service>()?
            .into_iter()
            .filter_map(|s| {
                Some(MeshService {
                    endpoint: s.endpoint?,
                    name: s.spec.annotations.name,
                    id: s.id,
                })
            })
            .collect();
        let tasks = tx
            .find::<Task>(|t| is_serving(t) || is_draining(t))?
            .into_iter()
            .filter_map(|t| {
                Some(MeshTask {
                    draining: is_draining(&t),
                    node_id: t.node_id?,
                    id: t.id,
                    service_id: t.service_id,
                    networks: t.networks,
                })
            })
            .collect();
        let nodes = tx
            .list::<Node>()?
            .into_iter()
            .map(|n| MeshNode {
                mac: n
                    .description
                    .as_ref()
                    .map(|d| d.underlay_mac.clone())
                    .unwrap_or_default(),
                addr: n.status.addr,
                state: n.status.state,
                id: n.id,
            })
            .collect();
        Ok(Self {
            hash_seed,
            vxlan_port: u16::try_from(vxlan_port).unwrap_or(4789),
            networks,
            services,
            tasks,
            nodes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_seed_is_stable_and_depends_on_the_cluster() {
        assert_eq!(hash_seed("abc"), hash_seed("abc"));
        assert_ne!(hash_seed("abc"), hash_seed("abd"));
        // FNV-1a of the empty string is its offset basis.
        assert_eq!(hash_seed(""), 0x811c_9dc5);
    }

    #[test]
    fn only_running_tasks_the_manager_keeps_serve() {
        let mut task = Task {
            desired_state: TaskState::Running,
            ..Task::default()
        };
        task.status.state = TaskState::Starting;
        assert!(!is_serving(&task));
        task.status.state = TaskState::Running;
        assert!(is_serving(&task));
        task.desired_state = TaskState::Shutdown;
        assert!(!is_serving(&task));
    }
}

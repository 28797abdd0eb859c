//! [`MeshView`]: what every node's mesh needs to know of the whole cluster, as the leader's
//! dispatcher sends it on the `Assignments` stream: complete in the first message, then as
//! changes ([`MeshView::apply`]). It is cut from the store's own objects (only the fields the
//! mesh reads: [`MeshNetwork::of`] and its siblings) so that the agent never needs a store,
//! and it is the same for every node: the agent adds what only it knows (its veths, gossip's
//! view of which nodes are dead) when it turns the view into a `MeshState`
//! ([`super::mesh_state`]). Every list is kept sorted by ID, so that a change is found and
//! applied in place.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use hive_dataplane::mesh::MacAddr;
use hive_dataplane::mesh::mode::MeshMode;
use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::store::objects::{
    Cluster, Endpoint, Health, NetworkAttachment, Node, NodeState, Service, Task, TaskState,
};
use crate::store::{ReadView, StoreError};

mod copies;
pub use copies::view_entries_copied;

/// The cluster as the mesh sees it. A copy is counted ([`view_entries_copied`]): a node
/// holds one view and changes it in place, so no message should copy it.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MeshView {
    /// Seed of the flow hash and Maglev tables, equal on every node (derived from the
    /// cluster ID, so it survives leader changes and restarts).
    pub hash_seed: u32,
    /// `--data-path-port` of the swarm (VXLAN's UDP port).
    pub vxlan_port: u16,
    /// `--mesh-mode` of the swarm (docs/dsr.md).
    pub mesh_mode: MeshMode,
    /// Networks with a VNI and a subnet (allocated ones).
    pub networks: Vec<MeshNetwork>,
    /// Services with an allocated endpoint.
    pub services: Vec<MeshService>,
    /// Tasks that run (reported `RUNNING`), wherever they run: those the manager keeps, and
    /// those it is shutting down ([`MeshTask::draining`]).
    pub tasks: Vec<MeshTask>,
    pub nodes: Vec<MeshNode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MeshNetwork {
    pub id: String,
    pub name: String,
    pub vni: u32,
    /// e.g. `10.0.0.0/24`.
    pub subnet: Ipv4Network,
    /// `None` if the allocator left it to the default (the subnet's first host).
    pub gateway: Option<Ipv4Addr>,
    pub ingress: bool,
}

impl Default for MeshNetwork {
    fn default() -> Self {
        Self {
            id: String::new(),
            name: String::new(),
            vni: 0,
            subnet: Ipv4Network::from(Ipv4Addr::UNSPECIFIED),
            gateway: None,
            ingress: false,
        }
    }
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
    /// Addresses per network, as allocated.
    pub networks: Vec<MeshAttachment>,
    /// The manager is shutting the task down but it still runs: no backend any more (new
    /// flows avoid it), still an endpoint (its established connections drain). When it
    /// stops running it leaves the view, and each node's data plane forgets its flows.
    pub draining: bool,
}

/// A task's place on one network: its address there (with the subnet's prefix, as
/// `10.0.0.7/24`) and its DNS aliases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MeshAttachment {
    pub network_id: String,
    pub addresses: Vec<Ipv4Network>,
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MeshNode {
    pub id: String,
    /// Underlay address (the address its session comes from, `Node.status.addr`); `None`
    /// before the node registered.
    pub addr: Option<Ipv4Addr>,
    /// MAC of its underlay NIC; `None` if it did not report one (no data plane).
    pub mac: Option<MacAddr>,
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

/// Whether a task serves: it runs, and, where it has a health check, its check does not say
/// it is unhealthy. An agent reports a task with a check `RUNNING` only once the check first
/// passed (Swarm's rule, docs/health.md), so `RUNNING` already means "healthy once"; after
/// that, `unhealthy` takes it out of service until the agent has stopped it. This is *the*
/// notion of a task that can take traffic: the mesh's backends and a start-first update
/// both read it.
pub fn task_serves(task: &Task) -> bool {
    task.status.state == TaskState::Running && task.status.health != Some(Health::Unhealthy)
}

/// Whether a task is a backend of its service: it serves ([`task_serves`]), and the
/// manager wants it to run. A task the manager is shutting down leaves the balancer at once
/// (its connections drain).
pub fn is_serving(task: &Task) -> bool {
    task_serves(task) && task.desired_state == TaskState::Running
}

/// Whether a task is draining: it still runs, but the manager is shutting it down, or its
/// health check turned unhealthy (the agent is stopping it).
pub fn is_draining(task: &Task) -> bool {
    task.status.state == TaskState::Running && !is_serving(task)
}

impl MeshNetwork {
    /// The mesh's part of a network: `None` until it has a VNI and a subnet.
    pub fn of(n: &crate::store::objects::Network) -> Option<Self> {
        let vni = n.vni?;
        let ipam = n.ipam.first().or(n.spec.ipam.configs.first())?;
        Some(Self {
            id: n.id.clone(),
            name: n.spec.annotations.name.clone(),
            vni,
            subnet: ipam.subnet,
            gateway: ipam.gateway,
            ingress: n.spec.ingress,
        })
    }
}

impl MeshService {
    /// The mesh's part of a service: `None` until the allocator gave it an endpoint.
    pub fn of(s: &Service) -> Option<Self> {
        Some(Self {
            id: s.id.clone(),
            name: s.spec.annotations.name.clone(),
            endpoint: s.endpoint.clone()?,
        })
    }
}

impl MeshTask {
    /// The mesh's part of a task: `None` unless it runs on a node (serving or draining).
    pub fn of(t: &Task) -> Option<Self> {
        if !(is_serving(t) || is_draining(t)) {
            return None;
        }
        Some(Self {
            draining: is_draining(t),
            node_id: t.node_id.clone()?,
            id: t.id.clone(),
            service_id: t.service_id.clone(),
            networks: t.networks.iter().map(MeshAttachment::of).collect(),
        })
    }
}

impl MeshNode {
    pub fn of(n: &Node) -> Self {
        Self {
            id: n.id.clone(),
            addr: match n.status.addr {
                Some(IpAddr::V4(addr)) => Some(addr),
                // The mesh's underlay is IPv4: a node that came from an IPv6 address has no
                // place in it (as before it registered).
                Some(IpAddr::V6(_)) | None => None,
            },
            mac: n.description.as_ref().and_then(|d| d.underlay_mac),
            state: n.status.state,
        }
    }
}

impl MeshAttachment {
    /// A task's attachment `a`, as the mesh reads it.
    pub fn of(a: &NetworkAttachment) -> Self {
        Self {
            network_id: a.network_id.clone(),
            addresses: a.addresses.clone(),
            aliases: a.aliases.clone(),
        }
    }
}

/// The mesh's cluster-wide settings: the hash seed and the VXLAN port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeshSettings {
    pub hash_seed: u32,
    pub vxlan_port: u16,
    pub mesh_mode: MeshMode,
}

impl MeshSettings {
    /// The settings of `cluster` (the defaults before the cluster object exists).
    pub fn of(cluster: Option<&Cluster>) -> Self {
        let (hash_seed, vxlan_port) = cluster.map_or(
            (
                hash_seed(""),
                crate::manager::controlapi::cluster::DEFAULT_DATA_PATH_PORT,
            ),
            |c| {
                (
                    hash_seed(&c.id),
                    crate::manager::controlapi::cluster::network_settings(c).2,
                )
            },
        );
        Self {
            hash_seed,
            vxlan_port: u16::try_from(vxlan_port).unwrap_or(4789),
            mesh_mode: cluster.map_or(MeshMode::default(), Cluster::mesh_mode),
        }
    }
}

/// Changes to a [`MeshView`]: objects added or changed (`update_*`, whole) and IDs removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshChanges {
    pub settings: Option<MeshSettings>,
    pub update_networks: Vec<MeshNetwork>,
    pub remove_networks: Vec<String>,
    pub update_services: Vec<MeshService>,
    pub remove_services: Vec<String>,
    pub update_tasks: Vec<MeshTask>,
    pub remove_tasks: Vec<String>,
    pub update_nodes: Vec<MeshNode>,
    pub remove_nodes: Vec<String>,
}

impl MeshChanges {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What one or more messages of [`MeshChanges`] touched, by ID: what the node's mesh
/// must look at again ([`super::mesh_build::MeshBuilder::update`]), and nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshTouched {
    pub settings: bool,
    pub networks: bool,
    pub services: BTreeSet<String>,
    pub tasks: BTreeSet<String>,
    pub nodes: BTreeSet<String>,
}

impl MeshTouched {
    /// What `changes` touch.
    pub fn of(changes: &MeshChanges) -> Self {
        let ids = |update: &mut dyn Iterator<Item = &str>, remove: &[String]| {
            update
                .map(str::to_owned)
                .chain(remove.iter().cloned())
                .collect::<BTreeSet<String>>()
        };
        Self {
            settings: changes.settings.is_some(),
            networks: !changes.update_networks.is_empty() || !changes.remove_networks.is_empty(),
            services: ids(
                &mut changes.update_services.iter().map(|s| s.id.as_str()),
                &changes.remove_services,
            ),
            tasks: ids(
                &mut changes.update_tasks.iter().map(|t| t.id.as_str()),
                &changes.remove_tasks,
            ),
            nodes: ids(
                &mut changes.update_nodes.iter().map(|n| n.id.as_str()),
                &changes.remove_nodes,
            ),
        }
    }

    /// Adds what `other` touched.
    pub fn merge(&mut self, other: &Self) {
        self.settings |= other.settings;
        self.networks |= other.networks;
        self.services.extend(other.services.iter().cloned());
        self.tasks.extend(other.tasks.iter().cloned());
        self.nodes.extend(other.nodes.iter().cloned());
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// An object of the view, kept in a list sorted by its ID.
trait Keyed {
    fn key(&self) -> &str;
}

macro_rules! keyed {
    ($($t:ty),*) => {$(impl Keyed for $t { fn key(&self) -> &str { &self.id } })*};
}
keyed!(MeshNetwork, MeshService, MeshTask, MeshNode);

/// Upserts `update` and drops `remove` in a list sorted by ID: O(log n) to find each, and
/// the list stays sorted.
fn apply_to<T: Keyed>(list: &mut Vec<T>, update: Vec<T>, remove: &[String]) {
    for id in remove {
        if let Ok(at) = list.binary_search_by(|o| o.key().cmp(id)) {
            list.remove(at);
        }
    }
    for object in update {
        match list.binary_search_by(|o| o.key().cmp(object.key())) {
            Ok(at) => list[at] = object,
            Err(at) => list.insert(at, object),
        }
    }
}

fn sort_by_id<T: Keyed>(list: &mut [T]) {
    list.sort_by(|a, b| a.key().cmp(b.key()));
}

impl MeshView {
    /// The view of the state `tx` reads.
    pub fn read(tx: &impl ReadView) -> Result<Self, StoreError> {
        let settings = MeshSettings::of(tx.list::<Cluster>()?.first());
        let mut view = Self {
            hash_seed: settings.hash_seed,
            vxlan_port: settings.vxlan_port,
            mesh_mode: settings.mesh_mode,
            networks: tx
                .list::<crate::store::objects::Network>()?
                .iter()
                .filter_map(MeshNetwork::of)
                .collect(),
            services: tx
                .list::<Service>()?
                .iter()
                .filter_map(MeshService::of)
                .collect(),
            tasks: tx
                .find::<Task>(|t| is_serving(t) || is_draining(t))?
                .iter()
                .filter_map(MeshTask::of)
                .collect(),
            nodes: tx.list::<Node>()?.iter().map(MeshNode::of).collect(),
        };
        view.sort();
        Ok(view)
    }

    /// Sorts every list by ID (the order [`Self::apply`] keeps).
    pub fn sort(&mut self) {
        sort_by_id(&mut self.networks);
        sort_by_id(&mut self.services);
        sort_by_id(&mut self.tasks);
        sort_by_id(&mut self.nodes);
    }

    /// The view as one message of changes (the complete view).
    pub fn into_changes(self) -> MeshChanges {
        MeshChanges {
            settings: Some(MeshSettings {
                hash_seed: self.hash_seed,
                vxlan_port: self.vxlan_port,
                mesh_mode: self.mesh_mode,
            }),
            update_networks: self.networks,
            update_services: self.services,
            update_tasks: self.tasks,
            update_nodes: self.nodes,
            ..MeshChanges::default()
        }
    }

    /// Applies `changes`; the cost is that of the changes, not of the view.
    pub fn apply(&mut self, changes: MeshChanges) {
        let MeshChanges {
            settings,
            update_networks,
            remove_networks,
            update_services,
            remove_services,
            update_tasks,
            remove_tasks,
            update_nodes,
            remove_nodes,
        } = changes;
        if let Some(settings) = settings {
            self.hash_seed = settings.hash_seed;
            self.vxlan_port = settings.vxlan_port;
            self.mesh_mode = settings.mesh_mode;
        }
        apply_to(&mut self.networks, update_networks, &remove_networks);
        apply_to(&mut self.services, update_services, &remove_services);
        apply_to(&mut self.tasks, update_tasks, &remove_tasks);
        apply_to(&mut self.nodes, update_nodes, &remove_nodes);
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

    fn service(id: &str, name: &str) -> MeshService {
        MeshService {
            id: id.into(),
            name: name.into(),
            endpoint: Endpoint::default(),
        }
    }

    #[test]
    fn changes_apply_in_place_and_keep_the_lists_sorted() {
        let mut view = MeshView::default();
        view.apply(MeshChanges {
            update_services: vec![service("b", "web"), service("a", "db")],
            ..MeshChanges::default()
        });
        view.apply(MeshChanges {
            update_services: vec![service("c", "cache"), service("b", "www")],
            remove_services: vec!["a".into(), "never-there".into()],
            settings: Some(MeshSettings {
                hash_seed: 7,
                vxlan_port: 4790,
                mesh_mode: Default::default(),
            }),
            ..MeshChanges::default()
        });
        let names: Vec<_> = view.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["www", "cache"]);
        assert_eq!((view.hash_seed, view.vxlan_port), (7, 4790));
    }
}

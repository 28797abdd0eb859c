//! A machine in the swarm (Swarm's `Node`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use hive_dataplane::mesh::MacAddr;
use serde::{Deserialize, Serialize};

use super::addr::empty_as_none;
use super::common::{Annotations, Meta, Resources};

/// A node. `spec` is what the user asked for (`hive node update`), `role` what the role manager
/// has reconciled so far, `description` what the agent reported about the machine, `status` and
/// `manager_status` what the dispatcher and the Raft layer observe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Node {
    pub id: String,
    pub meta: Meta,
    pub spec: NodeSpec,
    /// The role the node currently has; follows `spec.desired_role` once promotion/demotion is
    /// done (a manager is demoted only after it left the Raft membership).
    pub role: NodeRole,
    /// Reported by the agent when it registers; `None` until then.
    pub description: Option<NodeDescription>,
    pub status: NodeStatus,
    /// Present on managers only.
    pub manager_status: Option<ManagerStatus>,
    /// What the node last reported of its TLS state (SwarmKit's `NodeTLSInfo`): the progress
    /// of a root CA rotation is counted from it.
    pub tls_info: NodeTlsInfo,
}

/// Digests (`sha256:<hex>`) of the roots a node trusts and of the root that issued its
/// certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeTlsInfo {
    pub trusted_roots: Vec<String>,
    pub cert_issuer: String,
}

impl Node {
    /// The name `hive node ls` shows and lookups match: the user-set name, else the hostname.
    pub fn display_name(&self) -> &str {
        if !self.spec.annotations.name.is_empty() {
            return &self.spec.annotations.name;
        }
        self.description
            .as_ref()
            .map_or("", |d| d.hostname.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeSpec {
    /// `name` is optional for nodes (hostname is shown instead); labels are `node.labels.*`
    /// for placement constraints.
    pub annotations: Annotations,
    pub desired_role: NodeRole,
    pub membership: NodeMembership,
    pub availability: NodeAvailability,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    #[default]
    Worker,
    Manager,
}

/// Whether the node has been admitted (Swarm auto-accepts nodes presenting a valid token).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeMembership {
    Pending,
    #[default]
    Accepted,
}

/// `--availability`: `active` takes new tasks, `pause` keeps its tasks but takes no new ones,
/// `drain` moves its tasks away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeAvailability {
    #[default]
    Active,
    Pause,
    Drain,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeDescription {
    pub hostname: String,
    pub platform: Platform,
    pub resources: Resources,
    pub engine: EngineDescription,
    /// MAC of the NIC holding the node's advertise address (`aa:bb:cc:dd:ee:ff`): the outer
    /// destination MAC other nodes put on VXLAN packets to this one. `None` (stored as `""`)
    /// if unknown.
    #[serde(with = "empty_as_none")]
    pub underlay_mac: Option<MacAddr>,
    /// The ports this node's control plane listens on, from its daemon's configuration: no
    /// service may publish them (issue 14, `manager::reserved_ports`).
    pub control_ports: Vec<ControlPort>,
    /// Why this node's data plane failed to load, as its agent reported it; empty if it
    /// loaded or was turned off (`--no-dataplane`). Such a node refuses tasks that need
    /// networks (docs/agent.md).
    pub dataplane_error: String,
}

/// A port a node's own control plane uses on its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ControlPort {
    pub port: u16,
    pub protocol: super::service::Protocol,
    pub owner: PortOwner,
}

/// What a [`ControlPort`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortOwner {
    /// The node port (`--listen-addr`, 2377): Raft, the cluster API, the agent's API.
    ClusterApi,
    /// Gossip (7946).
    Gossip,
    /// VXLAN (`--data-path-port`, 4789).
    DataPath,
    /// The Prometheus endpoint (`--metrics-addr`).
    Metrics,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Platform {
    /// As `uname -m` (`x86_64`, `aarch64`).
    pub architecture: String,
    /// `linux`.
    pub os: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineDescription {
    pub engine_version: String,
    /// Engine labels (`node ls --filter label=…`), set on the daemon, not through the API.
    pub labels: BTreeMap<String, String>,
}

/// What the dispatcher observes (`STATUS` column of `hive node ls`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeStatus {
    pub state: NodeState,
    pub message: String,
    /// The address the node's session comes from (`Status.Addr`); `None` (stored as `""`)
    /// before its first session.
    #[serde(with = "empty_as_none")]
    pub addr: Option<IpAddr>,
    /// Where the node serves its Agent service (task logs), as it registered it; `None`
    /// (stored as `""`) when it did not say.
    #[serde(with = "empty_as_none")]
    pub agent_addr: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// No heartbeat seen yet by this leader (e.g. right after a leader change).
    #[default]
    Unknown,
    /// Heartbeats missed beyond the grace period.
    Down,
    Ready,
    /// The node left the swarm (`hive swarm leave`).
    Disconnected,
}

/// Raft-side view of a manager (`MANAGER STATUS` column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerStatus {
    /// The manager's member ID in the Raft group.
    #[serde(default)]
    pub raft_id: u64,
    /// The address other managers reach it at (`--advertise-addr`, port 2377): always one
    /// (a manager without it is refused where it joins or is promoted).
    pub addr: SocketAddr,
    #[serde(default)]
    pub leader: bool,
    #[serde(default)]
    pub reachability: Reachability,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reachability {
    #[default]
    Unknown,
    Unreachable,
    Reachable,
}

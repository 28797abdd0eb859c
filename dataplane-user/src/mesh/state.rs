//! [`MeshState`]: the whole desired mesh of one node, as the control plane
//! computes it and hands it to [`crate::Dataplane::apply`].
//!
//! It is plain data (serde, so tests and tools can write it as JSON) and
//! says nothing about maps or ids; [`MeshState::validate`] checks that it is
//! consistent before anything touches the kernel.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

/// The VXLAN port IANA assigned (RFC 7348).
pub const DEFAULT_VXLAN_PORT: u16 = 4789;
/// Bytes VXLAN adds to every tunnelled packet: outer Ethernet 14 + IPv4 20 +
/// UDP 8 + VXLAN 8.
pub const VXLAN_OVERHEAD: u16 = 50;
/// The longest service or task ID the data plane records (in its metadata
/// maps, so a restarted agent knows which entry is which). Swarm's are 25.
pub const MAX_ID_LEN: usize = 64;

/// The desired mesh of one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshState {
    pub node: NodeIdentity,
    #[serde(default)]
    pub networks: Vec<Network>,
    /// The other nodes of the overlay (not this one).
    #[serde(default)]
    pub peers: Vec<OverlayPeer>,
    #[serde(default)]
    pub services: Vec<Service>,
    /// Every task on every overlay network, on every node.
    #[serde(default)]
    pub endpoints: Vec<TaskEndpoint>,
    /// The host side of the veth of every task on this node.
    #[serde(default)]
    pub local_endpoints: Vec<LocalEndpoint>,
}

/// A change to the last applied [`MeshState`], by key: what the control plane knows
/// changed, so that the data plane validates, compiles and writes only that
/// ([`crate::Dataplane::apply_delta`]). The node and the networks are not in it: everything
/// depends on them, and a change to either is applied as a whole state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeshDelta {
    /// By service ID: `Some` = added or replaced (whole), `None` = removed.
    pub services: Vec<(String, Option<Service>)>,
    /// By task address: `Some` = added or replaced, `None` = removed.
    pub endpoints: Vec<(Ipv4Addr, Option<TaskEndpoint>)>,
    /// The whole new list of peers, if it changed (nodes are few).
    pub peers: Option<Vec<OverlayPeer>>,
    /// The whole new list of local endpoints, if it changed (this node's tasks).
    pub local_endpoints: Option<Vec<LocalEndpoint>>,
}

impl MeshDelta {
    /// Does it change nothing at all?
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.endpoints.is_empty()
            && self.peers.is_none()
            && self.local_endpoints.is_none()
    }
}

/// This node as the data plane needs to know it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The address other nodes and clients reach this node at; published
    /// ports answer on it and VXLAN is sent from it.
    pub underlay_addr: Ipv4Addr,
    /// The NIC that address lives on (`xdp_from_underlay` is attached here).
    pub underlay_iface: String,
    #[serde(default = "default_vxlan_port")]
    pub vxlan_port: u16,
    /// Cluster-wide seed of the flow hash and the Maglev tables: equal on
    /// every node, so that every node picks the same backend for a flow.
    pub hash_seed: u32,
    #[serde(default = "default_underlay_mtu")]
    pub underlay_mtu: u16,
    /// The ports the node's own control plane listens on at `underlay_addr` (cluster API and
    /// Raft, gossip, metrics): never balanced, whatever a service publishes (issue 14). At
    /// most [`hive_common::maps::MAX_CONTROL_PORTS`].
    #[serde(default)]
    pub control_ports: Vec<ControlPlanePort>,
    /// The swarm's mesh mode (`docs/dsr.md`); today's path unless set.
    #[serde(default)]
    pub mesh_mode: super::mode::MeshMode,
}

/// A port of the node's own control plane.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ControlPlanePort {
    pub protocol: Protocol,
    pub port: u16,
}

fn default_vxlan_port() -> u16 {
    DEFAULT_VXLAN_PORT
}

fn default_underlay_mtu() -> u16 {
    1500
}

impl NodeIdentity {
    /// MTU of task interfaces: what is left after VXLAN's 50 bytes.
    pub fn overlay_mtu(&self) -> u16 {
        self.underlay_mtu.saturating_sub(VXLAN_OVERHEAD)
    }
}

/// An overlay network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    /// VXLAN network identifier (24 bits, not 0).
    pub vni: u32,
    pub subnet: Ipv4Network,
    /// The address tasks route through (`.1`, as Docker); it is never
    /// configured anywhere, tasks hold a permanent neighbour entry for it.
    pub gateway: Ipv4Addr,
    /// The routing-mesh network (Swarm's `ingress`): published ports are
    /// balanced over the services' tasks on this network.
    #[serde(default)]
    pub ingress: bool,
}

/// Another node of the overlay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayPeer {
    pub node_id: String,
    pub underlay_addr: Ipv4Addr,
    /// MAC of the peer's underlay NIC (outer destination MAC of VXLAN).
    pub mac: MacAddr,
}

/// A Swarm service as the mesh sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Swarm's service ID: the stable identity (names can be reused).
    pub id: String,
    pub name: String,
    /// One virtual IP per network the service is attached to.
    #[serde(default)]
    pub vips: Vec<ServiceVip>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// Running tasks, one entry per task and network.
    #[serde(default)]
    pub backends: Vec<ServiceBackend>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceVip {
    /// Name of a [`Network`] of this state.
    pub network: String,
    pub addr: Ipv4Addr,
}

/// The transport protocol of a port. The one protocol type of hive: the store's service
/// specs, the allocator and the scheduler use it too, so a port the cluster accepts is a port
/// this data plane can program (SCTP is refused where a spec enters the cluster).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number the programs match.
    pub fn ip_proto(self) -> u8 {
        match self {
            Self::Tcp => hive_common::maps::IPPROTO_TCP,
            Self::Udp => hive_common::maps::IPPROTO_UDP,
        }
    }
}

impl Protocol {
    /// The name as Docker writes it (`80/tcp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A port of a service: reachable at every VIP of the service on
/// `target_port`, and, in ingress mode, at every node's underlay address on
/// `published_port`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    pub protocol: Protocol,
    /// The port the tasks listen on.
    pub target_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_port: Option<u16>,
}

/// One running task of a service, on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceBackend {
    /// Swarm task ID: the backend's identity in the Maglev table.
    pub task_id: String,
    /// The task's address on the network `vni`.
    pub addr: Ipv4Addr,
    /// Underlay address of the node the task runs on.
    pub node: Ipv4Addr,
    pub vni: u32,
}

/// A task's address on one overlay network, wherever the task runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEndpoint {
    pub task_id: String,
    pub addr: Ipv4Addr,
    /// Underlay address of the node the task runs on.
    pub node: Ipv4Addr,
    pub vni: u32,
}

/// The host side of a local task's veth on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalEndpoint {
    pub task_id: String,
    pub vni: u32,
    pub host_ifname: String,
    pub host_ifindex: u32,
}

/// An Ethernet MAC address, written `aa:bb:cc:dd:ee:ff`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A string that is not `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, thiserror::Error)]
#[error(
    "{input:?} is not a MAC address; write six hex bytes separated by colons, e.g. 02:42:ac:11:00:02"
)]
pub struct ParseMacError {
    pub input: String,
}

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError {
            input: s.to_owned(),
        };
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut mac {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Self(mac))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses_round_trip() {
        let mac: MacAddr = "02:42:ac:11:00:02".parse().expect("valid");
        assert_eq!(mac.0, [0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
        assert_eq!(mac.to_string(), "02:42:ac:11:00:02");
        for bad in [
            "",
            "02:42",
            "02:42:ac:11:00:02:03",
            "zz:42:ac:11:00:02",
            "2:42:ac:11:00:02",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn json_uses_defaults_and_readable_forms() {
        let json = r#"{
            "node": {"underlay_addr": "192.168.0.2", "underlay_iface": "eth0", "hash_seed": 7},
            "networks": [{"name": "ingress", "vni": 4096, "subnet": "10.255.0.0/16",
                          "gateway": "10.255.0.1", "ingress": true}],
            "peers": [{"node_id": "n2", "underlay_addr": "192.168.0.3", "mac": "02:00:00:00:00:03"}],
            "services": [{"id": "svc1", "name": "web",
                          "ports": [{"protocol": "tcp", "target_port": 80, "published_port": 8080}]}]
        }"#;
        let state: MeshState = serde_json::from_str(json).expect("parses");
        assert_eq!(state.node.vxlan_port, 4789);
        assert_eq!(state.node.underlay_mtu, 1500);
        assert_eq!(state.node.overlay_mtu(), 1450);
        assert_eq!(state.services[0].ports[0].protocol, Protocol::Tcp);
        let back: MeshState =
            serde_json::from_str(&serde_json::to_string(&state).expect("serialises"))
                .expect("parses");
        assert_eq!(back, state);
    }
}

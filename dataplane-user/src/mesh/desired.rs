//! A validated [`MeshState`] turned into the map entries it stands for,
//! before any id is allocated.
//!
//! The unit of balancing is a [`BalancerKey`]: one service on one network.
//! A service attached to two networks has a VIP on each, and a VIP must only
//! lead to the tasks' addresses on its own network, so each (service,
//! network) pair gets its own dense service id, ring and backends in the
//! maps. Published ports belong to the pair on the ingress network.

use std::{collections::BTreeMap, net::Ipv4Addr};

use hive_common::maps::{
    Backend, ControlPort, Endpoint, Frontend, MAX_CONTROL_PORTS, NodeConfig, Peer, ServiceKey,
};

use super::{
    fast::FastMap,
    state::{
        ControlPlanePort, LocalEndpoint, MeshState, NodeIdentity, OverlayPeer, Service,
        TaskEndpoint,
    },
};

/// One service on one network: what a dense service id stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BalancerKey {
    /// Swarm service ID.
    pub service_id: String,
    pub vni: u32,
}

/// A front end without its service id (allocated at apply time).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FrontendSpec {
    pub target_port_be: u16,
    pub flags: u16,
}

impl FrontendSpec {
    pub fn with_service(self, service: u32) -> Frontend {
        Frontend {
            service,
            target_port_be: self.target_port_be,
            flags: self.flags,
        }
    }
}

/// What one balancer should look like.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredBalancer {
    /// Service name, for messages.
    pub name: String,
    pub frontends: FastMap<ServiceKey, FrontendSpec>,
    /// By task ID; ordered, which is also the Maglev build order.
    pub backends: BTreeMap<String, Backend>,
}

/// Everything the maps should hold, keyed as the maps are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub node: NodeConfig,
    pub balancers: BTreeMap<BalancerKey, DesiredBalancer>,
    /// By task address (network order).
    pub endpoints: FastMap<u32, Endpoint>,
    /// By underlay address (network order).
    pub peers: FastMap<u32, Peer>,
}

/// The underlay NIC as the kernel knows it (resolved by the caller).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct UnderlayLink {
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// An IPv4 address as the maps store it: the octets in memory order.
pub fn addr_be(addr: std::net::Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

fn balancer_entry<'a>(
    local: &'a mut Vec<(u32, DesiredBalancer)>,
    service: &Service,
    vni: u32,
) -> &'a mut DesiredBalancer {
    let index = match local.iter().position(|(v, _)| *v == vni) {
        Some(index) => index,
        None => {
            local.push((
                vni,
                DesiredBalancer {
                    name: service.name.clone(),
                    ..DesiredBalancer::default()
                },
            ));
            local.len() - 1
        }
    };
    &mut local[index].1
}

/// What compiling one service or endpoint needs to know of the rest of the
/// state: the networks and this node. (The incremental path reuses it for
/// every changed service; it stays valid while networks and node do.)
#[derive(Debug)]
pub(super) struct CompileContext<'a> {
    pub node_addr: Ipv4Addr,
    vni_of: FastMap<&'a str, u32>,
    ingress_vni: Option<u32>,
}

impl<'a> CompileContext<'a> {
    pub fn new(state: &'a MeshState) -> Self {
        Self {
            node_addr: state.node.underlay_addr,
            vni_of: state
                .networks
                .iter()
                .map(|n| (n.name.as_str(), n.vni))
                .collect(),
            ingress_vni: state.networks.iter().find(|n| n.ingress).map(|n| n.vni),
        }
    }

    /// The balancers of one validated service, by VNI, appended to `out`
    /// (a handful: one per network the service is on).
    pub fn service(&self, service: &Service, out: &mut Vec<(u32, DesiredBalancer)>) {
        for vip in &service.vips {
            let Some(&vni) = self.vni_of.get(vip.network.as_str()) else {
                continue; // validated: cannot happen
            };
            let balancer = balancer_entry(out, service, vni);
            // The VIP marker: lets the programs tell a packet to a VIP
            // without ports (ICMP, a fragment) from traffic to other
            // addresses, and balances a TCP/UDP port the service does not
            // declare to the same port of a task (as Docker's VIP).
            balancer.frontends.insert(
                ServiceKey {
                    addr_be: addr_be(vip.addr),
                    port_be: 0,
                    proto: 0,
                    _pad: 0,
                },
                FrontendSpec {
                    target_port_be: 0,
                    flags: 0,
                },
            );
            for port in &service.ports {
                balancer.frontends.insert(
                    ServiceKey {
                        addr_be: addr_be(vip.addr),
                        port_be: port.target_port.to_be(),
                        proto: port.protocol.ip_proto(),
                        _pad: 0,
                    },
                    FrontendSpec {
                        target_port_be: port.target_port.to_be(),
                        flags: 0,
                    },
                );
            }
        }
        if let Some(vni) = self.ingress_vni {
            for port in &service.ports {
                let Some(published) = port.published_port else {
                    continue;
                };
                balancer_entry(out, service, vni).frontends.insert(
                    ServiceKey {
                        addr_be: 0,
                        port_be: published.to_be(),
                        proto: port.protocol.ip_proto(),
                        _pad: 0,
                    },
                    FrontendSpec {
                        target_port_be: port.target_port.to_be(),
                        flags: Frontend::FLAG_PUBLISHED,
                    },
                );
            }
        }
        for be in &service.backends {
            let on_this_node = be.node == self.node_addr;
            balancer_entry(out, service, be.vni).backends.insert(
                be.task_id.clone(),
                Backend {
                    addr_be: addr_be(be.addr),
                    node_be: addr_be(be.node),
                    vni: be.vni,
                    flags: if on_this_node { Backend::FLAG_LOCAL } else { 0 },
                },
            );
        }
    }

    /// The entry of one endpoint; `ifindex` is its host-side veth's, for an
    /// endpoint on this node.
    pub fn endpoint(&self, ep: &TaskEndpoint, ifindex: Option<u32>) -> Endpoint {
        let local = ep.node == self.node_addr;
        Endpoint {
            node_be: addr_be(ep.node),
            vni: ep.vni,
            ifindex: if local { ifindex.unwrap_or(0) } else { 0 },
            flags: if local { Endpoint::FLAG_LOCAL } else { 0 },
        }
    }
}

/// The node's entry.
pub(super) fn node_config(node: &NodeIdentity, underlay: UnderlayLink) -> NodeConfig {
    NodeConfig {
        underlay_addr_be: addr_be(node.underlay_addr),
        underlay_ifindex: underlay.ifindex,
        hash_seed: node.hash_seed,
        underlay_mac: underlay.mac,
        vxlan_port_be: node.vxlan_port.to_be(),
        overlay_mtu: node.overlay_mtu(),
        flags: NodeConfig::FLAG_CONFIGURED | node.mesh_mode.node_flags(),
        control_ports: control_ports(&node.control_ports),
    }
}

/// The node's control-plane ports as the programs match them (validated: at most
/// `MAX_CONTROL_PORTS`; extra ones could not be there).
fn control_ports(ports: &[ControlPlanePort]) -> [ControlPort; MAX_CONTROL_PORTS] {
    let mut slots = [ControlPort::default(); MAX_CONTROL_PORTS];
    for (slot, port) in slots.iter_mut().zip(ports) {
        *slot = ControlPort {
            port_be: port.port.to_be(),
            proto: port.protocol.ip_proto(),
            _pad: 0,
        };
    }
    slots
}

/// A peer's entry.
pub(super) fn peer_entry(peer: &OverlayPeer) -> Peer {
    Peer {
        mac: peer.mac.0,
        _pad: [0; 2],
    }
}

/// Host-side veth ifindex by (task, VNI). With duplicates the last one
/// wins, as everywhere the list is read.
pub(super) fn local_ifindexes(locals: &[LocalEndpoint]) -> FastMap<(&str, u32), u32> {
    locals
        .iter()
        .map(|l| ((l.task_id.as_str(), l.vni), l.host_ifindex))
        .collect()
}

impl Desired {
    /// Compile a state that passed [`MeshState::validate`].
    pub fn compile(state: &MeshState, underlay: UnderlayLink) -> Self {
        let ctx = CompileContext::new(state);
        let mut balancers: BTreeMap<BalancerKey, DesiredBalancer> = BTreeMap::new();
        // Per service, its balancers by VNI (a handful), moved into the map
        // once: one key allocation per balancer, not one per entry.
        let mut local: Vec<(u32, DesiredBalancer)> = Vec::new();
        for service in &state.services {
            ctx.service(service, &mut local);
            for (vni, balancer) in local.drain(..) {
                balancers.insert(
                    BalancerKey {
                        service_id: service.id.clone(),
                        vni,
                    },
                    balancer,
                );
            }
        }
        let ifindex_of = local_ifindexes(&state.local_endpoints);
        let endpoints = state
            .endpoints
            .iter()
            .map(|ep| {
                let ifindex = ifindex_of.get(&(ep.task_id.as_str(), ep.vni)).copied();
                (addr_be(ep.addr), ctx.endpoint(ep, ifindex))
            })
            .collect();
        let peers = state
            .peers
            .iter()
            .map(|p| (addr_be(p.underlay_addr), peer_entry(p)))
            .collect();
        Self {
            node: node_config(&state.node, underlay),
            balancers,
            endpoints,
            peers,
        }
    }
}

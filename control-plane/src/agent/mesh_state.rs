//! From the leader's [`MeshView`] plus what only this node knows — its own identity, the
//! veths of its tasks, and which nodes gossip says are dead — to the [`MeshState`] its data
//! plane applies. Pure: no store, no kernel, so every rule is unit-tested here.
//!
//! The rules:
//! - a service's backends are its serving tasks on every node, on each network where the
//!   service has a VIP, and on the ingress network if it publishes ports;
//! - a task the manager is shutting down that still runs is an endpoint but no backend: its
//!   connections drain, and its flows are forgotten when it leaves the view;
//! - tasks of nodes that are `Down` in the store or dead by gossip are no backends (a dead
//!   node's backends leave this node's mesh as soon as gossip says so, without waiting for the
//!   leader);
//! - this node's tasks are endpoints and backends only once their veth exists here (a local
//!   endpoint): the data plane cannot deliver to a task it has no interface for;
//! - peers are the other nodes with an underlay address and a MAC;
//! - anything the data plane would refuse (a port published with no ingress network, an
//!   address given twice, two networks that clash) is left out rather than failing the whole
//!   mesh. Addresses, subnets and MACs arrive typed: a malformed one was refused where it came
//!   off the wire (`api::assignments`), so nothing here parses them.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;

use hive_dataplane::mesh::{
    LocalEndpoint, MeshState, Network, NodeIdentity, OverlayPeer, Protocol, Service,
    ServiceBackend, ServicePort, ServiceVip, TaskEndpoint,
};
use ipnetwork::Ipv4Network;

use crate::api::mesh_view::MeshView;
use crate::store::objects::{self, NodeState, PublishMode};

/// This node, as its data plane runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    pub node_id: String,
    pub underlay_addr: Ipv4Addr,
    pub underlay_iface: String,
    pub underlay_mtu: u16,
    /// The ports this node's control plane listens on: the data plane never balances them.
    pub control_ports: Vec<hive_dataplane::mesh::state::ControlPlanePort>,
}

/// A veth of a local task on one network, as the attacher made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAttachment {
    pub task_id: String,
    pub vni: u32,
    pub addr: Ipv4Addr,
    pub host_ifname: String,
    pub host_ifindex: u32,
}

/// The mesh of `me`, given the cluster `view`, the veths of local tasks and the nodes gossip
/// reports dead.
pub fn mesh_state(
    view: &MeshView,
    me: &LocalNode,
    local: &[LocalAttachment],
    dead: &BTreeSet<String>,
) -> MeshState {
    let parsed = networks(view);
    let by_id: BTreeMap<&str, &Network> = view
        .networks
        .iter()
        .zip(&parsed)
        .filter_map(|(v, n)| n.as_ref().map(|n| (v.id.as_str(), n)))
        .collect();
    let networks: Vec<Network> = parsed.iter().flatten().cloned().collect();
    let ingress = networks.iter().find(|n| n.ingress);

    let Nodes {
        peers,
        addr: node_addr,
        alive,
    } = nodes(view, me, dead);

    // Endpoints: remote tasks from the view, local ones from their veths.
    let local_keys: BTreeMap<(&str, u32), &LocalAttachment> = local
        .iter()
        .map(|l| ((l.task_id.as_str(), l.vni), l))
        .collect();
    let mut endpoints = Vec::new();
    let mut used = HashSet::new();
    let mut kept: HashSet<(&str, u32)> = HashSet::new();
    for l in local {
        let fits = networks
            .iter()
            .any(|n| n.vni == l.vni && is_host(n, l.addr));
        if fits && used.insert(l.addr) {
            kept.insert((&l.task_id, l.vni));
            endpoints.push(TaskEndpoint {
                task_id: l.task_id.clone(),
                addr: l.addr,
                node: me.underlay_addr,
                vni: l.vni,
            });
        }
    }
    // Exactly the local tasks that got an endpoint: the data plane refuses a veth whose
    // task has none.
    let local_endpoints: Vec<LocalEndpoint> = local
        .iter()
        .filter(|l| kept.contains(&(l.task_id.as_str(), l.vni)))
        .map(|l| LocalEndpoint {
            task_id: l.task_id.clone(),
            vni: l.vni,
            host_ifname: l.host_ifname.clone(),
            host_ifindex: l.host_ifindex,
        })
        .collect();
    // (task, network VNI) → (address, node address, serving)
    let mut placed: BTreeMap<(&str, u32), (Ipv4Addr, Ipv4Addr, bool)> = BTreeMap::new();
    for task in &view.tasks {
        let Some(&node) = node_addr.get(task.node_id.as_str()) else {
            continue;
        };
        // A draining task stays an endpoint, so that its flows keep their conntrack entries
        // until it stops running, but takes no new flows.
        let serving = alive.contains(task.node_id.as_str()) && !task.draining;
        for attachment in &task.networks {
            let Some(network) = by_id.get(attachment.network_id.as_str()) else {
                continue;
            };
            let Some(addr) = attachment.addresses.first().map(|a| a.ip()) else {
                tracing::warn!(task = %task.id, network = %attachment.network_id,
                    addresses = ?attachment.addresses,
                    "agent: task left out of the mesh on this network: no IPv4 address");
                continue;
            };
            if task.node_id == me.node_id {
                // Ours: only once its veth is there, at the address it was given.
                if let Some(l) = local_keys.get(&(task.id.as_str(), network.vni))
                    && kept.contains(&(l.task_id.as_str(), l.vni))
                {
                    placed.insert((&task.id, network.vni), (l.addr, node, !task.draining));
                }
                continue;
            }
            if !is_host(network, addr) || !used.insert(addr) {
                continue;
            }
            endpoints.push(TaskEndpoint {
                task_id: task.id.clone(),
                addr,
                node,
                vni: network.vni,
            });
            placed.insert((&task.id, network.vni), (addr, node, serving));
        }
    }

    let mut claimed_vips = HashSet::new();
    let mut claimed_ports = HashSet::new();
    let mut services: Vec<Service> = view
        .services
        .iter()
        .map(|s| {
            let vips: Vec<ServiceVip> = s
                .endpoint
                .virtual_ips
                .iter()
                .filter_map(|vip| {
                    let network = by_id.get(vip.network_id.as_str())?;
                    let addr = vip.addr.ip();
                    (is_host(network, addr) && addr != network.gateway && claimed_vips.insert(addr))
                        .then(|| ServiceVip {
                            network: network.name.clone(),
                            addr,
                        })
                })
                .collect();
            let mut ports = ports(&s.endpoint, ingress.is_some());
            // A published port another service holds already stays with that one.
            for port in &mut ports {
                if let Some(published) = port.published_port
                    && !claimed_ports.insert((port.protocol, published))
                {
                    port.published_port = None;
                }
            }
            let mut served: BTreeSet<u32> = vips
                .iter()
                .filter_map(|v| networks.iter().find(|n| n.name == v.network))
                .map(|n| n.vni)
                .collect();
            if let Some(ingress) = ingress
                && ports.iter().any(|p| p.published_port.is_some())
            {
                served.insert(ingress.vni);
            }
            let backends = view
                .tasks
                .iter()
                .filter(|t| t.service_id == s.id)
                .flat_map(|t| {
                    served.iter().filter_map(|vni| {
                        let &(addr, node, serving) = placed.get(&(t.id.as_str(), *vni))?;
                        serving.then(|| ServiceBackend {
                            task_id: t.id.clone(),
                            addr,
                            node,
                            vni: *vni,
                        })
                    })
                })
                .collect();
            Service {
                id: s.id.clone(),
                name: s.name.clone(),
                vips,
                ports,
                backends,
            }
        })
        .collect();
    if let Some(ingress) = ingress {
        services.extend(host_mode_services(
            view,
            me,
            ingress.vni,
            &placed,
            &mut claimed_ports,
        ));
    }

    MeshState {
        node: NodeIdentity {
            underlay_addr: me.underlay_addr,
            underlay_iface: me.underlay_iface.clone(),
            vxlan_port: if view.vxlan_port == 0 {
                hive_dataplane::mesh::state::DEFAULT_VXLAN_PORT
            } else {
                view.vxlan_port
            },
            hash_seed: view.hash_seed,
            underlay_mtu: me.underlay_mtu,
            control_ports: me.control_ports.clone(),
            mesh_mode: view.mesh_mode,
        },
        networks,
        peers,
        services,
        endpoints,
        local_endpoints,
    }
}

/// The nodes of a view as the mesh sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Nodes {
    /// The other nodes with an underlay address and a MAC.
    pub peers: Vec<OverlayPeer>,
    /// Where each node is (this one, and the peers).
    pub addr: BTreeMap<String, Ipv4Addr>,
    /// The nodes whose tasks may serve: this one, and the peers neither `Down` nor
    /// `Disconnected` in the store nor dead by gossip.
    pub alive: BTreeSet<String>,
}

/// The nodes of `view`, seen from `me`, with the nodes gossip reports `dead`.
pub(super) fn nodes(view: &MeshView, me: &LocalNode, dead: &BTreeSet<String>) -> Nodes {
    let mut out = Nodes::default();
    let mut peer_addrs = HashSet::new();
    for node in &view.nodes {
        if node.id == me.node_id {
            out.addr.insert(node.id.clone(), me.underlay_addr);
            out.alive.insert(node.id.clone());
            continue;
        }
        // A node that has not registered yet, or runs without a data plane, has no address
        // or MAC: not a peer, and nothing to warn about.
        let (Some(addr), Some(mac)) = (node.addr, node.mac) else {
            continue;
        };
        if addr == me.underlay_addr || !peer_addrs.insert(addr) {
            continue;
        }
        out.peers.push(OverlayPeer {
            node_id: node.id.clone(),
            underlay_addr: addr,
            mac,
        });
        out.addr.insert(node.id.clone(), addr);
        if node.state != NodeState::Down
            && node.state != NodeState::Disconnected
            && !dead.contains(&node.id)
        {
            out.alive.insert(node.id.clone());
        }
    }
    out
}

/// The view's networks as the data plane takes them, index for index (`None` where one
/// cannot be used: a VNI or subnet taken by an earlier one, two ingresses).
pub(super) fn networks(view: &MeshView) -> Vec<Option<Network>> {
    let mut taken: Vec<Network> = Vec::new();
    view.networks
        .iter()
        .map(|n| {
            let subnet = n.subnet;
            let gateway = match n.gateway {
                Some(gateway) => gateway,
                None => first_host(subnet)?,
            };
            let network = Network {
                name: n.name.clone(),
                vni: n.vni,
                subnet,
                gateway,
                ingress: n.ingress,
            };
            let clash = taken.iter().any(|t| {
                t.name == network.name
                    || t.vni == network.vni
                    || t.subnet.overlaps(network.subnet)
                    || (t.ingress && network.ingress)
            });
            if clash || network.vni == 0 || network.vni > 0x00ff_ffff || !is_host(&network, gateway)
            {
                tracing::warn!(network = %n.id, vni = n.vni, subnet = %subnet, %gateway,
                    "agent: network left out of the mesh: it clashes with another network, \
                     or its VNI or gateway is out of range");
                return None;
            }
            taken.push(network.clone());
            Some(network)
        })
        .collect()
}

pub(super) fn ports(endpoint: &objects::Endpoint, has_ingress: bool) -> Vec<ServicePort> {
    // The allocated ports; a service allocated before its ports were spec'd has none there.
    let source = if endpoint.ports.is_empty() {
        &endpoint.spec.ports
    } else {
        &endpoint.ports
    };
    // One entry per (target, published) pair: several published ports may lead to one
    // target (`-p 8080:80 -p 8081:80`), and a target that only the VIP serves (no ingress
    // network, or host-mode ports, which `host_mode_services` publishes) is listed once.
    let mut seen = HashSet::new();
    source
        .iter()
        .filter_map(|p| {
            let protocol = p.protocol;
            let published_port =
                (p.publish_mode == PublishMode::Ingress && p.published_port != 0 && has_ingress)
                    .then_some(p.published_port);
            (p.target_port != 0 && seen.insert((protocol, p.target_port, published_port)))
                .then_some(ServicePort {
                    protocol,
                    target_port: p.target_port,
                    published_port,
                })
        })
        .collect()
}

/// Host-mode published ports (`-p mode=host,published=P,target=T`): on this node only, to this
/// node's own serving tasks of the service, over their ingress veths. A node without such a
/// task does not answer the port at all, as in Docker. Each service's host ports become one
/// extra mesh service, `<service-id>/host`, that has no VIP.
fn host_mode_services(
    view: &MeshView,
    me: &LocalNode,
    ingress_vni: u32,
    placed: &BTreeMap<(&str, u32), (Ipv4Addr, Ipv4Addr, bool)>,
    claimed_ports: &mut HashSet<(Protocol, u16)>,
) -> Vec<Service> {
    let mut out = Vec::new();
    for s in &view.services {
        let source = if s.endpoint.ports.is_empty() {
            &s.endpoint.spec.ports
        } else {
            &s.endpoint.ports
        };
        let backends: Vec<ServiceBackend> = view
            .tasks
            .iter()
            .filter(|t| t.service_id == s.id)
            .filter_map(|t| {
                let &(addr, node, serving) = placed.get(&(t.id.as_str(), ingress_vni))?;
                (serving && node == me.underlay_addr).then(|| ServiceBackend {
                    task_id: t.id.clone(),
                    addr,
                    node,
                    vni: ingress_vni,
                })
            })
            .collect();
        if backends.is_empty() {
            continue;
        }
        let ports: Vec<ServicePort> = source
            .iter()
            .filter(|p| p.publish_mode == PublishMode::Host && p.published_port != 0)
            .filter_map(|p| {
                let protocol = p.protocol;
                (p.target_port != 0 && claimed_ports.insert((protocol, p.published_port)))
                    .then_some(ServicePort {
                        protocol,
                        target_port: p.target_port,
                        published_port: Some(p.published_port),
                    })
            })
            .collect();
        if ports.is_empty() {
            continue;
        }
        out.push(Service {
            id: host_mesh_id(&s.id),
            name: host_mesh_id(&s.name),
            vips: Vec::new(),
            ports,
            backends,
        });
    }
    out
}

/// What a host-mode mesh service's ID ends with (after its Swarm service's ID).
const HOST_SUFFIX: &str = "/host";

/// The Swarm service a mesh service stands for (a service's host-mode ports are a mesh
/// service of their own, `<service-id>/host`).
pub fn swarm_service_id(mesh_id: &str) -> &str {
    mesh_id.strip_suffix(HOST_SUFFIX).unwrap_or(mesh_id)
}

/// The mesh service of `service_id`'s host-mode ports (or the name of it, given the
/// service's name).
pub fn host_mesh_id(service_id: &str) -> String {
    format!("{service_id}{HOST_SUFFIX}")
}

fn first_host(subnet: Ipv4Network) -> Option<Ipv4Addr> {
    if subnet.prefix() >= 31 {
        return Some(subnet.network());
    }
    Some(Ipv4Addr::from(u32::from(subnet.network()).checked_add(1)?))
}

pub(super) fn is_host(network: &Network, addr: Ipv4Addr) -> bool {
    let subnet = network.subnet;
    subnet.contains(addr)
        && (subnet.prefix() >= 31 || (addr != subnet.network() && addr != subnet.broadcast()))
}

#[cfg(test)]
mod tests;

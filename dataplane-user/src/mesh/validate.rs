//! Consistency checks of a [`MeshState`] before anything reaches the kernel.
//!
//! A state that passes can be turned into map entries without surprises:
//! every reference resolves (networks, peers, local veths), no two services
//! claim the same front end, every address lies in its network, and every
//! table fits in the maps.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use super::fast::{FastMap, FastSet};
use super::state::{
    MAX_ID_LEN, MeshState, Network, NodeIdentity, OverlayPeer, Protocol, Service, TaskEndpoint,
    VXLAN_OVERHEAD,
};
use crate::maglev::MAX_BACKENDS_PER_SERVICE;

/// The smallest overlay MTU hive accepts: IPv4's minimum datagram every
/// host must accept (RFC 791).
pub const MIN_OVERLAY_MTU: u16 = 576;

/// Why a [`MeshState`] was rejected. Each message names the object at fault
/// and says what would make it acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeshStateError {
    #[error(
        "node: the underlay interface name is empty; set node.underlay_iface to the NIC of node.underlay_addr"
    )]
    NoUnderlayIface,
    #[error(
        "node: underlay MTU {mtu} leaves {overlay} bytes for tasks after the {VXLAN_OVERHEAD} bytes of VXLAN; hive needs at least {MIN_OVERLAY_MTU}: raise the underlay MTU"
    )]
    UnderlayMtuTooSmall { mtu: u16, overlay: u16 },
    #[error("node: VXLAN port 0 is not a port; use 4789 (the default) or another free UDP port")]
    VxlanPortZero,
    #[error(
        "node: {count} control-plane ports given; the data plane protects at most {max}",
        max = hive_common::maps::MAX_CONTROL_PORTS
    )]
    TooManyControlPorts { count: usize },
    #[error("node: control-plane port 0 ({protocol}) is not a port; use 1..=65535")]
    ControlPortZero { protocol: Protocol },
    #[error("network {name:?} is defined twice; network names must be unique")]
    DuplicateNetwork { name: String },
    #[error("network {name:?}: VNI {vni} is not a VXLAN network identifier; use 1..=16777215")]
    VniOutOfRange { name: String, vni: u32 },
    #[error("network {name:?}: VNI {vni} is already used by network {other:?}")]
    DuplicateVni {
        name: String,
        vni: u32,
        other: String,
    },
    #[error(
        "network {name:?}: subnet {subnet} overlaps network {other:?} ({other_subnet}); overlay subnets must be disjoint"
    )]
    OverlappingSubnets {
        name: String,
        subnet: Ipv4Network,
        other: String,
        other_subnet: Ipv4Network,
    },
    #[error("network {name:?}: gateway {gateway} is not a host address of its subnet {subnet}")]
    GatewayOutsideSubnet {
        name: String,
        gateway: Ipv4Addr,
        subnet: Ipv4Network,
    },
    #[error(
        "networks {first:?} and {second:?} are both marked ingress; only one network carries published ports"
    )]
    TwoIngressNetworks { first: String, second: String },
    #[error("peer {node_id:?}: underlay address {addr} is also used by peer {other:?}")]
    DuplicatePeer {
        node_id: String,
        addr: Ipv4Addr,
        other: String,
    },
    #[error(
        "peer {node_id:?}: underlay address {addr} is this node's own address; list only the other nodes as peers"
    )]
    PeerIsSelf { node_id: String, addr: Ipv4Addr },
    #[error(
        "{what} {id:?} is {len} bytes long; the data plane records IDs of at most {MAX_ID_LEN} bytes"
    )]
    IdTooLong {
        what: &'static str,
        id: String,
        len: usize,
    },
    #[error("service {name:?}: ID {id:?} is also the ID of service {other:?}")]
    DuplicateServiceId {
        id: String,
        name: String,
        other: String,
    },
    #[error("service {service:?}: network {network:?} is not defined in this state")]
    UnknownNetwork { service: String, network: String },
    #[error(
        "service {service:?}: has two VIPs on network {network:?}; a service has one VIP per network"
    )]
    TwoVipsOnNetwork { service: String, network: String },
    #[error(
        "service {service:?}: VIP {vip} is not a host address of network {network:?} ({subnet}) or is its gateway"
    )]
    VipOutsideNetwork {
        service: String,
        vip: Ipv4Addr,
        network: String,
        subnet: Ipv4Network,
    },
    #[error("service {service:?}: VIP {vip} is already the VIP of service {other:?}")]
    VipInUse {
        service: String,
        vip: Ipv4Addr,
        other: String,
    },
    #[error("service {service:?}: port 0 is not a port ({protocol}); use 1..=65535")]
    PortZero { service: String, protocol: Protocol },
    #[error(
        "service {service:?}: target port {port}/{protocol} is listed twice without a published port"
    )]
    DuplicateTargetPort {
        service: String,
        port: u16,
        protocol: Protocol,
    },
    #[error("service {service:?}: published port {port}/{protocol} is listed twice")]
    DuplicatePublishedPort {
        service: String,
        port: u16,
        protocol: Protocol,
    },
    #[error(
        "service {service:?}: published port {port}/{protocol} is already used by service {other:?}"
    )]
    PublishedPortInUse {
        service: String,
        port: u16,
        protocol: Protocol,
        other: String,
    },
    #[error(
        "service {service:?}: publishes port {port}/{protocol} but no network is marked ingress; mark the routing-mesh network `ingress: true`"
    )]
    NoIngressNetwork {
        service: String,
        port: u16,
        protocol: Protocol,
    },
    #[error(
        "service {service:?}: backend task {task:?} is on VNI {vni}, which is not a network of this state"
    )]
    BackendUnknownNetwork {
        service: String,
        task: String,
        vni: u32,
    },
    #[error(
        "service {service:?}: backend task {task:?} is on network {network:?}, where the service has no VIP (and it is not the ingress network of a service that publishes ports)"
    )]
    BackendOffServiceNetworks {
        service: String,
        task: String,
        network: String,
    },
    #[error(
        "service {service:?}: backend task {task:?} has address {addr}, outside its network {network:?} ({subnet})"
    )]
    BackendOutsideSubnet {
        service: String,
        task: String,
        addr: Ipv4Addr,
        network: String,
        subnet: Ipv4Network,
    },
    #[error("service {service:?}: backend task {task:?} is listed twice on network {network:?}")]
    DuplicateBackend {
        service: String,
        task: String,
        network: String,
    },
    #[error(
        "service {service:?}: backend task {task:?} runs on node {node}, which is neither this node nor an overlay peer; add the node to peers"
    )]
    BackendUnknownNode {
        service: String,
        task: String,
        node: Ipv4Addr,
    },
    #[error(
        "service {service:?}: {count} backends on network {network:?}; at most {MAX_BACKENDS_PER_SERVICE} fit in a Maglev table"
    )]
    TooManyBackends {
        service: String,
        network: String,
        count: usize,
    },
    #[error("endpoint {addr} (task {task:?}): VNI {vni} is not a network of this state")]
    EndpointUnknownNetwork {
        task: String,
        addr: Ipv4Addr,
        vni: u32,
    },
    #[error("endpoint {addr} (task {task:?}): outside its network {network:?} ({subnet})")]
    EndpointOutsideSubnet {
        task: String,
        addr: Ipv4Addr,
        network: String,
        subnet: Ipv4Network,
    },
    #[error("endpoint {addr} (task {task:?}): the address is also given to task {other:?}")]
    DuplicateEndpoint {
        task: String,
        addr: Ipv4Addr,
        other: String,
    },
    #[error(
        "endpoint {addr} (task {task:?}): runs on node {node}, which is neither this node nor an overlay peer; add the node to peers"
    )]
    EndpointUnknownNode {
        task: String,
        addr: Ipv4Addr,
        node: Ipv4Addr,
    },
    #[error(
        "endpoint {addr} (task {task:?}) runs on this node but has no local endpoint (host-side veth) on VNI {vni}; attach the task first"
    )]
    NoLocalEndpoint {
        task: String,
        addr: Ipv4Addr,
        vni: u32,
    },
    #[error(
        "local endpoint {ifname:?} (task {task:?}, VNI {vni}): no endpoint of this node matches; list the task's address in endpoints"
    )]
    OrphanLocalEndpoint {
        task: String,
        vni: u32,
        ifname: String,
    },
    #[error("local endpoint {ifname:?} (task {task:?}): ifindex 0 is not an interface")]
    LocalEndpointNoIfindex { task: String, ifname: String },
}

/// A service [`MeshState::set_aside_invalid_services`] took out of a state, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedService {
    pub id: String,
    pub name: String,
    pub error: MeshStateError,
}

pub(super) fn check_id(what: &'static str, id: &str) -> Result<(), MeshStateError> {
    if id.len() > MAX_ID_LEN || id.is_empty() {
        return Err(MeshStateError::IdTooLong {
            what,
            id: id.to_owned(),
            len: id.len(),
        });
    }
    Ok(())
}

/// A host address of `subnet`: inside, and neither the network nor the
/// broadcast address (for prefixes that have those).
fn is_host_of(subnet: Ipv4Network, addr: Ipv4Addr) -> bool {
    subnet.contains(addr)
        && (subnet.prefix() >= 31 || (addr != subnet.network() && addr != subnet.broadcast()))
}

impl MeshState {
    /// Check the state is consistent; the first problem found is returned.
    pub fn validate(&self) -> Result<(), MeshStateError> {
        validate_node(&self.node)?;
        let networks = self.validate_networks()?;
        let nodes = self.validate_peers()?;
        let known_node =
            |addr: Ipv4Addr| addr == self.node.underlay_addr || nodes.contains_key(&addr);

        let mut ids: FastMap<&str, &str> = FastMap::default();
        let mut claims = FullClaims::default();
        for service in &self.services {
            check_id("service ID", &service.id)?;
            if let Some(other) = ids.insert(&service.id, &service.name) {
                return Err(MeshStateError::DuplicateServiceId {
                    id: service.id.clone(),
                    name: service.name.clone(),
                    other: other.to_owned(),
                });
            }
            validate_service(service, &networks, &mut claims, &known_node)?;
        }
        self.validate_endpoints(&networks, &known_node)
    }

    /// Takes out of the state every service [`Self::validate`] would refuse, and says why,
    /// so that one service the data plane cannot program does not keep the others from
    /// being programmed. Services are checked in order, each against the ones kept before
    /// it: of two that claim one VIP or published port, the first keeps it.
    ///
    /// What is not any one service's — the node, the networks, the peers, the endpoints —
    /// is left for [`Self::validate`] to report: every service depends on it, so nothing
    /// is taken out for it (and nothing is returned).
    pub fn set_aside_invalid_services(&mut self) -> Vec<RefusedService> {
        let refused: Vec<(usize, MeshStateError)> = {
            let (Ok(()), Ok(networks), Ok(nodes)) = (
                validate_node(&self.node),
                self.validate_networks(),
                self.validate_peers(),
            ) else {
                return Vec::new();
            };
            let known_node =
                |addr: Ipv4Addr| addr == self.node.underlay_addr || nodes.contains_key(&addr);
            let mut ids: FastMap<&str, &str> = FastMap::default();
            let mut claims = FullClaims::default();
            let mut refused = Vec::new();
            for (i, service) in self.services.iter().enumerate() {
                let checked = check_id("service ID", &service.id).and_then(|()| {
                    if let Some(other) = ids.get(service.id.as_str()) {
                        return Err(MeshStateError::DuplicateServiceId {
                            id: service.id.clone(),
                            name: service.name.clone(),
                            other: (*other).to_owned(),
                        });
                    }
                    let mut tentative = Tentative::new(&mut claims);
                    let checked = validate_service(service, &networks, &mut tentative, &known_node);
                    if checked.is_err() {
                        tentative.give_back();
                    }
                    checked
                });
                match checked {
                    Ok(()) => {
                        ids.insert(&service.id, &service.name);
                    }
                    Err(error) => refused.push((i, error)),
                }
            }
            refused
        };
        let mut out = Vec::with_capacity(refused.len());
        for (i, error) in refused.into_iter().rev() {
            let service = self.services.remove(i);
            out.push(RefusedService {
                id: service.id,
                name: service.name,
                error,
            });
        }
        out.reverse();
        out
    }

    /// The peers by underlay address, checked.
    pub(super) fn validate_peers(&self) -> Result<FastMap<Ipv4Addr, &str>, MeshStateError> {
        validate_peers(self.node.underlay_addr, &self.peers)
    }

    /// Networks by name and by VNI, checked.
    pub(super) fn validate_networks(&self) -> Result<NetworkIndex<'_>, MeshStateError> {
        let mut index = NetworkIndex::default();
        for net in &self.networks {
            if net.vni == 0 || net.vni > 0x00ff_ffff {
                return Err(MeshStateError::VniOutOfRange {
                    name: net.name.clone(),
                    vni: net.vni,
                });
            }
            if !is_host_of(net.subnet, net.gateway) {
                return Err(MeshStateError::GatewayOutsideSubnet {
                    name: net.name.clone(),
                    gateway: net.gateway,
                    subnet: net.subnet,
                });
            }
            if index.by_name.insert(&net.name, net).is_some() {
                return Err(MeshStateError::DuplicateNetwork {
                    name: net.name.clone(),
                });
            }
            if let Some(other) = index.by_vni.insert(net.vni, net) {
                return Err(MeshStateError::DuplicateVni {
                    name: net.name.clone(),
                    vni: net.vni,
                    other: other.name.clone(),
                });
            }
            if net.ingress {
                if let Some(first) = index.ingress {
                    return Err(MeshStateError::TwoIngressNetworks {
                        first: first.name.clone(),
                        second: net.name.clone(),
                    });
                }
                index.ingress = Some(net);
            }
        }
        // O(networks²), and networks are few (tens).
        for (i, a) in self.networks.iter().enumerate() {
            if let Some(b) = self.networks[..i]
                .iter()
                .find(|b| a.subnet.overlaps(b.subnet))
            {
                return Err(MeshStateError::OverlappingSubnets {
                    name: a.name.clone(),
                    subnet: a.subnet,
                    other: b.name.clone(),
                    other_subnet: b.subnet,
                });
            }
        }
        Ok(index)
    }

    fn validate_endpoints(
        &self,
        networks: &NetworkIndex<'_>,
        known_node: &dyn Fn(Ipv4Addr) -> bool,
    ) -> Result<(), MeshStateError> {
        let local: FastSet<(&str, u32)> = self
            .local_endpoints
            .iter()
            .map(|l| (l.task_id.as_str(), l.vni))
            .collect();
        let mut addrs: FastMap<Ipv4Addr, &str> = FastMap::default();
        let mut local_seen: FastSet<(&str, u32)> = FastSet::default();
        for ep in &self.endpoints {
            validate_endpoint(ep, networks, known_node)?;
            if let Some(other) = addrs.insert(ep.addr, &ep.task_id) {
                return Err(MeshStateError::DuplicateEndpoint {
                    task: ep.task_id.clone(),
                    addr: ep.addr,
                    other: other.to_owned(),
                });
            }
            if ep.node == self.node.underlay_addr {
                let key = (ep.task_id.as_str(), ep.vni);
                if !local.contains(&key) {
                    return Err(MeshStateError::NoLocalEndpoint {
                        task: ep.task_id.clone(),
                        addr: ep.addr,
                        vni: ep.vni,
                    });
                }
                local_seen.insert(key);
            }
        }
        for l in &self.local_endpoints {
            if l.host_ifindex == 0 {
                return Err(MeshStateError::LocalEndpointNoIfindex {
                    task: l.task_id.clone(),
                    ifname: l.host_ifname.clone(),
                });
            }
            if !local_seen.contains(&(l.task_id.as_str(), l.vni)) {
                return Err(MeshStateError::OrphanLocalEndpoint {
                    task: l.task_id.clone(),
                    vni: l.vni,
                    ifname: l.host_ifname.clone(),
                });
            }
        }
        Ok(())
    }
}

/// The peers by underlay address, checked (`here`: this node's).
pub(super) fn validate_peers(
    here: Ipv4Addr,
    peers: &[OverlayPeer],
) -> Result<FastMap<Ipv4Addr, &str>, MeshStateError> {
    let mut nodes: FastMap<Ipv4Addr, &str> = FastMap::default();
    for peer in peers {
        if peer.underlay_addr == here {
            return Err(MeshStateError::PeerIsSelf {
                node_id: peer.node_id.clone(),
                addr: peer.underlay_addr,
            });
        }
        if let Some(other) = nodes.insert(peer.underlay_addr, &peer.node_id) {
            return Err(MeshStateError::DuplicatePeer {
                node_id: peer.node_id.clone(),
                addr: peer.underlay_addr,
                other: other.to_owned(),
            });
        }
    }
    Ok(nodes)
}

/// The node's own settings, checked.
pub(super) fn validate_node(node: &NodeIdentity) -> Result<(), MeshStateError> {
    if node.underlay_iface.is_empty() {
        return Err(MeshStateError::NoUnderlayIface);
    }
    if node.overlay_mtu() < MIN_OVERLAY_MTU {
        return Err(MeshStateError::UnderlayMtuTooSmall {
            mtu: node.underlay_mtu,
            overlay: node.overlay_mtu(),
        });
    }
    if node.control_ports.len() > hive_common::maps::MAX_CONTROL_PORTS {
        return Err(MeshStateError::TooManyControlPorts {
            count: node.control_ports.len(),
        });
    }
    if let Some(port) = node.control_ports.iter().find(|p| p.port == 0) {
        return Err(MeshStateError::ControlPortZero {
            protocol: port.protocol,
        });
    }
    if node.vxlan_port == 0 {
        return Err(MeshStateError::VxlanPortZero);
    }
    Ok(())
}

/// What can be checked of one endpoint on its own: its ID, network,
/// address and node. (Unique addresses and local veths are checked over
/// the whole set.)
pub(super) fn validate_endpoint(
    ep: &TaskEndpoint,
    networks: &NetworkIndex<'_>,
    known_node: &dyn Fn(Ipv4Addr) -> bool,
) -> Result<(), MeshStateError> {
    check_id("task ID", &ep.task_id)?;
    let net =
        networks
            .by_vni
            .get(&ep.vni)
            .ok_or_else(|| MeshStateError::EndpointUnknownNetwork {
                task: ep.task_id.clone(),
                addr: ep.addr,
                vni: ep.vni,
            })?;
    if !is_host_of(net.subnet, ep.addr) || ep.addr == net.gateway {
        return Err(MeshStateError::EndpointOutsideSubnet {
            task: ep.task_id.clone(),
            addr: ep.addr,
            network: net.name.clone(),
            subnet: net.subnet,
        });
    }
    if !known_node(ep.node) {
        return Err(MeshStateError::EndpointUnknownNode {
            task: ep.task_id.clone(),
            addr: ep.addr,
            node: ep.node,
        });
    }
    Ok(())
}

/// Front ends a service claims for itself alone: its VIPs and published
/// ports. The full check collects every claim of the state; the
/// incremental one checks a changed service's claims against an index of
/// the applied state (`super::index`).
pub(super) trait Claims<'a> {
    /// `Err(other)` names the service that holds `vip` already.
    fn claim_vip(&mut self, vip: Ipv4Addr, service: &'a Service) -> Result<(), String>;
    /// `Err(other)` names the service that publishes the port already.
    fn claim_published(
        &mut self,
        port: (u16, Protocol),
        service: &'a Service,
    ) -> Result<(), String>;
}

/// Every claim of one state, for the full check.
#[derive(Default)]
struct FullClaims<'a> {
    vips: FastMap<Ipv4Addr, &'a str>,
    published: FastMap<(u16, Protocol), &'a str>,
}

/// Takes `key` for `owner` unless another owner holds it (who keeps it).
fn claim<'a, K: std::hash::Hash + Eq>(
    map: &mut FastMap<K, &'a str>,
    key: K,
    owner: &'a str,
) -> Result<(), String> {
    match map.entry(key) {
        std::collections::hash_map::Entry::Occupied(held) => Err((*held.get()).to_owned()),
        std::collections::hash_map::Entry::Vacant(free) => {
            free.insert(owner);
            Ok(())
        }
    }
}

impl<'a> Claims<'a> for FullClaims<'a> {
    fn claim_vip(&mut self, vip: Ipv4Addr, service: &'a Service) -> Result<(), String> {
        claim(&mut self.vips, vip, &service.name)
    }

    fn claim_published(
        &mut self,
        port: (u16, Protocol),
        service: &'a Service,
    ) -> Result<(), String> {
        claim(&mut self.published, port, &service.name)
    }
}

/// The claims of one service on top of [`FullClaims`], given back if the service is
/// refused: a refused service holds nothing, so it cannot push out the services after it.
struct Tentative<'c, 'a> {
    claims: &'c mut FullClaims<'a>,
    vips: Vec<Ipv4Addr>,
    published: Vec<(u16, Protocol)>,
}

impl<'c, 'a> Tentative<'c, 'a> {
    fn new(claims: &'c mut FullClaims<'a>) -> Self {
        Self {
            claims,
            vips: Vec::new(),
            published: Vec::new(),
        }
    }

    fn give_back(self) {
        for vip in &self.vips {
            self.claims.vips.remove(vip);
        }
        for port in &self.published {
            self.claims.published.remove(port);
        }
    }
}

impl<'a> Claims<'a> for Tentative<'_, 'a> {
    fn claim_vip(&mut self, vip: Ipv4Addr, service: &'a Service) -> Result<(), String> {
        self.claims.claim_vip(vip, service)?;
        self.vips.push(vip);
        Ok(())
    }

    fn claim_published(
        &mut self,
        port: (u16, Protocol),
        service: &'a Service,
    ) -> Result<(), String> {
        self.claims.claim_published(port, service)?;
        self.published.push(port);
        Ok(())
    }
}

#[derive(Default)]
pub(super) struct NetworkIndex<'a> {
    by_name: FastMap<&'a str, &'a Network>,
    by_vni: FastMap<u32, &'a Network>,
    ingress: Option<&'a Network>,
}

/// Everything about one service: its ID, VIPs, ports and backends, and its
/// claims on VIPs and published ports.
pub(super) fn validate_service<'a>(
    service: &'a Service,
    networks: &NetworkIndex<'_>,
    claims: &mut impl Claims<'a>,
    known_node: &dyn Fn(Ipv4Addr) -> bool,
) -> Result<(), MeshStateError> {
    let name = || service.name.clone();
    // VNIs whose backends this service balances.
    // Per-service sets are tiny (a VIP or two, a few ports): vectors beat
    // hash sets here, and this runs for every service on every apply.
    let mut served: Vec<u32> = Vec::with_capacity(service.vips.len() + 1);
    for vip in &service.vips {
        let net = networks.by_name.get(vip.network.as_str()).ok_or_else(|| {
            MeshStateError::UnknownNetwork {
                service: name(),
                network: vip.network.clone(),
            }
        })?;
        if served.contains(&net.vni) {
            return Err(MeshStateError::TwoVipsOnNetwork {
                service: name(),
                network: net.name.clone(),
            });
        }
        served.push(net.vni);
        if !is_host_of(net.subnet, vip.addr) || vip.addr == net.gateway {
            return Err(MeshStateError::VipOutsideNetwork {
                service: name(),
                vip: vip.addr,
                network: net.name.clone(),
                subnet: net.subnet,
            });
        }
        if let Err(other) = claims.claim_vip(vip.addr, service) {
            return Err(MeshStateError::VipInUse {
                service: name(),
                vip: vip.addr,
                other,
            });
        }
    }
    // Several published ports may lead to one target port (Docker allows `-p 8080:80
    // -p 8081:80`): each is a front end of its own, and the VIP's front end for the target
    // is the same entry for all of them. What cannot be is one published port twice, or a
    // target listed twice with nothing published (a copy that says nothing).
    let mut unpublished: Vec<(u16, Protocol)> = Vec::with_capacity(service.ports.len());
    let mut published: Vec<(u16, Protocol)> = Vec::with_capacity(service.ports.len());
    for port in &service.ports {
        if port.target_port == 0 || port.published_port == Some(0) {
            return Err(MeshStateError::PortZero {
                service: name(),
                protocol: port.protocol,
            });
        }
        let Some(p) = port.published_port else {
            if unpublished.contains(&(port.target_port, port.protocol)) {
                return Err(MeshStateError::DuplicateTargetPort {
                    service: name(),
                    port: port.target_port,
                    protocol: port.protocol,
                });
            }
            unpublished.push((port.target_port, port.protocol));
            continue;
        };
        if published.contains(&(p, port.protocol)) {
            return Err(MeshStateError::DuplicatePublishedPort {
                service: name(),
                port: p,
                protocol: port.protocol,
            });
        }
        published.push((p, port.protocol));
        let Some(ingress) = networks.ingress else {
            return Err(MeshStateError::NoIngressNetwork {
                service: name(),
                port: p,
                protocol: port.protocol,
            });
        };
        if !served.contains(&ingress.vni) {
            served.push(ingress.vni);
        }
        if let Err(other) = claims.claim_published((p, port.protocol), service) {
            return Err(MeshStateError::PublishedPortInUse {
                service: name(),
                port: p,
                protocol: port.protocol,
                other,
            });
        }
    }
    let mut per_network: Vec<(u32, usize)> = Vec::with_capacity(served.len());
    for be in &service.backends {
        check_id("task ID", &be.task_id)?;
        let task = || be.task_id.clone();
        let net =
            networks
                .by_vni
                .get(&be.vni)
                .ok_or_else(|| MeshStateError::BackendUnknownNetwork {
                    service: name(),
                    task: task(),
                    vni: be.vni,
                })?;
        if !served.contains(&be.vni) {
            return Err(MeshStateError::BackendOffServiceNetworks {
                service: name(),
                task: task(),
                network: net.name.clone(),
            });
        }
        if !is_host_of(net.subnet, be.addr) || be.addr == net.gateway {
            return Err(MeshStateError::BackendOutsideSubnet {
                service: name(),
                task: task(),
                addr: be.addr,
                network: net.name.clone(),
                subnet: net.subnet,
            });
        }
        if !known_node(be.node) {
            return Err(MeshStateError::BackendUnknownNode {
                service: name(),
                task: task(),
                node: be.node,
            });
        }
        match per_network.iter_mut().find(|(vni, _)| *vni == be.vni) {
            Some((_, count)) => *count += 1,
            None => per_network.push((be.vni, 1)),
        }
    }
    for (vni, count) in per_network {
        if count > MAX_BACKENDS_PER_SERVICE {
            return Err(MeshStateError::TooManyBackends {
                service: name(),
                network: networks
                    .by_vni
                    .get(&vni)
                    .map_or_else(String::new, |n| n.name.clone()),
                count,
            });
        }
    }
    // Duplicates: sort references rather than hash (no per-service table).
    let mut tasks: Vec<(&str, u32)> = service
        .backends
        .iter()
        .map(|b| (b.task_id.as_str(), b.vni))
        .collect();
    tasks.sort_unstable();
    if let Some(pair) = tasks.windows(2).find(|w| w[0] == w[1]) {
        let (task, vni) = pair[0];
        return Err(MeshStateError::DuplicateBackend {
            service: name(),
            task: task.to_owned(),
            network: networks
                .by_vni
                .get(&vni)
                .map_or_else(String::new, |n| n.name.clone()),
        });
    }
    Ok(())
}

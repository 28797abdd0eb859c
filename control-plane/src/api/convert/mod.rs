//! Store objects to API messages and back. The API keeps its own types so that the wire format
//! does not change when the store's does; these modules are the one place they meet: nodes and
//! the cluster here, services, tasks and networks in their own modules (`From<&Object>` for
//! the message, `TryFrom<message>` for the object, refusing what the store cannot hold).

mod health;
mod network;
mod secret;
mod service;
mod task;
mod wire;

use std::time::Duration;

pub use secret::{reference, reference_of, secret_without_data};
pub use service::{protocol, protocol_of, registry_auth_of, registry_credentials};
pub use task::{task_state, task_state_of};
pub use wire::{
    WireError, annotations, enumeration, ipv4_addr, ipv4_network, mac, optional,
    optional_socket_addr, or_empty, port, socket_addr, timestamp,
};

use super::pb;
use crate::pki;
use crate::store::objects::{
    Cluster, ManagerStatus, Node, NodeAvailability, NodeRole, NodeState, Reachability,
};

pub fn role(role: NodeRole) -> pb::Role {
    match role {
        NodeRole::Worker => pb::Role::Worker,
        NodeRole::Manager => pb::Role::Manager,
    }
}

pub fn node_role(role: pb::Role) -> NodeRole {
    match role {
        pb::Role::Worker => NodeRole::Worker,
        pb::Role::Manager => NodeRole::Manager,
    }
}

pub fn pki_role(role: pb::Role) -> pki::Role {
    match role {
        pb::Role::Worker => pki::Role::Worker,
        pb::Role::Manager => pki::Role::Manager,
    }
}

pub fn role_of_pki(role: pki::Role) -> pb::Role {
    match role {
        pki::Role::Worker => pb::Role::Worker,
        pki::Role::Manager => pb::Role::Manager,
    }
}

pub fn availability(a: NodeAvailability) -> pb::Availability {
    match a {
        NodeAvailability::Active => pb::Availability::Active,
        NodeAvailability::Pause => pb::Availability::Pause,
        NodeAvailability::Drain => pb::Availability::Drain,
    }
}

pub fn node_availability(a: pb::Availability) -> NodeAvailability {
    match a {
        pb::Availability::Active => NodeAvailability::Active,
        pb::Availability::Pause => NodeAvailability::Pause,
        pb::Availability::Drain => NodeAvailability::Drain,
    }
}

fn state(s: NodeState) -> pb::NodeState {
    match s {
        NodeState::Unknown => pb::NodeState::Unknown,
        NodeState::Down => pb::NodeState::Down,
        NodeState::Ready => pb::NodeState::Ready,
        NodeState::Disconnected => pb::NodeState::Disconnected,
    }
}

fn reachability(r: Reachability) -> pb::Reachability {
    match r {
        Reachability::Unknown => pb::Reachability::Unknown,
        Reachability::Unreachable => pb::Reachability::Unreachable,
        Reachability::Reachable => pb::Reachability::Reachable,
    }
}

/// `node` as the API shows it. `manager_view` fills in what only the answering manager knows
/// live: which member leads and which are reachable (the store keeps neither, as SwarmKit,
/// because they change far more often than anything is written).
pub fn node(
    node: &Node,
    manager_view: impl Fn(&ManagerStatus) -> (bool, Reachability),
) -> pb::Node {
    let description = node.description.clone().unwrap_or_default();
    pb::Node {
        id: node.id.clone(),
        version: node.meta.version,
        created_at: Some(timestamp(node.meta.created_at)),
        updated_at: Some(timestamp(node.meta.updated_at)),
        spec: Some(pb::NodeSpec {
            name: node.spec.annotations.name.clone(),
            labels: node.spec.annotations.labels.clone().into_iter().collect(),
            desired_role: role(node.spec.desired_role).into(),
            availability: availability(node.spec.availability).into(),
        }),
        role: role(node.role).into(),
        description: Some(pb::NodeDescription {
            hostname: description.hostname,
            os: description.platform.os,
            architecture: description.platform.architecture,
            nano_cpus: description.resources.nano_cpus,
            memory_bytes: description.resources.memory_bytes,
            engine_version: description.engine.engine_version,
            underlay_mac: or_empty(description.underlay_mac),
            control_ports: description
                .control_ports
                .iter()
                .map(control_port_pb)
                .collect(),
            dataplane_error: description.dataplane_error,
        }),
        status: Some(pb::NodeStatus {
            state: state(node.status.state).into(),
            message: node.status.message.clone(),
            addr: or_empty(node.status.addr),
        }),
        manager_status: node.manager_status.as_ref().map(|m| {
            let (leader, reach) = manager_view(m);
            pb::ManagerStatus {
                raft_id: m.raft_id,
                addr: m.addr.to_string(),
                leader,
                reachability: reachability(reach).into(),
            }
        }),
        // Needs the cluster's roots: the manager's `node_view` fills it in.
        tls_info: None,
    }
}

/// The settings `swarm update` can change, as the cluster has them.
pub fn settings(cluster: &Cluster) -> pb::ClusterSettings {
    let spec = &cluster.spec;
    pb::ClusterSettings {
        task_history_limit: Some(spec.orchestration.task_history_retention_limit),
        dispatcher_heartbeat_ms: Some(duration_ms(spec.dispatcher.heartbeat_period)),
        cert_expiry_secs: Some(spec.ca_config.node_cert_expiry.as_secs()),
        snapshot_interval: Some(spec.raft.snapshot_interval),
        mesh_mode: Some(cluster.mesh_mode().as_str().to_owned()),
        autolock: Some(spec.encryption_config.auto_lock_managers),
    }
}

pub fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The local description of this machine, as its agent reports it.
pub fn local_description() -> pb::NodeDescription {
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    pb::NodeDescription {
        hostname,
        os: std::env::consts::OS.to_owned(),
        architecture: std::env::consts::ARCH.to_owned(),
        nano_cpus: i64::try_from(cpus)
            .unwrap_or(1)
            .saturating_mul(1_000_000_000),
        memory_bytes: mem_total_bytes().unwrap_or(0),
        engine_version: env!("CARGO_PKG_VERSION").to_owned(),
        underlay_mac: String::new(),
        control_ports: Vec::new(),
        dataplane_error: String::new(),
    }
}

/// A node's control-plane port as its agent reports it.
pub fn control_port_pb(port: &crate::store::objects::ControlPort) -> pb::ControlPort {
    use crate::store::objects::PortOwner;
    pb::ControlPort {
        port: u32::from(port.port),
        protocol: protocol(port.protocol).into(),
        owner: match port.owner {
            PortOwner::ClusterApi => pb::PortOwner::ClusterApi,
            PortOwner::Gossip => pb::PortOwner::Gossip,
            PortOwner::DataPath => pb::PortOwner::DataPath,
            PortOwner::Metrics => pb::PortOwner::Metrics,
        } as i32,
    }
}

/// A reported control-plane port in the store's terms; `None` for one that is no port.
fn control_port_of(port: &pb::ControlPort) -> Option<crate::store::objects::ControlPort> {
    use crate::store::objects::{ControlPort, PortOwner};
    let number = u16::try_from(port.port).ok().filter(|p| *p != 0)?;
    Some(ControlPort {
        port: number,
        protocol: protocol_of(pb::Protocol::try_from(port.protocol).ok()?, number).ok()?,
        owner: match pb::PortOwner::try_from(port.owner).ok()? {
            pb::PortOwner::ClusterApi => PortOwner::ClusterApi,
            pb::PortOwner::Gossip => PortOwner::Gossip,
            pb::PortOwner::DataPath => PortOwner::DataPath,
            pb::PortOwner::Metrics => PortOwner::Metrics,
        },
    })
}

fn mem_total_bytes() -> Option<i64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// A store node description from what an agent reported: where its underlay MAC enters the
/// cluster, parsed once.
pub fn description_of(
    d: &pb::NodeDescription,
) -> Result<crate::store::objects::NodeDescription, WireError> {
    use crate::store::objects::{EngineDescription, NodeDescription, Platform, Resources};
    Ok(NodeDescription {
        hostname: d.hostname.clone(),
        platform: Platform {
            architecture: d.architecture.clone(),
            os: d.os.clone(),
        },
        resources: Resources {
            nano_cpus: d.nano_cpus,
            memory_bytes: d.memory_bytes,
        },
        engine: EngineDescription {
            engine_version: d.engine_version.clone(),
            labels: Default::default(),
        },
        underlay_mac: wire::optional("NodeDescription.underlay_mac", &d.underlay_mac, wire::mac)?,
        control_ports: d.control_ports.iter().filter_map(control_port_of).collect(),
        dataplane_error: d.dataplane_error.clone(),
    })
}

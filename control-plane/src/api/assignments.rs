//! The `Assignments` stream's messages (`proto/assignments.proto`) to store objects and back:
//! a node's tasks ([`Task`]) and the pieces of the [`MeshView`]. The leader encodes, the
//! agent decodes; both are this binary, but the wire keeps its own types so that it does not
//! change when the store's do.
//!
//! Encoding destructures every store type without `..`: a field added to the store fails to
//! compile here until it is carried (or deliberately left out), instead of being dropped on
//! the way to the agent. Decoding refuses what the store cannot hold (an unknown enum value,
//! a port above 65535) with the field it was found in.

use std::time::Duration;

use super::pb;
use crate::agent::mesh_view::{MeshNetwork, MeshNode, MeshService, MeshTask};
use crate::store::objects::{
    ContainerSpec, Endpoint, EndpointMode, EndpointSpec, Meta, NetworkAttachment,
    NetworkAttachmentConfig, NodeState, Placement, PortConfig, Protocol, PublishMode,
    ResourceRequirements, Resources, RestartCondition, RestartPolicy, RuntimeStatus, Task,
    TaskSpec, TaskState, TaskStatus, Timestamp, VirtualIp,
};

/// A message of the stream the store cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{field}: {value} is not a known value")]
    UnknownEnum { field: &'static str, value: i32 },
    #[error("{field}: {value} is not a port (0-65535)")]
    Port { field: &'static str, value: u32 },
}

fn port(field: &'static str, value: u32) -> Result<u16, DecodeError> {
    u16::try_from(value).map_err(|_| DecodeError::Port { field, value })
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn timestamp_of(t: Option<pb::Timestamp>) -> Timestamp {
    t.map(|t| Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    })
    .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Enums

pub fn task_state(s: TaskState) -> pb::TaskState {
    match s {
        TaskState::New => pb::TaskState::New,
        TaskState::Pending => pb::TaskState::Pending,
        TaskState::Assigned => pb::TaskState::Assigned,
        TaskState::Accepted => pb::TaskState::Accepted,
        TaskState::Preparing => pb::TaskState::Preparing,
        TaskState::Ready => pb::TaskState::Ready,
        TaskState::Starting => pb::TaskState::Starting,
        TaskState::Running => pb::TaskState::Running,
        TaskState::Complete => pb::TaskState::Complete,
        TaskState::Shutdown => pb::TaskState::Shutdown,
        TaskState::Failed => pb::TaskState::Failed,
        TaskState::Rejected => pb::TaskState::Rejected,
        TaskState::Remove => pb::TaskState::Remove,
        TaskState::Orphaned => pb::TaskState::Orphaned,
    }
}

pub fn task_state_of(field: &'static str, value: i32) -> Result<TaskState, DecodeError> {
    let state =
        pb::TaskState::try_from(value).map_err(|_| DecodeError::UnknownEnum { field, value })?;
    Ok(match state {
        pb::TaskState::New => TaskState::New,
        pb::TaskState::Pending => TaskState::Pending,
        pb::TaskState::Assigned => TaskState::Assigned,
        pb::TaskState::Accepted => TaskState::Accepted,
        pb::TaskState::Preparing => TaskState::Preparing,
        pb::TaskState::Ready => TaskState::Ready,
        pb::TaskState::Starting => TaskState::Starting,
        pb::TaskState::Running => TaskState::Running,
        pb::TaskState::Complete => TaskState::Complete,
        pb::TaskState::Shutdown => TaskState::Shutdown,
        pb::TaskState::Failed => TaskState::Failed,
        pb::TaskState::Rejected => TaskState::Rejected,
        pb::TaskState::Remove => TaskState::Remove,
        pb::TaskState::Orphaned => TaskState::Orphaned,
    })
}

fn node_state(s: NodeState) -> pb::NodeState {
    match s {
        NodeState::Unknown => pb::NodeState::Unknown,
        NodeState::Down => pb::NodeState::Down,
        NodeState::Ready => pb::NodeState::Ready,
        NodeState::Disconnected => pb::NodeState::Disconnected,
    }
}

fn node_state_of(value: i32) -> Result<NodeState, DecodeError> {
    let state = pb::NodeState::try_from(value).map_err(|_| DecodeError::UnknownEnum {
        field: "mesh node state",
        value,
    })?;
    Ok(match state {
        pb::NodeState::Unknown => NodeState::Unknown,
        pb::NodeState::Down => NodeState::Down,
        pb::NodeState::Ready => NodeState::Ready,
        pb::NodeState::Disconnected => NodeState::Disconnected,
    })
}

fn protocol(p: Protocol) -> pb::TransportProtocol {
    match p {
        Protocol::Tcp => pb::TransportProtocol::Tcp,
        Protocol::Udp => pb::TransportProtocol::Udp,
        Protocol::Sctp => pb::TransportProtocol::Sctp,
    }
}

fn protocol_of(value: i32) -> Result<Protocol, DecodeError> {
    let p = pb::TransportProtocol::try_from(value).map_err(|_| DecodeError::UnknownEnum {
        field: "port protocol",
        value,
    })?;
    Ok(match p {
        pb::TransportProtocol::Tcp => Protocol::Tcp,
        pb::TransportProtocol::Udp => Protocol::Udp,
        pb::TransportProtocol::Sctp => Protocol::Sctp,
    })
}

fn publish_mode(m: PublishMode) -> pb::PublishMode {
    match m {
        PublishMode::Ingress => pb::PublishMode::Ingress,
        PublishMode::Host => pb::PublishMode::Host,
    }
}

fn publish_mode_of(value: i32) -> Result<PublishMode, DecodeError> {
    let m = pb::PublishMode::try_from(value).map_err(|_| DecodeError::UnknownEnum {
        field: "publish mode",
        value,
    })?;
    Ok(match m {
        pb::PublishMode::Ingress => PublishMode::Ingress,
        pb::PublishMode::Host => PublishMode::Host,
    })
}

fn endpoint_mode(m: EndpointMode) -> pb::EndpointMode {
    match m {
        EndpointMode::Vip => pb::EndpointMode::Vip,
        EndpointMode::Dnsrr => pb::EndpointMode::Dnsrr,
    }
}

fn endpoint_mode_of(value: i32) -> Result<EndpointMode, DecodeError> {
    let m = pb::EndpointMode::try_from(value).map_err(|_| DecodeError::UnknownEnum {
        field: "endpoint mode",
        value,
    })?;
    Ok(match m {
        pb::EndpointMode::Vip => EndpointMode::Vip,
        pb::EndpointMode::Dnsrr => EndpointMode::Dnsrr,
    })
}

fn restart_condition(c: RestartCondition) -> pb::RestartCondition {
    match c {
        RestartCondition::Any => pb::RestartCondition::Any,
        RestartCondition::None => pb::RestartCondition::None,
        RestartCondition::OnFailure => pb::RestartCondition::OnFailure,
    }
}

fn restart_condition_of(value: i32) -> Result<RestartCondition, DecodeError> {
    let c = pb::RestartCondition::try_from(value).map_err(|_| DecodeError::UnknownEnum {
        field: "restart condition",
        value,
    })?;
    Ok(match c {
        pb::RestartCondition::Any => RestartCondition::Any,
        pb::RestartCondition::None => RestartCondition::None,
        pb::RestartCondition::OnFailure => RestartCondition::OnFailure,
    })
}

// ---------------------------------------------------------------------------------------------
// Endpoints and attachments (tasks and the mesh share them)

fn port_config(p: &PortConfig) -> pb::PortConfig {
    let PortConfig {
        name,
        protocol: proto,
        target_port,
        published_port,
        publish_mode: mode,
    } = p;
    pb::PortConfig {
        name: name.clone(),
        protocol: protocol(*proto).into(),
        target_port: u32::from(*target_port),
        published_port: u32::from(*published_port),
        publish_mode: publish_mode(*mode).into(),
    }
}

fn port_config_of(p: pb::PortConfig) -> Result<PortConfig, DecodeError> {
    Ok(PortConfig {
        name: p.name,
        protocol: protocol_of(p.protocol)?,
        target_port: port("target port", p.target_port)?,
        published_port: port("published port", p.published_port)?,
        publish_mode: publish_mode_of(p.publish_mode)?,
    })
}

fn port_configs_of(ports: Vec<pb::PortConfig>) -> Result<Vec<PortConfig>, DecodeError> {
    ports.into_iter().map(port_config_of).collect()
}

pub fn endpoint(e: &Endpoint) -> pb::Endpoint {
    let Endpoint {
        spec: EndpointSpec {
            mode,
            ports: spec_ports,
        },
        ports,
        virtual_ips,
    } = e;
    pb::Endpoint {
        spec: Some(pb::EndpointSpec {
            mode: endpoint_mode(*mode).into(),
            ports: spec_ports.iter().map(port_config).collect(),
        }),
        ports: ports.iter().map(port_config).collect(),
        virtual_ips: virtual_ips
            .iter()
            .map(|VirtualIp { network_id, addr }| pb::VirtualIp {
                network_id: network_id.clone(),
                addr: addr.clone(),
            })
            .collect(),
    }
}

pub fn endpoint_of(e: pb::Endpoint) -> Result<Endpoint, DecodeError> {
    let spec = e.spec.unwrap_or_default();
    Ok(Endpoint {
        spec: EndpointSpec {
            mode: endpoint_mode_of(spec.mode)?,
            ports: port_configs_of(spec.ports)?,
        },
        ports: port_configs_of(e.ports)?,
        virtual_ips: e
            .virtual_ips
            .into_iter()
            .map(|v| VirtualIp {
                network_id: v.network_id,
                addr: v.addr,
            })
            .collect(),
    })
}

fn attachment(a: &NetworkAttachment) -> pb::NetworkAttachment {
    let NetworkAttachment {
        network_id,
        addresses,
        aliases,
    } = a;
    pb::NetworkAttachment {
        network_id: network_id.clone(),
        addresses: addresses.clone(),
        aliases: aliases.clone(),
    }
}

fn attachment_of(a: pb::NetworkAttachment) -> NetworkAttachment {
    NetworkAttachment {
        network_id: a.network_id,
        addresses: a.addresses,
        aliases: a.aliases,
    }
}

// ---------------------------------------------------------------------------------------------
// Tasks

pub fn task(t: &Task) -> pb::AssignedTask {
    let Task {
        id,
        meta: Meta {
            version,
            created_at,
            updated_at,
        },
        service_id,
        slot,
        node_id,
        spec,
        spec_version,
        desired_state,
        status,
        networks,
        endpoint: task_endpoint,
    } = t;
    pb::AssignedTask {
        id: id.clone(),
        meta: Some(pb::ObjectMeta {
            version: *version,
            created_at: Some(super::convert::timestamp(*created_at)),
            updated_at: Some(super::convert::timestamp(*updated_at)),
        }),
        service_id: service_id.clone(),
        slot: *slot,
        node_id: node_id.clone(),
        spec: Some(task_spec(spec)),
        spec_version: *spec_version,
        desired_state: task_state(*desired_state).into(),
        status: Some(task_status(status)),
        networks: networks.iter().map(attachment).collect(),
        endpoint: task_endpoint.as_ref().map(endpoint),
    }
}

pub fn task_of(t: pb::AssignedTask) -> Result<Task, DecodeError> {
    let meta = t.meta.unwrap_or_default();
    Ok(Task {
        id: t.id,
        meta: Meta {
            version: meta.version,
            created_at: timestamp_of(meta.created_at),
            updated_at: timestamp_of(meta.updated_at),
        },
        service_id: t.service_id,
        slot: t.slot,
        node_id: t.node_id,
        spec: task_spec_of(t.spec.unwrap_or_default())?,
        spec_version: t.spec_version,
        desired_state: task_state_of("desired state", t.desired_state)?,
        status: task_status_of(t.status.unwrap_or_default())?,
        networks: t.networks.into_iter().map(attachment_of).collect(),
        endpoint: t.endpoint.map(endpoint_of).transpose()?,
    })
}

fn resources(r: &Resources) -> pb::Resources {
    let Resources {
        nano_cpus,
        memory_bytes,
    } = r;
    pb::Resources {
        nano_cpus: *nano_cpus,
        memory_bytes: *memory_bytes,
    }
}

fn resources_of(r: Option<pb::Resources>) -> Resources {
    let r = r.unwrap_or_default();
    Resources {
        nano_cpus: r.nano_cpus,
        memory_bytes: r.memory_bytes,
    }
}

fn task_spec(s: &TaskSpec) -> pb::TaskSpec {
    let TaskSpec {
        container:
            ContainerSpec {
                image,
                command,
                args,
                env,
                stop_grace_period,
                hostname,
                workdir,
            },
        resources: ResourceRequirements {
            limits,
            reservations,
        },
        restart_policy:
            RestartPolicy {
                condition,
                delay,
                max_attempts,
                window,
            },
        placement: Placement { constraints },
        networks,
        force_update,
    } = s;
    pb::TaskSpec {
        container: Some(pb::ContainerSpec {
            image: image.clone(),
            command: command.clone(),
            args: args.clone(),
            env: env.clone(),
            stop_grace_period_ns: nanos(*stop_grace_period),
            hostname: hostname.clone(),
            workdir: workdir.clone(),
        }),
        resources: Some(pb::ResourceRequirements {
            limits: Some(resources(limits)),
            reservations: Some(resources(reservations)),
        }),
        restart_policy: Some(pb::RestartPolicy {
            condition: restart_condition(*condition).into(),
            delay_ns: nanos(*delay),
            max_attempts: *max_attempts,
            window_ns: nanos(*window),
        }),
        placement: Some(pb::Placement {
            constraints: constraints.clone(),
        }),
        networks: networks
            .iter()
            .map(
                |NetworkAttachmentConfig { target, aliases }| pb::NetworkAttachmentConfig {
                    target: target.clone(),
                    aliases: aliases.clone(),
                },
            )
            .collect(),
        force_update: *force_update,
    }
}

fn task_spec_of(s: pb::TaskSpec) -> Result<TaskSpec, DecodeError> {
    let container = s.container.unwrap_or_default();
    let resources = s.resources.unwrap_or_default();
    let restart = s.restart_policy.unwrap_or_default();
    Ok(TaskSpec {
        container: ContainerSpec {
            image: container.image,
            command: container.command,
            args: container.args,
            env: container.env,
            stop_grace_period: Duration::from_nanos(container.stop_grace_period_ns),
            hostname: container.hostname,
            workdir: container.workdir,
        },
        resources: ResourceRequirements {
            limits: resources_of(resources.limits),
            reservations: resources_of(resources.reservations),
        },
        restart_policy: RestartPolicy {
            condition: restart_condition_of(restart.condition)?,
            delay: Duration::from_nanos(restart.delay_ns),
            max_attempts: restart.max_attempts,
            window: Duration::from_nanos(restart.window_ns),
        },
        placement: Placement {
            constraints: s.placement.unwrap_or_default().constraints,
        },
        networks: s
            .networks
            .into_iter()
            .map(|n| NetworkAttachmentConfig {
                target: n.target,
                aliases: n.aliases,
            })
            .collect(),
        force_update: s.force_update,
    })
}

pub fn task_status(s: &TaskStatus) -> pb::TaskStatus {
    let TaskStatus {
        timestamp,
        state,
        message,
        err,
        runtime,
        port_status,
    } = s;
    pb::TaskStatus {
        timestamp: Some(super::convert::timestamp(*timestamp)),
        state: task_state(*state).into(),
        message: message.clone(),
        err: err.clone(),
        runtime: runtime.as_ref().map(
            |RuntimeStatus {
                 runtime_id,
                 pid,
                 exit_code,
             }| pb::RuntimeStatus {
                runtime_id: runtime_id.clone(),
                pid: *pid,
                exit_code: *exit_code,
            },
        ),
        port_status: port_status.iter().map(port_config).collect(),
    }
}

pub fn task_status_of(s: pb::TaskStatus) -> Result<TaskStatus, DecodeError> {
    Ok(TaskStatus {
        timestamp: timestamp_of(s.timestamp),
        state: task_state_of("task state", s.state)?,
        message: s.message,
        err: s.err,
        runtime: s.runtime.map(|r| RuntimeStatus {
            runtime_id: r.runtime_id,
            pid: r.pid,
            exit_code: r.exit_code,
        }),
        port_status: port_configs_of(s.port_status)?,
    })
}

// ---------------------------------------------------------------------------------------------
// The mesh view's pieces

pub fn mesh_network(n: &MeshNetwork) -> pb::MeshNetwork {
    let MeshNetwork {
        id,
        name,
        vni,
        subnet,
        gateway,
        ingress,
    } = n;
    pb::MeshNetwork {
        id: id.clone(),
        name: name.clone(),
        vni: *vni,
        subnet: subnet.clone(),
        gateway: gateway.clone(),
        ingress: *ingress,
    }
}

pub fn mesh_network_of(n: pb::MeshNetwork) -> MeshNetwork {
    MeshNetwork {
        id: n.id,
        name: n.name,
        vni: n.vni,
        subnet: n.subnet,
        gateway: n.gateway,
        ingress: n.ingress,
    }
}

pub fn mesh_service(s: &MeshService) -> pb::MeshService {
    let MeshService {
        id,
        name,
        endpoint: e,
    } = s;
    pb::MeshService {
        id: id.clone(),
        name: name.clone(),
        endpoint: Some(endpoint(e)),
    }
}

pub fn mesh_service_of(s: pb::MeshService) -> Result<MeshService, DecodeError> {
    Ok(MeshService {
        id: s.id,
        name: s.name,
        endpoint: endpoint_of(s.endpoint.unwrap_or_default())?,
    })
}

pub fn mesh_task(t: &MeshTask) -> pb::MeshTask {
    let MeshTask {
        id,
        service_id,
        node_id,
        networks,
        draining,
    } = t;
    pb::MeshTask {
        id: id.clone(),
        service_id: service_id.clone(),
        node_id: node_id.clone(),
        networks: networks.iter().map(attachment).collect(),
        draining: *draining,
    }
}

pub fn mesh_task_of(t: pb::MeshTask) -> MeshTask {
    MeshTask {
        id: t.id,
        service_id: t.service_id,
        node_id: t.node_id,
        networks: t.networks.into_iter().map(attachment_of).collect(),
        draining: t.draining,
    }
}

pub fn mesh_node(n: &MeshNode) -> pb::MeshNode {
    let MeshNode {
        id,
        addr,
        mac,
        state,
    } = n;
    pb::MeshNode {
        id: id.clone(),
        addr: addr.clone(),
        mac: mac.clone(),
        state: node_state(*state).into(),
    }
}

pub fn mesh_node_of(n: pb::MeshNode) -> Result<MeshNode, DecodeError> {
    Ok(MeshNode {
        id: n.id,
        addr: n.addr,
        mac: n.mac,
        state: node_state_of(n.state)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_survives_the_wire_field_for_field() {
        let mut task = Task {
            id: "t1".into(),
            service_id: "s1".into(),
            slot: 3,
            node_id: Some("n1".into()),
            spec_version: 9,
            desired_state: TaskState::Running,
            networks: vec![NetworkAttachment {
                network_id: "net".into(),
                addresses: vec!["10.0.0.7/24".into()],
                aliases: vec!["web".into()],
            }],
            endpoint: Some(Endpoint {
                spec: EndpointSpec {
                    mode: EndpointMode::Dnsrr,
                    ports: vec![PortConfig {
                        name: "http".into(),
                        protocol: Protocol::Udp,
                        target_port: 80,
                        published_port: 8080,
                        publish_mode: PublishMode::Host,
                    }],
                },
                ports: Vec::new(),
                virtual_ips: vec![VirtualIp {
                    network_id: "net".into(),
                    addr: "10.0.0.2/24".into(),
                }],
            }),
            ..Task::default()
        };
        task.meta.version = 42;
        task.meta.created_at = Timestamp {
            seconds: 5,
            nanos: 6,
        };
        task.spec.container.image = "hive/whoami".into();
        task.spec.container.env = vec!["A=1".into()];
        task.spec.container.stop_grace_period = Duration::from_millis(1500);
        task.spec.resources.limits.memory_bytes = 1 << 20;
        task.spec.restart_policy.condition = RestartCondition::OnFailure;
        task.spec.restart_policy.window = Duration::from_secs(60);
        task.spec.placement.constraints = vec!["node.role==manager".into()];
        task.status = TaskStatus {
            state: TaskState::Failed,
            message: "started".into(),
            err: "exit 3".into(),
            runtime: Some(RuntimeStatus {
                runtime_id: "r".into(),
                pid: 7,
                exit_code: 3,
            }),
            ..TaskStatus::default()
        };
        assert_eq!(task_of(super::task(&task)), Ok(task));
    }

    #[test]
    fn values_the_store_cannot_hold_are_refused_with_their_field() {
        let mut status = task_status(&TaskStatus::default());
        status.state = 5;
        assert_eq!(
            task_status_of(status).unwrap_err().to_string(),
            "task state: 5 is not a known value"
        );
        let mut port = port_config(&PortConfig::default());
        port.target_port = 70_000;
        assert_eq!(
            port_config_of(port).unwrap_err().to_string(),
            "target port: 70000 is not a port (0-65535)"
        );
    }
}

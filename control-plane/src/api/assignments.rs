//! The `Assignments` stream's own messages to the agent's mesh view and back: the pieces of
//! the [`MeshView`](crate::api::mesh_view::MeshView) (networks, services, running tasks,
//! nodes). The node's tasks travel as the Control API's `Task`, and everything the mesh
//! shares with it (endpoints, attachments, task statuses) as its messages too; those
//! conversions are `api::convert`'s, the one place the store and the wire meet.
//!
//! Encoding destructures every mesh type without `..`: a field added to one fails to compile
//! here until it is carried (or deliberately left out), instead of being dropped on the way
//! to the agent. Decoding refuses what the store cannot hold (an unknown enum value, a port
//! above 65535) with the field it was found in.

use super::convert::{WireError, enumeration};
use super::pb;
use crate::api::mesh_view::{MeshNetwork, MeshNode, MeshService, MeshTask};
use crate::store::objects::{Endpoint, NetworkAttachment, NodeState};

fn node_state(s: NodeState) -> pb::NodeState {
    match s {
        NodeState::Unknown => pb::NodeState::Unknown,
        NodeState::Down => pb::NodeState::Down,
        NodeState::Ready => pb::NodeState::Ready,
        NodeState::Disconnected => pb::NodeState::Disconnected,
    }
}

fn node_state_of(value: i32) -> Result<NodeState, WireError> {
    Ok(match enumeration("MeshNode.state", value)? {
        pb::NodeState::Unknown => NodeState::Unknown,
        pb::NodeState::Down => NodeState::Down,
        pb::NodeState::Ready => NodeState::Ready,
        pb::NodeState::Disconnected => NodeState::Disconnected,
    })
}

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
    let MeshService { id, name, endpoint } = s;
    pb::MeshService {
        id: id.clone(),
        name: name.clone(),
        endpoint: Some(endpoint.into()),
    }
}

pub fn mesh_service_of(s: pb::MeshService) -> Result<MeshService, WireError> {
    Ok(MeshService {
        id: s.id,
        name: s.name,
        endpoint: Endpoint::try_from(
            s.endpoint
                .ok_or(WireError::Missing("MeshService.endpoint"))?,
        )?,
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
        networks: networks.iter().map(pb::NetworkAttachment::from).collect(),
        draining: *draining,
    }
}

pub fn mesh_task_of(t: pb::MeshTask) -> MeshTask {
    MeshTask {
        id: t.id,
        service_id: t.service_id,
        node_id: t.node_id,
        networks: t
            .networks
            .into_iter()
            .map(NetworkAttachment::from)
            .collect(),
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

pub fn mesh_node_of(n: pb::MeshNode) -> Result<MeshNode, WireError> {
    Ok(MeshNode {
        id: n.id,
        addr: n.addr,
        mac: n.mac,
        state: node_state_of(n.state)?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::objects::{
        EndpointMode, EndpointSpec, PortConfig, Protocol, PublishMode, Task, Ulimit, VirtualIp,
    };

    #[test]
    fn the_mesh_survives_the_wire_field_for_field() {
        let network = MeshNetwork {
            id: "net".into(),
            name: "front".into(),
            vni: 4097,
            subnet: "10.0.0.0/24".into(),
            gateway: "10.0.0.1".into(),
            ingress: true,
        };
        assert_eq!(mesh_network_of(mesh_network(&network)), network);
        let service = MeshService {
            id: "s1".into(),
            name: "web".into(),
            endpoint: Endpoint {
                spec: EndpointSpec {
                    mode: EndpointMode::Vip,
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
            },
        };
        assert_eq!(mesh_service_of(mesh_service(&service)), Ok(service));
        let task = MeshTask {
            id: "t1".into(),
            service_id: "s1".into(),
            node_id: "n1".into(),
            networks: vec![NetworkAttachment {
                network_id: "net".into(),
                addresses: vec!["10.0.0.7/24".into()],
                aliases: vec!["web".into()],
            }],
            draining: true,
        };
        assert_eq!(mesh_task_of(mesh_task(&task)), task);
        let node = MeshNode {
            id: "n1".into(),
            addr: "192.0.2.1".into(),
            mac: "02:00:00:00:00:01".into(),
            state: NodeState::Disconnected,
        };
        assert_eq!(mesh_node_of(mesh_node(&node)), Ok(node));
    }

    /// The stream carries the Control API's `Task`: what a container needs beyond the image
    /// and command reaches the agent.
    #[test]
    fn an_assigned_task_carries_its_whole_container_spec() {
        let mut task = Task {
            id: "t1".into(),
            ..Task::default()
        };
        let container = &mut task.spec.container;
        container.image = "hive/whoami".into();
        container.user = "1000:1000".into();
        container.init = Some(true);
        container.read_only = true;
        container.cap_add = vec!["NET_ADMIN".into()];
        container.cap_drop = vec!["MKNOD".into()];
        container.ulimits = vec![Ulimit {
            name: "nofile".into(),
            soft: 1024,
            hard: 2048,
        }];
        container.sysctls = BTreeMap::from([("net.core.somaxconn".into(), "1024".into())]);
        container.stop_signal = "SIGQUIT".into();
        // The node that runs the task pulls with the service's credentials.
        container.registry_auth = Some(crate::image_store::RegistryAuth {
            username: "puller".into(),
            password: "s3cret".into(),
        });
        let message = pb::AssignmentsMessage {
            update_tasks: vec![pb::Task::from(&task)],
            ..pb::AssignmentsMessage::default()
        };
        let decoded = Task::try_from(message.update_tasks[0].clone()).unwrap();
        assert_eq!(decoded, task);
    }

    #[test]
    fn values_the_store_cannot_hold_are_refused_with_their_field() {
        let mut node = mesh_node(&MeshNode {
            id: "n1".into(),
            addr: String::new(),
            mac: String::new(),
            state: NodeState::Ready,
        });
        node.state = 17;
        assert_eq!(
            mesh_node_of(node).unwrap_err().to_string(),
            "MeshNode.state: 17 is not one of hive's values"
        );
        let service = pb::MeshService {
            id: "s1".into(),
            name: "web".into(),
            endpoint: None,
        };
        assert_eq!(
            mesh_service_of(service).unwrap_err(),
            WireError::Missing("MeshService.endpoint")
        );
    }
}

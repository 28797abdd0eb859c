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

use hive_dataplane::mesh::mode::MeshMode;

use super::convert::{
    WireError, enumeration, ipv4_addr, ipv4_network, mac, optional, or_empty, port,
};
use super::pb;
use crate::api::mesh_view::{
    MeshAttachment, MeshChanges, MeshNetwork, MeshNode, MeshService, MeshSettings, MeshTask,
};
use crate::store::objects::{Endpoint, NodeState};

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
        subnet: subnet.to_string(),
        gateway: or_empty(*gateway),
        ingress: *ingress,
    }
}

pub fn mesh_network_of(n: pb::MeshNetwork) -> Result<MeshNetwork, WireError> {
    Ok(MeshNetwork {
        id: n.id,
        name: n.name,
        vni: n.vni,
        subnet: ipv4_network("MeshNetwork.subnet", &n.subnet)?,
        gateway: optional("MeshNetwork.gateway", &n.gateway, ipv4_addr)?,
        ingress: n.ingress,
    })
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
        networks: networks.iter().map(mesh_attachment).collect(),
        draining: *draining,
    }
}

pub fn mesh_task_of(t: pb::MeshTask) -> Result<MeshTask, WireError> {
    Ok(MeshTask {
        id: t.id,
        service_id: t.service_id,
        node_id: t.node_id,
        networks: t
            .networks
            .into_iter()
            .map(mesh_attachment_of)
            .collect::<Result<_, _>>()?,
        draining: t.draining,
    })
}

fn mesh_attachment(a: &MeshAttachment) -> pb::NetworkAttachment {
    let MeshAttachment {
        network_id,
        addresses,
        aliases,
    } = a;
    pb::NetworkAttachment {
        network_id: network_id.clone(),
        addresses: addresses.iter().map(ToString::to_string).collect(),
        aliases: aliases.clone(),
    }
}

fn mesh_attachment_of(a: pb::NetworkAttachment) -> Result<MeshAttachment, WireError> {
    Ok(MeshAttachment {
        network_id: a.network_id,
        addresses: a
            .addresses
            .iter()
            .map(|addr| ipv4_network("MeshTask.networks.addresses", addr))
            .collect::<Result<_, _>>()?,
        aliases: a.aliases,
    })
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
        addr: or_empty(*addr),
        mac: or_empty(*mac),
        state: node_state(*state).into(),
    }
}

pub fn mesh_node_of(n: pb::MeshNode) -> Result<MeshNode, WireError> {
    Ok(MeshNode {
        id: n.id,
        addr: optional("MeshNode.addr", &n.addr, ipv4_addr)?,
        mac: optional("MeshNode.mac", &n.mac, mac)?,
        state: node_state_of(n.state)?,
    })
}

/// The mesh part of one `Assignments` message, decoded whole: a malformed value fails it
/// with its field, before anything is applied.
pub fn mesh_changes_of(mesh: pb::MeshChanges) -> Result<MeshChanges, WireError> {
    Ok(MeshChanges {
        settings: mesh
            .settings
            .map(|s| {
                Ok::<_, WireError>(MeshSettings {
                    hash_seed: s.hash_seed,
                    vxlan_port: port("MeshSettings.vxlan_port", s.vxlan_port)?,
                    // An older manager sends none: today's path.
                    mesh_mode: if s.mesh_mode.is_empty() {
                        Default::default()
                    } else {
                        s.mesh_mode.parse::<MeshMode>()?
                    },
                })
            })
            .transpose()?,
        update_networks: mesh
            .update_networks
            .into_iter()
            .map(mesh_network_of)
            .collect::<Result<_, _>>()?,
        remove_networks: mesh.remove_networks,
        update_services: mesh
            .update_services
            .into_iter()
            .map(mesh_service_of)
            .collect::<Result<_, _>>()?,
        remove_services: mesh.remove_services,
        update_tasks: mesh
            .update_tasks
            .into_iter()
            .map(mesh_task_of)
            .collect::<Result<_, _>>()?,
        remove_tasks: mesh.remove_tasks,
        update_nodes: mesh
            .update_nodes
            .into_iter()
            .map(mesh_node_of)
            .collect::<Result<_, _>>()?,
        remove_nodes: mesh.remove_nodes,
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
            subnet: "10.0.0.0/24".parse().unwrap(),
            gateway: Some("10.0.0.1".parse().unwrap()),
            ingress: true,
        };
        assert_eq!(mesh_network_of(mesh_network(&network)), Ok(network));
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
                    addr: "10.0.0.2/24".parse().unwrap(),
                }],
            },
        };
        assert_eq!(mesh_service_of(mesh_service(&service)), Ok(service));
        let task = MeshTask {
            id: "t1".into(),
            service_id: "s1".into(),
            node_id: "n1".into(),
            networks: vec![MeshAttachment {
                network_id: "net".into(),
                addresses: vec!["10.0.0.7/24".parse().unwrap()],
                aliases: vec!["web".into()],
            }],
            draining: true,
        };
        assert_eq!(mesh_task_of(mesh_task(&task)), Ok(task));
        let node = MeshNode {
            id: "n1".into(),
            addr: Some("192.0.2.1".parse().unwrap()),
            mac: Some("02:00:00:00:00:01".parse().unwrap()),
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
            addr: None,
            mac: None,
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

    /// An address, subnet or MAC that does not parse is refused where it comes off the
    /// wire, naming its field and value: never a node left out further down.
    #[test]
    fn malformed_addresses_subnets_and_macs_are_refused_with_their_field() {
        let network = || {
            mesh_network(&MeshNetwork {
                id: "net".into(),
                subnet: "10.0.0.0/24".parse().unwrap(),
                ..MeshNetwork::default()
            })
        };
        let mut bad = network();
        bad.subnet = "10.0.0.0/33".into();
        assert_eq!(
            mesh_network_of(bad).unwrap_err().to_string(),
            "MeshNetwork.subnet: \"10.0.0.0/33\" is not an IPv4 address with a prefix (10.0.0.0/24)"
        );
        let mut bad = network();
        bad.gateway = "10.0.0.256".into();
        assert_eq!(
            mesh_network_of(bad).unwrap_err(),
            WireError::Address {
                field: "MeshNetwork.gateway",
                value: "10.0.0.256".into(),
                expected: "an IPv4 address",
            }
        );
        // Empty is "none given": the subnet's first host.
        assert_eq!(mesh_network_of(network()).unwrap().gateway, None);

        let node = || {
            mesh_node(&MeshNode {
                id: "n1".into(),
                ..MeshNode::default()
            })
        };
        let mut bad = node();
        bad.addr = "fe80::1".into();
        assert_eq!(
            mesh_node_of(bad).unwrap_err().to_string(),
            "MeshNode.addr: \"fe80::1\" is not an IPv4 address"
        );
        let mut bad = node();
        bad.mac = "02:00:00:00:00".into();
        assert_eq!(
            mesh_node_of(bad).unwrap_err().to_string(),
            "MeshNode.mac: \"02:00:00:00:00\" is not a MAC address (aa:bb:cc:dd:ee:ff)"
        );
        assert_eq!(
            mesh_node_of(node()).unwrap(),
            MeshNode {
                id: "n1".into(),
                ..MeshNode::default()
            }
        );

        let task = pb::MeshTask {
            id: "t1".into(),
            networks: vec![pb::NetworkAttachment {
                network_id: "net".into(),
                addresses: vec!["10.0.0.7/24".into(), "10.0.0.x/24".into()],
                aliases: Vec::new(),
            }],
            ..pb::MeshTask::default()
        };
        assert_eq!(
            mesh_task_of(task).unwrap_err().to_string(),
            "MeshTask.networks.addresses: \"10.0.0.x/24\" is not an IPv4 address with a prefix (10.0.0.0/24)"
        );

        // One malformed value fails the whole message: nothing of it is applied.
        let message = pb::MeshChanges {
            update_nodes: vec![node(), {
                let mut bad = node();
                bad.addr = "nonsense".into();
                bad
            }],
            ..pb::MeshChanges::default()
        };
        assert!(matches!(
            mesh_changes_of(message),
            Err(WireError::Address {
                field: "MeshNode.addr",
                ..
            })
        ));
    }

    /// On the leader, the view every node gets carries the store's typed values as they are.
    #[test]
    fn the_view_carries_the_stores_values_typed() {
        use crate::store::objects::{
            IpamConfig, Network, NetworkAttachment, Node, NodeDescription,
        };
        let mut network = Network {
            id: "net".into(),
            vni: Some(4097),
            ..Network::default()
        };
        network.ipam = vec![IpamConfig::parse("10.0.1.0/24", "", "10.0.1.1").unwrap()];
        let view = MeshNetwork::of(&network).unwrap();
        assert_eq!(view.subnet, "10.0.1.0/24".parse().unwrap());
        assert_eq!(view.gateway, Some(std::net::Ipv4Addr::new(10, 0, 1, 1)));
        network.ipam.clear();
        assert_eq!(MeshNetwork::of(&network), None, "not allocated yet");

        let mut node = Node {
            id: "n1".into(),
            description: Some(NodeDescription {
                underlay_mac: Some("02:00:00:00:00:01".parse().unwrap()),
                ..NodeDescription::default()
            }),
            ..Node::default()
        };
        node.status.addr = Some("192.0.2.1".parse().unwrap());
        let view = MeshNode::of(&node);
        assert_eq!(view.addr, Some(std::net::Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(
            view.mac.map(|m| m.to_string()).as_deref(),
            Some("02:00:00:00:00:01")
        );
        node.status.addr = Some("fd00::1".parse().unwrap());
        assert_eq!(MeshNode::of(&node).addr, None, "the underlay is IPv4");

        let attachment = MeshAttachment::of(&NetworkAttachment {
            network_id: "net".into(),
            addresses: vec!["10.0.1.7/24".parse().unwrap()],
            aliases: vec!["web".into()],
        });
        assert_eq!(
            attachment.addresses[0].ip(),
            std::net::Ipv4Addr::new(10, 0, 1, 7)
        );
        assert_eq!(attachment.addresses[0].prefix(), 24);
    }
}

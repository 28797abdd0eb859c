//! The node's mesh on the in-memory data plane: what the agent programs from the leader's
//! view, gossip and its own veths, and what one change costs in map operations.

use std::net::Ipv4Addr;
use std::time::Duration;

use hive_dataplane::mesh::fake::Op;

use super::*;
use crate::agent::assignment::{Assignment, AssignmentChange, receive};
use crate::agent::dataplane::memory::{MemoryDataplane, MemoryHandle};
use crate::api::mesh_view::{
    MeshAttachment, MeshChanges, MeshNetwork, MeshNode, MeshService, MeshTask, view_entries_copied,
};
use crate::store::objects::{Endpoint, NodeState, PortConfig, Protocol, VirtualIp};

const PATIENCE: Duration = Duration::from_secs(10);

fn me() -> LocalNode {
    LocalNode {
        node_id: "n1".into(),
        underlay_addr: Ipv4Addr::new(192, 168, 77, 1),
        underlay_iface: "eth0".into(),
        underlay_mtu: 1500,
        control_ports: Vec::new(),
    }
}

fn node(id: &str, i: u8) -> MeshNode {
    MeshNode {
        id: id.into(),
        addr: Some(format!("192.168.77.{i}").parse().unwrap()),
        mac: Some(format!("02:00:00:00:00:{i:02x}").parse().unwrap()),
        state: NodeState::Ready,
    }
}

/// Service `s{i}`: VIP 10.0.1.i on the ingress network, port 30000+i published to 80.
fn service(i: u8) -> MeshService {
    MeshService {
        id: format!("s{i:03}"),
        name: format!("web{i}"),
        endpoint: Endpoint {
            ports: vec![PortConfig {
                protocol: Protocol::Tcp,
                target_port: 80,
                published_port: 30000 + u16::from(i),
                ..PortConfig::default()
            }],
            virtual_ips: vec![VirtualIp {
                network_id: "ing".into(),
                addr: format!("10.0.1.{i}/16").parse().unwrap(),
            }],
            ..Endpoint::default()
        },
    }
}

/// Task `t{i}-{n}` of service `s{i}` on node n2, at 10.0.{2+n}.i.
fn task(i: u8, n: u8) -> MeshTask {
    MeshTask {
        id: format!("t{i:03}-{n}"),
        service_id: format!("s{i:03}"),
        node_id: "n2".into(),
        networks: vec![MeshAttachment {
            network_id: "ing".into(),
            addresses: vec![format!("10.0.{}.{i}/16", 2 + n).parse().unwrap()],
            aliases: Vec::new(),
        }],
        draining: false,
    }
}

/// `services` services with one task each on n2, as a complete view.
fn complete(services: u8) -> AssignmentChange {
    AssignmentChange {
        files: Default::default(),
        complete: true,
        version: 1,
        update_tasks: Vec::new(),
        remove_tasks: Vec::new(),
        mesh: MeshChanges {
            settings: Some(crate::api::mesh_view::MeshSettings {
                hash_seed: 42,
                vxlan_port: 4789,
                mesh_mode: Default::default(),
            }),
            update_networks: vec![MeshNetwork {
                id: "ing".into(),
                name: "ingress".into(),
                vni: 4096,
                subnet: "10.0.0.0/16".parse().unwrap(),
                gateway: Some("10.0.0.1".parse().unwrap()),
                ingress: true,
            }],
            update_services: (1..=services).map(service).collect(),
            update_tasks: (1..=services).map(|i| task(i, 0)).collect(),
            update_nodes: vec![node("n1", 1), node("n2", 2)],
            ..MeshChanges::default()
        },
    }
}

struct Agent {
    mesh: Arc<NodeMesh>,
    dataplane: MemoryHandle,
    /// What the session holds, as it hands it to the worker.
    held: watch::Sender<Option<Arc<Assignment>>>,
    _stop: watch::Sender<bool>,
}

impl Agent {
    fn start() -> Self {
        let (dataplane, handle) = MemoryDataplane::new();
        let (stop, stopped) = watch::channel(false);
        let mesh = NodeMesh::start(
            me(),
            Box::new(dataplane),
            Path::new("/nonexistent/deltas-test"),
            Vec::new(),
            stopped,
        )
        .expect("the mesh starts");
        Self {
            mesh,
            dataplane: handle,
            held: watch::Sender::new(None),
            _stop: stop,
        }
    }

    /// Takes in one message of the stream as the worker does, and waits until the data plane
    /// applied what follows from it.
    async fn receive(&mut self, change: AssignmentChange) {
        receive(&self.held, change);
        let held = self.held.borrow().clone().expect("an assignment");
        let before = self.dataplane.held().applies;
        self.mesh.set_view(&held, BTreeSet::new());
        self.applied_after(before).await;
    }

    async fn applied_after(&self, before: u64) {
        tokio::time::timeout(PATIENCE, async {
            while self.dataplane.held().applies <= before {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the data plane applies the change in time");
    }

    fn service(&self, id: &str) -> Option<hive_dataplane::mesh::Service> {
        let held = self.dataplane.held();
        let state = held.state.as_ref()?;
        state.services.iter().find(|s| s.id == id).cloned()
    }

    fn backends(&self, id: &str) -> Vec<String> {
        self.service(id)
            .map(|s| s.backends.into_iter().map(|b| b.task_id).collect())
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn the_leaders_view_becomes_services_with_their_backends_on_the_data_plane() {
    let mut agent = Agent::start();
    agent.receive(complete(3)).await;
    let web = agent.service("s002").expect("s002 is programmed");
    assert_eq!(web.vips[0].addr, Ipv4Addr::new(10, 0, 1, 2));
    assert_eq!(web.ports[0].published_port, Some(30002));
    assert_eq!(agent.backends("s002"), ["t002-0"]);
    let held = agent.dataplane.held();
    let state = held.state.as_ref().expect("applied");
    assert_eq!(state.peers.len(), 1, "n2 is the only peer");
    assert_eq!(state.endpoints.len(), 3, "every task is an endpoint");
}

#[tokio::test]
async fn a_node_gossip_declares_dead_loses_its_backends_without_the_leader() {
    let mut agent = Agent::start();
    agent.receive(complete(2)).await;
    assert_eq!(agent.backends("s001"), ["t001-0"]);

    let before = agent.dataplane.held().applies;
    agent.mesh.set_dead("n2", true);
    agent.applied_after(before).await;
    assert!(agent.backends("s001").is_empty());
    assert!(
        agent.service("s001").is_some(),
        "the service stays, without backends"
    );

    let before = agent.dataplane.held().applies;
    agent.mesh.set_dead("n2", false);
    agent.applied_after(before).await;
    assert_eq!(agent.backends("s001"), ["t001-0"]);
}

#[tokio::test]
async fn a_draining_task_is_no_backend_but_keeps_its_endpoint_until_it_stops() {
    let mut agent = Agent::start();
    agent.receive(complete(1)).await;
    let mut draining = task(1, 0);
    draining.draining = true;
    agent
        .receive(AssignmentChange {
            files: Default::default(),
            complete: false,
            version: 2,
            update_tasks: Vec::new(),
            remove_tasks: Vec::new(),
            mesh: MeshChanges {
                update_tasks: vec![draining],
                ..MeshChanges::default()
            },
        })
        .await;
    assert!(agent.backends("s001").is_empty());
    let endpoints = |agent: &Agent| {
        let held = agent.dataplane.held();
        held.state.as_ref().map_or(0, |s| s.endpoints.len())
    };
    assert_eq!(endpoints(&agent), 1, "its flows drain");

    agent
        .receive(AssignmentChange {
            files: Default::default(),
            complete: false,
            version: 3,
            update_tasks: Vec::new(),
            remove_tasks: Vec::new(),
            mesh: MeshChanges {
                remove_tasks: vec!["t001-0".into()],
                ..MeshChanges::default()
            },
        })
        .await;
    assert_eq!(endpoints(&agent), 0, "stopped: gone");
}

/// The map operations one delta costs: a new backend for service 7, with `services` services.
async fn ops_of_one_new_backend(services: u8) -> Vec<Op> {
    let mut agent = Agent::start();
    agent.receive(complete(services)).await;
    let full = agent.dataplane.take_ops();
    assert!(
        full.len() >= usize::from(services),
        "the complete view programs every service"
    );
    agent
        .receive(AssignmentChange {
            files: Default::default(),
            complete: false,
            version: 2,
            update_tasks: Vec::new(),
            remove_tasks: Vec::new(),
            mesh: MeshChanges {
                update_tasks: vec![task(7, 1)],
                ..MeshChanges::default()
            },
        })
        .await;
    assert_eq!(agent.backends("s007"), ["t007-0", "t007-1"]);
    agent.dataplane.take_ops()
}

#[tokio::test]
async fn a_delta_costs_the_map_operations_of_what_it_changes_whatever_the_cluster_size() {
    let small = ops_of_one_new_backend(10).await;
    let large = ops_of_one_new_backend(200).await;
    // The same writes at 10 and at 200 services: the new endpoint, the new backend and
    // service 7's balancer, nothing of the other services.
    assert_eq!(small.len(), large.len(), "{small:?}\nvs\n{large:?}");
    assert!(
        large.contains(&Op::PutEndpoint(hive_dataplane::mesh::addr_be(
            Ipv4Addr::new(10, 0, 3, 7)
        ))),
        "{large:?}"
    );
    let frontends = large
        .iter()
        .filter(|op| matches!(op, Op::PutFrontend(..) | Op::RemoveFrontend(..)))
        .count();
    assert_eq!(frontends, 0, "no front end changes: {large:?}");
    let balancers: BTreeSet<u32> = large
        .iter()
        .filter_map(|op| match op {
            Op::SetRing(id, _) | Op::PutBalancerRecord(id) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(balancers.len(), 1, "only service 7's balancer: {large:?}");
}

/// `services` services (up to 10,000), each with one task on n2, as a complete view.
fn complete_large(services: u16) -> AssignmentChange {
    let mut change = complete(0);
    change.mesh.update_services = (0..services)
        .map(|i| MeshService {
            id: format!("s{i:05}"),
            name: format!("web{i}"),
            endpoint: Endpoint {
                ports: vec![PortConfig {
                    protocol: Protocol::Tcp,
                    target_port: 80,
                    published_port: 30000 + i,
                    ..PortConfig::default()
                }],
                virtual_ips: vec![VirtualIp {
                    network_id: "ing".into(),
                    addr: format!("10.0.{}.{}/16", 100 + i / 250, 1 + i % 250)
                        .parse()
                        .unwrap(),
                }],
                ..Endpoint::default()
            },
        })
        .collect();
    change.mesh.update_tasks = (0..services)
        .map(|i| MeshTask {
            id: format!("t{i:05}"),
            service_id: format!("s{i:05}"),
            node_id: "n2".into(),
            networks: vec![MeshAttachment {
                network_id: "ing".into(),
                addresses: vec![
                    format!("10.0.{}.{}/16", i / 250, 2 + i % 250)
                        .parse()
                        .unwrap(),
                ],
                aliases: Vec::new(),
            }],
            draining: false,
        })
        .collect();
    change
}

/// One new task of service 7, with `services` services: what the agent's state building
/// and the data plane looked at, the map operations, and the entries of mesh views copied
/// on the way (from the session to the worker, the node's mesh and its resolver).
async fn work_of_one_new_task(services: u16) -> (usize, usize, Vec<Op>, u64) {
    let mut agent = Agent::start();
    agent.receive(complete_large(services)).await;
    agent.dataplane.take_ops();
    assert!(
        agent.mesh.last_build_work() >= usize::from(services),
        "the complete view is built whole"
    );
    let copied = view_entries_copied();
    agent
        .receive(AssignmentChange {
            files: Default::default(),
            complete: false,
            version: 2,
            update_tasks: Vec::new(),
            remove_tasks: Vec::new(),
            mesh: MeshChanges {
                update_tasks: vec![MeshTask {
                    id: "t00007-b".into(),
                    service_id: "s00007".into(),
                    node_id: "n2".into(),
                    networks: vec![MeshAttachment {
                        network_id: "ing".into(),
                        addresses: vec!["10.0.200.7/16".parse().unwrap()],
                        aliases: Vec::new(),
                    }],
                    draining: false,
                }],
                ..MeshChanges::default()
            },
        })
        .await;
    // The test's runtime runs the node's mesh on this thread: its copies count too.
    let copied = view_entries_copied() - copied;
    assert_eq!(agent.backends("s00007"), ["t00007", "t00007-b"]);
    let ops = agent.dataplane.take_ops();
    let held = agent.dataplane.held();
    assert_eq!(
        held.deltas, 1,
        "the change went to the data plane as a delta"
    );
    (agent.mesh.last_build_work(), held.work, ops, copied)
}

#[tokio::test]
async fn a_delta_costs_the_agent_the_same_work_at_10_and_at_1000_services() {
    let (build_small, apply_small, ops_small, copied_small) = work_of_one_new_task(10).await;
    let (build_large, apply_large, ops_large, copied_large) = work_of_one_new_task(1000).await;
    // The view is changed in place and shared: no message copies it, at any size.
    assert_eq!(copied_small, copied_large, "view entries copied");
    assert_eq!(copied_large, 0, "view entries copied");
    // The state building looks at the new task, its address and its service (with its
    // two tasks); the data plane validates and compiles the service's old and new
    // versions and the new endpoint; the same map operations. Nothing of the other
    // services, at 10 or at 1,000.
    assert_eq!(build_small, build_large, "state building");
    assert_eq!(apply_small, apply_large, "validation and compilation");
    assert_eq!(
        apply_large, 3,
        "the service twice (old, new) and the endpoint"
    );
    assert_eq!(
        ops_small.len(),
        ops_large.len(),
        "{ops_small:?}\nvs\n{ops_large:?}"
    );
}

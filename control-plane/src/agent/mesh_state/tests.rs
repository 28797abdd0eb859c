use super::*;
use crate::api::mesh_view::{MeshAttachment, MeshNetwork, MeshNode, MeshService, MeshTask};
use crate::store::objects::{Endpoint, PortConfig, VirtualIp};

fn node(id: &str, i: u8, state: NodeState) -> MeshNode {
    MeshNode {
        id: id.to_owned(),
        addr: Some(format!("192.168.77.{i}").parse().unwrap()),
        mac: Some(format!("02:00:00:00:00:{i:02x}").parse().unwrap()),
        state,
    }
}

fn task(id: &str, service: &str, node: &str, addrs: &[(&str, &str)]) -> MeshTask {
    MeshTask {
        id: id.to_owned(),
        service_id: service.to_owned(),
        node_id: node.to_owned(),
        networks: addrs
            .iter()
            .map(|(net, addr)| MeshAttachment {
                network_id: (*net).to_owned(),
                addresses: vec![(*addr).parse().unwrap()],
                aliases: Vec::new(),
            })
            .collect(),
        draining: false,
    }
}

fn port(protocol: objects::Protocol, target: u16, published: u16) -> PortConfig {
    PortConfig {
        protocol,
        target_port: target,
        published_port: published,
        ..PortConfig::default()
    }
}

/// Three nodes; `web` publishes 8080 → 80 with one task on each node, VIP 10.0.0.2 on the
/// ingress network; an overlay `back` with `db` (VIP only, one task on n2).
fn view() -> MeshView {
    MeshView {
        hash_seed: 42,
        vxlan_port: 4789,
        mesh_mode: Default::default(),
        networks: vec![
            MeshNetwork {
                id: "ing".into(),
                name: "ingress".into(),
                vni: 4096,
                subnet: "10.0.0.0/24".parse().unwrap(),
                gateway: Some("10.0.0.1".parse().unwrap()),
                ingress: true,
            },
            MeshNetwork {
                id: "back".into(),
                name: "back".into(),
                vni: 4097,
                subnet: "10.0.1.0/24".parse().unwrap(),
                gateway: None,
                ingress: false,
            },
        ],
        services: vec![
            MeshService {
                id: "web".into(),
                name: "web".into(),
                endpoint: Endpoint {
                    ports: vec![port(objects::Protocol::Tcp, 80, 8080)],
                    virtual_ips: vec![VirtualIp {
                        network_id: "ing".into(),
                        addr: "10.0.0.2/24".parse().unwrap(),
                    }],
                    ..Endpoint::default()
                },
            },
            MeshService {
                id: "db".into(),
                name: "db".into(),
                endpoint: Endpoint {
                    ports: vec![port(objects::Protocol::Tcp, 5432, 0)],
                    virtual_ips: vec![VirtualIp {
                        network_id: "back".into(),
                        addr: "10.0.1.2/24".parse().unwrap(),
                    }],
                    ..Endpoint::default()
                },
            },
        ],
        tasks: vec![
            task("t1", "web", "n1", &[("ing", "10.0.0.3/24")]),
            task("t2", "web", "n2", &[("ing", "10.0.0.4/24")]),
            task("t3", "web", "n3", &[("ing", "10.0.0.5/24")]),
            task("d1", "db", "n2", &[("back", "10.0.1.3/24")]),
        ],
        nodes: vec![
            node("n1", 1, NodeState::Ready),
            node("n2", 2, NodeState::Ready),
            node("n3", 3, NodeState::Ready),
        ],
    }
}

fn me() -> LocalNode {
    LocalNode {
        node_id: "n1".into(),
        underlay_addr: Ipv4Addr::new(192, 168, 77, 1),
        underlay_iface: "eth0".into(),
        underlay_mtu: 1500,
        control_ports: Vec::new(),
    }
}

fn veth(task: &str, vni: u32, addr: [u8; 4], ifindex: u32) -> LocalAttachment {
    LocalAttachment {
        task_id: task.into(),
        vni,
        addr: Ipv4Addr::from(addr),
        host_ifname: format!("hv{task}"),
        host_ifindex: ifindex,
    }
}

fn backends(state: &MeshState, service: &str) -> Vec<(String, Ipv4Addr)> {
    let mut found: Vec<_> = state
        .services
        .iter()
        .find(|s| s.id == service)
        .expect("service in the state")
        .backends
        .iter()
        .map(|b| (b.task_id.clone(), b.node))
        .collect();
    found.sort();
    found
}

/// This node's (n1's) mesh with t1 attached locally, checked valid.
fn state_of_n1_with_t1(view: &MeshView) -> MeshState {
    let state = mesh_state(
        view,
        &me(),
        &[veth("t1", 4096, [10, 0, 0, 3], 7)],
        &BTreeSet::new(),
    );
    state.validate().expect("a valid mesh");
    state
}

fn addr(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 77, last)
}

#[test]
fn a_published_port_balances_over_every_running_task_on_every_node() {
    let state = state_of_n1_with_t1(&view());
    assert_eq!(
        backends(&state, "web"),
        vec![
            ("t1".into(), addr(1)),
            ("t2".into(), addr(2)),
            ("t3".into(), addr(3))
        ]
    );
    let web = &state.services[0];
    assert_eq!(web.ports[0].published_port, Some(8080));
    assert_eq!(web.vips[0].network, "ingress");
    assert_eq!(state.node.hash_seed, 42);
    assert_eq!(state.node.underlay_addr, addr(1));
    // The ingress network is the one marked; a missing gateway is the subnet's first host.
    let ingress: Vec<_> = state.networks.iter().filter(|n| n.ingress).collect();
    assert_eq!(ingress.len(), 1);
    assert_eq!(ingress[0].vni, 4096);
    let back = state.networks.iter().find(|n| n.name == "back").unwrap();
    assert_eq!(back.gateway, Ipv4Addr::new(10, 0, 1, 1));
    // Peers: the other nodes with their MACs, never this one.
    let peers: Vec<_> = state
        .peers
        .iter()
        .map(|p| (p.node_id.as_str(), p.mac.to_string()))
        .collect();
    assert_eq!(
        peers,
        vec![
            ("n2", "02:00:00:00:00:02".into()),
            ("n3", "02:00:00:00:00:03".into())
        ]
    );
    // The VIP-only service: its backend on the overlay, no published port.
    assert_eq!(backends(&state, "db"), vec![("d1".into(), addr(2))]);
    assert_eq!(state.services[1].ports[0].published_port, None);
    assert_eq!(state.local_endpoints.len(), 1);
    assert_eq!(state.endpoints.len(), 4);
}

#[test]
fn backends_of_nodes_dead_by_gossip_or_down_are_left_out() {
    let mut view = view();
    view.nodes[1].state = NodeState::Down;
    let dead = BTreeSet::from(["n3".to_owned()]);
    let state = mesh_state(&view, &me(), &[veth("t1", 4096, [10, 0, 0, 3], 7)], &dead);
    state.validate().expect("a valid mesh");
    assert_eq!(backends(&state, "web"), vec![("t1".into(), addr(1))]);
    assert!(backends(&state, "db").is_empty());
    // They stay peers: their tasks' addresses still route there (and fail there).
    assert_eq!(state.peers.len(), 2);
}

#[test]
fn a_draining_task_stays_an_endpoint_but_is_no_backend() {
    let mut view = view();
    // t1 (local) and t2 (on n2) are being shut down; they still run.
    for task in view
        .tasks
        .iter_mut()
        .filter(|t| t.id == "t1" || t.id == "t2")
    {
        task.draining = true;
    }
    let state = state_of_n1_with_t1(&view);
    assert_eq!(backends(&state, "web"), vec![("t3".into(), addr(3))]);
    let endpoints: BTreeSet<&str> = state.endpoints.iter().map(|e| e.task_id.as_str()).collect();
    assert!(
        endpoints.contains("t1") && endpoints.contains("t2"),
        "draining tasks keep their endpoints: {endpoints:?}"
    );
    assert_eq!(state.local_endpoints.len(), 1);
}

#[test]
fn a_local_task_is_in_the_mesh_only_once_its_veth_exists() {
    // t1 is running by the store but its veth is not (yet) here.
    let state = mesh_state(&view(), &me(), &[], &BTreeSet::new());
    state.validate().expect("a valid mesh");
    assert_eq!(
        backends(&state, "web"),
        vec![("t2".into(), addr(2)), ("t3".into(), addr(3))]
    );
    assert!(state.endpoints.iter().all(|e| e.task_id != "t1"));

    // A veth of a task the store does not show running yet: reachable by address, not
    // balanced to.
    let state = mesh_state(
        &view(),
        &me(),
        &[veth("t9", 4096, [10, 0, 0, 9], 8)],
        &BTreeSet::new(),
    );
    state.validate().expect("a valid mesh");
    assert!(state.endpoints.iter().any(|e| e.task_id == "t9"));
    assert!(backends(&state, "web").iter().all(|(t, _)| t != "t9"));
}

#[test]
fn what_the_data_plane_would_refuse_is_left_out_not_fatal() {
    let mut view = view();
    // A node without a MAC is no peer, and its tasks no backends.
    view.nodes[2].mac = None;
    // A network overlapping the ingress, and one with a VNI out of range.
    view.networks.push(MeshNetwork {
        id: "clash".into(),
        name: "clash".into(),
        vni: 4098,
        subnet: "10.0.0.0/16".parse().unwrap(),
        ..MeshNetwork::default()
    });
    view.networks.push(MeshNetwork {
        id: "bad".into(),
        name: "bad".into(),
        vni: 0,
        subnet: "10.9.0.0/24".parse().unwrap(),
        ..MeshNetwork::default()
    });
    // A second service publishing the same port twice, and a task address twice.
    view.services.push(MeshService {
        id: "api".into(),
        name: "api".into(),
        endpoint: Endpoint {
            ports: vec![
                port(objects::Protocol::Tcp, 81, 8080),
                port(objects::Protocol::Tcp, 81, 8080),
            ],
            ..Endpoint::default()
        },
    });
    view.tasks
        .push(task("a1", "api", "n2", &[("ing", "10.0.0.4/24")]));
    let state = state_of_n1_with_t1(&view);
    assert_eq!(state.networks.len(), 2);
    assert_eq!(state.peers.len(), 1);
    assert_eq!(
        backends(&state, "web"),
        vec![("t1".into(), addr(1)), ("t2".into(), addr(2))]
    );
    let api = state.services.iter().find(|s| s.id == "api").unwrap();
    assert_eq!(api.ports.len(), 1);
    assert_eq!(api.ports[0].published_port, None);
    assert!(api.backends.is_empty());
}

#[test]
fn without_an_ingress_network_ports_are_not_published() {
    let mut view = view();
    view.networks[0].ingress = false;
    let state = state_of_n1_with_t1(&view);
    assert_eq!(state.services[0].ports[0].published_port, None);
    // Still balanced behind its VIP.
    assert_eq!(backends(&state, "web").len(), 3);
}

#[test]
fn two_veths_with_one_address_still_make_a_valid_mesh() {
    // A stopped task's veth (t0) still holds the address the allocator gave to its
    // replacement (t1). The agent leaves stopped tasks out (NodeMesh keeps only live ones),
    // but whatever reaches this function must not make the whole mesh invalid: one of them
    // gets the address, and no veth is listed without its endpoint.
    let state = mesh_state(
        &view(),
        &me(),
        &[
            veth("t0", 4096, [10, 0, 0, 3], 7),
            veth("t1", 4096, [10, 0, 0, 3], 8),
        ],
        &BTreeSet::new(),
    );
    state.validate().expect("a valid mesh");
    assert_eq!(
        state.local_endpoints.len(),
        1,
        "{:?}",
        state.local_endpoints
    );
    assert_eq!(
        state
            .endpoints
            .iter()
            .filter(|e| e.addr == Ipv4Addr::new(10, 0, 0, 3))
            .count(),
        1
    );
}

#[test]
fn a_host_mode_port_answers_only_on_nodes_with_a_task_and_only_to_their_own() {
    let mut view = view();
    let mut host = port(objects::Protocol::Tcp, 80, 8083);
    host.publish_mode = PublishMode::Host;
    view.services[0].endpoint.ports.push(host);

    // n1 has t1 running locally: 8083 goes to t1 alone, 8080 still to every task.
    let state = state_of_n1_with_t1(&view);
    assert_eq!(backends(&state, "web/host"), vec![("t1".into(), addr(1))]);
    let host = state.services.iter().find(|s| s.id == "web/host").unwrap();
    assert_eq!(host.ports.len(), 1);
    assert_eq!(host.ports[0].published_port, Some(8083));
    assert!(host.vips.is_empty());
    assert_eq!(backends(&state, "web").len(), 3);
    assert!(
        state
            .services
            .iter()
            .flat_map(|s| &s.ports)
            .filter(|p| p.published_port == Some(8083))
            .count()
            == 1,
        "8083 is published once"
    );

    // Without its task's veth here (another node's view of it), n1 does not answer 8083.
    let state = mesh_state(&view, &me(), &[], &BTreeSet::new());
    state.validate().expect("a valid mesh");
    assert!(state.services.iter().all(|s| s.id != "web/host"));
}

#[test]
fn two_published_ports_to_one_target_are_both_published() {
    // `-p 8080:80 -p 8081:80` in ingress mode, and two host-mode ports to 80 as well.
    let mut view = view();
    let ports = &mut view.services[0].endpoint.ports;
    ports.push(port(objects::Protocol::Tcp, 80, 8081));
    for published in [8083, 8084] {
        let mut host = port(objects::Protocol::Tcp, 80, published);
        host.publish_mode = PublishMode::Host;
        ports.push(host);
    }
    let state = state_of_n1_with_t1(&view);
    let published = |id: &str| -> Vec<(u16, Option<u16>)> {
        let service = state.services.iter().find(|s| s.id == id).unwrap();
        service
            .ports
            .iter()
            .map(|p| (p.target_port, p.published_port))
            .collect()
    };
    assert_eq!(
        published("web"),
        [(80, Some(8080)), (80, Some(8081)), (80, None)]
    );
    assert_eq!(published("web/host"), [(80, Some(8083)), (80, Some(8084))]);
}

//! The builder against the reference, [`mesh_state`]: after every change of a random
//! sequence (services, tasks and nodes coming, changing and going, veths attached and
//! detached, gossip's verdicts; addresses, VIPs and ports contended on purpose), the state
//! the builder's deltas add up to is the state built from the whole view.

use std::collections::BTreeMap;

use super::*;
use crate::agent::assignment::{Assignment, AssignmentChange};
use crate::agent::mesh_state::mesh_state;
use crate::api::mesh_view::{MeshAttachment, MeshChanges, MeshNetwork, MeshNode, MeshSettings};
use crate::store::objects::{Endpoint, NodeState, PortConfig, Protocol as WireProtocol, VirtualIp};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn me() -> LocalNode {
    LocalNode {
        node_id: "n1".into(),
        underlay_addr: Ipv4Addr::new(192, 168, 9, 1),
        underlay_iface: "eth0".into(),
        underlay_mtu: 1500,
        control_ports: Vec::new(),
    }
}

fn networks() -> Vec<MeshNetwork> {
    vec![
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
            subnet: "10.1.0.0/24".parse().unwrap(),
            gateway: None,
            ingress: false,
        },
    ]
}

fn node(rng: &mut Rng, i: u64) -> MeshNode {
    // Few addresses for four nodes: sometimes two nodes claim one.
    let at = if rng.chance(20) { 1 + rng.below(5) } else { i };
    MeshNode {
        id: format!("n{i}"),
        addr: Some(format!("192.168.9.{at}").parse().unwrap()),
        mac: Some(format!("02:00:00:00:00:{at:02x}").parse().unwrap()),
        state: if rng.chance(25) {
            NodeState::Down
        } else {
            NodeState::Ready
        },
    }
}

fn service(rng: &mut Rng, i: u64) -> MeshService {
    let mut virtual_ips = Vec::new();
    if rng.chance(80) {
        virtual_ips.push(VirtualIp {
            network_id: "ing".into(),
            // A small pool: VIPs are contended.
            addr: format!("10.0.0.{}/24", 200 + rng.below(8)).parse().unwrap(),
        });
    }
    if rng.chance(40) {
        virtual_ips.push(VirtualIp {
            network_id: "back".into(),
            addr: format!("10.1.0.{}/24", 200 + rng.below(8)).parse().unwrap(),
        });
    }
    let ports = (0..rng.below(3))
        .map(|_| PortConfig {
            protocol: if rng.chance(70) {
                WireProtocol::Tcp
            } else {
                WireProtocol::Udp
            },
            target_port: 80 + rng.below(2) as u16,
            published_port: if rng.chance(70) {
                8080 + rng.below(4) as u16
            } else {
                0
            },
            publish_mode: if rng.chance(30) {
                PublishMode::Host
            } else {
                PublishMode::Ingress
            },
            ..PortConfig::default()
        })
        .collect();
    MeshService {
        id: format!("s{i}"),
        name: format!("svc{i}"),
        endpoint: Endpoint {
            ports,
            virtual_ips,
            ..Endpoint::default()
        },
    }
}

fn task(rng: &mut Rng, i: u64) -> MeshTask {
    let mut networks = vec![MeshAttachment {
        network_id: "ing".into(),
        // A small pool too: addresses are contended.
        addresses: vec![format!("10.0.0.{}/24", 10 + rng.below(24)).parse().unwrap()],
        aliases: Vec::new(),
    }];
    if rng.chance(40) {
        networks.push(MeshAttachment {
            network_id: "back".into(),
            addresses: vec![format!("10.1.0.{}/24", 10 + rng.below(24)).parse().unwrap()],
            aliases: Vec::new(),
        });
    }
    MeshTask {
        id: format!("t{i}"),
        service_id: format!("s{}", rng.below(6)),
        node_id: format!("n{}", 1 + rng.below(5)),
        networks,
        draining: rng.chance(15),
    }
}

fn settings() -> MeshSettings {
    MeshSettings {
        hash_seed: 7,
        vxlan_port: 4789,
        mesh_mode: Default::default(),
    }
}

fn change(complete: bool, version: u64, mesh: MeshChanges) -> AssignmentChange {
    AssignmentChange {
        files: Default::default(),
        complete,
        version,
        update_tasks: Vec::new(),
        remove_tasks: Vec::new(),
        mesh,
    }
}

/// A state in a form two builds of it compare equal in.
fn normal(mut state: MeshState) -> MeshState {
    state.services.sort_by(|a, b| a.id.cmp(&b.id));
    state.endpoints.sort_by_key(|e| e.addr);
    state
}

/// What the data plane would hold: the rebuild's state with every delta since on top.
#[derive(Default)]
struct Held {
    services: BTreeMap<String, Service>,
    endpoints: BTreeMap<Ipv4Addr, TaskEndpoint>,
    state: Option<MeshState>,
}

impl Held {
    fn set(&mut self, state: MeshState) {
        self.services = state
            .services
            .iter()
            .map(|s| (s.id.clone(), s.clone()))
            .collect();
        self.endpoints = state
            .endpoints
            .iter()
            .map(|e| (e.addr, e.clone()))
            .collect();
        self.state = Some(state);
    }

    fn apply(&mut self, delta: MeshDelta) {
        for (id, s) in delta.services {
            match s {
                Some(s) => self.services.insert(id, s),
                None => self.services.remove(&id),
            };
        }
        for (addr, e) in delta.endpoints {
            match e {
                Some(e) => self.endpoints.insert(addr, e),
                None => self.endpoints.remove(&addr),
            };
        }
        let state = self.state.as_mut().expect("built before");
        if let Some(peers) = delta.peers {
            state.peers = peers;
        }
        if let Some(locals) = delta.local_endpoints {
            state.local_endpoints = locals;
        }
    }

    fn state(&self) -> MeshState {
        let mut state = self.state.clone().expect("built before");
        state.services = self.services.values().cloned().collect();
        state.endpoints = self.endpoints.values().cloned().collect();
        normal(state)
    }
}

#[test]
fn random_changes_add_up_to_the_state_of_the_whole_view() {
    let mut updates = 0;
    for seed in 1..=40u64 {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x1000_0001));
        let mut held = Assignment::default();
        held.apply(change(
            true,
            1,
            MeshChanges {
                settings: Some(settings()),
                update_networks: networks(),
                update_nodes: (1..=4).map(|i| node(&mut rng, i)).collect(),
                update_services: (0..4).map(|i| service(&mut rng, i)).collect(),
                update_tasks: (0..10).map(|i| task(&mut rng, i)).collect(),
                ..MeshChanges::default()
            },
        ));
        let mut local: BTreeMap<(String, u32), LocalAttachment> = BTreeMap::new();
        let mut dead: BTreeSet<String> = BTreeSet::new();
        let mut builder = MeshBuilder::new(me());
        let mut data = Held::default();
        let locals =
            |local: &BTreeMap<_, LocalAttachment>| local.values().cloned().collect::<Vec<_>>();
        data.set(builder.rebuild(&held.mesh.read(), &locals(&local), &dead));
        let mut at = held.mesh_journal.position();
        let mut next_task = 10;
        for step in 0..60 {
            let mut mesh = MeshChanges::default();
            let mut locals_changed = false;
            match rng.below(9) {
                0 => {
                    let i = rng.below(6);
                    mesh.update_services.push(service(&mut rng, i));
                }
                1 => mesh.remove_services.push(format!("s{}", rng.below(6))),
                2 | 3 => {
                    next_task += 1;
                    mesh.update_tasks.push(task(&mut rng, next_task));
                }
                4 => {
                    let i = rng.below(next_task + 1);
                    mesh.update_tasks.push(task(&mut rng, i));
                }
                5 => mesh
                    .remove_tasks
                    .push(format!("t{}", rng.below(next_task + 1))),
                6 => {
                    let i = 1 + rng.below(4);
                    if rng.chance(20) {
                        mesh.remove_nodes.push(format!("n{i}"));
                    } else {
                        mesh.update_nodes.push(node(&mut rng, i));
                    }
                }
                7 => {
                    let n = format!("n{}", 2 + rng.below(3));
                    if !dead.remove(&n) {
                        dead.insert(n);
                    }
                }
                _ => {
                    // A veth of a task on this node comes or goes (its address from the
                    // pool, so sometimes not the task's own).
                    locals_changed = true;
                    let view = held.mesh.read();
                    let ours: Vec<&MeshTask> =
                        view.tasks.iter().filter(|t| t.node_id == "n1").collect();
                    if !local.is_empty() && rng.chance(40) {
                        let keys: Vec<_> = local.keys().cloned().collect();
                        let key = &keys[rng.below(keys.len() as u64) as usize];
                        local.remove(key);
                    } else if let Some(t) = ours.get(rng.below(ours.len().max(1) as u64) as usize) {
                        let vni = if rng.chance(80) { 4096 } else { 4097 };
                        let addr = t
                            .networks
                            .first()
                            .map(|a| a.addresses[0].ip())
                            .filter(|_| rng.chance(80))
                            .unwrap_or(Ipv4Addr::new(10, 0, 0, 10 + rng.below(24) as u8));
                        local.insert(
                            (t.id.clone(), vni),
                            LocalAttachment {
                                task_id: t.id.clone(),
                                vni,
                                addr,
                                host_ifname: format!("hv{}", t.id),
                                host_ifindex: 10 + rng.below(90) as u32,
                            },
                        );
                    }
                }
            }
            held.apply(change(false, 2 + step, mesh));
            let touched = held.mesh_journal.since(at).expect("one stream");
            at = held.mesh_journal.position();
            let list = locals(&local);
            match builder.update(
                &held.mesh.read(),
                &touched,
                locals_changed.then_some(list.as_slice()),
                &dead,
            ) {
                Some(delta) => {
                    updates += 1;
                    data.apply(delta);
                }
                None => data.set(builder.rebuild(&held.mesh.read(), &list, &dead)),
            }
            let want = normal(mesh_state(&held.mesh.read(), &me(), &list, &dead));
            assert_eq!(data.state(), want, "seed {seed}, step {step}");
        }
    }
    assert!(
        updates > 2000,
        "the changes went the incremental way: {updates}"
    );
}

/// `services` services with one task each on n2 and a veth of a task on this node.
fn cluster(services: u32) -> Assignment {
    let mut held = Assignment::default();
    let vip = |i: u32| format!("10.0.{}.{}/16", 100 + i / 250, 1 + i % 250);
    let addr = |i: u32| format!("10.0.{}.{}/16", i / 250, 2 + i % 250);
    held.apply(change(
        true,
        1,
        MeshChanges {
            settings: Some(settings()),
            update_networks: vec![MeshNetwork {
                subnet: "10.0.0.0/16".parse().unwrap(),
                ..networks().remove(0)
            }],
            update_nodes: vec![
                MeshNode {
                    id: "n1".into(),
                    addr: Some("192.168.9.1".parse().unwrap()),
                    mac: Some("02:00:00:00:00:01".parse().unwrap()),
                    state: NodeState::Ready,
                },
                MeshNode {
                    id: "n2".into(),
                    addr: Some("192.168.9.2".parse().unwrap()),
                    mac: Some("02:00:00:00:00:02".parse().unwrap()),
                    state: NodeState::Ready,
                },
            ],
            update_services: (0..services)
                .map(|i| MeshService {
                    id: format!("s{i:05}"),
                    name: format!("web{i}"),
                    endpoint: Endpoint {
                        ports: vec![PortConfig {
                            protocol: WireProtocol::Tcp,
                            target_port: 80,
                            published_port: 30000 + u16::try_from(i).expect("few"),
                            ..PortConfig::default()
                        }],
                        virtual_ips: vec![VirtualIp {
                            network_id: "ing".into(),
                            addr: vip(i).parse().unwrap(),
                        }],
                        ..Endpoint::default()
                    },
                })
                .collect(),
            update_tasks: (0..services)
                .map(|i| MeshTask {
                    id: format!("t{i:05}"),
                    service_id: format!("s{i:05}"),
                    node_id: "n2".into(),
                    networks: vec![MeshAttachment {
                        network_id: "ing".into(),
                        addresses: vec![addr(i).parse().unwrap()],
                        aliases: Vec::new(),
                    }],
                    draining: false,
                })
                .collect(),
            ..MeshChanges::default()
        },
    ));
    held
}

/// What the builder looks at for one new task of service 7, in a cluster of `services`.
fn work_of_one_new_task(services: u32) -> (usize, MeshDelta) {
    let mut held = cluster(services);
    let mut builder = MeshBuilder::new(me());
    let full = builder.rebuild(&held.mesh.read(), &[], &BTreeSet::new());
    assert_eq!(full.services.len() as u32, services);
    assert!(
        builder.work() >= services as usize,
        "a rebuild looks at everything"
    );
    let at = held.mesh_journal.position();
    held.apply(change(
        false,
        2,
        MeshChanges {
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
    ));
    let touched = held.mesh_journal.since(at).expect("one stream");
    let delta = builder
        .update(&held.mesh.read(), &touched, None, &BTreeSet::new())
        .expect("a task needs no rebuild");
    (builder.work(), delta)
}

#[test]
fn a_delta_costs_the_builder_the_same_at_10_and_at_1000_services() {
    let (small, small_delta) = work_of_one_new_task(10);
    let (large, large_delta) = work_of_one_new_task(1000);
    assert_eq!(small, large, "the same work whatever the cluster's size");
    assert_eq!(small_delta, large_delta, "and the same change");
    // The new task's endpoint, and service 7 with its second backend.
    assert_eq!(large_delta.endpoints.len(), 1, "{large_delta:?}");
    assert_eq!(large_delta.services.len(), 1, "{large_delta:?}");
    let (id, service) = &large_delta.services[0];
    assert_eq!(id, "s00007");
    assert_eq!(service.as_ref().map(|s| s.backends.len()), Some(2));
    assert!(large_delta.peers.is_none() && large_delta.local_endpoints.is_none());
}

//! Unit tests of validation and of the diff, against [`FakeMaps`].

use std::net::Ipv4Addr;

use hive_common::maps::{Backend, Frontend, ServiceKey};

use super::{
    alloc::{IdAllocator, SegmentAllocator},
    fake::{FakeMaps, Op},
    *,
};

const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
const PEER2: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 3);
const PEER3: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 4);
const INGRESS: u32 = 4096;
const APP: u32 = 4097;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

fn backend(task: &str, addr: &str, node: Ipv4Addr, vni: u32) -> ServiceBackend {
    ServiceBackend {
        task_id: task.to_owned(),
        addr: ip(addr),
        node,
        vni,
    }
}

/// Two services on two networks over three nodes; this node is NODE.
pub(crate) fn sample_state() -> MeshState {
    let mut state = MeshState {
        node: NodeIdentity {
            underlay_addr: NODE,
            underlay_iface: "eth0".into(),
            vxlan_port: 4789,
            hash_seed: 7,
            underlay_mtu: 1500,
            control_ports: Vec::new(),
            mesh_mode: Default::default(),
        },
        networks: vec![
            Network {
                name: "ingress".into(),
                vni: INGRESS,
                subnet: "10.255.0.0/16".parse().expect("subnet"),
                gateway: ip("10.255.0.1"),
                ingress: true,
            },
            Network {
                name: "app".into(),
                vni: APP,
                subnet: "10.0.1.0/24".parse().expect("subnet"),
                gateway: ip("10.0.1.1"),
                ingress: false,
            },
        ],
        peers: vec![
            OverlayPeer {
                node_id: "n2".into(),
                underlay_addr: PEER2,
                mac: "02:00:00:00:00:03".parse().expect("mac"),
            },
            OverlayPeer {
                node_id: "n3".into(),
                underlay_addr: PEER3,
                mac: "02:00:00:00:00:04".parse().expect("mac"),
            },
        ],
        services: vec![
            Service {
                id: "svc-web".into(),
                name: "web".into(),
                vips: vec![
                    ServiceVip {
                        network: "ingress".into(),
                        addr: ip("10.255.0.5"),
                    },
                    ServiceVip {
                        network: "app".into(),
                        addr: ip("10.0.1.2"),
                    },
                ],
                ports: vec![ServicePort {
                    protocol: Protocol::Tcp,
                    target_port: 80,
                    published_port: Some(8080),
                }],
                backends: vec![
                    backend("web.1", "10.255.0.10", NODE, INGRESS),
                    backend("web.1", "10.0.1.10", NODE, APP),
                    backend("web.2", "10.255.0.11", PEER2, INGRESS),
                    backend("web.2", "10.0.1.11", PEER2, APP),
                    backend("web.3", "10.255.0.12", PEER3, INGRESS),
                    backend("web.3", "10.0.1.12", PEER3, APP),
                ],
            },
            Service {
                id: "svc-api".into(),
                name: "api".into(),
                vips: vec![ServiceVip {
                    network: "app".into(),
                    addr: ip("10.0.1.3"),
                }],
                ports: vec![ServicePort {
                    protocol: Protocol::Udp,
                    target_port: 9000,
                    published_port: None,
                }],
                backends: vec![
                    backend("api.1", "10.0.1.20", PEER2, APP),
                    backend("api.2", "10.0.1.21", PEER3, APP),
                ],
            },
        ],
        endpoints: Vec::new(),
        local_endpoints: Vec::new(),
    };
    for service in &state.services {
        for be in &service.backends {
            state.endpoints.push(TaskEndpoint {
                task_id: be.task_id.clone(),
                addr: be.addr,
                node: be.node,
                vni: be.vni,
            });
            if be.node == NODE {
                state.local_endpoints.push(LocalEndpoint {
                    task_id: be.task_id.clone(),
                    vni: be.vni,
                    host_ifname: format!("hv{}", be.vni),
                    host_ifindex: be.vni,
                });
            }
        }
    }
    state
}

pub(super) fn compile(state: &MeshState) -> Desired {
    state.validate().expect("valid state");
    Desired::compile(
        state,
        UnderlayLink {
            ifindex: 2,
            mac: [2, 0, 0, 0, 0, 2],
        },
    )
}

fn published(port: u16) -> ServiceKey {
    ServiceKey {
        addr_be: 0,
        port_be: port.to_be(),
        proto: 6,
        _pad: 0,
    }
}

fn applied(state: &MeshState) -> (Reconciler, FakeMaps) {
    let mut maps = FakeMaps::default();
    let mut rec = Reconciler::new();
    rec.apply(&compile(state), &mut maps).expect("apply");
    maps.take_log();
    (rec, maps)
}

/// Position of the first op matching `f` in `log`.
fn pos(log: &[Op], f: impl Fn(&Op) -> bool) -> usize {
    log.iter()
        .position(f)
        .unwrap_or_else(|| panic!("op not in {log:#?}"))
}

fn web(state: &mut MeshState) -> &mut Service {
    &mut state.services[0]
}

// ---- validation ----

#[test]
fn the_sample_state_is_valid() {
    sample_state().validate().expect("valid");
}

#[test]
fn a_published_port_cannot_be_used_twice() {
    let mut state = sample_state();
    state.services[1].ports[0] = ServicePort {
        protocol: Protocol::Tcp,
        target_port: 81,
        published_port: Some(8080),
    };
    let err = state.validate().expect_err("conflict");
    assert_eq!(
        err.to_string(),
        r#"service "api": published port 8080/tcp is already used by service "web""#
    );
    // The same number on the other protocol is another port.
    state.services[1].ports[0].protocol = Protocol::Udp;
    state.validate().expect("8080/udp is free");
}

#[test]
fn two_published_ports_may_lead_to_one_target_port() {
    let mut state = sample_state();
    web(&mut state).ports.push(ServicePort {
        protocol: Protocol::Tcp,
        target_port: 80,
        published_port: Some(8081),
    });
    let desired = compile(&state);
    let ingress = &desired.balancers[&BalancerKey {
        service_id: "svc-web".into(),
        vni: INGRESS,
    }];
    for port in [8080, 8081] {
        assert_eq!(
            ingress.frontends[&published(port)].target_port_be,
            80u16.to_be(),
            "{port} leads to 80"
        );
    }
    // One published port twice in one service is a mistake of the state's writer.
    web(&mut state).ports.push(ServicePort {
        protocol: Protocol::Tcp,
        target_port: 81,
        published_port: Some(8081),
    });
    assert_eq!(
        state.validate().expect_err("8081 twice").to_string(),
        r#"service "web": published port 8081/tcp is listed twice"#
    );
}

#[test]
fn an_invalid_service_is_set_aside_and_the_others_stay() {
    let mut state = sample_state();
    // api takes web's published port: web came first and keeps it.
    state.services[1].ports[0] = ServicePort {
        protocol: Protocol::Tcp,
        target_port: 81,
        published_port: Some(8080),
    };
    let mut third = state.services[1].clone();
    third.id = "svc-db".into();
    third.name = "db".into();
    third.vips[0].addr = ip("10.0.1.4");
    third.ports.clear();
    third.backends.clear();
    state.services.push(third);
    let refused = state.set_aside_invalid_services();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (refused[0].id.as_str(), refused[0].name.as_str()),
        ("svc-api", "api")
    );
    assert_eq!(
        refused[0].error.to_string(),
        r#"service "api": published port 8080/tcp is already used by service "web""#
    );
    let kept: Vec<&str> = state.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(kept, ["web", "db"]);
    // What is left is valid (api's tasks stay endpoints: only its balancing goes).
    state.validate().expect("valid without api");
    assert!(state.set_aside_invalid_services().is_empty());

    // A refused service holds nothing: its VIP is free for a later one.
    let mut state = sample_state();
    state.services[1].ports[0].target_port = 0;
    let mut later = state.services[1].clone();
    later.id = "svc-api2".into();
    later.name = "api2".into();
    later.ports.clear();
    later.backends.clear();
    state.services.push(later);
    let refused = state.set_aside_invalid_services();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].name, "api");
    state
        .validate()
        .expect("api2 has the VIP api could not take");

    // A fault no one service owns takes nothing out: validate reports it.
    let mut state = sample_state();
    state.networks[1].vni = 0;
    assert!(state.set_aside_invalid_services().is_empty());
    assert_eq!(state.services.len(), 2);
}

#[test]
fn validation_names_what_is_wrong() {
    type Case = (fn(&mut MeshState), &'static str);
    let cases: Vec<Case> = vec![
        (
            |s| s.services[1].vips[0].addr = ip("10.9.9.9"),
            "VIP 10.9.9.9 is not a host address of network \"app\"",
        ),
        (
            |s| s.services[1].vips[0].addr = ip("10.0.1.2"),
            "is already the VIP of service \"web\"",
        ),
        (
            |s| s.services[1].vips[0].network = "nope".into(),
            "network \"nope\" is not defined",
        ),
        (
            |s| s.services[1].backends[0].node = ip("192.168.0.99"),
            "which is neither this node nor an overlay peer",
        ),
        (
            |s| s.services[1].backends[0].vni = INGRESS,
            "where the service has no VIP",
        ),
        (
            |s| s.services[1].backends[0].addr = ip("10.255.0.99"),
            "outside its network",
        ),
        (
            |s| s.services[1].backends[1].task_id = "api.1".into(),
            "listed twice",
        ),
        (
            |s| s.services[1].id = "svc-web".into(),
            "is also the ID of service \"web\"",
        ),
        (
            |s| {
                s.networks[1].subnet = "10.255.1.0/24".parse().expect("net");
                s.networks[1].gateway = ip("10.255.1.1");
            },
            "overlaps network \"ingress\"",
        ),
        (
            |s| s.networks[1].vni = 0,
            "VNI 0 is not a VXLAN network identifier",
        ),
        (|s| s.networks[1].ingress = true, "are both marked ingress"),
        (|s| s.node.underlay_mtu = 600, "leaves 550 bytes"),
        (
            |s| s.peers[1].underlay_addr = PEER2,
            "is also used by peer \"n2\"",
        ),
        (
            |s| s.peers[0].underlay_addr = NODE,
            "is this node's own address",
        ),
        (|s| s.local_endpoints.clear(), "has no local endpoint"),
        (
            |s| s.endpoints[2].addr = s.endpoints[0].addr,
            "is also given to task",
        ),
        (|s| s.services[0].id = "x".repeat(65), "at most 64 bytes"),
        (
            |s| {
                s.networks[0].ingress = false;
            },
            "no network is marked ingress",
        ),
    ];
    for (break_it, expected) in cases {
        let mut state = sample_state();
        break_it(&mut state);
        let err = state.validate().expect_err(expected).to_string();
        assert!(
            err.contains(expected),
            "{err:?} should contain {expected:?}"
        );
    }
}

// ---- diff ----

#[test]
fn first_apply_writes_backends_then_rings_then_frontends() {
    let state = sample_state();
    let mut maps = FakeMaps::default();
    let mut rec = Reconciler::new();
    let stats = rec.apply(&compile(&state), &mut maps).expect("apply");
    // web on two networks, api on one.
    assert_eq!(stats.services_added, 3);
    assert_eq!(stats.backends_written, 8);
    // web: 2 VIPs x (marker + port 80) + published 8080; api: marker + 9000.
    assert_eq!(stats.frontends_written, 7);
    assert_eq!(stats.endpoints_written, 8);
    assert_eq!(stats.peers_written, 2);
    assert_eq!(stats.grace_periods, 0);
    let log = &maps.log;
    for (i, op) in log.iter().enumerate() {
        let Op::PutFrontend(_, fe) = op else { continue };
        let ring_at = log[..i]
            .iter()
            .rposition(|o| matches!(o, Op::SetRing(s, r) if *s == fe.service && r.size > 0))
            .expect("the ring is live before its front end");
        let ring = maps.rings[&fe.service];
        for slot in ring.offset..ring.offset + ring.size {
            let backend = maps.maglev[&slot];
            let written = pos(log, |o| *o == Op::SetBackend(backend));
            assert!(
                written < ring_at,
                "backend {backend} written before the ring names it"
            );
        }
    }
    // The published port leads to web's ingress balancer, local flag set.
    let fe = maps.frontends[&published(8080)];
    assert_eq!(fe.flags, Frontend::FLAG_PUBLISHED);
    assert_eq!(Some(fe.service), rec.service_slot("svc-web", INGRESS));
    let ring = maps.rings[&fe.service];
    assert_eq!(ring.size, 401, "3 backends -> M = 401");
    assert_eq!(maps.node.overlay_mtu, 1450);
}

#[test]
fn applying_the_same_state_again_touches_nothing() {
    let state = sample_state();
    let (mut rec, mut maps) = applied(&state);
    let stats = rec.apply(&compile(&state), &mut maps).expect("apply");
    assert!(stats.is_noop(), "{stats:?}");
    assert!(maps.log.is_empty(), "{:?}", maps.log);
}

#[test]
fn input_order_does_not_matter() {
    let state = sample_state();
    let (mut rec, mut maps) = applied(&state);
    let mut shuffled = state.clone();
    shuffled.services.reverse();
    for s in &mut shuffled.services {
        s.backends.reverse();
    }
    shuffled.endpoints.reverse();
    shuffled.peers.reverse();
    let stats = rec.apply(&compile(&shuffled), &mut maps).expect("apply");
    assert!(stats.is_noop(), "{stats:?}");
}

#[test]
fn adding_a_backend_touches_only_that_service() {
    let mut state = sample_state();
    let (mut rec, mut maps) = applied(&state);
    let api_before = maps.rings[&rec.service_slot("svc-api", APP).expect("api")];
    web(&mut state)
        .backends
        .push(backend("web.4", "10.255.0.13", PEER3, INGRESS));
    state.endpoints.push(TaskEndpoint {
        task_id: "web.4".into(),
        addr: ip("10.255.0.13"),
        node: PEER3,
        vni: INGRESS,
    });
    let stats = rec.apply(&compile(&state), &mut maps).expect("apply");
    assert_eq!(stats.backends_written, 1);
    assert_eq!(stats.endpoints_written, 1);
    assert_eq!(stats.rings_rebuilt, 1);
    assert_eq!(stats.frontends_written + stats.frontends_removed, 0);
    assert_eq!(stats.backends_removed, 0);
    assert_eq!(
        maps.rings[&rec.service_slot("svc-api", APP).expect("api")],
        api_before
    );
    let web_ingress = rec.service_slot("svc-web", INGRESS).expect("web");
    let ring = maps.rings[&web_ingress];
    assert_eq!(ring.size, 401, "4 backends: same rung as 3");
    // Only web's ingress ring moved; the old segment is retired, not reused.
    let rings: Vec<&Op> = maps
        .log
        .iter()
        .filter(|o| matches!(o, Op::SetRing(..)))
        .collect();
    assert!(
        rings
            .iter()
            .all(|o| matches!(o, Op::SetRing(s, _) if *s == web_ingress))
    );
}

#[test]
fn removing_a_backend_flips_the_ring_before_dropping_it_and_moves_few_flows() {
    let mut state = sample_state();
    for i in 4..=6 {
        web(&mut state).backends.push(backend(
            &format!("web.{i}"),
            &format!("10.255.0.{}", 10 + i),
            PEER2,
            INGRESS,
        ));
        state.endpoints.push(TaskEndpoint {
            task_id: format!("web.{i}"),
            addr: ip(&format!("10.255.0.{}", 10 + i)),
            node: PEER2,
            vni: INGRESS,
        });
    }
    let (mut rec, mut maps) = applied(&state);
    let gone = rec
        .backend_slot("svc-web", INGRESS, "web.5")
        .expect("web.5");
    let before: Vec<Option<u32>> = (0..20_000u32)
        .map(|h| maps.pick(&published(8080), h.wrapping_mul(2_654_435_761)))
        .collect();

    web(&mut state).backends.retain(|b| b.task_id != "web.5");
    let stats = rec.apply(&compile(&state), &mut maps).expect("apply");
    assert_eq!(stats.backends_removed, 1);
    assert_eq!(stats.backends_written, 0);
    let log = &maps.log;
    let last_flip = log
        .iter()
        .rposition(|o| matches!(o, Op::SetRing(..)))
        .expect("flip");
    let dropped = pos(log, |o| *o == Op::RemoveBackendRecord(gone));
    assert!(
        last_flip < dropped,
        "out of the ring before its record goes: {log:#?}"
    );
    // Marked draining once out of the ring, its address kept: a SYN whose conntrack entry
    // still names it is balanced afresh, its established flows go on.
    let marked = log
        .iter()
        .rposition(|o| *o == Op::SetBackend(gone))
        .expect("marked");
    assert!(last_flip < marked, "marked after the flip: {log:#?}");
    assert_eq!(
        maps.backends[&gone].flags & Backend::FLAG_DRAINING,
        Backend::FLAG_DRAINING
    );
    assert_eq!(maps.backends[&gone].addr_be, addr_be(ip("10.255.0.15")));
    // Its task still runs (draining): no flow of it is forgotten yet.
    assert!(
        !log.iter().any(|o| matches!(o, Op::ForgetFlows(_))),
        "{log:#?}"
    );

    // The task stops: its endpoint leaves the mesh, and its flows with it.
    maps.take_log();
    state.endpoints.retain(|e| e.task_id != "web.5");
    rec.apply(&compile(&state), &mut maps).expect("apply");
    assert_eq!(
        maps.log,
        vec![
            Op::RemoveEndpoint(addr_be(ip("10.255.0.15"))),
            Op::ForgetFlows(vec![addr_be(ip("10.255.0.15"))])
        ]
    );

    let after: Vec<Option<u32>> = (0..20_000u32)
        .map(|h| maps.pick(&published(8080), h.wrapping_mul(2_654_435_761)))
        .collect();
    let mut moved_other = 0;
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(*a, Some(gone), "no new flow goes to a removed backend");
        if *b != Some(gone) && b != a {
            moved_other += 1;
        }
    }
    assert!(
        moved_other * 100 < 20_000 * 5,
        "{moved_other} of 20000 flows of surviving backends moved"
    );
}

#[test]
fn removing_a_service_closes_its_front_ends_first() {
    let mut state = sample_state();
    let (mut rec, mut maps) = applied(&state);
    let api = rec.service_slot("svc-api", APP).expect("api");
    state.services.retain(|s| s.name != "api");
    state.endpoints.retain(|e| !e.task_id.starts_with("api"));
    let stats = rec.apply(&compile(&state), &mut maps).expect("apply");
    assert_eq!(stats.services_removed, 1);
    assert_eq!(stats.frontends_removed, 2, "VIP:9000 and the VIP marker");
    assert_eq!(stats.backends_removed, 2);
    assert_eq!(stats.endpoints_removed, 2);
    let log = &maps.log;
    let closed = pos(log, |o| matches!(o, Op::RemoveFrontend(_)));
    let emptied = pos(
        log,
        |o| matches!(o, Op::SetRing(s, r) if *s == api && r.size == 0),
    );
    let forgotten = pos(log, |o| *o == Op::RemoveBalancerRecord(api));
    assert!(closed < emptied && emptied < forgotten, "{log:#?}");
    assert!(!maps.balancer_records.contains_key(&api));
    assert_eq!(rec.service_slot("svc-api", APP), None);
}

#[test]
fn a_published_port_can_move_between_services_in_one_apply() {
    let mut state = sample_state();
    let (mut rec, mut maps) = applied(&state);
    web(&mut state).ports[0].published_port = None;
    state.services[1].ports.push(ServicePort {
        protocol: Protocol::Tcp,
        target_port: 9001,
        published_port: Some(8080),
    });
    state.services[1]
        .backends
        .push(backend("api.1", "10.255.0.30", PEER2, INGRESS));
    rec.apply(&compile(&state), &mut maps).expect("apply");
    let api_ingress = rec
        .service_slot("svc-api", INGRESS)
        .expect("api on ingress");
    assert_eq!(maps.frontends[&published(8080)].service, api_ingress);
    assert!(
        !maps
            .log
            .iter()
            .any(|o| matches!(o, Op::RemoveFrontend(k) if *k == published(8080)))
    );
}

#[test]
fn a_new_seed_rebuilds_every_table() {
    let mut state = sample_state();
    let (mut rec, mut maps) = applied(&state);
    state.node.hash_seed = 8;
    let stats = rec.apply(&compile(&state), &mut maps).expect("apply");
    assert!(stats.node_written);
    assert_eq!(stats.rings_rebuilt, 3);
    assert_eq!(stats.backends_written, 0);
}

#[test]
fn retired_slots_are_reused_only_after_a_grace_period() {
    let mut state = sample_state();
    let mut maps = FakeMaps::default();
    let mut rec = Reconciler::new();
    // Three service slots (ids 1..=3) and room for the three tables (401 +
    // 401 + 211) plus 250 slots.
    rec.service_ids = IdAllocator::new(4);
    rec.segments = SegmentAllocator::new(401 + 401 + 211 + 250);
    rec.apply(&compile(&state), &mut maps).expect("apply");
    let api = rec.service_slot("svc-api", APP).expect("api");

    let api_service = state.services.remove(1);
    let stats = rec.apply(&compile(&state), &mut maps).expect("apply");
    assert_eq!((stats.services_removed, stats.grace_periods), (1, 0));
    maps.take_log();

    // A new service needs a slot: only api's is left, and only after a
    // grace period, which must come before anything is written to it.
    state.services.push(Service {
        id: "svc-api2".into(),
        ..api_service
    });
    let stats = rec.apply(&compile(&state), &mut maps).expect("apply");
    assert_eq!(stats.grace_periods, 1, "{:#?}", maps.log);
    assert_eq!(rec.service_slot("svc-api2", APP), Some(api));
    let log = &maps.log;
    let grace = pos(log, |o| *o == Op::GracePeriod);
    let reused = pos(log, |o| *o == Op::PutBalancerRecord(api));
    assert!(grace < reused, "{log:#?}");
}

#[test]
fn a_restarted_agent_recovers_and_touches_nothing() {
    let mut state = sample_state();
    let (_, mut maps) = applied(&state);
    let mut restarted = Reconciler::recover(&maps).expect("recover");
    let stats = restarted.apply(&compile(&state), &mut maps).expect("apply");
    assert!(stats.is_noop(), "{stats:?} {:#?}", maps.log);

    // ...and its next change costs what it would have without a restart.
    web(&mut state).backends.retain(|b| b.task_id != "web.3");
    let (mut fresh, mut fresh_maps) = applied(&sample_state());
    let expected = fresh
        .apply(&compile(&state), &mut fresh_maps)
        .expect("apply");
    let mut restarted = Reconciler::recover(&maps).expect("recover");
    let stats = restarted.apply(&compile(&state), &mut maps).expect("apply");
    assert_eq!(stats.backends_removed, expected.backends_removed);
    assert_eq!(stats.rings_rebuilt, expected.rings_rebuilt);
    assert_eq!(stats.frontends_written, 0);
}

#[test]
fn a_crash_between_flip_and_record_is_repaired_by_the_next_apply() {
    let state = sample_state();
    let (rec, mut maps) = applied(&state);
    let web_ingress = rec.service_slot("svc-web", INGRESS).expect("web");
    // Simulate: a new segment was written and the ring flipped to it, then
    // the agent died before updating the record.
    let ring = maps.rings[&web_ingress];
    let moved = hive_common::maps::Ring {
        offset: 100_000,
        size: ring.size,
    };
    let slots: Vec<u32> = (0..ring.size)
        .map(|i| maps.maglev[&(ring.offset + i)])
        .collect();
    maps.write_segment(moved.offset, &slots).expect("fake");
    maps.set_ring(web_ingress, &moved).expect("fake");
    maps.take_log();
    let mut restarted = Reconciler::recover(&maps).expect("recover");
    let stats = restarted.apply(&compile(&state), &mut maps).expect("apply");
    assert_eq!(stats.rings_rebuilt, 1, "digest unknown: rebuilt once");
    assert_eq!(stats.backends_written + stats.frontends_written, 0);
    let again = restarted.apply(&compile(&state), &mut maps).expect("apply");
    assert!(again.is_noop());
}

#[test]
fn every_node_builds_the_same_tables() {
    // Two nodes, different order of everything: same backend by task ID
    // for every slot.
    let state = sample_state();
    let (rec_a, maps_a) = applied(&state);
    let mut other = state.clone();
    other.services.reverse();
    for s in &mut other.services {
        s.backends.reverse();
    }
    let (rec_b, maps_b) = applied(&other);
    let task_of = |maps: &FakeMaps, id: u32| -> String {
        crate::maps::records::id_from_field(&maps.backend_records[&id].task_id).expect("utf-8")
    };
    for (svc, vni) in [("svc-web", INGRESS), ("svc-web", APP), ("svc-api", APP)] {
        let ra = maps_a.rings[&rec_a.service_slot(svc, vni).expect("a")];
        let rb = maps_b.rings[&rec_b.service_slot(svc, vni).expect("b")];
        assert_eq!(ra.size, rb.size);
        for i in 0..ra.size {
            assert_eq!(
                task_of(&maps_a, maps_a.maglev[&(ra.offset + i)]),
                task_of(&maps_b, maps_b.maglev[&(rb.offset + i)])
            );
        }
    }
}

#[test]
fn a_service_without_backends_has_an_empty_ring() {
    let mut state = sample_state();
    let (mut rec, mut maps) = applied(&state);
    let api = rec.service_slot("svc-api", APP).expect("api");
    state.services[1].backends.clear();
    rec.apply(&compile(&state), &mut maps).expect("apply");
    assert_eq!(maps.rings[&api].size, 0);
    assert_eq!(
        maps.pick(
            &ServiceKey {
                addr_be: addr_be(ip("10.0.1.3")),
                port_be: 9000u16.to_be(),
                proto: 17,
                _pad: 0
            },
            1
        ),
        None
    );
    // And back.
    let stats = rec
        .apply(&compile(&sample_state()), &mut maps)
        .expect("apply");
    assert_eq!(stats.rings_rebuilt, 1);
    assert!(maps.rings[&api].size > 0);
}

#[test]
#[ignore = "measurement"]
fn phase_costs() {
    let mut state = sample_state();
    state.networks[1].subnet = "10.0.0.0/8".parse().expect("net");
    state.networks[1].gateway = ip("10.0.0.1");
    state.networks[0].subnet = "172.16.0.0/12".parse().expect("net");
    state.networks[0].gateway = ip("172.16.0.1");
    state.services = (0..10_000u32)
        .map(|i| Service {
            id: format!("svc{i}"),
            name: format!("s{i}"),
            vips: vec![ServiceVip {
                network: "app".into(),
                addr: Ipv4Addr::from(0x0a00_0000u32 + 2 + 3 * i),
            }],
            ports: vec![ServicePort {
                protocol: Protocol::Tcp,
                target_port: 80,
                published_port: None,
            }],
            backends: (1..=2)
                .map(|b| ServiceBackend {
                    task_id: format!("svc{i}.{b}"),
                    addr: Ipv4Addr::from(0x0a00_0000u32 + 2 + 3 * i + b),
                    node: PEER2,
                    vni: APP,
                })
                .collect(),
        })
        .collect();
    state.endpoints.clear();
    state.local_endpoints.clear();
    // CPU time of this thread: wall time is meaningless on a loaded box.
    let cpu = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the call.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime");
        std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    };
    let mut maps = FakeMaps::default();
    let mut rec = Reconciler::new();
    rec.apply(
        &Desired::compile(&state, UnderlayLink::default()),
        &mut maps,
    )
    .expect("apply");
    let (mut v, mut c, mut a) = (
        std::time::Duration::MAX,
        std::time::Duration::MAX,
        std::time::Duration::MAX,
    );
    for _ in 0..5 {
        let t = cpu();
        state.validate().expect("valid");
        v = v.min(cpu() - t);
        let t = cpu();
        let desired = Desired::compile(&state, UnderlayLink::default());
        c = c.min(cpu() - t);
        let t = cpu();
        rec.apply(&desired, &mut maps).expect("apply");
        a = a.min(cpu() - t);
    }
    eprintln!(
        "CPU time, best of 5, 10,000 services: validate {v:?} compile {c:?} no-op diff {a:?}"
    );

    // The incremental path, as `Dataplane::apply` runs it.
    let mut mesh = MeshApplier::new(Reconciler::new());
    let mut maps = FakeMaps::default();
    let underlay = UnderlayLink::default();
    mesh.apply(&state, underlay, &mut maps).expect("apply");
    let extra = Service {
        id: "svc-extra".into(),
        vips: vec![ServiceVip {
            network: "app".into(),
            addr: ip("10.200.0.2"),
        }],
        backends: vec![ServiceBackend {
            task_id: "extra.1".into(),
            addr: ip("10.200.0.3"),
            node: PEER2,
            vni: APP,
        }],
        ..state.services[0].clone()
    };
    let mut best = [std::time::Duration::MAX; 5];
    let mut timed = |i: usize, state: &MeshState, mesh: &mut MeshApplier| {
        let t = cpu();
        let (_, path) = mesh
            .apply_with_path(state, underlay, &mut maps)
            .expect("apply");
        best[i] = best[i].min(cpu() - t);
        assert_eq!(path, ApplyPath::Incremental);
    };
    for _ in 0..5 {
        timed(0, &state, &mut mesh);
        state.services.push(extra.clone());
        timed(1, &state, &mut mesh);
        state.services.pop();
        timed(2, &state, &mut mesh);
        let removed = state.services[5_000].backends.pop().expect("backend");
        timed(3, &state, &mut mesh);
        state.services[5_000].backends.push(removed);
        timed(4, &state, &mut mesh);
    }
    let [noop, add, remove, backend, _] = best;
    eprintln!(
        "CPU time, best of 5, incremental apply at 10,000 services: no-op {noop:?}, \
         +1 service {add:?}, -1 service {remove:?}, -1 backend {backend:?}"
    );
}

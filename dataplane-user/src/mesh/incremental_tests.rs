//! Unit tests of the incremental apply ([`MeshApplier`]) against
//! [`FakeMaps`]: it must leave exactly the maps the full path leaves, and
//! reject exactly the states full validation rejects, with the same error.

use std::net::Ipv4Addr;

use super::{
    fake::{FakeMaps, Op},
    tests::{compile, sample_state},
    *,
};

const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
const PEER2: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 3);
const PEER3: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 4);
const PEER4: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 5);
const INGRESS: u32 = 4096;
const APP: u32 = 4097;
const UNDERLAY: UnderlayLink = UnderlayLink {
    ifindex: 2,
    mac: [2, 0, 0, 0, 0, 2],
};

/// The reference: validate, compile and diff the whole state.
struct Full {
    rec: Reconciler,
    maps: FakeMaps,
}

impl Full {
    fn new() -> Self {
        Self {
            rec: Reconciler::new(),
            maps: FakeMaps::default(),
        }
    }

    fn apply(&mut self, state: &MeshState) -> Result<ApplyStats, String> {
        state
            .validate()
            .map_err(|e| ApplyError::from(e).to_string())?;
        self.rec
            .apply(&Desired::compile(state, UNDERLAY), &mut self.maps)
            .map_err(|e| e.to_string())
    }
}

/// The one under test.
struct Incr {
    mesh: MeshApplier,
    maps: FakeMaps,
}

impl Incr {
    fn new() -> Self {
        Self {
            mesh: MeshApplier::new(Reconciler::new()),
            maps: FakeMaps::default(),
        }
    }

    fn apply(&mut self, state: &MeshState) -> Result<(ApplyStats, ApplyPath), String> {
        self.mesh
            .apply_with_path(state, UNDERLAY, &mut self.maps)
            .map_err(|e| e.to_string())
    }

    fn apply_incrementally(&mut self, state: &MeshState) -> ApplyStats {
        let (stats, path) = self.apply(state).expect("valid state");
        assert_eq!(path, ApplyPath::Incremental);
        stats
    }
}

/// Apply `states` in turn to both; after each, the same outcome and maps.
fn same_as_full(states: &[MeshState]) -> Incr {
    let mut full = Full::new();
    let mut incr = Incr::new();
    for (step, state) in states.iter().enumerate() {
        let want = full.apply(state);
        let got = incr.apply(state).map(|(s, _)| s);
        assert_eq!(got, want, "step {step}");
        full.maps.take_log();
        incr.maps.take_log();
        assert!(incr.maps == full.maps, "step {step}: the maps differ");
    }
    incr
}

fn backend(task: &str, addr: Ipv4Addr, node: Ipv4Addr, vni: u32) -> ServiceBackend {
    ServiceBackend {
        task_id: task.to_owned(),
        addr,
        node,
        vni,
    }
}

/// A service on `app` with a VIP, port 80 and two backends, numbered `i`.
fn app_service(i: u32) -> Service {
    let base = 0x0a00_0000 + 4 * i;
    Service {
        id: format!("svc{i}"),
        name: format!("s{i}"),
        vips: vec![ServiceVip {
            network: "app".into(),
            addr: Ipv4Addr::from(base + 2),
        }],
        ports: vec![ServicePort {
            protocol: Protocol::Tcp,
            target_port: 80,
            published_port: None,
        }],
        backends: (1..=2)
            .map(|b| {
                backend(
                    &format!("svc{i}.{b}"),
                    Ipv4Addr::from(base + 2 + b),
                    PEER2,
                    APP,
                )
            })
            .collect(),
    }
}

/// The sample state with `n` more services on a wide app network, and
/// endpoints for every backend.
fn many(n: u32) -> MeshState {
    let mut state = sample_state();
    state.networks[1].subnet = "10.0.0.0/8".parse().expect("net");
    state.networks[1].gateway = Ipv4Addr::new(10, 0, 0, 1);
    state.networks[0].subnet = "172.16.0.0/12".parse().expect("net");
    state.networks[0].gateway = Ipv4Addr::new(172, 16, 0, 1);
    for (i, addr) in [
        (0, "172.16.0.5"),
        (1, "172.16.0.10"),
        (2, "172.16.0.11"),
        (3, "172.16.0.12"),
    ] {
        let addr: Ipv4Addr = addr.parse().expect("addr");
        if i == 0 {
            state.services[0].vips[0].addr = addr;
        } else {
            state.services[0].backends[2 * (i - 1)].addr = addr;
        }
    }
    state.services[0].vips[1].addr = Ipv4Addr::new(10, 200, 0, 2);
    state.services[1].vips[0].addr = Ipv4Addr::new(10, 200, 0, 3);
    for (b, addr) in state.services[0]
        .backends
        .iter_mut()
        .skip(1)
        .step_by(2)
        .zip(10..)
    {
        b.addr = Ipv4Addr::new(10, 200, 0, addr);
    }
    for (b, addr) in state.services[1].backends.iter_mut().zip(20..) {
        b.addr = Ipv4Addr::new(10, 200, 0, addr);
    }
    state.services.extend((0..n).map(app_service));
    fill_endpoints(&mut state);
    state
}

/// Endpoints (and local veths) for every backend.
fn fill_endpoints(state: &mut MeshState) {
    state.endpoints.clear();
    state.local_endpoints.clear();
    for service in &state.services {
        for b in &service.backends {
            state.endpoints.push(TaskEndpoint {
                task_id: b.task_id.clone(),
                addr: b.addr,
                node: b.node,
                vni: b.vni,
            });
            if b.node == NODE {
                state.local_endpoints.push(LocalEndpoint {
                    task_id: b.task_id.clone(),
                    vni: b.vni,
                    host_ifname: format!("hv{}", state.local_endpoints.len()),
                    host_ifindex: 100 + state.local_endpoints.len() as u32,
                });
            }
        }
    }
}

#[test]
fn the_first_apply_is_full_and_the_next_ones_incremental() {
    let state = many(20);
    let mut incr = Incr::new();
    assert_eq!(incr.apply(&state).expect("apply").1, ApplyPath::Full);
    incr.maps.take_log();
    let stats = incr.apply_incrementally(&state);
    assert!(stats.is_noop(), "{stats:?}");
    assert!(incr.maps.log.is_empty());
}

#[test]
fn changing_one_service_among_many_touches_only_it() {
    let mut state = many(200);
    let mut incr = same_as_full(std::slice::from_ref(&state));
    incr.maps.take_log();
    let svc = &mut state.services[100];
    let gone = svc.backends.pop().expect("a backend");
    state.endpoints.retain(|e| e.task_id != gone.task_id);
    let stats = incr.apply_incrementally(&state);
    assert_eq!(stats.backends_removed, 1);
    assert_eq!(stats.endpoints_removed, 1);
    assert_eq!(stats.rings_rebuilt, 1);
    assert_eq!(stats.frontends_written + stats.frontends_removed, 0);
    let touched: Vec<&Op> = incr
        .maps
        .log
        .iter()
        .filter(|o| matches!(o, Op::SetRing(..)))
        .collect();
    let id = incr
        .mesh
        .reconciler()
        .service_slot("svc98", APP)
        .expect("applied");
    assert!(
        touched
            .iter()
            .all(|o| matches!(o, Op::SetRing(s, _) if *s == id))
    );

    // And the result is what the full path gives for the same history.
    same_as_full(&[many(200), state]);
}

#[test]
fn add_remove_and_edit_in_one_apply_match_the_full_path() {
    let first = many(50);
    let mut next = first.clone();
    next.services.remove(10);
    next.services.push(app_service(1000));
    next.services[20].backends[0].node = PEER3;
    next.services[30].ports.push(ServicePort {
        protocol: Protocol::Udp,
        target_port: 53,
        published_port: None,
    });
    fill_endpoints(&mut next);
    let mut incr = same_as_full(&[first, next.clone()]);
    let stats = incr.apply_incrementally(&next);
    assert!(stats.is_noop());
}

#[test]
fn renaming_a_service_writes_nothing_and_a_new_id_replaces_it() {
    let first = many(5);
    let mut renamed = first.clone();
    renamed.services[3].name = "renamed".into();
    let mut incr = same_as_full(std::slice::from_ref(&first));
    incr.maps.take_log();
    let stats = incr.apply_incrementally(&renamed);
    assert!(stats.is_noop(), "a name is not in the maps: {stats:?}");

    // A new ID is another service: the old one goes, the new one comes.
    let mut new_id = renamed.clone();
    new_id.services[3].id = "svc-new".into();
    let stats = incr.apply_incrementally(&new_id);
    assert_eq!((stats.services_added, stats.services_removed), (1, 1));
    assert_eq!(stats.frontends_removed, 0, "front ends move in place");
    same_as_full(&[first, renamed, new_id]);
}

#[test]
fn a_published_port_moves_between_services_incrementally() {
    let first = many(5);
    let mut moved = first.clone();
    moved.services[0].ports[0].published_port = None;
    moved.services[4].ports[0].published_port = Some(8080);
    moved.services[4].vips.push(ServiceVip {
        network: "ingress".into(),
        addr: Ipv4Addr::new(172, 16, 1, 1),
    });
    moved.services[4].backends.push(backend(
        "svc2.9",
        Ipv4Addr::new(172, 16, 1, 2),
        PEER3,
        INGRESS,
    ));
    fill_endpoints(&mut moved);
    let mut incr = same_as_full(std::slice::from_ref(&first));
    incr.maps.take_log();
    incr.apply_incrementally(&moved);
    let key = hive_common::maps::ServiceKey {
        addr_be: 0,
        port_be: 8080u16.to_be(),
        proto: 6,
        _pad: 0,
    };
    let owner = incr
        .mesh
        .reconciler()
        .service_slot("svc2", INGRESS)
        .expect("svc2 on ingress");
    assert_eq!(incr.maps.frontends[&key].service, owner);
    assert!(
        !incr
            .maps
            .log
            .iter()
            .any(|o| matches!(o, Op::RemoveFrontend(k) if *k == key)),
        "overwritten in place, never closed"
    );
    // Swapping a port between two services in one apply is fine too.
    let mut swapped = moved.clone();
    swapped.services[4].ports[0].published_port = None;
    swapped.services[0].ports[0].published_port = Some(8080);
    incr.apply_incrementally(&swapped);
    same_as_full(&[first, moved, swapped]);
}

#[test]
fn removing_services_and_everything_matches_the_full_path() {
    let first = many(30);
    let mut fewer = first.clone();
    fewer.services.retain(|s| !s.id.ends_with('7'));
    fill_endpoints(&mut fewer);
    let mut none = fewer.clone();
    none.services.clear();
    fill_endpoints(&mut none);
    let mut incr = same_as_full(&[first.clone(), fewer.clone(), none.clone(), first]);
    incr.apply_incrementally(&none);
}

#[test]
fn invalid_changes_get_the_full_validation_error_and_change_nothing() {
    let first = many(20);
    let mut incr = Incr::new();
    incr.apply(&first).expect("valid");
    incr.maps.take_log();
    type Break = fn(&mut MeshState);
    let cases: Vec<Break> = vec![
        // A VIP of an unchanged service.
        |s| s.services[7].vips[0].addr = s.services[3].vips[0].addr,
        // A published port of an unchanged service.
        |s| {
            s.services[9].ports[0].published_port = Some(8080);
            s.services[9].vips.push(ServiceVip {
                network: "ingress".into(),
                addr: Ipv4Addr::new(172, 16, 2, 2),
            });
        },
        // Two new services with one ID; a new one with an existing ID.
        |s| {
            s.services.push(app_service(500));
            s.services.push(app_service(500));
        },
        |s| {
            let mut dup = app_service(501);
            dup.id = "svc3".into();
            s.services.push(dup);
        },
        // An endpoint address already taken.
        |s| {
            let mut ep = s.endpoints[5].clone();
            ep.task_id = "other".into();
            s.endpoints.push(ep);
        },
        // A peer some backends still run on.
        |s| s.peers.retain(|p| p.underlay_addr != PEER2),
        // A local endpoint without its veth, and a veth without endpoint.
        |s| {
            s.local_endpoints.pop();
        },
        |s| {
            s.local_endpoints.push(LocalEndpoint {
                task_id: "ghost".into(),
                vni: APP,
                host_ifname: "hvghost".into(),
                host_ifindex: 9,
            })
        },
        |s| s.local_endpoints[0].host_ifindex = 0,
        // A backend on an unknown node.
        |s| s.services[12].backends[0].node = PEER4,
    ];
    for (i, break_it) in cases.into_iter().enumerate() {
        let mut bad = first.clone();
        break_it(&mut bad);
        let want = ApplyError::from(bad.validate().expect_err("invalid")).to_string();
        assert_eq!(incr.apply(&bad).map(|(s, _)| s), Err(want), "case {i}");
        assert!(incr.maps.log.is_empty(), "case {i}: {:?}", incr.maps.log);
        // What was applied stays applied, and incremental.
        assert!(incr.apply_incrementally(&first).is_noop(), "case {i}");
    }
}

#[test]
fn peers_come_and_go_when_nothing_runs_on_them() {
    let first = many(5);
    let mut more = first.clone();
    more.peers.push(OverlayPeer {
        node_id: "n4".into(),
        underlay_addr: PEER4,
        mac: "02:00:00:00:00:05".parse().expect("mac"),
    });
    let mut used = more.clone();
    used.services[4].backends[0].node = PEER4;
    fill_endpoints(&mut used);
    let mut incr = same_as_full(&[first.clone(), more.clone(), used.clone()]);
    let mut without = used.clone();
    without.peers.pop();
    assert!(incr.apply(&without).is_err(), "svc2 still runs on n4");
    let stats = incr.apply_incrementally(&more);
    assert_eq!(stats.backends_written, 1);
    let stats = incr.apply_incrementally(&first);
    assert_eq!(stats.peers_removed, 1);
    same_as_full(&[first.clone(), more, used, first]);
}

#[test]
fn a_new_veth_ifindex_rewrites_its_endpoint() {
    let first = many(5);
    let mut next = first.clone();
    next.local_endpoints[0].host_ifindex = 4242;
    let mut incr = same_as_full(&[first.clone(), next.clone()]);
    let mut incr2 = Incr::new();
    incr2.apply(&first).expect("valid");
    incr2.maps.take_log();
    let stats = incr2.apply_incrementally(&next);
    assert_eq!(stats.endpoints_written, 1);
    assert!(incr2.maps.endpoints.values().any(|e| e.ifindex == 4242));
    assert!(incr.apply_incrementally(&next).is_noop());
}

#[test]
fn a_failed_apply_is_finished_by_the_next_one_the_full_way() {
    let first = many(30);
    let mut next = first.clone();
    next.services.truncate(20);
    next.services.push(app_service(900));
    fill_endpoints(&mut next);
    for fail_after in [0, 1, 3, 10, 40] {
        let mut incr = Incr::new();
        incr.apply(&first).expect("valid");
        incr.maps.take_log();
        incr.maps.fail_at = Some(fail_after);
        assert!(incr.apply(&next).is_err(), "fails after {fail_after} ops");
        incr.maps.fail_at = None;
        let (_, path) = incr.apply(&next).expect("retry");
        assert_eq!(path, ApplyPath::Full, "after a failure, the full diff");
        // The maps hold `next`: a reconciler recovered from them has
        // nothing to do, and neither does the incremental path.
        let mut recovered = Reconciler::recover(&incr.maps).expect("recover");
        let stats = recovered
            .apply(&compile(&next), &mut incr.maps)
            .expect("apply");
        assert!(stats.is_noop(), "fails after {fail_after}: {stats:?}");
        assert!(incr.apply_incrementally(&next).is_noop());
    }
}

#[test]
fn node_or_network_changes_take_the_full_path() {
    let first = many(5);
    let mut reseeded = first.clone();
    reseeded.node.hash_seed = 99;
    let mut incr = same_as_full(&[first.clone(), reseeded.clone()]);
    let mut renamed_net = reseeded.clone();
    renamed_net.networks[1].name = "app2".into();
    for s in &mut renamed_net.services {
        for v in &mut s.vips {
            if v.network == "app" {
                v.network = "app2".into();
            }
        }
    }
    let (_, path) = incr.apply(&renamed_net).expect("valid");
    assert_eq!(path, ApplyPath::Full);
    same_as_full(&[first, reseeded, renamed_net]);
}

// ---- random sequences ----

/// splitmix64: a seeded, dependency-free PRNG.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        items.get(self.below(items.len() as u64) as usize)
    }
}

/// A random service; addresses mostly unique (`next` counts up), so most
/// states are valid, but VIPs and published ports are drawn from small
/// pools now and then to make conflicts.
fn random_service(rng: &mut Rng, next: &mut u32) -> Service {
    *next += 1;
    let n = *next;
    let mut vips = Vec::new();
    if rng.chance(90) {
        let addr = if rng.chance(5) {
            Ipv4Addr::from(0x0a64_0000 + rng.below(4) as u32)
        } else {
            Ipv4Addr::from(0x0a01_0000 + n)
        };
        vips.push(ServiceVip {
            network: "app".into(),
            addr,
        });
    }
    let published = rng.chance(30);
    if published && rng.chance(50) {
        vips.push(ServiceVip {
            network: "ingress".into(),
            addr: Ipv4Addr::from(0xac12_0000 + n),
        });
    }
    let mut ports = vec![ServicePort {
        protocol: if rng.chance(80) {
            Protocol::Tcp
        } else {
            Protocol::Udp
        },
        target_port: 80,
        published_port: published.then(|| 8080 + rng.below(6) as u16),
    }];
    if rng.chance(20) {
        ports.push(ServicePort {
            protocol: Protocol::Tcp,
            target_port: 443,
            published_port: None,
        });
    }
    let mut service = Service {
        id: format!("svc{}", rng.below(300)),
        name: format!("s{n}"),
        vips,
        ports,
        backends: Vec::new(),
    };
    for _ in 0..rng.below(5) {
        add_backend(rng, next, &mut service);
    }
    service
}

fn add_backend(rng: &mut Rng, next: &mut u32, service: &mut Service) {
    *next += 1;
    let on_ingress = service.ports.iter().any(|p| p.published_port.is_some()) && rng.chance(50);
    let on_app = service.vips.iter().any(|v| v.network == "app");
    let (vni, addr) = if on_ingress || !on_app {
        (INGRESS, Ipv4Addr::from(0xac11_0000 + *next))
    } else {
        (APP, Ipv4Addr::from(0x0a02_0000 + *next))
    };
    let node = *rng
        .pick(&[NODE, PEER2, PEER3, PEER3, PEER4])
        .unwrap_or(&PEER2);
    service.backends.push(ServiceBackend {
        task_id: format!("t{}", *next),
        addr,
        node,
        vni,
    });
}

/// One random step from `state`.
fn mutate(rng: &mut Rng, next: &mut u32, state: &mut MeshState) {
    let services = state.services.len() as u64;
    match rng.below(14) {
        0 | 1 => state.services.push(random_service(rng, next)),
        2 if services > 0 => {
            state.services.remove(rng.below(services) as usize);
        }
        3 | 4 if services > 0 => {
            let i = rng.below(services) as usize;
            add_backend(rng, next, &mut state.services[i]);
        }
        5 if services > 0 => {
            let s = &mut state.services[rng.below(services) as usize];
            if !s.backends.is_empty() {
                let b = rng.below(s.backends.len() as u64) as usize;
                s.backends.remove(b);
            }
        }
        6 if services > 0 => {
            let s = &mut state.services[rng.below(services) as usize];
            s.name = format!("renamed{}", rng.below(100));
        }
        7 if services > 0 => {
            let s = &mut state.services[rng.below(services) as usize];
            s.id = format!("svc{}", rng.below(300));
        }
        8 if services > 1 => {
            // Move a published port between two services.
            let a = rng.below(services) as usize;
            let b = rng.below(services) as usize;
            let port = state.services[a].ports[0].published_port.take();
            state.services[b].ports[0].published_port = port.or(Some(8090));
        }
        9 => {
            // Reorder: the window becomes (nearly) everything.
            let n = state.services.len();
            if n > 1 {
                let i = rng.below(n as u64) as usize;
                state.services.swap(0, i);
            }
        }
        10 => {
            // n4 joins or leaves (leaving fails while tasks run there).
            if state.peers.len() == 3 {
                state.peers.pop();
            } else {
                state.peers.push(OverlayPeer {
                    node_id: "n4".into(),
                    underlay_addr: PEER4,
                    mac: "02:00:00:00:00:05".parse().expect("mac"),
                });
            }
        }
        11 if services > 0 => {
            // A backend moves to another node.
            let s = &mut state.services[rng.below(services) as usize];
            if let Some(b) = s.backends.first_mut() {
                b.node = *rng.pick(&[NODE, PEER2, PEER3]).unwrap_or(&PEER2);
            }
        }
        12 => state.node.hash_seed = rng.below(3) as u32,
        _ => {}
    }
}

#[test]
fn random_sequences_match_the_full_path() {
    let mut incremental_steps = 0;
    let mut rejected = 0;
    for seed in 0..40u64 {
        let mut rng = Rng(seed);
        let mut next = 0;
        let mut state = many(0);
        state.peers.push(OverlayPeer {
            node_id: "n4".into(),
            underlay_addr: PEER4,
            mac: "02:00:00:00:00:05".parse().expect("mac"),
        });
        let mut full = Full::new();
        let mut incr = Incr::new();
        for step in 0..60 {
            for _ in 0..=rng.below(3) {
                mutate(&mut rng, &mut next, &mut state);
            }
            fill_endpoints(&mut state);
            if rng.chance(10) && state.local_endpoints.len() > 1 {
                state.local_endpoints[0].host_ifindex = 5000 + step;
                state.endpoints.reverse();
            }
            let want = full.apply(&state);
            let got = incr.apply(&state);
            match &got {
                Ok((_, ApplyPath::Incremental)) => incremental_steps += 1,
                Err(_) => rejected += 1,
                Ok(_) => {}
            }
            assert_eq!(
                got.map(|(s, _)| s),
                want,
                "seed {seed} step {step}: {state:#?}"
            );
            full.maps.take_log();
            incr.maps.take_log();
            assert!(
                incr.maps == full.maps,
                "seed {seed} step {step}: the maps differ"
            );
            if want.is_err() && rng.chance(70) {
                // Mostly go back to something valid, to keep going.
                state.services.pop();
                state.peers.truncate(2);
                state.peers.push(OverlayPeer {
                    node_id: "n4".into(),
                    underlay_addr: PEER4,
                    mac: "02:00:00:00:00:05".parse().expect("mac"),
                });
            }
        }
    }
    // The test is only worth something if both kinds of step happen.
    eprintln!("{incremental_steps} incremental steps, {rejected} rejected");
    assert!(incremental_steps > 1000, "{incremental_steps} incremental");
    assert!(rejected > 50, "{rejected} rejected");
}

#[test]
fn a_delta_needs_a_state_applied_first() {
    let mut incr = Incr::new();
    let delta = MeshDelta {
        services: vec![("svc1".into(), Some(app_service(1)))],
        ..MeshDelta::default()
    };
    assert!(matches!(
        incr.mesh.apply_delta(&delta, &mut incr.maps),
        Err(ApplyError::NothingApplied)
    ));
    assert!(incr.maps.log.is_empty());
}

#[test]
fn a_delta_looks_only_at_what_it_names_and_leaves_the_maps_of_the_full_path() {
    for n in [10, 1000] {
        let first = many(n);
        let mut incr = Incr::new();
        incr.apply(&first).expect("valid");
        assert_eq!(
            incr.mesh.work(),
            first.services.len()
                + first.endpoints.len()
                + first.peers.len()
                + first.local_endpoints.len(),
            "a first apply looks at everything"
        );
        let at = |state: &MeshState, id: &str| {
            state
                .services
                .iter()
                .position(|s| s.id == id)
                .expect("in the state")
        };
        // One service loses a backend (and its endpoint goes), one comes, one goes.
        let mut next = first.clone();
        let five = at(&next, "svc5");
        let changed = &mut next.services[five];
        let gone = changed.backends.pop().expect("a backend");
        let changed = changed.clone();
        next.endpoints.retain(|e| e.task_id != gone.task_id);
        let gone_endpoint = first
            .endpoints
            .iter()
            .find(|e| e.task_id == gone.task_id)
            .expect("its endpoint")
            .addr;
        let eight = at(&next, "svc8");
        let removed = next.services.remove(eight).id;
        let added = app_service(n + 7);
        next.services.push(added.clone());
        let delta = MeshDelta {
            services: vec![
                (changed.id.clone(), Some(changed)),
                (removed, None),
                (added.id.clone(), Some(added)),
            ],
            endpoints: vec![(gone_endpoint, None)],
            ..MeshDelta::default()
        };
        incr.maps.take_log();
        incr.mesh
            .apply_delta(&delta, &mut incr.maps)
            .expect("a valid delta");
        // Old and new versions of the changed service, the removed one, the added one,
        // the removed endpoint: whatever the size of the rest.
        assert_eq!(incr.mesh.work(), 5, "n = {n}");
        let mut full = Full::new();
        full.apply(&next).expect("valid");
        incr.maps.take_log();
        full.maps.take_log();
        // Not always the same ids: the full path allocated in one pass what the delta
        // path allocated in two. The same entries otherwise.
        assert_eq!(incr.maps.endpoints, full.maps.endpoints, "n = {n}");
        assert_eq!(
            incr.maps.frontends.len(),
            full.maps.frontends.len(),
            "n = {n}"
        );
        // And a whole state applied after the delta finds nothing left to do.
        assert!(incr.apply_incrementally(&next).is_noop(), "n = {n}");
    }
}

#[test]
fn an_invalid_delta_gets_the_full_validation_error_and_changes_nothing() {
    let first = many(20);
    let mut incr = Incr::new();
    incr.apply(&first).expect("valid");
    incr.maps.take_log();
    let three = first
        .services
        .iter()
        .position(|s| s.id == "svc3")
        .expect("svc3");
    let mut bad = first.services[three].clone();
    bad.ports[0].target_port = 0;
    let delta = MeshDelta {
        services: vec![(bad.id.clone(), Some(bad.clone()))],
        ..MeshDelta::default()
    };
    let mut whole = first.clone();
    whole.services[three] = bad;
    let want = ApplyError::from(whole.validate().expect_err("invalid")).to_string();
    let got = incr
        .mesh
        .apply_delta(&delta, &mut incr.maps)
        .map_err(|e| e.to_string());
    assert_eq!(got, Err(want));
    assert!(incr.maps.log.is_empty(), "{:?}", incr.maps.log);
    assert!(incr.apply_incrementally(&first).is_noop());
}

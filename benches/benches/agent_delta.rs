//! `cargo bench -p hive-bench --bench agent_delta`: what one change of the leader's view costs
//! a node's agent, by cluster size (issue 15): the assignment taking the message in, the
//! `MeshBuilder` turning it into a `MeshDelta`, and the data plane's `MeshApplier` validating,
//! compiling and writing it (in-memory maps: the work, not the syscalls). The change is a
//! task of one service coming, then going. Figures, not a test; JSON in
//! `target/hive-bench/agent_delta.json`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Instant;

use hive::agent::assignment::{Assignment, AssignmentChange};
use hive::agent::mesh_build::MeshBuilder;
use hive::agent::mesh_state::LocalNode;
use hive::api::mesh_view::{
    MeshAttachment, MeshChanges, MeshNetwork, MeshNode, MeshService, MeshSettings, MeshTask,
};
use hive::store::objects::{Endpoint, NodeState, PortConfig, Protocol, VirtualIp};
use hive_bench::lab_bench::{median_min_max, write_json};
use hive_dataplane::mesh::fake::FakeMaps;
use hive_dataplane::mesh::{MeshApplier, Reconciler, UnderlayLink};
use serde::Serialize;

const ROUNDS: usize = 400;

fn me() -> LocalNode {
    LocalNode {
        node_id: "n1".into(),
        underlay_addr: Ipv4Addr::new(192, 168, 9, 1),
        underlay_iface: "eth0".into(),
        underlay_mtu: 1500,
        control_ports: Vec::new(),
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

fn node(id: &str, i: u8) -> MeshNode {
    MeshNode {
        id: id.into(),
        addr: Some(Ipv4Addr::new(192, 168, 9, i)),
        mac: Some(hive_dataplane::mesh::MacAddr([2, 0, 0, 0, 0, i])),
        state: NodeState::Ready,
    }
}

fn task(id: String, service: u32, addr: String) -> MeshTask {
    MeshTask {
        id,
        service_id: format!("s{service:05}"),
        node_id: "n2".into(),
        networks: vec![MeshAttachment {
            network_id: "ing".into(),
            addresses: vec![addr.parse().expect("a task address")],
            aliases: Vec::new(),
        }],
        draining: false,
    }
}

/// `services` services, each publishing a port with one task on n2.
fn cluster(services: u32) -> AssignmentChange {
    change(
        true,
        1,
        MeshChanges {
            settings: Some(MeshSettings {
                hash_seed: 7,
                vxlan_port: 4789,
                mesh_mode: Default::default(),
            }),
            update_networks: vec![MeshNetwork {
                id: "ing".into(),
                name: "ingress".into(),
                vni: 4096,
                subnet: "10.0.0.0/16".parse().expect("a subnet"),
                gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
                ingress: true,
            }],
            update_nodes: vec![node("n1", 1), node("n2", 2)],
            update_services: (0..services)
                .map(|i| MeshService {
                    id: format!("s{i:05}"),
                    name: format!("web{i}"),
                    endpoint: Endpoint {
                        ports: vec![PortConfig {
                            protocol: Protocol::Tcp,
                            target_port: 80,
                            published_port: 20000 + u16::try_from(i).unwrap_or(0),
                            ..PortConfig::default()
                        }],
                        virtual_ips: vec![VirtualIp {
                            network_id: "ing".into(),
                            addr: format!("10.0.{}.{}/16", 100 + i / 250, 1 + i % 250)
                                .parse()
                                .expect("a VIP"),
                        }],
                        ..Endpoint::default()
                    },
                })
                .collect(),
            update_tasks: (0..services)
                .map(|i| {
                    task(
                        format!("t{i:05}"),
                        i,
                        format!("10.0.{}.{}/16", i / 250, 2 + i % 250),
                    )
                })
                .collect(),
            ..MeshChanges::default()
        },
    )
}

#[derive(Serialize)]
struct Figures {
    services: u32,
    rounds: usize,
    /// Microseconds per change: median, min, max.
    total_us: (f64, f64, f64),
    build_us: (f64, f64, f64),
    apply_us: (f64, f64, f64),
    /// What the builder and the applier looked at per change (the same at every size).
    build_work: usize,
    apply_work: usize,
    /// The first, whole build and apply (for scale).
    full_ms: f64,
}

fn measure(services: u32) -> Figures {
    let mut held = Assignment::default();
    held.apply(cluster(services));
    let mut builder = MeshBuilder::new(me());
    let mut applier = MeshApplier::new(Reconciler::new());
    let mut maps = FakeMaps::default();
    let underlay = UnderlayLink {
        ifindex: 2,
        mac: [2, 0, 0, 0, 0, 1],
    };
    let started = Instant::now();
    let state = builder.rebuild(&held.mesh.read(), &[], &BTreeSet::new());
    if let Err(err) = applier.apply(&state, underlay, &mut maps) {
        panic!("the first apply: {err}");
    }
    let full_ms = started.elapsed().as_secs_f64() * 1e3;
    let (mut total, mut build, mut apply) = (Vec::new(), Vec::new(), Vec::new());
    let (mut build_work, mut apply_work) = (0, 0);
    for round in 0..ROUNDS {
        let mut mesh = MeshChanges::default();
        if round % 2 == 0 {
            mesh.update_tasks
                .push(task("t-extra".into(), 7, "10.0.250.7/16".into()));
        } else {
            mesh.remove_tasks.push("t-extra".into());
        }
        let at = held.mesh_journal.position();
        let t0 = Instant::now();
        held.apply(change(false, 2 + round as u64, mesh));
        let touched = held.mesh_journal.since(at).unwrap_or_default();
        let Some(delta) = builder.update(&held.mesh.read(), &touched, None, &BTreeSet::new())
        else {
            panic!("a task's change needs no rebuild");
        };
        let t1 = Instant::now();
        if let Err(err) = applier.apply_delta(&delta, &mut maps) {
            panic!("a delta: {err}");
        }
        let t2 = Instant::now();
        maps.take_log();
        total.push((t2 - t0).as_secs_f64() * 1e6);
        build.push((t1 - t0).as_secs_f64() * 1e6);
        apply.push((t2 - t1).as_secs_f64() * 1e6);
        build_work = builder.work();
        apply_work = applier.work();
    }
    Figures {
        services,
        rounds: ROUNDS,
        total_us: median_min_max(&total),
        build_us: median_min_max(&build),
        apply_us: median_min_max(&apply),
        build_work,
        apply_work,
        full_ms,
    }
}

fn main() {
    let mut all = Vec::new();
    for services in [10, 1_000, 10_000] {
        let f = measure(services);
        println!(
            "{:>6} services: one change {:.1} µs median ({:.1}–{:.1}): build {:.1} µs, apply {:.1} µs; \
             work {} + {}; first whole build+apply {:.1} ms",
            f.services,
            f.total_us.0,
            f.total_us.1,
            f.total_us.2,
            f.build_us.0,
            f.apply_us.0,
            f.build_work,
            f.apply_work,
            f.full_ms
        );
        all.push(f);
    }
    if let Err(err) = write_json("agent_delta", &all) {
        eprintln!("{err}");
    }
}

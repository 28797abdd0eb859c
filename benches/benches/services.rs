//! `cargo bench -p hive-bench --bench services`: in a 3-node lab with `hive daemon` on every
//! node (n1 manager, n2 and n3 workers),
//!
//! - **create → answering**: from `service create --replicas N -p PORT:80 hive/whoami` to all
//!   N tasks running *and* every node's mesh balancing the published port over all N (its
//!   pinned maps hold N backends) *and* a request to every node's port answered, for N = 10
//!   and 100;
//! - **node death → answering elsewhere**: from SIGKILL of worker n3 (its daemon's process
//!   group, tasks included, and its link) to its tasks running again on n1/n2 with both
//!   survivors' meshes holding exactly the N live backends, none on n3; and, within that, to
//!   n3's backends leaving the survivors' meshes (the gossip path),
//!
//! beside Swarm's documented defaults (node down after 3 missed 5 s heartbeats ≈ 15 s; restart
//! delay 5 s). Figures, not a test; JSON in `target/hive-bench/services.json`.
//!
//! The benchmark binary is also a `hive`: the daemons it starts in the lab's namespaces are
//! this executable run as `<bench> daemon …`.
//!
//! Environment: `HIVE_BENCH_SERVICES_REPLICAS` (comma-separated, default `10,100`),
//! `HIVE_BENCH_SERVICES_KILL_REPLICAS` (default 12).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hive::api::pb;
use hive::client::DaemonClient;
use hive::lab_swarm::{self, SwarmLab};
use hive::store::objects::{ServiceSpec, Task, TaskState};
use hive_dataplane::node_pins::{NodeChoice, PinsQuery};
use hive_lab::{Lab, LabSpec};
use serde::Serialize;

const LAB: &str = "bench-svc";
const NODES: [&str; 3] = ["n1", "n2", "n3"];
/// Bound of one measurement; far above anything measured, it only stops a broken run.
const GIVE_UP: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Serialize)]
struct Convergence {
    replicas: usize,
    /// create → N tasks RUNNING in the store.
    running_ms: f64,
    /// create → every node's mesh has N backends and answers on the published port.
    answering_ms: f64,
}

#[derive(Debug, Serialize)]
struct NodeDeath {
    replicas: usize,
    tasks_on_killed_node: usize,
    /// SIGKILL → no backend on the killed node in either survivor's mesh.
    backends_gone_ms: f64,
    /// SIGKILL → the killed node `Down` in `node ls`.
    node_down_ms: f64,
    /// SIGKILL → N tasks running on the survivors, both meshes holding exactly them, and both
    /// published ports answering.
    answering_elsewhere_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    what: &'static str,
    nodes: usize,
    create: Vec<Convergence>,
    node_death: NodeDeath,
    swarm_node_down_s: f64,
    swarm_restart_delay_s: f64,
    swarm_source: &'static str,
}

fn main() -> ExitCode {
    if let Some(code) = hive::cli::run_as_hive_if_asked() {
        return code;
    }
    hive_bench::lab_bench::main("services", "network namespaces and daemons in them", run)
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

fn run() -> Result<(), String> {
    let sizes = env_list("HIVE_BENCH_SERVICES_REPLICAS", &[10, 100]);
    let kill_replicas = env_list("HIVE_BENCH_SERVICES_KILL_REPLICAS", &[12])[0];
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut swarm = rt
        .block_on(SwarmLab::up(&LabSpec::new(LAB, 3), 1, &exe))
        .map_err(|e| e.to_string())?;
    let outcome = rt.block_on(async {
        let mut api = lab_swarm::connect(swarm.lab(), "n1", GIVE_UP)
            .await
            .map_err(|e| e.to_string())?;
        let mut create = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let port = 9000 + u16::try_from(i).unwrap_or(0);
            let name = format!("bench{n}");
            let sample = converge(swarm.lab(), &mut api, &name, n, port).await?;
            eprintln!(
                "create {n:>4} replicas: running after {:.0} ms, answering on every node after {:.0} ms",
                sample.running_ms, sample.answering_ms
            );
            create.push(sample);
            remove(&mut api, &name).await?;
        }
        let death = node_death(&mut swarm, &mut api, kill_replicas).await?;
        Ok::<_, String>((create, death))
    });
    drop(swarm);
    let (create, node_death) = outcome?;

    let report = Report {
        what: "service create -> every task answering through every node's published port; worker SIGKILL -> its tasks answering elsewhere",
        nodes: NODES.len(),
        create,
        node_death,
        swarm_node_down_s: 15.0,
        swarm_restart_delay_s: 5.0,
        swarm_source: "dispatcher heartbeat 5 s x grace multiplier 3; restart delay default 5 s (swarm-reference 2.3, 4.2)",
    };
    print_report(&report);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hive-bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("services.json");
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&path, json).map_err(|e| e.to_string())?;
    println!("wrote {}", path.display());
    Ok(())
}

fn print_report(report: &Report) {
    println!("\nSERVICES (3-node lab: 1 manager, 2 workers)");
    println!(
        "{:<40} {:>12} {:>16}",
        "service create --replicas N", "running", "answering"
    );
    for c in &report.create {
        println!(
            "{:<40} {:>10.0}ms {:>14.0}ms",
            format!("  N = {}", c.replicas),
            c.running_ms,
            c.answering_ms
        );
    }
    let d = &report.node_death;
    println!(
        "\nworker SIGKILL ({} replicas, {} on the killed node)",
        d.replicas, d.tasks_on_killed_node
    );
    println!(
        "  its backends gone from the other meshes {:>8.0}ms",
        d.backends_gone_ms
    );
    println!(
        "  node Down in `node ls`                  {:>8.0}ms   (Swarm: ~{:.0} s)",
        d.node_down_ms, report.swarm_node_down_s
    );
    println!(
        "  its tasks answering elsewhere           {:>8.0}ms   (Swarm: ~{:.0} s + restart delay {:.0} s)",
        d.answering_elsewhere_ms, report.swarm_node_down_s, report.swarm_restart_delay_s
    );
    println!(
        "  ratio Swarm / hive (tasks back):        {:>8.1}x",
        (report.swarm_node_down_s + report.swarm_restart_delay_s) * 1e3 / d.answering_elsewhere_ms
    );
}

async fn create(api: &mut DaemonClient, spec: &ServiceSpec) -> Result<String, String> {
    let service = api
        .control
        .create_service(spec)
        .await
        .map_err(|e| format!("service create: {}", e.into_status().message()))?;
    Ok(service.id)
}

async fn remove(api: &mut DaemonClient, name: &str) -> Result<(), String> {
    api.control
        .remove_service(name)
        .await
        .map_err(|e| format!("service rm {name}: {}", e.into_status().message()))?;
    Ok(())
}

/// Running tasks of `service` (desired and current state RUNNING) with their node names.
async fn running(api: &mut DaemonClient, service: &str) -> Result<Vec<(Task, String)>, String> {
    let reply = api
        .control
        .list_tasks(hive::client::TaskFilter {
            service: Some(service),
            node: None,
        })
        .await
        .map_err(|e| format!("service ps: {}", e.into_status().message()))?;
    let tasks = reply.tasks;
    Ok(tasks
        .into_iter()
        .filter(|t| t.desired_state == TaskState::Running && t.status.state == TaskState::Running)
        .map(|t| {
            let node = t
                .node_id
                .as_ref()
                .and_then(|id| reply.node_names.get(id))
                .cloned()
                .unwrap_or_default();
            (t, node)
        })
        .collect())
}

/// Backend task IDs of `service_id` in `node`'s pinned mesh, with the node addresses they
/// live on.
fn mesh_backends(lab: &str, node: &str, service_id: &str) -> BTreeSet<(String, Ipv4Addr)> {
    let Ok(pins) = (PinsQuery {
        lab: Some(lab.to_owned()),
        pin_dir: None,
        nodes: NodeChoice::One(node.to_owned()),
    })
    .resolve() else {
        return BTreeSet::new();
    };
    pins.iter()
        .filter_map(|p| hive_dataplane::stats::read_node(p, Some(service_id)).ok())
        .flat_map(|s| s.services)
        .flat_map(|s| s.backends)
        .map(|b| (b.task, b.node_addr))
        .collect()
}

/// One `GET /` from the client to `node`'s `port`.
fn answers(lab: &Lab, node: &str, port: u16) -> bool {
    let (Ok(client), Ok(addr)) = (lab.netns_path("client"), lab.node_addr(node)) else {
        return false;
    };
    hive::demo::http_get(client, SocketAddr::from((addr, port))).is_ok()
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

async fn converge(
    lab: &Lab,
    api: &mut DaemonClient,
    name: &str,
    n: usize,
    port: u16,
) -> Result<Convergence, String> {
    let start = Instant::now();
    let id = create(api, &hive::demo::whoami_spec(name, n as u64, port)).await?;
    let mut running_ms = None;
    loop {
        let tasks = running(api, name).await?;
        if running_ms.is_none() && tasks.len() == n {
            running_ms = Some(ms(start));
        }
        if let Some(running_ms) = running_ms {
            let want: BTreeSet<&str> = tasks.iter().map(|(t, _)| t.id.as_str()).collect();
            let meshed = NODES.iter().all(|node| {
                let have = mesh_backends(lab.name(), node, &id);
                have.len() == n && have.iter().all(|(t, _)| want.contains(t.as_str()))
            });
            if meshed && NODES.iter().all(|node| answers(lab, node, port)) {
                return Ok(Convergence {
                    replicas: n,
                    running_ms,
                    answering_ms: ms(start),
                });
            }
        }
        if start.elapsed() > GIVE_UP {
            return Err(format!(
                "{name}: {} of {n} tasks running after {GIVE_UP:?}",
                tasks.len()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn node_death(
    swarm: &mut SwarmLab,
    api: &mut DaemonClient,
    n: usize,
) -> Result<NodeDeath, String> {
    const VICTIM: &str = "n3";
    const SURVIVORS: [&str; 2] = ["n1", "n2"];
    let port = 9100;
    let converged = converge(swarm.lab(), api, "benchkill", n, port).await?;
    eprintln!(
        "node death: {n} replicas answering after {:.0} ms",
        converged.answering_ms
    );
    let id = running(api, "benchkill")
        .await?
        .first()
        .map(|(t, _)| t.service_id.clone())
        .ok_or("no running task")?;
    let victim_addr = swarm.lab().node_addr(VICTIM).map_err(|e| e.to_string())?;
    let on_victim = running(api, "benchkill")
        .await?
        .iter()
        .filter(|(_, node)| node == VICTIM)
        .count();

    let start = Instant::now();
    swarm.power_off(VICTIM).map_err(|e| e.to_string())?;
    let lab = swarm.lab();
    let (mut gone, mut down, mut back) = (None, None, None);
    while gone.is_none() || down.is_none() || back.is_none() {
        if gone.is_none()
            && SURVIVORS.iter().all(|node| {
                mesh_backends(lab.name(), node, &id)
                    .iter()
                    .all(|(_, at)| *at != victim_addr)
            })
        {
            gone = Some(ms(start));
        }
        if down.is_none() && node_is_down(api, VICTIM).await {
            down = Some(ms(start));
        }
        if back.is_none() {
            let tasks = running(api, "benchkill").await?;
            let want: BTreeSet<&str> = tasks.iter().map(|(t, _)| t.id.as_str()).collect();
            let placed = tasks.len() == n && tasks.iter().all(|(_, node)| node != VICTIM);
            if placed
                && SURVIVORS.iter().all(|node| {
                    let have = mesh_backends(lab.name(), node, &id);
                    have.len() == n && have.iter().all(|(t, _)| want.contains(t.as_str()))
                })
                && SURVIVORS.iter().all(|node| answers(lab, node, port))
            {
                back = Some(ms(start));
            }
        }
        if start.elapsed() > GIVE_UP {
            return Err(format!(
                "node death not recovered within {GIVE_UP:?} (backends gone: {gone:?}, down: {down:?}, back: {back:?})"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(NodeDeath {
        replicas: n,
        tasks_on_killed_node: on_victim,
        backends_gone_ms: gone.unwrap_or_default(),
        node_down_ms: down.unwrap_or_default(),
        answering_elsewhere_ms: back.unwrap_or_default(),
    })
}

async fn node_is_down(api: &mut DaemonClient, host: &str) -> bool {
    let Ok(reply) = api.control.list_nodes().await else {
        return false;
    };
    reply.nodes.iter().any(|n| {
        n.description.as_ref().is_some_and(|d| d.hostname == host)
            && n.status
                .as_ref()
                .is_some_and(|s| s.state() == pb::NodeState::Down)
    })
}

//! `cargo bench -p hive-bench --bench failover`: how long a swarm of three managers in the lab
//! takes from SIGKILL of its leader to the first write a new leader accepts, over several runs,
//! beside Swarm's default. Figures, not a test; JSON in `target/hive-bench/failover.json`.
//!
//! The benchmark binary is also a `hive`: the daemons it starts in the lab's namespaces are
//! this executable run as `<bench> daemon …`, so no separately built binary has to be found.
//!
//! Environment: `HIVE_BENCH_FAILOVER_RUNS` (default 7).

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hive::api::pb;
use hive::client::DaemonClient;
use hive::lab_swarm::{self, SwarmLab};
use hive::manager::timers;
use hive_bench::lab_bench;
use hive_lab::Lab;
use serde::Serialize;

const LAB: &str = "bench-fo";
const MANAGERS: [&str; 3] = ["n1", "n2", "n3"];
/// Bound of one failover; far above anything measured, it only stops a broken run.
const GIVE_UP: Duration = Duration::from_secs(60);
/// Pause between writes while waiting for the new leader.
const WRITE_INTERVAL: Duration = Duration::from_millis(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize)]
struct Report {
    what: &'static str,
    managers: usize,
    runs_ms: Vec<f64>,
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
    hive_raft_heartbeat_ms: u64,
    hive_election_timeout_ms: [u64; 2],
    swarm_default_election_s: [u64; 2],
    swarm_source: &'static str,
}

fn main() -> ExitCode {
    // Started by the benchmark itself as a lab node's daemon (or any other hive command).
    if let Some(code) = hive::cli::run_as_hive_if_asked() {
        return code;
    }
    hive_bench::lab_bench::main("failover", "network namespaces and daemons in them", run)
}

fn run() -> Result<(), String> {
    let runs: usize = std::env::var("HIVE_BENCH_FAILOVER_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let exe = lab_bench::hive_exe()?;
    let rt = lab_bench::runtime()?;
    let mut swarm = lab_bench::swarm_up(&rt, LAB, 3, 3)?;
    let mut samples = Vec::with_capacity(runs);
    for run in 1..=runs {
        let sample = rt.block_on(one_failover(&mut swarm, &exe))?;
        eprintln!("run {run}/{runs}: {:.0} ms", sample.as_secs_f64() * 1e3);
        samples.push(sample.as_secs_f64() * 1e3);
    }
    drop(swarm);

    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let report = Report {
        what: "SIGKILL of the Raft leader -> first write accepted by a new leader",
        managers: MANAGERS.len(),
        min_ms: sorted[0],
        max_ms: sorted[sorted.len() - 1],
        median_ms: median,
        runs_ms: samples,
        hive_raft_heartbeat_ms: timers::RAFT_HEARTBEAT_MS,
        hive_election_timeout_ms: [
            timers::ELECTION_TIMEOUT_MIN_MS,
            timers::ELECTION_TIMEOUT_MAX_MS,
        ],
        swarm_default_election_s: [10, 20],
        swarm_source: "SwarmKit ElectionTick 10 x 1 s tick, randomised in [10 s, 20 s) (swarm-reference 2.3, 4.2)",
    };
    println!(
        "\nLEADER FAILOVER (3 managers, lab, {} runs)",
        report.runs_ms.len()
    );
    println!("{:<34} {:>10} {:>10} {:>10}", "", "median", "min", "max");
    println!(
        "{:<34} {:>8.0}ms {:>8.0}ms {:>8.0}ms",
        "hive (kill -> first write)", report.median_ms, report.min_ms, report.max_ms
    );
    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        "Swarm default (to a new leader)", "~15s", "10s", "20s"
    );
    println!(
        "ratio Swarm midpoint / hive median: {:.1}x",
        15_000.0 / report.median_ms
    );
    lab_bench::write_json("failover", &report)?;
    Ok(())
}

async fn client(lab: &Lab, node: &str) -> Result<DaemonClient, String> {
    lab_swarm::connect(lab, node, GIVE_UP)
        .await
        .map_err(|e| e.to_string())
}

async fn leader(lab: &Lab) -> Result<String, String> {
    let deadline = Instant::now() + GIVE_UP;
    loop {
        for node in MANAGERS {
            let Ok(mut c) = client(lab, node).await else {
                continue;
            };
            if let Ok(list) = c.control.list_nodes().await {
                let all_up = list.nodes.iter().all(|n| {
                    n.manager_status.as_ref().is_some_and(|m| {
                        m.leader || m.reachability() == pb::Reachability::Reachable
                    })
                });
                if all_up
                    && let Some(n) = list
                        .nodes
                        .iter()
                        .find(|n| n.manager_status.as_ref().is_some_and(|m| m.leader))
                {
                    return Ok(n
                        .description
                        .as_ref()
                        .map(|d| d.hostname.clone())
                        .unwrap_or_default());
                }
            }
        }
        if Instant::now() > deadline {
            return Err("no stable leader with every manager reachable".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Kills the leader, measures until a write through a follower is accepted, restarts the
/// killed daemon and waits until all three managers are reachable again.
async fn one_failover(swarm: &mut SwarmLab, exe: &Path) -> Result<Duration, String> {
    let lab = swarm.lab();
    let old = leader(lab).await?;
    let follower = MANAGERS
        .iter()
        .find(|n| **n != old)
        .copied()
        .ok_or("no follower")?;
    let mut writer = client(lab, follower).await?;
    // Settle: a write through the follower works before the kill.
    write(&mut writer, 0)
        .await
        .map_err(|e| format!("write before the kill: {e}"))?;
    let mut daemon = swarm.take_daemon(&old).ok_or("leader not started by us")?;
    daemon.kill().map_err(|e| e.to_string())?;
    let killed_at = Instant::now();
    let _ = daemon.wait();
    let lab = swarm.lab();
    let mut i = 1;
    let took = loop {
        if write(&mut writer, i).await.is_ok() {
            break killed_at.elapsed();
        }
        if killed_at.elapsed() > GIVE_UP {
            return Err("no write accepted within a minute of the kill".to_owned());
        }
        i += 1;
        tokio::time::sleep(WRITE_INTERVAL).await;
    };
    let daemon = lab_swarm::start_daemon(lab, &old, exe).map_err(|e| e.to_string())?;
    swarm.put_daemon(&old, daemon);
    leader(swarm.lab()).await?;
    // Let the returned manager catch up before the next kill.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(took)
}

async fn write(client: &mut DaemonClient, i: u64) -> Result<(), String> {
    let update = client.control.update_node(pb::UpdateNodeRequest {
        node: "n3".to_owned(),
        label_add: [("failover".to_owned(), i.to_string())].into(),
        ..Default::default()
    });
    match tokio::time::timeout(WRITE_TIMEOUT, update).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(err.into_status().message().to_owned()),
        Err(_) => Err("timed out".to_owned()),
    }
}

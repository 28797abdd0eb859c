//! `cargo bench -p hive-bench --bench ca_rotation`: how long `hive swarm ca --rotate` takes on a
//! five-node lab swarm (three managers), from the command's start to its return, that is until
//! every node holds a certificate of the new root and trusts it alone (issue 18). Run at
//! Swarm's default dispatcher heartbeat (5 s) and at 1 s: a rotation is paced by heartbeats
//! (a node learns of the new root, then reports its new certificate, then its new trust, each
//! with a heartbeat). Figures, not a test; JSON in `target/hive-bench/ca_rotation.json`.
//!
//! Environment: `HIVE_BENCH_CA_RUNS` (default 5): rotations per heartbeat setting;
//! `HIVE_BENCH_CA_HEARTBEATS` (default `5s,1s`): the heartbeat settings, in order.

use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use hive_bench::lab_bench;
use serde::Serialize;

const LAB: &str = "bench-ca";
const NODES: u32 = 5;
const MANAGERS: u32 = 3;
const HEARTBEATS: &str = "5s,1s";
/// A rotation takes about four heartbeats; one that has not ended after this is stuck (on a
/// machine so loaded that the managers' Raft cannot keep up, say), and the benchmark says so
/// instead of waiting for ever.
const ROTATION_DEADLINE: Duration = Duration::from_secs(300);

#[derive(Debug, Serialize)]
struct Setting {
    dispatcher_heartbeat: String,
    runs_s: Vec<f64>,
    median_s: f64,
    min_s: f64,
    max_s: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    what: &'static str,
    nodes: u32,
    managers: u32,
    settings: Vec<Setting>,
}

fn main() -> ExitCode {
    // Started by the benchmark itself as a lab node's daemon (or any other hive command).
    if let Some(code) = hive::cli::run_as_hive_if_asked() {
        return code;
    }
    lab_bench::main("ca_rotation", "network namespaces and daemons in them", run)
}

fn run() -> Result<(), String> {
    let runs: usize = std::env::var("HIVE_BENCH_CA_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let heartbeats: Vec<String> = std::env::var("HIVE_BENCH_CA_HEARTBEATS")
        .unwrap_or_else(|_| HEARTBEATS.to_owned())
        .split(',')
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect();
    let rt = lab_bench::runtime()?;
    let swarm = lab_bench::swarm_up(&rt, LAB, NODES, MANAGERS)?;
    let lab = swarm.lab();
    let mut settings = Vec::new();
    for heartbeat in heartbeats {
        lab_bench::hive_cli(
            lab,
            "n1",
            &["swarm", "update", "--dispatcher-heartbeat", &heartbeat],
        )?;
        let mut samples = Vec::with_capacity(runs);
        for run in 0..runs {
            let start = Instant::now();
            let out = rotate(lab)?;
            let took = start.elapsed().as_secs_f64();
            if !out.starts_with("-----BEGIN CERTIFICATE-----") {
                return Err(format!("swarm ca --rotate printed {out}"));
            }
            println!("heartbeat {heartbeat}, rotation {}: {took:.2} s", run + 1);
            samples.push(took);
        }
        let (median, min, max) = lab_bench::median_min_max(&samples);
        settings.push(Setting {
            dispatcher_heartbeat: heartbeat,
            runs_s: samples,
            median_s: median,
            min_s: min,
            max_s: max,
        });
    }
    lab_bench::write_json(
        "ca_rotation",
        &Report {
            what: "hive swarm ca --rotate on a lab swarm, until every node holds a certificate of the new root and trusts it alone",
            nodes: NODES,
            managers: MANAGERS,
            settings,
        },
    )?;
    drop(swarm);
    Ok(())
}

/// `hive swarm ca --rotate -q` on n1, within [`ROTATION_DEADLINE`]; what it printed.
fn rotate(lab: &hive_lab::Lab) -> Result<String, String> {
    let mut child = lab
        .command("n1", &lab_bench::hive_exe()?)
        .map_err(|e| e.to_string())?
        .args(["swarm", "ca", "--rotate", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("hive swarm ca --rotate: {e}"))?;
    let deadline = Instant::now() + ROTATION_DEADLINE;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the rotation had not ended after {} s (docs/security.md, \"Time to rotate\", lists the stalls seen so far)",
                    ROTATION_DEADLINE.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for hive swarm ca --rotate: {e}")),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("hive swarm ca --rotate: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "hive swarm ca --rotate: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

//! `cargo bench -p hive-bench --bench stacks`: how long a 20-service stack takes to deploy and
//! converge on a 3-node lab swarm, and how long a redeploy of the unchanged file takes (it
//! must update nothing: the benchmark fails if a service's version moves). Each round deploys,
//! redeploys and removes the stack; medians over rounds with min and max beside them.
//! Figures, not a test; JSON in `target/hive-bench/stacks.json`.
//!
//! Environment: `HIVE_BENCH_STACK_ROUNDS` (default 3), `HIVE_BENCH_STACK_SERVICES` (default 20).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hive::client::DaemonClient;
use hive::lab_swarm;
use hive_bench::lab_bench;
use serde::Serialize;

const LAB: &str = "hbstk";
const NODES: u32 = 3;
const MANAGER: &str = "n1";
const STACK: &str = "bench";
const REPLICAS: u64 = 2;
/// The longest a deploy or removal may take before the round is called failed.
const GIVE_UP: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Serialize)]
struct Report {
    what: &'static str,
    nodes: u32,
    services: usize,
    replicas_per_service: u64,
    rounds: usize,
    deploy_to_converged_ms: Figure,
    deploy_command_ms: Figure,
    redeploy_unchanged_ms: Figure,
    remove_to_gone_ms: Figure,
}

#[derive(Debug, Serialize)]
struct Figure {
    median: f64,
    min: f64,
    max: f64,
    samples: Vec<f64>,
}

impl Figure {
    fn of(samples: Vec<f64>) -> Self {
        let (median, min, max) = lab_bench::median_min_max(&samples);
        Self {
            median,
            min,
            max,
            samples,
        }
    }
}

fn main() -> ExitCode {
    // Started by the benchmark itself as a lab node's daemon (or any other hive command).
    if let Some(code) = hive::cli::run_as_hive_if_asked() {
        return code;
    }
    lab_bench::main("stacks", "network namespaces and daemons in them", run)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn run() -> Result<(), String> {
    let rounds = env_usize("HIVE_BENCH_STACK_ROUNDS", 3);
    let services = env_usize("HIVE_BENCH_STACK_SERVICES", 20);
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    let file = dir.path().join("stack.yml");
    std::fs::write(&file, compose_file(services))
        .map_err(|e| format!("{}: {e}", file.display()))?;

    let rt = lab_bench::runtime()?;
    let swarm = lab_bench::swarm_up(&rt, LAB, NODES, 1)?;
    let mut api = rt
        .block_on(lab_swarm::connect(swarm.lab(), MANAGER, GIVE_UP))
        .map_err(|e| e.to_string())?;
    let (mut converged, mut command, mut redeploy, mut removed) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let file = file.to_string_lossy();
        let deploy = ["stack", "deploy", "-d", "-c", &file, STACK];

        let started = Instant::now();
        lab_bench::hive_cli(swarm.lab(), MANAGER, &deploy)?;
        command.push(ms(started.elapsed()));
        rt.block_on(until(&mut api, |versions| {
            versions.len() == services && versions.values().all(|s| s.converged)
        }))?;
        converged.push(ms(started.elapsed()));

        let before = rt.block_on(stack_services(&mut api))?;
        let started = Instant::now();
        lab_bench::hive_cli(swarm.lab(), MANAGER, &deploy)?;
        redeploy.push(ms(started.elapsed()));
        let after = rt.block_on(stack_services(&mut api))?;
        let moved: Vec<&String> = after
            .iter()
            .filter(|(name, s)| before.get(*name).map(|b| b.version) != Some(s.version))
            .map(|(name, _)| name)
            .collect();
        if !moved.is_empty() {
            return Err(format!(
                "the unchanged redeploy updated {} service(s): {moved:?}",
                moved.len()
            ));
        }

        let started = Instant::now();
        lab_bench::hive_cli(swarm.lab(), MANAGER, &["stack", "rm", STACK])?;
        rt.block_on(until(&mut api, |versions| versions.is_empty()))?;
        removed.push(ms(started.elapsed()));
        eprintln!(
            "round {round}/{rounds}: converged {:.0} ms, redeploy {:.0} ms, removed {:.0} ms",
            converged[round - 1],
            redeploy[round - 1],
            removed[round - 1]
        );
    }
    drop(swarm);

    let report = Report {
        what: "hive stack deploy of N services to every replica running (3-node lab, 1 manager)",
        nodes: NODES,
        services,
        replicas_per_service: REPLICAS,
        rounds,
        deploy_to_converged_ms: Figure::of(converged),
        deploy_command_ms: Figure::of(command),
        redeploy_unchanged_ms: Figure::of(redeploy),
        remove_to_gone_ms: Figure::of(removed),
    };
    print_report(&report);
    lab_bench::write_json("stacks", &report).map(drop)
}

/// A stack of `services` replicated services on the stack's default network; the first
/// publishes a port, as a typical application's front end does.
fn compose_file(services: usize) -> String {
    let mut yaml = String::from("version: \"3.8\"\nservices:\n");
    for i in 0..services {
        let _ = writeln!(yaml, "  s{i:02}:\n    image: hive/whoami");
        if i == 0 {
            yaml.push_str("    ports:\n      - \"8080:80\"\n");
        }
        let _ = writeln!(yaml, "    deploy:\n      replicas: {REPLICAS}");
    }
    yaml
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    version: u64,
    converged: bool,
}

/// The stack's services by name, with their version and whether every replica runs.
async fn stack_services(api: &mut DaemonClient) -> Result<BTreeMap<String, Seen>, String> {
    let rows = api
        .control
        .list_services()
        .await
        .map_err(|e| format!("service ls: {e}"))?;
    Ok(rows
        .into_iter()
        .filter(|r| {
            r.service
                .spec
                .annotations
                .name
                .starts_with(&format!("{STACK}_"))
        })
        .map(|r| {
            let seen = Seen {
                version: r.service.meta.version,
                converged: r.desired == REPLICAS && r.running == REPLICAS,
            };
            (r.service.spec.annotations.name, seen)
        })
        .collect())
}

/// Polls the stack's services until `done` holds, for at most [`GIVE_UP`].
async fn until(
    api: &mut DaemonClient,
    done: impl Fn(&BTreeMap<String, Seen>) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + GIVE_UP;
    loop {
        let seen = stack_services(api).await?;
        if done(&seen) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let waiting: Vec<&String> = seen
                .iter()
                .filter(|(_, s)| !s.converged)
                .map(|(n, _)| n)
                .collect();
            return Err(format!(
                "gave up after {GIVE_UP:?}: {} services seen, not converged: {waiting:?}",
                seen.len()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_report(report: &Report) {
    println!(
        "\nSTACKS ({} services x {} replicas, {}-node lab; median [min..max] of {} rounds)",
        report.services, report.replicas_per_service, report.nodes, report.rounds
    );
    let row = |what: &str, f: &Figure| {
        println!(
            "{what:<40} {:>8.0} ms  [{:.0}..{:.0}]",
            f.median, f.min, f.max
        );
    };
    row(
        "deploy -> every replica running",
        &report.deploy_to_converged_ms,
    );
    row("deploy command (detached)", &report.deploy_command_ms);
    row(
        "redeploy, file unchanged (0 updated)",
        &report.redeploy_unchanged_ms,
    );
    row("stack rm -> no service left", &report.remove_to_gone_ms);
}

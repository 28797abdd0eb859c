//! `hive mesh bench`: one run, one lab, every path.
//!
//! 1. ns/packet of each program path under `BPF_PROG_RUN`, beside a trivial
//!    XDP program as the floor;
//! 2. keep-alive req/s and new connections/s with p50/p99 from `client` to a
//!    published port whose two backends are on two other nodes: through
//!    hive's mesh, through iptables DNAT + MASQUERADE + kernel VXLAN, and
//!    through nftables;
//! 3. the same with 1, 1,000 and 10,000 services installed, plus the time to
//!    add one more service at each size;
//! 4. once, the ceiling of every path: the same two backends loaded straight
//!    from `client`, with no mesh in between (`kernel_runs::direct`), and the
//!    floor of every path through the ingress node: n1 forwarding the frames by
//!    their MACs alone, or through hive's tunnel alone (`crate::floor`);
//! 5. with `--bulk`, bulk throughput through every path, both directions
//!    (`crate::bulk`);
//! 6. with `--open-loop PERCENT`, after each size's closed-loop runs of a
//!    round, every path and the no-mesh row again at one fixed rate of new
//!    connections: PERCENT % of the slowest closed-loop rate of that size
//!    and round (`crate::open_loop`), so tail latencies compare at equal load.

use std::path::PathBuf;

use hive_dataplane::mesh::mode::MeshMode;
use hive_lab::{LabGuard, LabSpec};

use crate::{
    floor::Floor,
    hive_runs::{self, HiveRunError},
    kernel_path::{KernelPath, RuleEngine},
    kernel_runs::{self, Load, RunError},
    program_costs,
    report::Report,
};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Name of the lab the benchmark builds (and removes afterwards).
    pub lab: String,
    pub load: Load,
    /// Service counts to measure at (each includes the measured service).
    pub service_counts: Vec<u32>,
    /// How many times every path is measured at every size; the table
    /// shows the median of each figure (`report::medians`).
    pub rounds: u32,
    /// Where JSON goes (`target/hive-bench/`).
    pub out_dir: PathBuf,
    /// Also measure bulk throughput (`crate::bulk`), each run as long as
    /// the load's duration, as many rounds.
    pub bulk: bool,
    /// The paths the load runs measure at each size (the no-mesh ceiling
    /// is always measured).
    pub paths: Vec<BenchPath>,
    /// A CPU-bound neighbour on the machine for the whole run: every CPU
    /// busy this many percent of the time (`crate::neighbour`).
    pub neighbour_percent: Option<u32>,
    /// Also measure every path at one offered rate of new connections per
    /// size: this share (percent) of the slowest closed-loop rate measured
    /// at that size in the same round (`crate::open_loop`).
    pub open_loop_percent: Option<u32>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            lab: "bench".into(),
            load: Load::default(),
            service_counts: vec![1, 1_000, 10_000],
            rounds: 1,
            out_dir: PathBuf::from("target/hive-bench"),
            bulk: false,
            paths: BenchPath::ALL.to_vec(),
            neighbour_percent: None,
            open_loop_percent: None,
        }
    }
}

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Hive(#[from] HiveRunError),
    #[error(transparent)]
    Bulk(#[from] crate::bulk::BulkError),
    #[error(transparent)]
    Neighbour(#[from] crate::neighbour::NeighbourError),
    #[error("BPF_PROG_RUN: {0}")]
    ProgRun(#[from] hive_prog_run::prog_run::HarnessError),
    #[error("lab: {0}")]
    Lab(#[from] hive_lab::LabError),
    #[error("writing the report: {0}")]
    Write(#[from] std::io::Error),
}

/// A path the load runs measure (`--paths`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchPath {
    Kernel(RuleEngine),
    /// hive in one mesh mode (docs/dsr.md).
    Hive(MeshMode),
}

impl BenchPath {
    /// Every path, in their first round's order.
    pub const ALL: [BenchPath; 5] = [
        BenchPath::Kernel(RuleEngine::Iptables),
        BenchPath::Kernel(RuleEngine::Nftables),
        BenchPath::Hive(MeshMode::Snat),
        BenchPath::Hive(MeshMode::Dsr),
        BenchPath::Hive(MeshMode::Hybrid),
    ];
}

/// The name of each row: `iptables`, `nftables`, `hive` (today's path, `snat`),
/// `hive-dsr`, `hive-hybrid`.
impl std::fmt::Display for BenchPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchPath::Kernel(engine) => f.write_str(engine.name()),
            BenchPath::Hive(MeshMode::Snat) => f.write_str("hive"),
            BenchPath::Hive(mode) => write!(f, "hive-{mode}"),
        }
    }
}

/// A name no path has.
#[derive(Debug, thiserror::Error)]
#[error("unknown path {0:?}: use iptables, nftables, hive, hive-dsr or hive-hybrid")]
pub struct UnknownPath(String);

impl std::str::FromStr for BenchPath {
    type Err = UnknownPath;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BenchPath::ALL
            .into_iter()
            .find(|p| p.to_string() == s)
            .ok_or_else(|| UnknownPath(s.to_owned()))
    }
}

/// Run the whole benchmark, print the table, write JSON; returns the report.
pub fn run(config: &BenchConfig) -> Result<Report, BenchError> {
    let mut report = Report {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        wrk: format!(
            "-t{} -c{} -d{}s",
            config.load.threads,
            config.load.connections,
            config.load.duration.as_secs()
        ),
        ..Report::default()
    };
    eprintln!("program paths under BPF_PROG_RUN:");
    report.program_costs = program_costs::program_costs()?;
    eprintln!("tracing cost under BPF_PROG_RUN:");
    match crate::trace_cost::measure(100, 20) {
        Ok(costs) => report.trace_costs = costs,
        Err(err) => eprintln!("  skipped: {err}"),
    }
    report.neighbour_percent = config.neighbour_percent;
    report.open_loop_percent = config.open_loop_percent;
    let lab = LabGuard::up(&LabSpec::new(config.lab.clone(), 3))?;
    // Started after the program costs (figures of one CPU's work, not of
    // contention) and stopped when the run ends, also on failure.
    let _neighbour = config
        .neighbour_percent
        .map(crate::neighbour::Neighbour::start)
        .transpose()?;
    if let Some(percent) = config.neighbour_percent {
        eprintln!("with a CPU-bound neighbour: stress-ng, every CPU {percent} % busy");
    }
    let run_dir = hive_lab::naming::lab_dir(&config.lab).join("bench");
    std::fs::create_dir_all(&run_dir)?;
    eprintln!(
        "on lab {:?}, size by size: the kernel path (iptables, nftables) and hive's eBPF mesh:",
        config.lab
    );
    let kernel = KernelPath::up(&lab, run_dir.clone()).map_err(RunError::from)?;
    let rounds = config.rounds.max(1);
    let measured = (|| -> Result<(), BenchError> {
        // No size asked for: bulk only.
        let connection_rounds = if config.service_counts.is_empty() {
            0
        } else {
            rounds
        };
        for round in 1..=connection_rounds {
            if rounds > 1 {
                eprintln!(" round {round} of {rounds}:");
            }
            let runs = &mut report.runs;
            let direct = kernel_runs::direct(&lab, &kernel, &config.load)?;
            let direct_rate = direct.new_connections.requests_per_sec;
            runs.push(direct);
            for floor in Floor::ALL {
                runs.push(crate::floor::connections(
                    &lab,
                    &kernel,
                    floor,
                    &config.load,
                )?);
            }
            // Paths side by side at each size, rather than one path at
            // every size and then the next: this machine's speed drifts
            // over minutes, and the ratios are between paths at one size.
            // Their order turns by one each round, so that over three
            // rounds each path runs first, second and third once: a run
            // inherits the TIME_WAIT and caches of the runs before it.
            let mut turns = config.paths.clone();
            if !turns.is_empty() {
                let len = turns.len();
                turns.rotate_left((round as usize - 1) % len);
            }
            for &services in &config.service_counts {
                let first = runs.len();
                for &turn in &turns {
                    runs.push(match turn {
                        BenchPath::Kernel(engine) => {
                            kernel_runs::kernel_at(&lab, &kernel, engine, services, &config.load)?
                        }
                        BenchPath::Hive(mode) => {
                            hive_runs::hive_at(&lab, &run_dir, services, mode, &config.load)?
                        }
                    });
                }
                let Some(percent) = config.open_loop_percent else {
                    continue;
                };
                let rate = crate::open_loop::offered_rate(
                    percent,
                    runs[first..]
                        .iter()
                        .map(|r| r.new_connections.requests_per_sec)
                        .chain([direct_rate]),
                );
                let duration = config.load.duration;
                let open = &mut report.open_loop;
                open.push(kernel_runs::direct_open_loop(
                    &lab, &kernel, services, rate, duration,
                )?);
                for &turn in &turns {
                    open.push(match turn {
                        BenchPath::Kernel(engine) => kernel_runs::kernel_open_loop(
                            &lab, &kernel, engine, services, rate, duration,
                        )?,
                        BenchPath::Hive(mode) => hive_runs::hive_open_loop(
                            &lab, &run_dir, services, mode, rate, duration,
                        )?,
                    });
                }
            }
        }
        if config.bulk {
            eprintln!("bulk throughput (iperf3), every path, both directions:");
            let seconds = config.load.duration.as_secs().max(1) as u32;
            report.bulk = crate::bulk::measure(&lab, &kernel, seconds, rounds)?;
        }
        Ok(())
    })();
    let down = kernel.down().map_err(RunError::from);
    measured?;
    down?;
    report.rounds = rounds;
    report.paths = crate::report::medians(&report.runs);
    report.bulk_paths = crate::bulk::medians(&report.bulk);
    report.open_loop_paths = crate::report::open_loop_medians(&report.open_loop);
    print!("{}", report.table());
    let json = report.write_json(&config.out_dir)?;
    println!("\nJSON: {}", json.display());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_reads_back_from_its_row_name() {
        for path in BenchPath::ALL {
            assert_eq!(path.to_string().parse::<BenchPath>().unwrap(), path);
        }
        assert_eq!(
            "hive".parse::<BenchPath>().unwrap(),
            BenchPath::Hive(MeshMode::Snat)
        );
        let err = "ipvs".parse::<BenchPath>().unwrap_err();
        assert!(err.to_string().contains("use iptables, nftables"), "{err}");
    }
}

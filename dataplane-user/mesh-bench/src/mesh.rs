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
//!    from `client`, with no mesh in between (`kernel_runs::direct`).

use std::path::PathBuf;

use hive_dataplane::{
    lab::{LabGuard, LabSpec},
    mesh::mode::MeshMode,
};

use crate::{
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
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            lab: "bench".into(),
            load: Load::default(),
            service_counts: vec![1, 1_000, 10_000],
            rounds: 1,
            out_dir: PathBuf::from("target/hive-bench"),
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
    #[error("BPF_PROG_RUN: {0}")]
    ProgRun(#[from] hive_dataplane::testing::prog_run::HarnessError),
    #[error("lab: {0}")]
    Lab(#[from] hive_dataplane::lab::LabError),
    #[error("writing the report: {0}")]
    Write(#[from] std::io::Error),
}

/// One path's turn at one size.
#[derive(Debug, Clone, Copy)]
enum Turn {
    Kernel(RuleEngine),
    /// hive in one mesh mode (docs/dsr.md).
    Hive(MeshMode),
}

/// The paths in their first round's order.
const TURNS: [Turn; 5] = [
    Turn::Kernel(RuleEngine::Iptables),
    Turn::Kernel(RuleEngine::Nftables),
    Turn::Hive(MeshMode::Snat),
    Turn::Hive(MeshMode::Dsr),
    Turn::Hive(MeshMode::Hybrid),
];

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
    let lab = LabGuard::up(&LabSpec::new(config.lab.clone(), 3))?;
    let run_dir = hive_dataplane::lab::naming::lab_dir(&config.lab).join("bench");
    std::fs::create_dir_all(&run_dir)?;
    eprintln!(
        "on lab {:?}, size by size: the kernel path (iptables, nftables) and hive's eBPF mesh:",
        config.lab
    );
    let kernel = KernelPath::up(&lab, run_dir.clone()).map_err(RunError::from)?;
    let rounds = config.rounds.max(1);
    let measured = (|| -> Result<(), BenchError> {
        for round in 1..=rounds {
            if rounds > 1 {
                eprintln!(" round {round} of {rounds}:");
            }
            let runs = &mut report.runs;
            runs.push(kernel_runs::direct(&lab, &kernel, &config.load)?);
            // Paths side by side at each size, rather than one path at
            // every size and then the next: this machine's speed drifts
            // over minutes, and the ratios are between paths at one size.
            // Their order turns by one each round, so that over three
            // rounds each path runs first, second and third once: a run
            // inherits the TIME_WAIT and caches of the runs before it.
            let mut turns = TURNS;
            turns.rotate_left((round as usize - 1) % TURNS.len());
            for &services in &config.service_counts {
                for turn in turns {
                    runs.push(match turn {
                        Turn::Kernel(engine) => {
                            kernel_runs::kernel_at(&lab, &kernel, engine, services, &config.load)?
                        }
                        Turn::Hive(mode) => {
                            hive_runs::hive_at(&lab, &run_dir, services, mode, &config.load)?
                        }
                    });
                }
            }
        }
        Ok(())
    })();
    let down = kernel.down().map_err(RunError::from);
    measured?;
    down?;
    report.rounds = rounds;
    report.paths = crate::report::medians(&report.runs);
    print!("{}", report.table());
    let json = report.write_json(&config.out_dir)?;
    println!("\nJSON: {}", json.display());
    Ok(report)
}

//! `hive mesh bench`: the mesh benchmark (`hive_mesh_bench::mesh`), the same run
//! as `cargo bench --bench mesh`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Args;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Seconds of load per measurement.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    duration: u64,
    /// Service counts to measure at, comma-separated (each includes the measured one).
    #[arg(long, value_delimiter = ',', default_values_t = [1u32, 1_000, 10_000])]
    services: Vec<u32>,
    /// Rounds: every path is measured this many times at every size, and
    /// the table shows the median of each figure (this machine's speed
    /// drifts by more than the paths differ at small sizes).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Name of the lab the benchmark builds and removes.
    #[arg(long, default_value = "bench")]
    lab: String,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/hive-bench")]
    out_dir: PathBuf,
    /// Also measure bulk throughput: iperf3, one TCP stream, both directions,
    /// `--duration` seconds each, through no mesh, the floors of a path through the
    /// ingress node (`floor-vxlan`: through hive's VXLAN tunnel with no other work),
    /// iptables and hive in each mode.
    #[arg(long)]
    bulk: bool,
    /// Paths the load runs measure, comma-separated: iptables, nftables, hive,
    /// hive-dsr, hive-hybrid (the no-mesh ceiling and the floors of a path through
    /// the ingress node are always measured: forwarding by MACs alone, and
    /// `floor-vxlan`, the same through hive's VXLAN tunnel with no other work).
    #[arg(long, value_delimiter = ',', default_values_t = hive_mesh_bench::mesh::BenchPath::ALL)]
    paths: Vec<hive_mesh_bench::mesh::BenchPath>,
    /// A CPU-bound neighbour for the whole run: stress-ng keeps every CPU busy
    /// this many percent of the time (tail latency under contention).
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u32).range(1..=100))]
    neighbour: Option<u32>,
    /// Also measure tail latency at equal load: after each size's runs, every
    /// path and the no-mesh row again with new connections started on a fixed
    /// schedule (open loop), at this share of the slowest path's rate at that size.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u32).range(1..=100))]
    open_loop: Option<u32>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let config = hive_mesh_bench::mesh::BenchConfig {
        lab: args.lab,
        load: hive_mesh_bench::kernel_runs::Load {
            duration: Duration::from_secs(args.duration),
            ..Default::default()
        },
        service_counts: args.services,
        rounds: args.rounds,
        out_dir: args.out_dir,
        bulk: args.bulk,
        paths: args.paths,
        neighbour_percent: args.neighbour,
        open_loop_percent: args.open_loop,
    };
    hive_mesh_bench::mesh::run(&config)?;
    Ok(ExitCode::SUCCESS)
}

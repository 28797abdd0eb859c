//! `cargo run -p hive-mesh-bench --example mesh [-- SECONDS ROUNDS SERVICES,..]`: the
//! `hive mesh bench` run without building the `hive` binary (lab `dsrbench`).

use std::time::Duration;

use hive_mesh_bench::{kernel_runs::Load, mesh::BenchConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let rounds = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let services = args
        .next()
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![1]);
    let config = BenchConfig {
        lab: "dsrbench".into(),
        load: Load {
            duration: Duration::from_secs(seconds),
            ..Default::default()
        },
        service_counts: services,
        rounds,
        ..Default::default()
    };
    hive_mesh_bench::mesh::run(&config)?;
    Ok(())
}

//! `cargo run -p hive-mesh-bench --example bulk [-- SECONDS ROUNDS]`: bulk throughput only,
//! every path (no mesh, iptables, hive in each mode), i.e.
//! `hive mesh bench --bulk` without the connection runs, on a lab of its own (`dsrbulk`).
//! Writes `target/hive-bench/mesh.json`.

use std::time::Duration;

use hive_mesh_bench::{kernel_runs::Load, mesh::BenchConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let rounds = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let config = BenchConfig {
        lab: "dsrbulk".into(),
        load: Load {
            duration: Duration::from_secs(seconds),
            ..Default::default()
        },
        service_counts: Vec::new(),
        rounds,
        bulk: true,
        ..Default::default()
    };
    hive_mesh_bench::mesh::run(&config)?;
    Ok(())
}

//! `cargo run -p hive-mesh-bench --example mesh [-- SECONDS ROUNDS SERVICES,.. PATHS,..
//! NEIGHBOUR%]`: the `hive mesh bench` run without building the `hive` binary (lab
//! `dsrbench`); e.g. `-- 5 3 1,1000,10000 iptables,hive 50`.

use std::time::Duration;

use hive_mesh_bench::{
    kernel_runs::Load,
    mesh::{BenchConfig, BenchPath},
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let rounds = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let services = args
        .next()
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![1]);
    let paths = match args.next() {
        Some(list) => list
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<BenchPath>, _>>()?,
        None => BenchPath::ALL.to_vec(),
    };
    let neighbour_percent = args.next().map(|s| s.parse()).transpose()?;
    let config = BenchConfig {
        lab: "dsrbench".into(),
        load: Load {
            duration: Duration::from_secs(seconds),
            ..Default::default()
        },
        service_counts: services,
        rounds,
        paths,
        neighbour_percent,
        ..Default::default()
    };
    hive_mesh_bench::mesh::run(&config)?;
    Ok(())
}

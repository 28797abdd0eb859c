//! `cargo run -p hive-mesh-bench --example mesh [-- SECONDS ROUNDS SERVICES,.. PATHS,..
//! NEIGHBOUR% OPEN-LOOP%]`: the `hive mesh bench` run without building the `hive` binary
//! (lab `dsrbench`); e.g. `-- 5 3 1,1000,10000 iptables,hive 50 60`. A `-` for NEIGHBOUR%
//! runs without a neighbour (`-- 5 3 1 iptables,hive - 60`: open loop at 60 %, quiet).

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
    let percent = |arg: Option<String>| -> Result<Option<u32>, std::num::ParseIntError> {
        arg.filter(|s| s != "-").map(|s| s.parse()).transpose()
    };
    let neighbour_percent = percent(args.next())?;
    let open_loop_percent = percent(args.next())?;
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
        open_loop_percent,
        ..Default::default()
    };
    hive_mesh_bench::mesh::run(&config)?;
    Ok(())
}

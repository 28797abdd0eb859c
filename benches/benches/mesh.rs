//! `cargo bench --bench mesh`: the same run as `hive mesh bench`.
fn main() -> std::process::ExitCode {
    // `cargo bench` passes `--bench`; nothing to parse beyond that.
    let mut config = hive_mesh_bench::mesh::BenchConfig {
        out_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hive-bench"),
        ..Default::default()
    };
    // Shorter runs while developing: HIVE_BENCH_SECONDS=2 HIVE_BENCH_SERVICES=1,1000;
    // steadier figures: HIVE_BENCH_ROUNDS=3; bulk only: HIVE_BENCH_SERVICES= HIVE_BENCH_BULK=1
    if let Some(secs) = std::env::var("HIVE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        config.load.duration = std::time::Duration::from_secs(secs);
    }
    if let Some(rounds) = std::env::var("HIVE_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        config.rounds = rounds;
    }
    if let Ok(list) = std::env::var("HIVE_BENCH_SERVICES") {
        config.service_counts = list
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect();
    }
    // Bulk throughput too: HIVE_BENCH_BULK=1.
    config.bulk = std::env::var("HIVE_BENCH_BULK").is_ok_and(|v| v == "1");
    match hive_mesh_bench::mesh::run(&config) {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mesh bench failed: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

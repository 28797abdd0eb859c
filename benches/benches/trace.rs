//! `cargo bench --bench trace`: what tracing costs a packet (see
//! `hive_mesh_bench::trace_cost`). Build with `HIVE_EBPF_NOTRACE=1` to include
//! the build without trace code. Needs root.
fn main() -> std::process::ExitCode {
    let rounds = std::env::var("HIVE_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    match hive_mesh_bench::trace_cost::measure(rounds, 20) {
        Ok(costs) => {
            print!("{}", hive_mesh_bench::trace_cost::table(&costs));
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hive-bench");
            let written = std::fs::create_dir_all(&dir).and_then(|()| {
                let json = serde_json::to_string_pretty(&costs).map_err(std::io::Error::other)?;
                std::fs::write(dir.join("trace.json"), json)
            });
            if let Err(err) = written {
                eprintln!("cannot write target/hive-bench/trace.json: {err}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("trace bench failed (root is needed for BPF_PROG_RUN): {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

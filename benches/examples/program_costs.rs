//! The BPF_PROG_RUN part of `hive mesh bench` alone (no lab, no load), for
//! iterating on a program path: `cargo run --release -p hive-bench --example
//! program_costs` as root. Prints ns/packet and the ratio to the floor.

fn main() -> std::process::ExitCode {
    match hive_mesh_bench::program_costs::program_costs() {
        Ok(costs) => {
            for cost in costs {
                println!(
                    "{:<45} {:>7.0} ns  {:>5.1}x",
                    cost.path, cost.ns_per_packet, cost.ratio_to_floor
                );
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("program_costs: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

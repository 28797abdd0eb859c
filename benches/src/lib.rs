//! hive's benchmark harness: the mesh benchmark behind `hive mesh bench` and
//! `cargo bench`, measuring hive's eBPF mesh beside the kernel's own path in
//! the same run and on the same lab. Figures, never test assertions.

pub mod gossip;
pub mod hive_runs;
pub mod kernel_path;
pub mod kernel_runs;
pub mod lab_bench;
pub mod mesh;
pub mod program_costs;
pub mod report;
pub mod rules;
pub mod trace_cost;
pub mod wrk;

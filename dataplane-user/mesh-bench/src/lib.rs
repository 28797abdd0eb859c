//! The mesh benchmark engine behind `hive mesh bench` and `cargo bench --bench mesh`:
//! hive's eBPF mesh measured beside the kernel's own path (iptables, nftables) in the same
//! run and on the same lab. Figures, never test assertions.
//!
//! Product code (the `hive` command) uses it, so it lives beside the data plane and not in
//! the benchmark crate (`benches/`), which depends on it instead: product code never
//! depends on benchmark code.

pub mod bulk;
pub mod floor;
pub mod hive_runs;
pub mod kernel_path;
pub mod kernel_runs;
pub mod mesh;
pub mod neighbour;
pub mod open_loop;
pub mod program_costs;
pub mod report;
pub mod rules;
pub mod softirq;
pub mod trace_cost;
pub mod wrk;

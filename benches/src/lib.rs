//! hive's benchmarks: the lab benchmarks' shared frame and the gossip report. The mesh
//! benchmark's engine (`cargo bench --bench mesh`, `hive mesh bench`) is product code and
//! lives in `hive-mesh-bench` (`dataplane-user/mesh-bench/`). Figures, never test
//! assertions.

pub mod gossip;
pub mod lab_bench;

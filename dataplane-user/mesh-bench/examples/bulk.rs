//! `cargo run -p hive-mesh-bench --example bulk [-- SECONDS ROUNDS]`: bulk throughput through
//! hive's mesh in each mode beside no mesh (issue 21), on a lab of its own (`dsrbulk`).
//! Writes `target/hive-bench/bulk.json`.

use hive_dataplane::lab::{LabGuard, LabSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let rounds = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let lab = LabGuard::up(&LabSpec::new("dsrbulk", 2))?;
    let figures = hive_mesh_bench::bulk::measure(&lab, seconds, rounds)?;
    std::fs::create_dir_all("target/hive-bench")?;
    std::fs::write(
        "target/hive-bench/bulk.json",
        serde_json::to_string_pretty(&figures)?,
    )?;
    println!("{}", serde_json::to_string_pretty(&figures)?);
    Ok(())
}

//! The frame every lab benchmark shares (`failover`, `chaos`, `control_plane`, `stacks`, …):
//! they need root for network namespaces, so without it they say so and succeed (a
//! `cargo bench` by a user should not fail for it); a failure is printed with the
//! benchmark's name. The benchmark's own executable doubles as the lab's `hive` (its `main`
//! calls [`hive::cli::run_as_hive_if_asked`] first), so daemons and the benchmark are one build.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hive::lab_swarm::SwarmLab;
use hive_lab::{Lab, LabSpec};
use serde::Serialize;

/// Runs `bench` as root; `needs` says what root is for.
pub fn main(name: &str, needs: &str, bench: impl FnOnce() -> Result<(), String>) -> ExitCode {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        eprintln!("{name} bench skipped: it needs root ({needs})");
        return ExitCode::SUCCESS;
    }
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name} bench failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime a lab benchmark drives its swarm with: two workers, as the lab's machine.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

/// This benchmark's executable, which is also the lab's `hive`.
pub fn hive_exe() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("the benchmark's own path: {e}"))
}

/// A lab of `nodes` nodes named `lab` with a formed swarm of `managers` managers.
pub fn swarm_up(
    rt: &tokio::runtime::Runtime,
    lab: &str,
    nodes: u32,
    managers: u32,
) -> Result<SwarmLab, String> {
    let exe = hive_exe()?;
    rt.block_on(SwarmLab::up(&LabSpec::new(lab, nodes), managers, &exe))
        .map_err(|e| format!("forming the lab swarm {lab}: {e}"))
}

/// `hive ARGS` inside `node`; its standard output, or its standard error as the error.
pub fn hive_cli(lab: &Lab, node: &str, args: &[&str]) -> Result<String, String> {
    let out = lab
        .command(node, &hive_exe()?)
        .map_err(|e| e.to_string())?
        .args(args)
        .output()
        .map_err(|e| format!("hive {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "hive {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Writes `report` as `target/hive-bench/NAME.json` and says where.
pub fn write_json(name: &str, report: &impl Serialize) -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hive-bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{name}.json"));
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(path)
}

/// The median, minimum and maximum of `samples` (all 0 when there are none).
pub fn median_min_max(samples: &[f64]) -> (f64, f64, f64) {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match (sorted.first(), sorted.last()) {
        (Some(&min), Some(&max)) => (sorted[sorted.len() / 2], min, max),
        _ => (0.0, 0.0, 0.0),
    }
}

//! The frame every lab benchmark shares (`failover`, `gossip`, `services`): they need root for
//! network namespaces, so without it they say so and succeed (a `cargo bench` by a user
//! should not fail for it); a failure is printed with the benchmark's name.

use std::os::unix::fs::MetadataExt as _;
use std::process::ExitCode;

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

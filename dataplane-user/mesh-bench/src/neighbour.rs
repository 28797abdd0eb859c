//! A CPU-bound neighbour for the load runs (issue 21, item 3; `hive mesh bench
//! --neighbour PERCENT`): `stress-ng` keeping every CPU of the machine busy `PERCENT` % of
//! the time, outside the lab's namespaces, for as long as the run lasts: what a node
//! shared with other work looks like to the mesh, and a load that, unlike other people's
//! builds, is the same from one run to the next.

use std::process::{Child, Command, Stdio};

/// Errors starting the neighbour.
#[derive(Debug, thiserror::Error)]
pub enum NeighbourError {
    #[error("the neighbour's share must be 1 to 100 %, not {0}")]
    Share(u32),
    #[error("could not start stress-ng: {0}; install it with `cargo xtask setup`")]
    Spawn(#[source] std::io::Error),
}

/// A running neighbour; stopped (and its workers with it) when dropped.
#[derive(Debug)]
pub struct Neighbour {
    child: Child,
}

impl Neighbour {
    /// One `stress-ng --cpu` worker per CPU, each busy `percent` % of the time.
    pub fn start(percent: u32) -> Result<Self, NeighbourError> {
        if !(1..=100).contains(&percent) {
            return Err(NeighbourError::Share(percent));
        }
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let child = Command::new("stress-ng")
            .args([
                "--cpu",
                &cpus.to_string(),
                "--cpu-load",
                &percent.to_string(),
                "--quiet",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(NeighbourError::Spawn)?;
        Ok(Neighbour { child })
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        // SIGTERM: stress-ng stops its workers before it exits (SIGKILL would leave them).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

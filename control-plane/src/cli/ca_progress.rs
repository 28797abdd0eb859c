//! The progress display of `hive swarm ca --rotate`, as Docker's CLI draws it
//! (`cli/command/swarm/progress/root_rotation.go`):
//!
//! ```text
//! desired root digest: sha256:05da740c...
//!   rotated TLS certificates:  [=========================>                         ] 1/2 nodes
//!   rotated CA certificates:   [>                                                  ] 0/2 nodes
//! ```
//!
//! On a terminal the block is redrawn in place; otherwise it is printed again each time a
//! figure changes, so a log shows every step.

use std::io::{IsTerminal, Write};

use crate::api::pb;

/// Columns of `=` in a full bar.
const BAR_WIDTH: u32 = 50;

/// Draws successive states of a rotation.
#[derive(Debug)]
pub struct RotationProgress {
    terminal: bool,
    last: Option<String>,
}

impl RotationProgress {
    pub fn new() -> Self {
        Self {
            terminal: std::io::stdout().is_terminal(),
            last: None,
        }
    }

    /// Shows `status` if it differs from what is shown.
    pub fn show(&mut self, status: &pb::RootRotationStatus) {
        let block = render(status);
        if self.last.as_deref() == Some(block.as_str()) {
            return;
        }
        let mut out = std::io::stdout().lock();
        if self.terminal && self.last.is_some() {
            // Back to the first line of the previous block, which has as many lines.
            let _ = write!(out, "\x1b[3A\x1b[J");
        }
        let _ = out.write_all(block.as_bytes());
        let _ = out.flush();
        self.last = Some(block);
    }
}

/// The three lines for `status`.
pub fn render(status: &pb::RootRotationStatus) -> String {
    format!(
        "desired root digest: {}\n  rotated TLS certificates:  {} {}/{} nodes\n  rotated CA certificates:   {} {}/{} nodes\n",
        status.desired_root_digest,
        bar(status.tls_rotated, status.nodes),
        status.tls_rotated,
        status.nodes,
        bar(status.ca_rotated, status.nodes),
        status.ca_rotated,
        status.nodes,
    )
}

/// `[====>    ]`: `done/total` of [`BAR_WIDTH`] columns of `=`, then `>`, then spaces.
fn bar(done: u32, total: u32) -> String {
    let filled = if total == 0 {
        BAR_WIDTH
    } else {
        (u64::from(done.min(total)) * u64::from(BAR_WIDTH) / u64::from(total)) as u32
    };
    format!(
        "[{}>{}]",
        "=".repeat(filled as usize),
        " ".repeat((BAR_WIDTH - filled) as usize)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_reads_as_dockers() {
        let status = pb::RootRotationStatus {
            desired_root_digest: "sha256:05da".to_owned(),
            in_progress: true,
            nodes: 2,
            tls_rotated: 1,
            ca_rotated: 0,
        };
        assert_eq!(
            render(&status),
            "desired root digest: sha256:05da\n  rotated TLS certificates:  [=========================>                         ] 1/2 nodes\n  rotated CA certificates:   [>                                                  ] 0/2 nodes\n"
        );
        assert_eq!(bar(5, 5), format!("[{}>]", "=".repeat(50)));
    }
}

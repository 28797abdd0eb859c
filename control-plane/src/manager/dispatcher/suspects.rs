//! Gossip's verdicts on the other nodes, as this node's gossip reached them, for the leader's
//! liveness (`liveness.rs`).
//!
//! They belong to the daemon, not to one manager: the node's gossip outlives its managers (a
//! promotion or a forced new cluster starts a new manager while gossip runs on), and a node
//! that died before this manager took over must still count as dead when it leads.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// How gossip lost a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspicionKind {
    /// Its heartbeats stopped: a crash, a partition, or a daemon restart in progress.
    Failed,
    /// It said it was leaving the swarm.
    Left,
}

/// Since when gossip has lost a node, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspicion {
    pub since: Instant,
    pub kind: SuspicionKind,
}

impl Suspicion {
    /// The node status message once the suspicion marks the node down.
    pub fn reason(&self) -> String {
        match self.kind {
            SuspicionKind::Failed => "gossip: node failed",
            SuspicionKind::Left => "gossip: node left",
        }
        .to_owned()
    }
}

/// The nodes gossip has lost, by node ID.
#[derive(Debug, Default)]
pub struct Suspects {
    nodes: Mutex<HashMap<String, Suspicion>>,
}

impl Suspects {
    /// Gossip lost `node_id` now. A node already lost keeps the time it was first lost.
    pub fn lost(&self, node_id: &str, kind: SuspicionKind) {
        self.lock()
            .entry(node_id.to_owned())
            .and_modify(|s| s.kind = kind)
            .or_insert(Suspicion {
                since: Instant::now(),
                kind,
            });
    }

    /// Gossip hears from `node_id` again (a new incarnation after a restart, a healed
    /// partition).
    pub fn found(&self, node_id: &str) {
        self.lock().remove(node_id);
    }

    pub fn snapshot(&self) -> HashMap<String, Suspicion> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Suspicion>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_lost_twice_keeps_the_first_time_and_is_forgotten_when_found() {
        let suspects = Suspects::default();
        suspects.lost("a", SuspicionKind::Failed);
        let first = suspects.snapshot()["a"].since;
        suspects.lost("a", SuspicionKind::Left);
        assert_eq!(
            suspects.snapshot()["a"],
            Suspicion {
                since: first,
                kind: SuspicionKind::Left
            }
        );
        suspects.found("a");
        assert!(suspects.snapshot().is_empty());
    }
}

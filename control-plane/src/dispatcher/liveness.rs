//! Node liveness deadlines: the hook every liveness source reports through.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a liveness source saw about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The node is alive; it is down if nothing else is heard within `grace`.
    Alive { grace: Duration },
    /// The node is dead now (e.g. gossip's failure detector), with the reason to show.
    Dead { reason: String },
}

#[derive(Debug, Clone)]
enum Deadline {
    At(Instant),
    Now(String),
}

/// Deadlines per node ID, kept by the leader's dispatcher.
#[derive(Debug, Default)]
pub struct Liveness {
    deadlines: Mutex<HashMap<String, Deadline>>,
}

impl Liveness {
    /// Records an observation of `node_id`; the latest one wins.
    pub fn observe(&self, node_id: &str, observation: Observation) {
        let deadline = match observation {
            Observation::Alive { grace } => Deadline::At(Instant::now() + grace),
            Observation::Dead { reason } => Deadline::Now(reason),
        };
        self.lock().insert(node_id.to_owned(), deadline);
    }

    pub fn forget(&self, node_id: &str) {
        self.lock().remove(node_id);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Takes out the nodes whose deadline passed, with why they are down.
    pub fn expired(&self) -> Vec<(String, String)> {
        let now = Instant::now();
        let mut deadlines = self.lock();
        let expired: Vec<(String, String)> = deadlines
            .iter()
            .filter_map(|(id, deadline)| match deadline {
                Deadline::At(at) if *at <= now => {
                    Some((id.clone(), "heartbeat failure".to_owned()))
                }
                Deadline::At(_) => None,
                Deadline::Now(reason) => Some((id.clone(), reason.clone())),
            })
            .collect();
        for (id, _) in &expired {
            deadlines.remove(id);
        }
        expired
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Deadline>> {
        self.deadlines.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alive_nodes_expire_after_their_grace_and_dead_ones_at_once() {
        let liveness = Liveness::default();
        liveness.observe(
            "a",
            Observation::Alive {
                grace: Duration::ZERO,
            },
        );
        liveness.observe(
            "b",
            Observation::Alive {
                grace: Duration::from_secs(3600),
            },
        );
        liveness.observe(
            "c",
            Observation::Dead {
                reason: "gossip: no answer".into(),
            },
        );
        let mut expired = liveness.expired();
        expired.sort();
        assert_eq!(
            expired,
            vec![
                ("a".to_owned(), "heartbeat failure".to_owned()),
                ("c".to_owned(), "gossip: no answer".to_owned())
            ]
        );
        assert!(
            liveness.expired().is_empty(),
            "expired nodes are reported once"
        );
    }
}

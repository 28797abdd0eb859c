//! Node liveness on the leader: when a node that is not `Down` in the store becomes `Down`.
//!
//! Two sources, combined here so that the rule is in one place:
//! - the node's own session (register, heartbeats): a node not heard from for the grace
//!   ([`super::GRACE_MULTIPLIER`] heartbeat periods) is down, "heartbeat failure";
//! - gossip ([`Suspects`]): a node gossip reports failed is down once one heartbeat period
//!   passed without the node being heard from since, a node that left is down at once.
//!
//! Gossip is much faster than missed heartbeats (about a second against 15 s), but a daemon
//! restart also looks like a failure to it: the old incarnation stops, a new one starts a
//! moment later and re-adopts the node's tasks. The period of grace after gossip's verdict is
//! what lets such a node keep its tasks (Swarm's dispatcher gives a node one heartbeat period
//! too); the mesh does not wait for it, every node drops a failed node's backends at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::suspects::{Suspicion, SuspicionKind};

/// Why a node is down when its heartbeats stopped.
pub const HEARTBEAT_FAILURE: &str = "heartbeat failure";

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Down at this instant unless heard from before.
    deadline: Instant,
    /// When the node's session was last heard from (none yet on a new leader).
    heard: Option<Instant>,
}

/// The leader's deadlines per node ID.
#[derive(Debug, Default)]
pub struct Liveness {
    entries: Mutex<HashMap<String, Entry>>,
}

/// What the leader decides down in one check: node ID and the reason to show.
pub type Verdicts = Vec<(String, String)>;

impl Liveness {
    /// The node's session was heard from now: it is down if nothing else is heard within
    /// `grace`.
    pub fn heard(&self, node_id: &str, grace: Duration) {
        let now = Instant::now();
        self.lock().insert(
            node_id.to_owned(),
            Entry {
                deadline: now + grace,
                heard: Some(now),
            },
        );
    }

    pub fn forget(&self, node_id: &str) {
        self.lock().remove(node_id);
    }

    /// Forgets every node (leadership lost: the next leader starts from scratch).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The nodes among `up` (IDs of nodes that are not `Down` in the store) that are down at
    /// `now`, with why. A node seen here for the first time (a new leader, a node the store
    /// got from elsewhere, as a forced new cluster writes them) gets `first_grace` to be heard
    /// from. Gossip's suspicions count against a node only if it was not heard from since.
    pub fn due<'a>(
        &self,
        now: Instant,
        up: impl IntoIterator<Item = &'a str>,
        suspects: &HashMap<String, Suspicion>,
        suspicion_grace: Duration,
        first_grace: Duration,
    ) -> Verdicts {
        let mut entries = self.lock();
        let mut down = Vec::new();
        for node_id in up {
            let entry = *entries.entry(node_id.to_owned()).or_insert(Entry {
                deadline: now + first_grace,
                heard: None,
            });
            let suspected = suspects.get(node_id).filter(|s| {
                entry.heard.is_none_or(|heard| heard < s.since)
                    && match s.kind {
                        SuspicionKind::Failed => s.since + suspicion_grace <= now,
                        SuspicionKind::Left => true,
                    }
            });
            if let Some(suspicion) = suspected {
                down.push((node_id.to_owned(), suspicion.reason()));
            } else if entry.deadline <= now {
                down.push((node_id.to_owned(), HEARTBEAT_FAILURE.to_owned()));
            }
        }
        down
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(5);
    const FIRST: Duration = Duration::from_secs(30);

    fn suspicion(since: Instant, kind: SuspicionKind) -> Suspicion {
        Suspicion { since, kind }
    }

    fn due(
        liveness: &Liveness,
        now: Instant,
        up: &[&str],
        suspects: &[(&str, Suspicion)],
    ) -> Vec<String> {
        let suspects = suspects
            .iter()
            .map(|(id, s)| ((*id).to_owned(), s.clone()))
            .collect();
        let mut down: Vec<String> = liveness
            .due(now, up.iter().copied(), &suspects, PERIOD, FIRST)
            .into_iter()
            .map(|(id, reason)| format!("{id}: {reason}"))
            .collect();
        down.sort();
        down
    }

    #[test]
    fn a_silent_node_is_down_after_its_grace() {
        let liveness = Liveness::default();
        liveness.heard("a", Duration::ZERO);
        liveness.heard("b", Duration::from_secs(3600));
        let now = Instant::now();
        assert_eq!(
            due(&liveness, now, &["a", "b"], &[]),
            ["a: heartbeat failure"]
        );
        // A node already Down in the store is not a candidate.
        assert!(due(&liveness, now, &["b"], &[]).is_empty());
    }

    #[test]
    fn a_node_gossip_reports_failed_is_down_one_period_later_unless_heard_from() {
        let liveness = Liveness::default();
        liveness.heard("restarted", Duration::from_secs(3600));
        liveness.heard("dead", Duration::from_secs(3600));
        std::thread::sleep(Duration::from_millis(2));
        let failed = suspicion(Instant::now(), SuspicionKind::Failed);
        let suspects = [("restarted", failed.clone()), ("dead", failed.clone())];
        let up = ["restarted", "dead"];
        assert!(
            due(
                &liveness,
                failed.since + Duration::from_secs(1),
                &up,
                &suspects
            )
            .is_empty(),
            "within the grace nothing is down"
        );
        // The restarted daemon registers again within the grace.
        std::thread::sleep(Duration::from_millis(2));
        liveness.heard("restarted", Duration::from_secs(3600));
        assert_eq!(
            due(&liveness, failed.since + PERIOD, &up, &suspects),
            ["dead: gossip: node failed"]
        );
    }

    #[test]
    fn a_node_that_left_is_down_at_once() {
        let liveness = Liveness::default();
        let now = Instant::now();
        liveness.heard("a", Duration::from_secs(3600));
        std::thread::sleep(Duration::from_millis(2));
        let suspects = [("a", suspicion(Instant::now(), SuspicionKind::Left))];
        assert_eq!(
            due(&liveness, now, &["a"], &suspects),
            ["a: gossip: node left"]
        );
    }

    #[test]
    fn a_node_first_seen_by_this_leader_counts_gossips_old_verdict() {
        // A forced new cluster: the dead managers died (and were reported) before this
        // leader existed, and appear in its store afterwards.
        let long_ago = Instant::now();
        let now = long_ago + Duration::from_secs(60);
        let liveness = Liveness::default();
        let suspects = [("dead", suspicion(long_ago, SuspicionKind::Failed))];
        assert_eq!(
            due(&liveness, now, &["dead", "quiet"], &suspects),
            ["dead: gossip: node failed"]
        );
        // A node gossip says nothing about gets the first grace to be heard from.
        assert!(
            due(
                &liveness,
                now + FIRST - Duration::from_secs(1),
                &["quiet"],
                &[]
            )
            .is_empty()
        );
        assert_eq!(
            due(&liveness, now + FIRST, &["quiet"], &[]),
            ["quiet: heartbeat failure"]
        );
    }
}

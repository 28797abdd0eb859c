//! Pre-vote for openraft 0.9: a manager stands for election only when a majority of the
//! voters would vote for a new leader, so a member that was cut off and comes back does not
//! depose a healthy leader (docs/store.md, "Pre-vote and check-quorum").
//!
//! openraft 0.9 has no pre-vote. Its leader lease makes members that hear a leader refuse
//! votes, but a member cut off from the others keeps standing, each time with a higher term;
//! when it is back, the leader's next AppendEntries is answered with that higher term and the
//! leader steps down, costing the swarm an election. openraft lets a node's own candidacy be
//! switched off at run time (`RuntimeConfigHandle::elect`); [`gate`] keeps it off unless the
//! pre-vote question — "would you vote for a new leader now?" — is answered yes by a majority
//! of the voters, asked over the managers' `Ping` RPC ([`Campaign::would_vote`] is the answer).
//! It never grants a vote or a leadership itself: Raft's own vote decides, so safety is
//! openraft's; the gate only withholds candidacies that could not win.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::peers::Peers;
use crate::api::pb;
use crate::store::types::{NodeId, Raft, RaftMetrics};

/// How often the gate looks again.
const GATE_INTERVAL: Duration = Duration::from_millis(100);
/// Bound of one pre-vote question to a peer.
const ASK_TIMEOUT: Duration = Duration::from_millis(300);

/// What this manager knows of the leader, for its own candidacy and for its peers' questions.
#[derive(Debug)]
pub struct Campaign {
    self_id: NodeId,
    /// openraft's leader lease: a member that heard a leader within it refuses votes.
    lease: Duration,
    /// When a leader's AppendEntries or snapshot was last accepted here.
    leader_heard: Mutex<Option<Instant>>,
}

impl Campaign {
    pub fn new(self_id: NodeId, lease: Duration) -> Arc<Self> {
        Arc::new(Self {
            self_id,
            lease,
            leader_heard: Mutex::new(None),
        })
    }

    /// A leader's replication was accepted just now.
    pub fn leader_heard(&self) {
        *self.leader_heard.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// The pre-vote answer: whether this manager would vote for a new leader now. A follower
    /// would once no leader was heard within the lease (as openraft's own vote check); a
    /// leader would once a majority has not acknowledged it within the lease (check-quorum's
    /// verdict on itself).
    pub fn would_vote(&self, metrics: &RaftMetrics) -> bool {
        if metrics.current_leader == Some(self.self_id) {
            return metrics
                .millis_since_quorum_ack
                .is_none_or(|ms| Duration::from_millis(ms) > self.lease);
        }
        let heard = *self.leader_heard.lock().unwrap_or_else(|e| e.into_inner());
        heard.is_none_or(|at| at.elapsed() > self.lease)
    }
}

/// Keeps this manager's candidacy switched on only while a majority of the voters (itself
/// included) would vote for a new leader, until `shutdown`.
pub async fn gate(
    campaign: Arc<Campaign>,
    peers: Arc<Peers>,
    raft: Raft,
    mut metrics: watch::Receiver<RaftMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    // openraft starts with elections on (`Config::enable_elect`).
    let mut allowed = true;
    let mut tick = tokio::time::interval(GATE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let (wants, voters) = {
            let metrics = metrics.borrow_and_update();
            let voters: Vec<(NodeId, String)> = metrics
                .membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| voter_ids(&metrics).contains(id))
                .map(|(id, node)| (*id, node.api_addr.clone()))
                .collect();
            (campaign.would_vote(&metrics), voters)
        };
        let allow = wants && majority_would_vote(&peers, campaign.self_id, &voters).await;
        if allow != allowed {
            tracing::debug!(
                allow,
                "raft: candidacy {}",
                if allow { "allowed" } else { "withheld" }
            );
            raft.runtime_config().elect(allow);
            allowed = allow;
        }
    }
}

fn voter_ids(metrics: &RaftMetrics) -> BTreeSet<NodeId> {
    metrics.membership_config.membership().voter_ids().collect()
}

/// Asks every other voter the pre-vote question; this manager counts as a yes.
async fn majority_would_vote(peers: &Peers, self_id: NodeId, voters: &[(NodeId, String)]) -> bool {
    let asks = voters
        .iter()
        .filter(|(id, _)| *id != self_id)
        .map(|(id, addr)| ask(peers, *id, addr));
    let yes = 1 + futures::future::join_all(asks)
        .await
        .into_iter()
        .filter(|&yes| yes)
        .count();
    yes * 2 > voters.len().max(1)
}

/// One peer's pre-vote answer; no answer is a no.
async fn ask(peers: &Peers, id: NodeId, addr: &str) -> bool {
    let Ok(channel) = peers.channel(addr) else {
        return false;
    };
    let mut request = tonic::Request::new(pb::PingRequest {});
    request.set_timeout(ASK_TIMEOUT);
    let mut client = pb::raft_client::RaftClient::new(channel);
    match tokio::time::timeout(ASK_TIMEOUT, client.ping(request)).await {
        Ok(Ok(reply)) => {
            let reply = reply.into_inner();
            reply.raft_id == id && reply.would_vote
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(600);

    fn metrics(leader: Option<NodeId>, quorum_ack_ms: Option<u64>) -> RaftMetrics {
        let mut metrics = RaftMetrics::new_initial(1);
        metrics.current_leader = leader;
        metrics.millis_since_quorum_ack = quorum_ack_ms;
        metrics
    }

    #[test]
    fn a_follower_votes_for_a_new_leader_only_once_no_leader_was_heard_within_the_lease() {
        let campaign = Campaign::new(1, LEASE);
        assert!(campaign.would_vote(&metrics(None, None)), "never heard one");
        campaign.leader_heard();
        assert!(
            !campaign.would_vote(&metrics(Some(2), None)),
            "heard just now"
        );
        *campaign.leader_heard.lock().unwrap() =
            Some(Instant::now() - LEASE - Duration::from_millis(1));
        assert!(
            campaign.would_vote(&metrics(Some(2), None)),
            "lease ran out"
        );
    }

    #[test]
    fn a_leader_votes_for_a_new_one_once_its_majority_is_silent_for_the_lease() {
        let campaign = Campaign::new(1, LEASE);
        assert!(!campaign.would_vote(&metrics(Some(1), Some(50))));
        assert!(campaign.would_vote(&metrics(Some(1), Some(601))));
        assert!(campaign.would_vote(&metrics(Some(1), None)));
    }
}

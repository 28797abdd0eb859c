//! The task that turns chitchat's state into hive's membership view and its
//! change events.
//!
//! It wakes when chitchat's live-node watcher fires (the end of a gossip round
//! in which liveness or a live node's state changed: this is what makes a
//! death visible without extra delay) and once per gossip interval for what
//! the watcher does not signal (a dead node's state, forgotten nodes).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chitchat::{Chitchat, ChitchatId, NodeState};
use tokio::sync::{Mutex, broadcast, watch};
use tokio::time::{MissedTickBehavior, interval};

use super::keys::CLUSTER_KEY;
use super::membership::{Incarnation, Membership, MembershipEvent, diff, membership};

pub(crate) type LiveWatcher = watch::Receiver<BTreeMap<ChitchatId, NodeState>>;

pub(crate) struct Observer {
    pub chitchat: Arc<Mutex<Chitchat>>,
    pub local_node_id: String,
    pub cluster_id: String,
    pub live_nodes: LiveWatcher,
    pub members: watch::Sender<Arc<Membership>>,
    pub events: broadcast::Sender<MembershipEvent>,
    pub poll: Duration,
}

impl Observer {
    /// Runs until chitchat goes away (the task is aborted on shutdown).
    pub async fn run(mut self) {
        let mut tick = interval(self.poll);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = self.live_nodes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tick.tick() => {}
            }
            self.refresh().await;
        }
    }

    /// Reads chitchat once, publishes the new view, then the events: a
    /// consumer that reacts to an event by calling `members()` sees the view
    /// the event came from.
    pub async fn refresh(&mut self) {
        self.live_nodes.borrow_and_update();
        let incarnations = {
            let chitchat = self.chitchat.lock().await;
            incarnations(&chitchat, &self.cluster_id)
        };
        let next = membership(&self.local_node_id, &incarnations);
        let before = self.members.borrow().clone();
        if *before == next {
            return;
        }
        let events = diff(&before, &next);
        self.members.send_replace(Arc::new(next));
        for event in events {
            // No receivers is fine: nobody watches yet.
            let _ = self.events.send(event);
        }
    }
}

/// Every incarnation chitchat has decided about (live or dead) that belongs to
/// our cluster. Nodes still joining (fewer than two heartbeats) are left out
/// until the failure detector has an opinion.
pub(crate) fn incarnations(chitchat: &Chitchat, cluster_id: &str) -> Vec<Incarnation> {
    let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
    let dead: HashSet<&ChitchatId> = chitchat.dead_nodes().collect();
    chitchat
        .node_states()
        .iter()
        .filter(|(_, state)| state.get(CLUSTER_KEY) == Some(cluster_id))
        .filter_map(|(id, state)| {
            let is_live = live.contains(id);
            if !is_live && !dead.contains(id) {
                return None;
            }
            Some(Incarnation {
                node_id: id.node_id.to_string(),
                generation: id.generation_id,
                gossip_addr: id.gossip_advertise_addr,
                live: is_live,
                state: state
                    .key_values()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
        })
        .collect()
}

//! `Gossip`: one node's membership in the cluster's gossip, on chitchat.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::UdpTransport;
use chitchat::{
    Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState,
    ProtocolVersion, spawn_chitchat,
};
use tokio::sync::{Mutex, broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

use super::auth::AuthTransport;
use super::config::GossipConfig;
use super::error::{GossipError, WatchError};
use super::keys::{self, CLUSTER_KEY, LEAVING_KEY};
use super::membership::{Member, Membership, MembershipEvent};
use super::observer::Observer;

/// Events a slow watcher may fall behind by before it must resynchronise.
const EVENT_BUFFER: usize = 1024;

/// A running gossip member. Dropping it stops gossiping at once (peers then
/// see the node fail); `leave` is the polite way out, `shutdown` the quiet one.
pub struct Gossip {
    local: ChitchatId,
    chitchat: Arc<Mutex<Chitchat>>,
    server: Option<ChitchatHandle>,
    observer: JoinHandle<()>,
    members: watch::Receiver<Arc<Membership>>,
    events: broadcast::Sender<MembershipEvent>,
    gossip_interval: Duration,
    leave_grace: Duration,
}

impl fmt::Debug for Gossip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gossip")
            .field("local", &self.local)
            .field("running", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

impl Gossip {
    /// Validates `config`, binds the UDP socket and starts gossiping.
    ///
    /// The socket is bound on the calling runtime's thread, so it belongs to
    /// that thread's network namespace: start it from the node's namespace.
    pub async fn start(config: GossipConfig) -> Result<Gossip, GossipError> {
        config.validate()?;
        let local = ChitchatId::new(
            config.node_id.clone(),
            config.generation,
            config.advertise_addr,
        );
        let mut initial: Vec<(String, String)> = config.initial_state.clone().into_iter().collect();
        initial.push((CLUSTER_KEY.to_string(), config.cluster_id.clone()));

        let chitchat_config = chitchat_config(&config, local.clone());
        let server = match &config.auth {
            Some(auth) => {
                spawn_chitchat(chitchat_config, initial, &AuthTransport(auth.clone())).await
            }
            None => spawn_chitchat(chitchat_config, initial, &UdpTransport).await,
        }
        .map_err(|err| GossipError::Bind {
            addr: config.listen_addr,
            reason: format!("{err:#}"),
        })?;
        let chitchat = server.chitchat();
        let live_nodes = chitchat.lock().await.live_nodes_watcher();
        let (members_tx, members) = watch::channel(Arc::new(Membership::new()));
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let mut observer = Observer {
            chitchat: chitchat.clone(),
            local_node_id: config.node_id.clone(),
            cluster_id: config.cluster_id.clone(),
            live_nodes,
            members: members_tx,
            events: events.clone(),
            poll: config.gossip_interval,
        };
        // The first view (this node alone) is in place before start returns.
        observer.refresh().await;
        let observer = tokio::spawn(observer.run());
        Ok(Gossip {
            local,
            chitchat,
            server: Some(server),
            observer,
            members,
            events,
            gossip_interval: config.gossip_interval,
            leave_grace: config.leave_grace,
        })
    }

    /// This node's ID.
    pub fn node_id(&self) -> &str {
        &self.local.node_id
    }

    /// This node's incarnation.
    pub fn generation(&self) -> u64 {
        self.local.generation_id
    }

    /// Every node this one knows, itself included, up or not. Dead nodes are
    /// forgotten after the dead-node grace period.
    pub fn members(&self) -> Vec<Member> {
        self.members.borrow().values().cloned().collect()
    }

    /// One member by node ID.
    pub fn member(&self, node_id: &str) -> Option<Member> {
        self.members.borrow().get(node_id).cloned()
    }

    /// Changes of other nodes from now on. To start from a consistent view,
    /// call `watch()` first and `members()` second: an event already reflected
    /// in that snapshot carries the same member and is harmless to apply again.
    pub fn watch(&self) -> MembershipWatch {
        MembershipWatch {
            events: self.events.subscribe(),
        }
    }

    /// Publishes `key = value` in this node's state (e.g. `endpoints.<task>` =
    /// `healthy`). Peers see it within a few gossip rounds.
    pub async fn set_local(&self, key: &str, value: &str) -> Result<(), GossipError> {
        keys::check_user_key(key)?;
        keys::check_value(key, value)?;
        self.chitchat.lock().await.self_node_state().set(key, value);
        Ok(())
    }

    /// Removes a key from this node's state; returns whether it was there.
    /// Peers see the removal (a tombstone) like any other change.
    pub async fn delete_local(&self, key: &str) -> Result<bool, GossipError> {
        keys::check_user_key(key)?;
        let mut chitchat = self.chitchat.lock().await;
        let state: &mut NodeState = chitchat.self_node_state();
        if !state.contains_key(key) {
            return Ok(false);
        }
        state.delete(key);
        Ok(true)
    }

    /// This node's published keys (reserved ones left out).
    pub async fn local_state(&self) -> BTreeMap<String, String> {
        let mut chitchat = self.chitchat.lock().await;
        chitchat
            .self_node_state()
            .key_values()
            .filter(|(k, _)| !keys::is_reserved(k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The failure detector's current timeout per up peer: how long a silence
    /// makes it Down (it adapts to the heartbeat rate; docs/gossip.md).
    pub async fn failure_timeouts(&self) -> BTreeMap<String, Duration> {
        let newest: BTreeMap<String, u64> = self
            .members
            .borrow()
            .values()
            .filter(|m| m.is_up() && !m.local)
            .map(|m| (m.node_id.clone(), m.generation))
            .collect();
        let chitchat = self.chitchat.lock().await;
        chitchat
            .live_nodes()
            .filter(|id| newest.get(&*id.node_id) == Some(&id.generation_id))
            .filter_map(|id| {
                let timeout = chitchat.failure_detection_timeout(id)?;
                Some((id.node_id.to_string(), timeout))
            })
            .collect()
    }

    /// Leaves gracefully: marks this node as leaving, pushes the mark to every
    /// peer it sees up for the leave grace (several rounds, since UDP may drop
    /// one), then stops. Peers report it `NodeDown` with reason `Left` within
    /// about one round trip instead of after failure detection.
    pub async fn leave(mut self) -> Result<(), GossipError> {
        let peers: Vec<_> = {
            let mut chitchat = self.chitchat.lock().await;
            chitchat.self_node_state().set(LEAVING_KEY, "1");
            let local = chitchat.self_chitchat_id().clone();
            chitchat
                .live_nodes()
                .filter(|id| **id != local)
                .map(|id| id.gossip_advertise_addr)
                .collect()
        };
        if let Some(server) = &self.server {
            let deadline = Instant::now() + self.leave_grace;
            loop {
                for addr in &peers {
                    // Fails only once the server has stopped: nothing left to tell.
                    if server.gossip(*addr).is_err() {
                        break;
                    }
                }
                if Instant::now() + self.gossip_interval > deadline {
                    break;
                }
                sleep(self.gossip_interval).await;
            }
        }
        self.stop().await
    }

    /// Stops gossiping without a word: peers see this node fail.
    pub async fn shutdown(mut self) -> Result<(), GossipError> {
        self.stop().await
    }

    async fn stop(&mut self) -> Result<(), GossipError> {
        self.observer.abort();
        match self.server.take() {
            Some(server) => server.shutdown().await.map_err(|err| GossipError::Server {
                reason: format!("{err:#}"),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Gossip {
    fn drop(&mut self) {
        self.observer.abort();
        if let Some(server) = self.server.take() {
            // chitchat's server task outlives its handle unless told.
            server.abort();
        }
    }
}

/// A subscription to membership changes (`Gossip::watch`).
#[derive(Debug)]
pub struct MembershipWatch {
    events: broadcast::Receiver<MembershipEvent>,
}

impl MembershipWatch {
    /// The next change. After `Lagged`, resynchronise with `Gossip::members()`
    /// and keep calling `recv`.
    pub async fn recv(&mut self) -> Result<MembershipEvent, WatchError> {
        self.events.recv().await.map_err(|err| match err {
            broadcast::error::RecvError::Lagged(missed) => WatchError::Lagged { missed },
            broadcast::error::RecvError::Closed => WatchError::Closed,
        })
    }
}

fn chitchat_config(config: &GossipConfig, chitchat_id: ChitchatId) -> ChitchatConfig {
    let fd = &config.failure_detection;
    let cluster_id = config.cluster_id.clone();
    ChitchatConfig {
        chitchat_id,
        cluster_id: config.cluster_id.clone(),
        gossip_interval: config.gossip_interval,
        listen_addr: config.listen_addr,
        seed_nodes: config.seeds.iter().map(ToString::to_string).collect(),
        failure_detector_config: FailureDetectorConfig {
            phi_threshold: fd.phi_threshold,
            sampling_window_size: fd.sampling_window,
            max_interval: fd.max_interval,
            initial_interval: fd.initial_interval,
            dead_node_grace_period: fd.dead_node_grace,
        },
        // Tombstones of removed keys (a task's endpoint that went away) live as
        // long as dead nodes: a peer that was away less than that catches up
        // key by key instead of being reset.
        marked_for_deletion_grace_period: fd.dead_node_grace,
        catchup_callback: None,
        // Only nodes whose state says our cluster are announced live; see
        // `keys::CLUSTER_KEY`.
        extra_liveness_predicate: Some(Box::new(move |state: &NodeState| {
            state.get(CLUSTER_KEY) == Some(cluster_id.as_str())
        })),
        // Every hive node runs the same chitchat, so the compressed digest (V1)
        // is safe from day one; uncompressed digests overflow one datagram
        // past a few hundred nodes.
        protocol_version: ProtocolVersion::V1,
    }
}

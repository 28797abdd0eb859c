//! The other managers as this one sees them: one lazy mTLS channel per address, and when each
//! last answered. A probe loop pings every voter a few times a second; `node ls` shows a
//! manager `Reachable` if it answered within [`REACHABLE_WINDOW`], and the leader refuses to
//! serve (the lost-quorum error) when fewer than a majority did.
//!
//! Why probe instead of trusting Raft traffic: followers do not talk to each other, and an
//! openraft 0.9 leader keeps leading without a quorum; a probe gives every manager the same
//! kind of evidence, at a cost of a few tiny RPCs per second.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::api::pb;
use crate::pki;
use crate::store::objects::Reachability;
use crate::store::types::{NodeId, RaftMetrics};
use crate::transport::{TransportError, mtls_channel};

/// How often each manager pings the others.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// A manager that answered within this is reachable. Four probes: one lost packet or a busy
/// peer does not flip the status, and a dead one shows within two seconds.
pub const REACHABLE_WINDOW: Duration = Duration::from_millis(1_000);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub struct Peers {
    tls: Arc<ClientConfig>,
    channels: Mutex<HashMap<String, Channel>>,
    seen: Mutex<HashMap<NodeId, Instant>>,
    started: Instant,
}

impl Peers {
    pub fn new(tls: Arc<ClientConfig>) -> Arc<Self> {
        Arc::new(Self {
            tls,
            channels: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            started: Instant::now(),
        })
    }

    /// The client configuration (this node's certificate) peers are called with.
    pub fn tls(&self) -> Arc<ClientConfig> {
        self.tls.clone()
    }

    /// A channel to the manager at `addr`, authenticated as a manager of this swarm.
    pub fn channel(&self, addr: &str) -> Result<Channel, TransportError> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let channel = mtls_channel(addr, self.tls.clone(), pki::manager_server_name())?;
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Records that manager `id` answered just now.
    pub fn mark_seen(&self, id: NodeId) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Instant::now());
    }

    pub fn reachability(&self, id: NodeId) -> Reachability {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied();
        match seen {
            Some(at) if at.elapsed() <= REACHABLE_WINDOW => Reachability::Reachable,
            // Not probed yet since this manager started: say so rather than guess.
            None if self.started.elapsed() <= REACHABLE_WINDOW => Reachability::Unknown,
            _ => Reachability::Unreachable,
        }
    }

    /// Whether `self_id` together with the voters it reached recently is a majority of
    /// `voters`. Peers not probed yet count as reachable for the first window after start.
    pub fn has_quorum(&self, self_id: NodeId, voters: &BTreeSet<NodeId>) -> bool {
        let alive = voters
            .iter()
            .filter(|&&id| {
                id == self_id
                    || matches!(
                        self.reachability(id),
                        Reachability::Reachable | Reachability::Unknown
                    )
            })
            .count();
        alive * 2 > voters.len()
    }
}

/// Pings every voter but `self_id` each [`PROBE_INTERVAL`] until `shutdown`.
pub async fn probe_loop(
    peers: Arc<Peers>,
    self_id: NodeId,
    metrics: watch::Receiver<RaftMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let targets: Vec<(NodeId, String)> = {
            let metrics = metrics.borrow();
            metrics
                .membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != self_id)
                .map(|(id, node)| (*id, node.api_addr.clone()))
                .collect()
        };
        let probes = targets.into_iter().map(|(id, addr)| {
            let peers = peers.clone();
            async move {
                let Ok(channel) = peers.channel(&addr) else {
                    return;
                };
                let mut request = tonic::Request::new(pb::PingRequest {});
                request.set_timeout(PROBE_TIMEOUT);
                let mut client = pb::raft_client::RaftClient::new(channel);
                if let Ok(Ok(reply)) =
                    tokio::time::timeout(PROBE_TIMEOUT, client.ping(request)).await
                    && reply.get_ref().raft_id == id
                {
                    peers.mark_seen(id);
                }
            }
        });
        futures::future::join_all(probes).await;
    }
}

//! The dispatcher: agent sessions on the leader, and node liveness from their heartbeats.
//!
//! Every node (managers too) keeps a session with the leader: `Register` once, then a
//! `Heartbeat` every period (`--dispatcher-heartbeat`, default 5 s). A node that misses
//! [`GRACE_MULTIPLIER`] periods is marked `Down` in the store; its next heartbeat or register
//! marks it `Ready` again. After a leader change the new leader knows no deadlines, so it
//! gives every node twice the grace to find it (SwarmKit does the same), instead of marking
//! everything down.
//!
//! Gossip finds a dead node within a second; this node's gossip verdicts ([`Suspects`]) mark
//! it `Down` one heartbeat period later unless its session was heard from meanwhile, so that
//! a daemon restart keeps its node's tasks (`liveness.rs`, docs/control-plane.md).

pub mod assignments;
pub mod files;
pub mod liveness;
pub mod mesh_acks;
pub mod service;
pub mod suspects;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::api::{ApiError, convert, pb};
use crate::store::objects::{Cluster, DispatcherConfig, Node, NodeState};
use crate::store::types::{NodeId, RaftMetrics};
use crate::store::{ReadView, Store};

pub use liveness::Liveness;
pub use service::DispatcherService;
pub use suspects::{Suspects, SuspicionKind};

/// Missed periods before a node is `Down` (SwarmKit `defaultGracePeriodMultiplier`).
pub const GRACE_MULTIPLIER: u32 = 3;
/// Extra factor for nodes the leader has not heard from since it took over.
pub const NEW_LEADER_MULTIPLIER: u32 = 2;
/// How often the leader looks for expired deadlines.
const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// The leader's side of agent sessions.
#[derive(Debug)]
pub struct Dispatcher {
    store: Store,
    liveness: Liveness,
    suspects: Arc<Suspects>,
    /// Node ID → its current session ID.
    pub(super) sessions: Mutex<HashMap<String, String>>,
    /// The mesh version each node with an open stream applied (docs/lifecycle.md).
    pub mesh_acks: mesh_acks::MeshAcks,
}

impl Dispatcher {
    /// `suspects` are this node's gossip verdicts (the daemon's, shared by its managers).
    pub fn new(store: Store, suspects: Arc<Suspects>) -> Arc<Self> {
        Arc::new(Self {
            store,
            liveness: Liveness::default(),
            suspects,
            sessions: Mutex::new(HashMap::new()),
            mesh_acks: mesh_acks::MeshAcks::default(),
        })
    }

    /// The heartbeat period from the cluster settings.
    pub fn period(&self) -> Duration {
        self.store
            .view(|tx| tx.list::<Cluster>())
            .ok()
            .and_then(|clusters| clusters.into_iter().next())
            .map_or(DispatcherConfig::default().heartbeat_period, |c| {
                c.spec.dispatcher.heartbeat_period
            })
    }

    /// `response` with the gossip keyring and the removed nodes (docs/security.md): every
    /// heartbeat carries them, so a rotation reaches each node within one period.
    fn with_trust(&self, mut response: pb::SessionResponse) -> pb::SessionResponse {
        let cluster = self
            .store
            .view(|tx| tx.list::<Cluster>())
            .ok()
            .and_then(|clusters| clusters.into_iter().next());
        if let Some(cluster) = cluster {
            response.gossip_keys = crate::manager::ca::trust::gossip_keys(&cluster)
                .into_iter()
                .map(|k| pb::GossipKey {
                    id: k.id,
                    secret: k.secret,
                })
                .collect();
            match crate::manager::ca::rotation::trusted_roots(&cluster).and_then(|roots| {
                Ok((
                    roots,
                    crate::manager::ca::rotation::desired_digest(&cluster)?,
                ))
            }) {
                Ok((roots, desired)) => {
                    response.trusted_roots = roots.iter().map(|r| r.der().to_vec()).collect();
                    response.desired_root_digest = desired.to_string();
                }
                Err(err) => tracing::warn!(%err, "cannot read the swarm's root CAs"),
            }
            response.removed_nodes = cluster.removed_nodes.into_iter().map(|r| r.id).collect();
        }
        response
    }

    /// A swarm made before gossip was authenticated has no gossip key: the first session
    /// makes one, so its nodes can gossip again.
    async fn ensure_gossip_key(&self) {
        let cluster = self
            .store
            .view(|tx| tx.list::<Cluster>())
            .ok()
            .and_then(|clusters| clusters.into_iter().next());
        let Some(cluster) = cluster.filter(|c| c.gossip_keys.is_empty()) else {
            return;
        };
        let result = self
            .store
            .update_retrying(|tx| {
                let mut current = tx.get::<Cluster>(&cluster.id)?.ok_or_else(|| {
                    ApiError::internal("making a gossip key", "no cluster object")
                })?;
                if current.gossip_keys.is_empty() {
                    crate::manager::ca::trust::rotate_gossip_key(&mut current)?;
                    tx.update(current)?;
                }
                Ok::<_, ApiError>(())
            })
            .await;
        if let Err(err) = result {
            tracing::warn!(%err, "could not make the swarm's first gossip key");
        }
    }

    fn grace(&self, period: Duration) -> Duration {
        period * GRACE_MULTIPLIER
    }

    /// A node opens a session: it is `Ready` from now on, at `addr`.
    pub async fn register(
        &self,
        node_id: &str,
        description: Option<&pb::NodeDescription>,
        addr: IpAddr,
        agent_addr: Option<SocketAddr>,
        managers: Vec<String>,
    ) -> Result<pb::SessionResponse, ApiError> {
        let session_id =
            crate::pki::random_id().map_err(|e| ApiError::internal("making a session ID", e))?;
        let description = description.map(convert::description_of).transpose()?;
        self.ensure_gossip_key().await;
        let node = self
            .store
            .update_retrying(|tx| {
                tx.modify::<Node>(node_id, |node| {
                    node.status.state = NodeState::Ready;
                    node.status.message.clear();
                    node.status.addr = Some(addr);
                    node.status.agent_addr = agent_addr;
                    if let Some(description) = &description {
                        node.description = Some(description.clone());
                    }
                })
            })
            .await
            .map_err(|e| removed_or(node_id, e))?;
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node_id.to_owned(), session_id.clone());
        let period = self.period();
        self.liveness.heard(node_id, self.grace(period));
        Ok(self.with_trust(response(session_id, period, &node, managers)))
    }

    /// A heartbeat within an open session.
    pub async fn heartbeat(
        &self,
        node_id: &str,
        session_id: &str,
        managers: Vec<String>,
    ) -> Result<pb::SessionResponse, ApiError> {
        self.check_session(node_id, session_id)?;
        let period = self.period();
        self.liveness.heard(node_id, self.grace(period));
        let mut node = self
            .store
            .view(|tx| tx.get::<Node>(node_id))?
            .ok_or_else(|| removed(node_id))?;
        if node.status.state != NodeState::Ready {
            node = self
                .store
                .update_retrying(|tx| {
                    tx.modify::<Node>(node_id, |node| {
                        node.status.state = NodeState::Ready;
                        node.status.message.clear();
                    })
                })
                .await
                .map_err(|e| removed_or(node_id, e))?;
        }
        Ok(self.with_trust(response(session_id.to_owned(), period, &node, managers)))
    }

    /// Forgets a removed node.
    pub fn forget(&self, node_id: &str) {
        self.liveness.forget(node_id);
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node_id);
    }

    /// Marks nodes down when their deadlines pass, while this manager leads; until `stop`.
    pub async fn run(
        self: Arc<Self>,
        mut metrics: watch::Receiver<RaftMetrics>,
        raft_id: NodeId,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut leading = false;
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = metrics.changed() => if changed.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
            let mut now_leading = metrics.borrow().current_leader == Some(raft_id);
            // A new leader acts on node states only once it has applied what its predecessor
            // committed (a node marked Ready again must not be marked down from stale state);
            // until confirmed it stays passive, and the next check tries again.
            if now_leading
                && !leading
                && let Err(err) = self.store.confirm_current().await
            {
                tracing::debug!(%err, "dispatcher: leading, but the state is not confirmed current");
                now_leading = false;
            }
            if now_leading != leading {
                // A new leader starts from no deadlines: each node gets a first grace when
                // `mark_expired_down` first sees it.
                self.liveness.clear();
            }
            if !now_leading && leading {
                self.sessions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
            }
            leading = now_leading;
            if leading {
                self.mark_expired_down().await;
            }
        }
    }

    /// Marks `Down` the nodes that are down by their deadlines or gossip's verdicts. A write
    /// that fails (no quorum) is tried again at the next check: the node is still not `Down`.
    async fn mark_expired_down(&self) {
        let nodes = match self.store.view(|tx| tx.list::<Node>()) {
            Ok(nodes) => nodes,
            Err(err) => {
                tracing::warn!(%err, "dispatcher: reading the nodes");
                return;
            }
        };
        let period = self.period();
        let up = nodes
            .iter()
            .filter(|n| n.status.state != NodeState::Down)
            .map(|n| n.id.as_str());
        let due = self.liveness.due(
            std::time::Instant::now(),
            up,
            &self.suspects.snapshot(),
            period,
            self.grace(period) * NEW_LEADER_MULTIPLIER,
        );
        for (node_id, reason) in due {
            let result = self
                .store
                .update_retrying(|tx| {
                    let Some(node) = tx.get::<Node>(&node_id)? else {
                        return Ok(());
                    };
                    if node.status.state == NodeState::Down {
                        return Ok(());
                    }
                    tx.modify::<Node>(&node_id, |node| {
                        node.status.state = NodeState::Down;
                        node.status.message = reason.clone();
                    })
                    .map(drop)
                })
                .await;
            match result {
                Ok(()) => tracing::info!(node = %node_id, %reason, "node is down"),
                Err::<(), crate::store::StoreError>(err) => {
                    tracing::warn!(node = %node_id, %err, "could not mark the node down; retrying");
                }
            }
        }
    }
}

fn removed(node_id: &str) -> ApiError {
    ApiError::NotFound {
        kind: "node",
        query: node_id.to_owned(),
    }
}

fn removed_or(node_id: &str, error: crate::store::StoreError) -> ApiError {
    match error.rejection() {
        Some(crate::store::command::Rejection::NotFound { .. }) => removed(node_id),
        _ => error.into(),
    }
}

fn response(
    session_id: String,
    period: Duration,
    node: &Node,
    managers: Vec<String>,
) -> pb::SessionResponse {
    pb::SessionResponse {
        session_id,
        period_ms: convert::duration_ms(period),
        desired_role: convert::role(node.spec.desired_role).into(),
        managers,
        ..pb::SessionResponse::default()
    }
}

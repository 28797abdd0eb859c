//! A manager: the cluster store (Raft member), the view of the other managers, the
//! dispatcher, and the leader-side API (`control`, `ca`, `membership`): SwarmKit's manager
//! split. The orchestrator, allocator and scheduler run as loops on the leader
//! (`crate::manager::leader_loop`, docs/orchestration.md), started in [`Manager::open`].
//!
//! Every API call that reads or writes the cluster is answered by the leader: other managers
//! forward it ([`Manager::with_leader`]), as SwarmKit's raft proxy does, so every manager shows
//! the same state and the same errors.

pub mod allocator;
pub mod ca;
pub mod controlapi;
pub mod dispatcher;
pub mod forwarding;
pub mod leader_loop;
pub mod membership;
pub mod orchestrator;
pub mod raft_net;
pub mod scheduler;
pub mod timers;

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::api::{ApiError, pb};
use crate::manager::allocator::Allocator;
use crate::manager::dispatcher::{Dispatcher, Suspects};
use crate::manager::orchestrator::Orchestrator;
use crate::manager::raft_net::{Campaign, GrpcRaftNetwork, Peers, campaign, probe_loop};
use crate::manager::scheduler::Scheduler;
use crate::pki::{self, NodeIdentity};
use crate::store::objects::{Cluster, Node, Reachability};
use crate::store::types::NodeId;
use crate::store::{ReadView, Store, StoreConfig, StoreError};
use crate::transport::PeerInfo;
pub use forwarding::CallKind;

pub use controlapi::control::ControlService;

/// Where this node's store lives and who it is.
#[derive(Debug, Clone)]
pub struct ManagerParams {
    /// `<data-dir>/raft`.
    pub dir: PathBuf,
    pub raft_id: NodeId,
    pub node_id: String,
    pub cluster_id: String,
    /// This manager's advertise address and port (other managers reach it there).
    pub addr: String,
    /// This node's mTLS client configuration.
    pub tls: Arc<ClientConfig>,
    /// This node's gossip verdicts on the others, which outlive the manager.
    pub suspects: Arc<Suspects>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("cannot start the cluster store: {0}")]
    Store(#[from] StoreError),
}

/// A running manager. Dropping the last handle does not stop Raft; call [`Manager::shutdown`].
#[derive(Debug)]
pub struct Manager {
    pub store: Store,
    pub raft_id: NodeId,
    pub node_id: String,
    pub cluster_id: String,
    pub addr: String,
    pub peers: Arc<Peers>,
    /// Pre-vote: what this manager knows of the leader, and when it may stand.
    pub campaign: Arc<Campaign>,
    pub dispatcher: Arc<Dispatcher>,
    /// The changes `/events` reports, kept from this manager's start (`controlapi::events`).
    pub events: Arc<controlapi::events::History>,
    /// Held by the service API's writes, so that the name and ingress port checks and the
    /// write that relies on them are one step for every API writer on this leader (the
    /// store's optimistic concurrency only catches changes to the same objects).
    pub(crate) service_writes: tokio::sync::Mutex<()>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Who answers cluster API calls right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This manager leads and reaches a majority.
    Leader,
    /// Another manager leads, at this address.
    Forward { addr: String },
    /// No leader is known, or this one lost its majority.
    NoLeader,
}

impl Manager {
    /// Opens the store in `params.dir` and starts the manager's background work (probes of
    /// the other managers; while leading, the dispatcher, orchestrator, allocator and
    /// scheduler).
    pub async fn open(params: ManagerParams) -> Result<Arc<Self>, ManagerError> {
        let peers = Peers::new(params.tls.clone());
        let mut config = StoreConfig::new(&params.dir, params.raft_id);
        timers::apply(&mut config);
        let store = Store::open(config, GrpcRaftNetwork::new(peers.clone())).await?;
        let (stop, stop_rx) = watch::channel(false);
        // Taken before the manager serves anything, so the history misses no change made
        // through it.
        let events = Arc::new(controlapi::events::History::default());
        let changes = store.watch(controlapi::events::filter());
        let dispatcher = Dispatcher::new(store.clone(), params.suspects.clone());
        let campaign = Campaign::new(
            params.raft_id,
            Duration::from_millis(timers::ELECTION_TIMEOUT_MAX_MS),
        );
        let tasks = vec![
            tokio::spawn(controlapi::events::record(
                store.clone(),
                changes,
                events.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(campaign::gate(
                campaign.clone(),
                peers.clone(),
                store.raft().clone(),
                store.metrics(),
                stop_rx.clone(),
            )),
            tokio::spawn(probe_loop(
                peers.clone(),
                params.raft_id,
                store.metrics(),
                stop_rx.clone(),
            )),
            tokio::spawn(
                dispatcher
                    .clone()
                    .run(store.metrics(), params.raft_id, stop_rx.clone()),
            ),
            // The manager loops of issue 5 (docs/orchestration.md), each only while leading.
            tokio::spawn(leader_loop::run(
                Orchestrator::default(),
                store.clone(),
                store.metrics(),
                params.raft_id,
                stop_rx.clone(),
            )),
            tokio::spawn(leader_loop::run(
                Allocator::default(),
                store.clone(),
                store.metrics(),
                params.raft_id,
                stop_rx.clone(),
            )),
            tokio::spawn(leader_loop::run(
                Scheduler::default(),
                store.clone(),
                store.metrics(),
                params.raft_id,
                stop_rx,
            )),
        ];
        Ok(Arc::new(Self {
            store,
            raft_id: params.raft_id,
            node_id: params.node_id,
            cluster_id: params.cluster_id,
            addr: params.addr,
            peers,
            campaign,
            dispatcher,
            events,
            service_writes: tokio::sync::Mutex::new(()),
            stop,
            tasks,
        }))
    }

    /// Becomes `true` when [`Self::shutdown`] begins, for streams that must end with the
    /// manager.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Stops the background work and the Raft node. The store's files stay.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
        if let Err(err) = self.store.shutdown().await {
            tracing::warn!(%err, "stopping the cluster store");
        }
    }

    /// Raft state changes, for loops that run only on the leader (the dispatcher's liveness
    /// loop; later the orchestrators, allocator and scheduler): run while
    /// `current_leader == raft_id`.
    pub fn leadership(&self) -> watch::Receiver<crate::store::types::RaftMetrics> {
        self.store.metrics()
    }

    /// The current voters of the Raft group.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.store
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    pub fn route(&self) -> Route {
        match self.store.leader() {
            Some((id, _)) if id == self.raft_id => {
                if self.peers.has_quorum(self.raft_id, &self.voters()) {
                    Route::Leader
                } else {
                    Route::NoLeader
                }
            }
            Some((_, Some(node))) => Route::Forward {
                addr: node.api_addr,
            },
            _ => Route::NoLeader,
        }
    }

    /// Fails unless this manager is the leader; the error names the leader so the caller can
    /// go there (for calls whose caller identity matters and so cannot be forwarded).
    pub fn require_leader(&self) -> Result<(), ApiError> {
        match self.route() {
            Route::Leader => Ok(()),
            Route::Forward { addr } => Err(ApiError::NotLeader { addr }),
            Route::NoLeader => Err(ApiError::NoLeader),
        }
    }

    /// Runs `attempt` where the leader is: with `None` here if this manager leads, or with a
    /// channel to the leader. While the leader is unknown or unreachable (an election is
    /// running), retries for up to [`timers::LEADER_WAIT`], then fails with docker's
    /// lost-quorum error. A read answered here is linearizable ([`Store::confirm_current`]);
    /// a follower never answers one from its own state. A call sent to a leader that stops being the leader here (cut off,
    /// dead, replaced) is not waited for: a read goes to the new leader, a write whose fate
    /// is unknown says so (`forwarding`), within the election time rather than after the
    /// call's own timeout.
    pub async fn with_leader<T, F, Fut>(
        &self,
        kind: CallKind,
        mut attempt: F,
    ) -> Result<T, ApiError>
    where
        F: FnMut(Option<Channel>) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let deadline = Instant::now() + timers::LEADER_WAIT;
        loop {
            let outcome = match self.route() {
                Route::Leader => match kind {
                    // This manager's state may trail what the cluster acknowledged (it was
                    // restarted and only believes it leads, or was just elected and has not
                    // applied its predecessor's entries): answer only once a quorum confirmed
                    // it leads and its state caught up. A write needs no such check: Raft
                    // commits it through a quorum or not at all.
                    CallKind::Read => match self.store.confirm_current().await {
                        Ok(()) => attempt(None).await,
                        Err(error) => Err(error.into()),
                    },
                    CallKind::Write => attempt(None).await,
                },
                Route::Forward { addr } => match self.peers.channel(&addr) {
                    Ok(channel) => tokio::select! {
                        outcome = attempt(Some(channel)) => outcome,
                        () = self.leader_moves_from(&addr) => match kind {
                            CallKind::Read => Err(ApiError::Unavailable(format!(
                                "the leader at {addr} was replaced"
                            ))),
                            CallKind::Write => Err(forwarding::unknown_fate()),
                        },
                    },
                    Err(err) => Err(ApiError::Unavailable(err.to_string())),
                },
                Route::NoLeader => Err(ApiError::NoLeader),
            };
            let error = match outcome {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            forwarding::after_failure(kind, error)?;
            if Instant::now() >= deadline {
                tracing::debug!("no leader answered in time");
                return Err(ApiError::NoLeader);
            }
            tokio::time::sleep(timers::LEADER_RETRY).await;
        }
    }

    /// Completes once the leader is no longer the one at `addr` as this manager sees it: an
    /// election started (it heard nothing for the election timeout) or another one won.
    async fn leader_moves_from(&self, addr: &str) {
        loop {
            tokio::time::sleep(timers::LEADER_RETRY).await;
            if !matches!(self.route(), Route::Forward { addr: now } if now == addr) {
                return;
            }
        }
    }

    /// A store update for the API (retried on version conflicts) that gives up with the
    /// lost-quorum error as soon as this manager no longer reaches a majority, instead of
    /// waiting out the write timeout. The change may still commit later if the majority
    /// returns, as in Swarm.
    pub async fn update<T>(
        &self,
        change: impl FnMut(&mut crate::store::WriteTx) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let write = self.store.update_retrying(change);
        tokio::select! {
            result = write => result,
            () = self.quorum_lost() => Err(ApiError::NoLeader),
        }
    }

    /// Completes once this manager no longer reaches a majority (or leads no more).
    pub async fn quorum_lost(&self) {
        loop {
            tokio::time::sleep(timers::LEADER_RETRY).await;
            if self.route() == Route::NoLeader {
                return;
            }
        }
    }

    /// The one cluster object.
    pub fn cluster(&self) -> Result<Cluster, ApiError> {
        let clusters = self.store.view(|tx| tx.list::<Cluster>())?;
        clusters
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::internal("reading the cluster object", "there is none"))
    }

    /// Addresses of the managers, the leader first (for agents and joining nodes).
    pub fn manager_addrs(&self) -> Result<Vec<String>, ApiError> {
        let nodes = self.store.view(|tx| tx.list::<Node>())?;
        let mut addrs: Vec<String> = nodes
            .iter()
            .filter_map(|n| n.manager_status.as_ref())
            .map(|m| m.addr.to_string())
            .collect();
        addrs.sort_by_key(|a| *a != self.addr);
        addrs.dedup();
        Ok(addrs)
    }

    /// A node as the API shows it, with leader and reachability as this manager sees them.
    pub fn node_view(&self, node: &Node) -> pb::Node {
        let leader = self.store.leader().map(|(id, _)| id);
        let tls_info = self
            .cluster()
            .ok()
            .map(|cluster| ca::rotation::node_tls_info(&cluster, &node.tls_info));
        let metrics = self.store.metrics();
        let metrics = metrics.borrow();
        let mut view = crate::api::convert::node(node, |status| {
            let reach = if status.raft_id == self.raft_id {
                Reachability::Reachable
            } else if !keeping_up(&metrics, status.raft_id) {
                // It answers probes but does not keep up with the log: SwarmKit's leader
                // calls a member whose Raft messages fail Unreachable too.
                Reachability::Unreachable
            } else {
                self.peers.reachability(status.raft_id)
            };
            (leader == Some(status.raft_id), reach)
        });
        view.tls_info = tls_info;
        view
    }
}

/// How many log entries a follower may be behind the leader's log and still count as keeping
/// up: more than one full batch of appends (openraft's `max_payload_entries`, 300) behind, it
/// is catching up rather than following.
pub const LAGGING_ENTRIES: u64 = 300;

/// Whether `member` keeps up with the log, as this manager's metrics tell; only a leader
/// knows (on a follower every member keeps up).
fn keeping_up(metrics: &crate::store::types::RaftMetrics, member: NodeId) -> bool {
    let Some(replication) = &metrics.replication else {
        return true;
    };
    let last = metrics.last_log_index.unwrap_or(0);
    let matched = replication
        .get(&member)
        .and_then(|m| m.as_ref())
        .map_or(0, |log_id| log_id.index);
    last.saturating_sub(matched) <= LAGGING_ENTRIES
}

/// The manager this node runs, if it is one; shared by the services of the node port.
#[derive(Debug, Default)]
pub struct ManagerSlot(RwLock<Option<Arc<Manager>>>);

impl ManagerSlot {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn get(&self) -> Option<Arc<Manager>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, manager: Option<Arc<Manager>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = manager;
    }

    /// The manager, and the caller's identity if its certificate is of this swarm and has
    /// `role`.
    pub fn authorize<T>(
        &self,
        request: &tonic::Request<T>,
        role: pki::Role,
    ) -> Result<(Arc<Manager>, NodeIdentity), ApiError> {
        let manager = self.manager()?;
        let certs = PeerInfo::of(request).and_then(PeerInfo::certs);
        let identity = pki::authorize(certs, &manager.cluster_id, role)?;
        pki::refuse_removed(&identity, |id| manager.is_removed(id))?;
        Ok((manager, identity))
    }

    /// The manager, for calls that need no caller certificate.
    pub fn manager(&self) -> Result<Arc<Manager>, ApiError> {
        self.get().ok_or_else(|| {
            ApiError::Unavailable(
                "this node is not a manager of the swarm (any more); call a manager".to_owned(),
            )
        })
    }
}

/// A request bounded by `timeout`, for calls to other managers.
pub fn request_with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

#[cfg(test)]
mod keeping_up_tests {
    use super::*;
    use crate::store::types::RaftMetrics;

    fn leader_metrics(last: u64, matched: &[(NodeId, Option<u64>)]) -> RaftMetrics {
        let mut metrics = RaftMetrics::new_initial(1);
        metrics.last_log_index = Some(last);
        metrics.replication = Some(
            matched
                .iter()
                .map(|(id, index)| {
                    let log_id = index
                        .map(|i| openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), i));
                    (*id, log_id)
                })
                .collect(),
        );
        metrics
    }

    #[test]
    fn a_follower_more_than_a_batch_behind_is_not_keeping_up() {
        let metrics = leader_metrics(1000, &[(2, Some(990)), (3, Some(600)), (4, None)]);
        assert!(keeping_up(&metrics, 2));
        assert!(!keeping_up(&metrics, 3));
        assert!(!keeping_up(&metrics, 4), "nothing replicated yet");
        // A follower does not know: every member keeps up as far as it can tell.
        assert!(keeping_up(&RaftMetrics::new_initial(2), 3));
    }
}

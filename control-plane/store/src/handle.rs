//! [`Store`]: the handle manager loops, the API and the daemon use — an openraft node over the
//! redb log store and state machine, with `view`, `update` and `watch` on top.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::{ChangeMembers, Config, RaftNetworkFactory, SnapshotPolicy};
use redb::Database;
use tokio::sync::{broadcast, watch};

use super::command::{Request, Response};
use super::error::StoreError;
use super::log_store::LogStore;
use super::objects::Timestamp;
use super::state_machine::StateMachineStore;
use super::tables::blocking;
use super::tx::{ReadTx, ReadView, WriteTx};
use super::types::{NodeId, Raft, RaftMetrics, RaftNode, TypeConfig};
use super::watch::{Filter, Notification, Watch, notifier};

/// How a manager's store is set up.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory holding `raft-log.redb` and `state.redb` (the daemon uses
    /// `<data-dir>/raft`). Created if missing.
    pub dir: PathBuf,
    pub node_id: NodeId,
    pub raft: Config,
    /// How long `update` waits for its change to be committed and applied.
    pub request_timeout: Duration,
}

impl StoreConfig {
    /// hive's defaults: a 100 ms Raft tick with SwarmKit's tick counts (heartbeat every tick,
    /// election after 10–20 ticks), so a lost leader is replaced in 1–2 s rather than Swarm's
    /// 10–20 s; snapshots every 10 000 entries keeping 500 for slow followers, as SwarmKit.
    pub fn new(dir: impl Into<PathBuf>, node_id: NodeId) -> Self {
        Self {
            dir: dir.into(),
            node_id,
            raft: Config {
                cluster_name: "hive".to_owned(),
                heartbeat_interval: 100,
                election_timeout_min: 1_000,
                election_timeout_max: 2_000,
                snapshot_policy: SnapshotPolicy::LogsSinceLast(10_000),
                max_in_snapshot_log_to_keep: 500,
                ..Config::default()
            },
            request_timeout: Duration::from_secs(25),
        }
    }
}

/// Opens the two databases in `dir` without starting Raft: the storage half of a store, as
/// openraft's test suite and `Store::open` use it.
pub async fn open_storage(dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    let dir = dir.to_owned();
    let opened = blocking({
        let dir = dir.clone();
        move || {
            std::fs::create_dir_all(&dir).map_err(redb::Error::from)?;
            Ok((
                LogStore::open(&dir)?,
                StateMachineStore::open(&dir, notifier())?,
            ))
        }
    })
    .await;
    opened.map_err(|source| StoreError::Open {
        path: dir,
        source: Box::new(source),
    })
}

/// A manager's cluster store. Cheap to clone; all clones drive the same Raft node.
#[derive(Clone)]
pub struct Store {
    node_id: NodeId,
    raft: Raft,
    db: Arc<Database>,
    /// The Raft log's database (openraft owns the log store; this handle only re-seals it).
    log_db: Arc<Database>,
    /// Weak so that watches end when the state machine (owned by Raft) is gone.
    notifier: broadcast::WeakSender<Arc<Notification>>,
    applied_index: Arc<AtomicU64>,
    request_timeout: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store in `config.dir` and starts its Raft node, which talks to its peers
    /// through `network`. A new directory holds an empty, uninitialised node: call
    /// [`Store::bootstrap`] (`swarm init`) or let a leader add it ([`Store::add_manager`]).
    /// An existing directory resumes where it stopped.
    pub async fn open<N>(config: StoreConfig, network: N) -> Result<Self, StoreError>
    where
        N: RaftNetworkFactory<TypeConfig>,
    {
        let raft_config = config
            .raft
            .validate()
            .map_err(|source| StoreError::Config {
                source: Box::new(source),
            })?;
        let (log_store, state_machine) = open_storage(&config.dir).await?;
        let db = state_machine.database();
        let log_db = log_store.database();
        let notifier = state_machine.notifier().downgrade();
        let applied_index = state_machine.applied_index();
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|fatal| StoreError::Stopped {
            reason: fatal.to_string(),
        })?;
        Ok(Self {
            node_id: config.node_id,
            raft,
            db,
            log_db,
            notifier,
            applied_index,
            request_timeout: config.request_timeout,
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Rewrites every value not sealed with the current data key (after
    /// [`super::codec::rotate_data_key`]). Returns how many it rewrote.
    pub async fn reseal(&self) -> Result<usize, StoreError> {
        let (state, log) = (self.db.clone(), self.log_db.clone());
        tokio::task::spawn_blocking(move || super::migrate::reseal_databases(&state, &log))
            .await
            .map_err(|e| StoreError::Stopped {
                reason: format!("the re-sealing task failed: {e}"),
            })?
            .map_err(StoreError::from)
    }

    /// The openraft node, for the peer RPC service (append entries, vote, snapshots).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Makes this node the single member of a new Raft group (`hive swarm init`). It elects
    /// itself at once. Fails if the node already belongs to a group.
    pub async fn bootstrap(&self, api_addr: impl Into<String>) -> Result<(), StoreError> {
        let members = BTreeMap::from([(self.node_id, RaftNode::new(api_addr))]);
        self.raft.initialize(members).await.map_err(|e| match e {
            RaftError::APIError(e) => StoreError::Membership {
                reason: e.to_string(),
            },
            RaftError::Fatal(fatal) => StoreError::Stopped {
                reason: fatal.to_string(),
            },
        })
    }

    /// Adds a manager to the Raft group (on the leader): first as a learner, which returns once
    /// it caught up with the log (or installed a snapshot), then as a voter.
    pub async fn add_manager(&self, id: NodeId, node: RaftNode) -> Result<(), StoreError> {
        self.raft
            .add_learner(id, node, true)
            .await
            .map_err(write_error)?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    /// Removes a manager from the Raft group (on the leader), e.g. after `hive node demote`.
    pub async fn remove_manager(&self, id: NodeId) -> Result<(), StoreError> {
        self.raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    /// Raft state (leader, term, applied index, membership) as a watch channel: manager loops
    /// start when this node becomes leader and stop when it no longer is.
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics> {
        self.raft.metrics()
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.node_id)
    }

    /// The current leader as this node knows it, with its address if known.
    pub fn leader(&self) -> Option<(NodeId, Option<RaftNode>)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader?;
        let node = metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned();
        Some((leader, node))
    }

    /// Confirms that this manager still leads, with a quorum of voters answering a heartbeat
    /// of its term, and waits until its state machine has applied everything committed up to
    /// then (at least the blank entry of its own term): a [`Store::view`] that follows sees
    /// every write acknowledged before this call began. This is openraft's linearizable read
    /// (Raft thesis, section 6.4). A restarted ex-leader that still believes it leads, or a
    /// new leader that has not applied its predecessor's entries yet, must not answer from
    /// its state before this succeeds.
    ///
    /// Fails with [`StoreError::NotLeader`] or [`StoreError::NoLeader`] when another manager
    /// leads or no quorum answered, and with [`StoreError::Timeout`] when applying takes
    /// longer than the request timeout.
    pub async fn confirm_current(&self) -> Result<(), StoreError> {
        tokio::time::timeout(self.request_timeout, self.raft.ensure_linearizable())
            .await
            .map_err(|_| StoreError::Timeout {
                timeout: self.request_timeout,
            })?
            .map(drop)
            .map_err(read_error)
    }

    /// Runs `read` against a consistent snapshot of the state applied on this manager. Reads
    /// are local: on a follower they may trail the leader by the entries not yet applied here.
    /// `read` runs on the calling thread and should be short (it holds a database snapshot).
    pub fn view<T, E>(&self, read: impl FnOnce(&ReadTx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let tx = ReadTx::begin(&self.db).map_err(E::from)?;
        read(&tx)
    }

    /// Runs `change` against a snapshot of the state, then proposes the changes it recorded
    /// as one atomic batch through Raft, and returns once the batch is committed and applied
    /// on this manager (so a following `view` sees it). If `change` fails, or records
    /// nothing, nothing is proposed. Only the leader accepts proposals: elsewhere this fails
    /// with [`StoreError::NotLeader`] naming the leader.
    ///
    /// If another change to the same objects committed first, the batch is rejected as a whole
    /// with `Rejection::VersionConflict` ([`StoreError::is_version_conflict`]); re-run it.
    pub async fn update<T, E>(
        &self,
        change: impl FnOnce(&mut WriteTx) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        self.update_versioned(change).await.map(|(value, _)| value)
    }

    /// As [`update`](Self::update), and the store version that reflects the change: the one it
    /// was committed at, or the version it read if it changed nothing. A node's mesh that
    /// applied this version reflects the change (docs/lifecycle.md).
    pub async fn update_versioned<T, E>(
        &self,
        change: impl FnOnce(&mut WriteTx) -> Result<T, E>,
    ) -> Result<(T, u64), E>
    where
        E: From<StoreError>,
    {
        let mut tx = WriteTx::new(ReadTx::begin(&self.db).map_err(E::from)?);
        let read = tx.applied_index();
        let value = change(&mut tx)?;
        let changes = tx.into_changes();
        let version = if changes.is_empty() {
            read
        } else {
            self.propose(Request {
                proposed_at: Timestamp::now(),
                changes,
            })
            .await
            .map_err(E::from)?
        };
        Ok((value, version))
    }

    /// Changes matching `filter` applied from now on (not those applied before this call,
    /// even if their notification is still on its way).
    pub fn watch(&self, filter: Filter) -> Watch {
        // Subscribe first, then note where "now" is: see `view_and_watch`.
        let receiver = self.subscribe();
        Watch::new(receiver, filter, self.applied_index.load(Ordering::Acquire))
    }

    /// A view and a watch that continues exactly where the view ends: every change committed
    /// after the state `read` saw is delivered, none that it already saw. This is how a loop
    /// loads its initial state and then follows changes without a gap.
    pub fn view_and_watch<T, E>(
        &self,
        filter: Filter,
        read: impl FnOnce(&ReadTx) -> Result<T, E>,
    ) -> Result<(T, Watch), E>
    where
        E: From<StoreError>,
    {
        // Subscribe before reading: an entry applied in between is both in the view and on the
        // channel, and the watch skips it by index; none can fall between the two.
        let receiver = self.subscribe();
        let tx = ReadTx::begin(&self.db).map_err(E::from)?;
        let value = read(&tx)?;
        Ok((value, Watch::new(receiver, filter, tx.applied_index())))
    }

    /// Stops the Raft node. Watches end; `view` keeps working on the last applied state.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.raft.shutdown().await.map_err(|e| StoreError::Stopped {
            reason: e.to_string(),
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Notification>> {
        match self.notifier.upgrade() {
            Some(sender) => sender.subscribe(),
            // The state machine is gone: a receiver whose sender is dropped ends at once.
            None => broadcast::channel(1).1,
        }
    }

    async fn propose(&self, request: Request) -> Result<u64, StoreError> {
        let written = tokio::time::timeout(self.request_timeout, self.raft.client_write(request))
            .await
            .map_err(|_| StoreError::Timeout {
                timeout: self.request_timeout,
            })?
            .map_err(write_error)?;
        match written.data {
            Response::Committed { version } => Ok(version),
            Response::Rejected(rejection) => Err(rejection.into()),
            Response::Empty => Ok(written.log_id.index),
        }
    }
}

fn write_error(error: RaftError<NodeId, ClientWriteError<NodeId, RaftNode>>) -> StoreError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => not_leader(forward),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => StoreError::Membership {
            reason: e.to_string(),
        },
        RaftError::Fatal(fatal) => StoreError::Stopped {
            reason: fatal.to_string(),
        },
    }
}

fn read_error(error: RaftError<NodeId, CheckIsLeaderError<NodeId, RaftNode>>) -> StoreError {
    match error {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward)) => not_leader(forward),
        // No majority confirmed this term in time: as far as this manager can tell, there is
        // no leader.
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)) => StoreError::NoLeader,
        RaftError::Fatal(fatal) => StoreError::Stopped {
            reason: fatal.to_string(),
        },
    }
}

/// Another manager leads (named if known), from openraft's refusal.
fn not_leader(forward: ForwardToLeader<NodeId, RaftNode>) -> StoreError {
    match (forward.leader_id, forward.leader_node) {
        (Some(leader_id), Some(node)) => StoreError::NotLeader {
            leader_id,
            leader_addr: node.api_addr,
        },
        _ => StoreError::NoLeader,
    }
}

//! An in-process Raft network: peers are `Raft` handles in the same process, called directly.
//!
//! This is the harness for testing everything above the network boundary (storage, elections,
//! replication, snapshots, the store API, later the manager loops) without sockets; the real
//! peer transport is gRPC. Removing a node from the [`LocalRouter`] makes it unreachable, which
//! is how tests take a manager away.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use openraft::error::{RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};

use super::types::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotError, InstallSnapshotRequest,
    InstallSnapshotResponse, NodeId, Raft, RaftNode, RpcError, TypeConfig, VoteRequest,
    VoteResponse,
};

/// Why a local peer could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalNetworkError {
    #[error("manager {target} is not running in this process (never registered, or removed)")]
    NotRunning { target: NodeId },
}

/// The set of running Raft nodes, shared by all of them as their network.
#[derive(Clone, Default)]
pub struct LocalRouter {
    nodes: Arc<Mutex<BTreeMap<NodeId, Raft>>>,
}

impl std::fmt::Debug for LocalRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<NodeId> = self.with_nodes(|nodes| nodes.keys().copied().collect());
        f.debug_struct("LocalRouter").field("nodes", &ids).finish()
    }
}

impl LocalRouter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `raft` reachable as `id`.
    pub fn register(&self, id: NodeId, raft: Raft) {
        self.with_nodes(|nodes| {
            nodes.insert(id, raft);
        });
    }

    /// Makes `id` unreachable, as if its process died or its network went away.
    pub fn remove(&self, id: NodeId) {
        self.with_nodes(|nodes| {
            nodes.remove(&id);
        });
    }

    fn get(&self, target: NodeId) -> Result<Raft, LocalNetworkError> {
        self.with_nodes(|nodes| nodes.get(&target).cloned())
            .ok_or(LocalNetworkError::NotRunning { target })
    }

    fn with_nodes<T>(&self, f: impl FnOnce(&mut BTreeMap<NodeId, Raft>) -> T) -> T {
        // A panic while holding the lock leaves the map itself intact; keep serving.
        let mut nodes = match self.nodes.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut nodes)
    }
}

impl RaftNetworkFactory<TypeConfig> for LocalRouter {
    type Network = LocalConnection;

    async fn new_client(&mut self, target: NodeId, _node: &RaftNode) -> Self::Network {
        LocalConnection {
            target,
            router: self.clone(),
        }
    }
}

/// A connection to one local peer.
#[derive(Debug)]
pub struct LocalConnection {
    target: NodeId,
    router: LocalRouter,
}

impl LocalConnection {
    fn peer(&self) -> Result<Raft, LocalNetworkError> {
        self.router.get(self.target)
    }
}

fn unreachable<E: std::error::Error>(error: LocalNetworkError) -> RpcError<E> {
    RpcError::Unreachable(Unreachable::new(&error))
}

impl RaftNetwork<TypeConfig> for LocalConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse, RpcError> {
        let peer = self.peer().map_err(unreachable)?;
        let target = self.target;
        peer.append_entries(rpc)
            .await
            .map_err(|e| RpcError::RemoteError(RemoteError::new(target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse, RpcError<InstallSnapshotError>> {
        let peer = self.peer().map_err(unreachable)?;
        let target = self.target;
        peer.install_snapshot(rpc)
            .await
            .map_err(|e| RpcError::RemoteError(RemoteError::new(target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        _option: RPCOption,
    ) -> Result<VoteResponse, RpcError> {
        let peer = self.peer().map_err(unreachable)?;
        let target = self.target;
        peer.vote(rpc)
            .await
            .map_err(|e| RpcError::RemoteError(RemoteError::new(target, e)))
    }
}

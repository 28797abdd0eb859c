//! The Raft type configuration of the cluster store, declared once, and the aliases the rest of
//! hive uses instead of spelling out openraft's generics.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use super::command::{Request, Response};

/// A manager's member ID in the Raft group. Raft IDs are numbers (openraft needs `Copy + Ord`);
/// the manager's 25-character node ID maps to one when it joins.
pub type NodeId = u64;

/// What the Raft layer knows about a member: where to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RaftNode {
    /// The manager's API address (`--advertise-addr`, port 2377), where peer Raft RPCs and
    /// forwarded client requests go.
    pub api_addr: String,
}

impl RaftNode {
    pub fn new(api_addr: impl Into<String>) -> Self {
        Self {
            api_addr: api_addr.into(),
        }
    }
}

impl fmt::Display for RaftNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.api_addr)
    }
}

openraft::declare_raft_types!(
    /// The Raft type configuration of hive's cluster store.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = RaftNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, RaftNode>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type EntryPayload = openraft::EntryPayload<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, RaftNode>;
pub type StoredMembership = openraft::StoredMembership<NodeId, RaftNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, RaftNode>;
pub type LogState = openraft::storage::LogState<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;

// The peer RPCs, for the network layer (in-process now, gRPC later).
pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<NodeId>;
pub type VoteRequest = openraft::raft::VoteRequest<NodeId>;
pub type VoteResponse = openraft::raft::VoteResponse<NodeId>;
pub type InstallSnapshotRequest = openraft::raft::InstallSnapshotRequest<TypeConfig>;
pub type InstallSnapshotResponse = openraft::raft::InstallSnapshotResponse<NodeId>;
pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
pub type RpcError<E = openraft::error::Infallible> =
    openraft::error::RPCError<NodeId, RaftNode, RaftError<E>>;
pub type InstallSnapshotError = openraft::error::InstallSnapshotError;
pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, RaftNode>;

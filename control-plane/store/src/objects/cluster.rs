//! Swarm-wide settings and the cluster's identity (Swarm's `Cluster`).

use std::time::Duration;

use hive_dataplane::mesh::mode::MeshMode;
use serde::{Deserialize, Serialize};

use super::common::{Annotations, Meta};

/// The name of the one cluster object `swarm init` creates (SwarmKit `store.DefaultClusterName`).
pub const DEFAULT_CLUSTER_NAME: &str = "default";

/// The cluster object: one per swarm. `spec` is what `hive swarm update` changes; `root_ca`
/// and the join tokens are managed by the CA server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cluster {
    pub id: String,
    pub meta: Meta,
    pub spec: ClusterSpec,
    pub root_ca: RootCa,
    /// The managers' unlock key (`SWMKEY-1-…`) while `spec.encryption_config` locks them;
    /// empty otherwise. Replicated so that every manager wraps its keys with it
    /// (docs/encryption.md); the store itself is sealed on disk.
    pub unlock_key: String,
    /// Nodes removed from the swarm (`hive node rm`): their certificates are refused by every
    /// API at once, and their gossip is ignored (SwarmKit's `BlacklistedCertificates`).
    pub removed_nodes: Vec<RemovedNode>,
    /// The gossip keyring, newest last; handed to nodes over mutual TLS (docs/security.md).
    pub gossip_keys: Vec<StoredGossipKey>,
}

/// The cluster label that holds the swarm's mesh mode (`swarm init|update --mesh-mode`).
pub const LABEL_MESH_MODE: &str = "hive.mesh-mode";

impl Cluster {
    /// The swarm's mesh mode (snat when unset or unreadable).
    pub fn mesh_mode(&self) -> MeshMode {
        self.spec
            .annotations
            .labels
            .get(LABEL_MESH_MODE)
            .and_then(|m| m.parse().ok())
            .unwrap_or_default()
    }
}

/// A node `hive node rm` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RemovedNode {
    pub id: String,
    pub removed_at: super::common::Timestamp,
}

/// A gossip key as the store keeps it (encrypted at rest with the rest of the store).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredGossipKey {
    pub id: u64,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for StoredGossipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredGossipKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterSpec {
    pub annotations: Annotations,
    pub orchestration: OrchestrationConfig,
    pub raft: RaftConfig,
    pub dispatcher: DispatcherConfig,
    pub ca_config: CaConfig,
    pub encryption_config: EncryptionConfig,
}

/// Swarm's `EncryptionConfig`: whether a restarted manager needs the unlock key (`--autolock`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EncryptionConfig {
    pub auto_lock_managers: bool,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            annotations: Annotations::named(DEFAULT_CLUSTER_NAME),
            orchestration: OrchestrationConfig::default(),
            raft: RaftConfig::default(),
            dispatcher: DispatcherConfig::default(),
            ca_config: CaConfig::default(),
            encryption_config: EncryptionConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrchestrationConfig {
    /// Old tasks kept per slot (`--task-history-limit`, default 5); negative keeps all.
    pub task_history_retention_limit: i64,
}

impl Default for OrchestrationConfig {
    fn default() -> Self {
        Self {
            task_history_retention_limit: 5,
        }
    }
}

/// Raft settings with SwarmKit's defaults (`manager/state/raft/raft.go`, `DefaultRaftConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RaftConfig {
    /// Log entries between snapshots (`--snapshot-interval`).
    pub snapshot_interval: u64,
    /// Snapshots kept besides the current one.
    pub keep_old_snapshots: u64,
    /// Entries kept after a snapshot so slow followers can catch up without one.
    pub log_entries_for_slow_followers: u64,
    /// Ticks between leader heartbeats.
    pub heartbeat_tick: u32,
    /// Ticks without a heartbeat before a follower stands for election.
    pub election_tick: u32,
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            snapshot_interval: 10_000,
            keep_old_snapshots: 0,
            log_entries_for_slow_followers: 500,
            heartbeat_tick: 1,
            election_tick: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DispatcherConfig {
    /// How often agents heartbeat (`--dispatcher-heartbeat`, default 5 s).
    pub heartbeat_period: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            heartbeat_period: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaConfig {
    /// Validity of node certificates (`--cert-expiry`, default 90 days).
    pub node_cert_expiry: Duration,
}

impl Default for CaConfig {
    fn default() -> Self {
        Self {
            node_cert_expiry: Duration::from_secs(90 * 24 * 60 * 60),
        }
    }
}

/// The cluster's root of trust.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RootCa {
    /// PEM.
    pub ca_cert: String,
    /// PEM. Kept in the store, as SwarmKit does, so that any manager can sign node certificates
    /// after a leader change. Sealed on disk with the store (docs/encryption.md).
    pub ca_key: Option<String>,
    /// Digest of `ca_cert` as embedded in join tokens.
    pub ca_cert_hash: String,
    pub join_tokens: JoinTokens,
    /// A root rotation under way (`swarm ca --rotate`); `None` otherwise.
    pub rotation: Option<RootRotation>,
}

/// The incoming root of a rotation (SwarmKit's `RootRotation`): new certificates are issued by
/// it and presented with `cross_signed_cert`; nodes trust both roots until every node holds a
/// certificate of the new one, then `ca_cert`/`ca_key` above become these and this is cleared
/// (docs/security.md, "CA rotation").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RootRotation {
    /// PEM.
    pub ca_cert: String,
    /// PEM. Sealed on disk with the store.
    pub ca_key: String,
    /// PEM: the new root's subject and key, signed by the outgoing root.
    pub cross_signed_cert: String,
}

/// Join tokens in Swarm's shape, `SWMTKN-1-<CA digest>-<secret>` (DESIGN.md §4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JoinTokens {
    pub worker: String,
    pub manager: String,
}

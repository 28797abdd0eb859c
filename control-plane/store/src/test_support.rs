//! Test support (the store's own tests, and hive's with the `test-support` feature): stores in
//! one process over the in-process network, with fast Raft timers. Timeouts only bound how long
//! a broken test hangs.

// A failure here is the calling test's failure.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use openraft::SnapshotPolicy;

use crate::local_network::LocalRouter;
use crate::types::NodeId;
use crate::{Store, StoreConfig};

/// Bounds every wait in the tests.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Fast Raft timers for in-process clusters, and snapshots only when a test asks.
pub fn test_config(dir: &Path, id: NodeId) -> StoreConfig {
    let mut config = StoreConfig::new(dir, id);
    config.raft.heartbeat_interval = 50;
    config.raft.election_timeout_min = 300;
    config.raft.election_timeout_max = 600;
    config.raft.snapshot_policy = SnapshotPolicy::Never;
    config.request_timeout = PATIENCE;
    config
}

pub fn api_addr(id: NodeId) -> String {
    format!("10.0.0.{id}:2377")
}

/// Opens manager `id`'s store in `dir` and makes it reachable through `router`.
pub async fn start(router: &LocalRouter, dir: &Path, id: NodeId) -> Store {
    let store = Store::open(test_config(dir, id), router.clone())
        .await
        .unwrap();
    router.register(id, store.raft().clone());
    store
}

/// A one-manager swarm, initialised and leading.
pub async fn single_manager(dir: &Path) -> Store {
    let router = LocalRouter::new();
    let store = start(&router, dir, 1).await;
    store.bootstrap(api_addr(1)).await.unwrap();
    wait_until_leader(&store).await;
    store
}

pub async fn wait_until_leader(store: &Store) {
    store
        .raft()
        .wait(Some(PATIENCE))
        .current_leader(store.node_id(), "this manager leads")
        .await
        .unwrap();
}

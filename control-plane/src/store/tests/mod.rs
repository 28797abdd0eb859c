//! Store tests: openraft's storage suite, durability across restarts, a three-manager cluster,
//! and the view/update/watch API. Timeouts below only bound how long a broken test hangs; no
//! test asserts on durations.

mod api;
mod cluster;
mod durability;
mod suite;

use std::path::Path;
use std::time::Duration;

use openraft::SnapshotPolicy;

use super::local_network::LocalRouter;
use super::objects::{Annotations, Service, ServiceMode, ServiceSpec};
use super::types::NodeId;
use super::{ReadView, Store, StoreConfig, StoreError};

/// Bounds every wait in these tests.
const PATIENCE: Duration = Duration::from_secs(20);

/// Fast Raft timers for in-process clusters, and snapshots only when a test asks.
fn test_config(dir: &Path, id: NodeId) -> StoreConfig {
    let mut config = StoreConfig::new(dir, id);
    config.raft.heartbeat_interval = 50;
    config.raft.election_timeout_min = 300;
    config.raft.election_timeout_max = 600;
    config.raft.snapshot_policy = SnapshotPolicy::Never;
    config.request_timeout = PATIENCE;
    config
}

fn api_addr(id: NodeId) -> String {
    format!("10.0.0.{id}:2377")
}

/// Opens manager `id`'s store in `dir` and makes it reachable through `router`.
async fn start(router: &LocalRouter, dir: &Path, id: NodeId) -> Store {
    let store = Store::open(test_config(dir, id), router.clone())
        .await
        .unwrap();
    router.register(id, store.raft().clone());
    store
}

/// A one-manager swarm, initialised and leading.
pub(crate) async fn single_manager(dir: &Path) -> Store {
    let router = LocalRouter::new();
    let store = start(&router, dir, 1).await;
    store.bootstrap(api_addr(1)).await.unwrap();
    wait_until_leader(&store).await;
    store
}

async fn wait_until_leader(store: &Store) {
    store
        .raft()
        .wait(Some(PATIENCE))
        .current_leader(store.node_id(), "this manager leads")
        .await
        .unwrap();
}

/// Index of the last entry applied to `store`'s state. Read from the state itself: Raft's
/// metrics are published asynchronously and may trail what `update` already returned.
fn applied_index(store: &Store) -> u64 {
    store
        .view(|tx| Ok::<_, StoreError>(tx.applied_index()))
        .unwrap()
}

/// Waits until `store` applied at least what `leader` had applied.
async fn wait_caught_up(store: &Store, leader: &Store) {
    let index = Some(applied_index(leader));
    store
        .raft()
        .wait(Some(PATIENCE))
        .applied_index_at_least(index, "caught up")
        .await
        .unwrap();
}

/// Builds a snapshot of everything applied so far and purges the log it covers; returns the
/// snapshot's last index.
async fn snapshot_and_purge(store: &Store) -> u64 {
    let index = applied_index(store);
    let wait = || store.raft().wait(Some(PATIENCE));
    store.raft().trigger().snapshot().await.unwrap();
    wait()
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= index),
            "snapshot built",
        )
        .await
        .unwrap();
    store.raft().trigger().purge_log(index).await.unwrap();
    wait()
        .metrics(|m| m.purged.is_some_and(|p| p.index >= index), "log purged")
        .await
        .unwrap();
    index
}

fn service(name: &str, replicas: u64) -> Service {
    Service {
        spec: ServiceSpec {
            annotations: Annotations::named(name),
            mode: ServiceMode::Replicated { replicas },
            ..ServiceSpec::default()
        },
        ..Service::default()
    }
}

//! Store tests: openraft's storage suite, durability across restarts, a three-manager cluster,
//! and the view/update/watch API. Timeouts below only bound how long a broken test hangs; no
//! test asserts on durations.

mod api;
mod cluster;
mod durability;
mod suite;

use super::objects::{Annotations, Service, ServiceMode, ServiceSpec};
use super::{ReadView, Store, StoreError};

pub(crate) use crate::test_support::{
    PATIENCE, api_addr, single_manager, start, test_config, wait_until_leader,
};

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

//! What a manager acknowledged is still there after it stops and starts again from the same
//! directory: through a real single-node `openraft::Raft`, with and without a snapshot and a
//! purged log.

use std::path::Path;

use super::{service, single_manager, snapshot_and_purge, start, wait_until_leader};
use crate::local_network::LocalRouter;
use crate::objects::{Cluster, Node, NodeRole, Service, Task, TaskState};
use crate::{ReadView, Store, StoreError};

/// Everything in the store, in a comparable form.
fn contents(store: &Store) -> (Vec<Cluster>, Vec<Node>, Vec<Service>, Vec<Task>) {
    store
        .view(|tx| {
            Ok::<_, StoreError>((
                tx.list::<Cluster>()?,
                tx.list::<Node>()?,
                tx.list::<Service>()?,
                tx.list::<Task>()?,
            ))
        })
        .unwrap()
}

/// A cluster, a manager node, a service and its tasks, in several committed batches.
async fn write_some_state(store: &Store) {
    store
        .update(|tx| tx.create(Cluster::default()))
        .await
        .unwrap();
    store
        .update(|tx| {
            let mut node = Node::default();
            node.spec.desired_role = NodeRole::Manager;
            node.role = NodeRole::Manager;
            tx.create(node)
        })
        .await
        .unwrap();
    let service_id = store
        .update(|tx| tx.create(service("web", 3)))
        .await
        .unwrap();
    for slot in 1..=3 {
        let task = Task {
            service_id: service_id.clone(),
            slot,
            ..Task::default()
        };
        let id = store.update(|tx| tx.create(task)).await.unwrap();
        store
            .update(|tx| tx.modify::<Task>(&id, |t| t.status.state = TaskState::Running))
            .await
            .unwrap();
    }
}

/// Starts manager 1 again on `dir`, as the daemon does after a restart, and waits until it
/// leads again (its own membership is on disk, so it elects itself).
async fn restart(dir: &Path) -> Store {
    let store = start(&LocalRouter::new(), dir, 1).await;
    wait_until_leader(&store).await;
    store
}

#[tokio::test]
async fn acknowledged_writes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = single_manager(dir.path()).await;
    write_some_state(&store).await;
    let before = contents(&store);
    let term_before = store.metrics().borrow().current_term;
    let last_version = before.3.iter().map(|t| t.meta.version).max().unwrap();
    store.shutdown().await.unwrap();
    drop(store);

    let store = restart(dir.path()).await;
    assert_eq!(contents(&store), before);
    assert_eq!(before.3.len(), 3);
    assert!(store.metrics().borrow().current_term >= term_before);

    // The log continues where it stopped: versions keep growing.
    let id = store
        .update(|tx| tx.create(service("api", 1)))
        .await
        .unwrap();
    let api = store.view(|tx| tx.get::<Service>(&id)).unwrap().unwrap();
    assert!(api.meta.version > last_version);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn state_survives_a_restart_after_snapshot_and_log_purge() {
    let dir = tempfile::tempdir().unwrap();
    let store = single_manager(dir.path()).await;
    write_some_state(&store).await;
    let before = contents(&store);

    let snapshot_index = snapshot_and_purge(&store).await;
    store.shutdown().await.unwrap();
    drop(store);

    let store = restart(dir.path()).await;
    assert_eq!(contents(&store), before);
    let snapshot = store
        .raft()
        .get_snapshot()
        .await
        .unwrap()
        .expect("the snapshot is kept on disk");
    assert_eq!(
        snapshot.meta.last_log_id.map(|l| l.index),
        Some(snapshot_index)
    );
    store
        .update(|tx| tx.create(service("api", 1)))
        .await
        .unwrap();
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_directory_in_use_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = single_manager(dir.path()).await;
    let err = Store::open(super::test_config(dir.path(), 1), LocalRouter::new())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(
        err.to_string().contains("no other hive daemon uses"),
        "{err}"
    );
    store.shutdown().await.unwrap();
}

//! Leader-side node operations: list, inspect, update (availability, labels, role), remove.
//! Refusals carry SwarmKit's texts (`manager/controlapi/node.go`).

use std::collections::BTreeSet;

use crate::api::{ApiError, convert, pb};
use crate::manager::Manager;
use crate::store::objects::{
    Cluster, Node, NodeRole, NodeState, Task, TaskState, TaskStatus, Timestamp,
};
use crate::store::{ReadView, StoreError, WriteTx};

pub async fn list(manager: &Manager) -> Result<pb::ListNodesResponse, ApiError> {
    let nodes = manager.store.view(|tx| tx.list::<Node>())?;
    Ok(pb::ListNodesResponse {
        nodes: nodes.iter().map(|n| manager.node_view(n)).collect(),
        self_node_id: String::new(),
    })
}

pub async fn inspect(
    manager: &Manager,
    request: pb::InspectNodeRequest,
) -> Result<pb::Node, ApiError> {
    let node = manager.store.view(|tx| tx.lookup::<Node>(&request.node))?;
    Ok(manager.node_view(&node))
}

pub async fn update(
    manager: &Manager,
    request: pb::UpdateNodeRequest,
) -> Result<pb::Node, ApiError> {
    let desired_role = request.role.map(|_| request.role());
    let availability = request.availability.map(|_| request.availability());
    let voters = manager.voters();
    let (node, demoted) = manager
        .update(|tx| {
            let mut node = tx.lookup::<Node>(&request.node)?;
            let mut demoted = None;
            if let Some(role) = desired_role.map(convert::node_role) {
                if node.spec.desired_role == NodeRole::Manager && role == NodeRole::Worker {
                    demoted = Some(check_demotion(manager, &*tx, &node, &voters)?);
                    node.role = NodeRole::Worker;
                    node.manager_status = None;
                }
                node.spec.desired_role = role;
            }
            if let Some(availability) = availability {
                node.spec.availability = convert::node_availability(availability);
            }
            for key in &request.label_rm {
                if node.spec.annotations.labels.remove(key).is_none() {
                    return Err(ApiError::Invalid(format!(
                        "key {key} doesn't exist in node's labels"
                    )));
                }
            }
            for (key, value) in &request.label_add {
                node.spec
                    .annotations
                    .labels
                    .insert(key.clone(), value.clone());
            }
            tx.update(node.clone())?;
            Ok::<_, ApiError>((node, demoted.flatten()))
        })
        .await?;
    if let Some(raft_id) = demoted {
        tracing::info!(node = %node.id, raft_id, "removing a demoted manager from the Raft group");
        manager.store.remove_manager(raft_id).await?;
    }
    let node = manager
        .store
        .view(|tx| tx.get::<Node>(&node.id))?
        .unwrap_or(node);
    Ok(manager.node_view(&node))
}

/// SwarmKit's demotion checks; the Raft member to remove, if the node is one.
fn check_demotion(
    manager: &Manager,
    tx: &impl ReadView,
    node: &Node,
    voters: &BTreeSet<u64>,
) -> Result<Option<u64>, ApiError> {
    let managers = tx.find::<Node>(|n| n.spec.desired_role == NodeRole::Manager)?;
    if managers.len() == 1 && managers[0].id == node.id {
        return Err(ApiError::Precondition(
            "attempting to demote the last manager of the swarm".to_owned(),
        ));
    }
    let Some(raft_id) = node.manager_status.as_ref().map(|m| m.raft_id) else {
        return Ok(None);
    };
    if !voters.contains(&raft_id) {
        return Ok(None);
    }
    let remaining: BTreeSet<u64> = voters.iter().copied().filter(|id| *id != raft_id).collect();
    if !manager.peers.has_quorum(manager.raft_id, &remaining) {
        return Err(ApiError::Precondition(
            "can't remove member from the raft: this would result in a loss of quorum".to_owned(),
        ));
    }
    Ok(Some(raft_id))
}

/// The removed node's tasks that had not stopped will never report again: they become
/// `ORPHANED` in the same transaction as the removal, as SwarmKit's `orphanNodeTasks` does, so
/// `service ps` shows them stopped and the reaper may delete them. Stopped ones keep their
/// last state.
pub fn orphan_tasks_in(tx: &mut WriteTx, node_id: &str) -> Result<(), StoreError> {
    let tasks = tx.find::<Task>(|t| t.node_id.as_deref() == Some(node_id))?;
    for mut task in tasks {
        if task.status.state < TaskState::Complete {
            task.status = TaskStatus {
                timestamp: Timestamp::now(),
                state: TaskState::Orphaned,
                message: "Task belonged to a node that has been deleted".to_owned(),
                ..TaskStatus::default()
            };
            tx.update(task)?;
        }
    }
    Ok(())
}

pub async fn remove(
    manager: &Manager,
    request: pb::RemoveNodeRequest,
) -> Result<pb::RemoveNodeResponse, ApiError> {
    let voters = manager.voters();
    let cluster_id = manager.cluster_id.clone();
    let id = manager.update(|tx| {
            let node = tx.lookup::<Node>(&request.node)?;
            let member = node
                .manager_status
                .as_ref()
                .is_some_and(|m| voters.contains(&m.raft_id));
            if node.spec.desired_role == NodeRole::Manager && member {
                return Err(ApiError::Precondition(format!(
                    "node {} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal",
                    node.id
                )));
            }
            if !request.force && node.status.state == NodeState::Ready {
                return Err(ApiError::Precondition(format!(
                    "node {} is not down and can't be removed",
                    node.id
                )));
            }
            tx.delete::<Node>(&node.id)?;
            orphan_tasks_in(tx, &node.id)?;
            let mut cluster = tx.get::<Cluster>(&cluster_id)?.ok_or_else(|| {
                ApiError::internal("removing the node", "no cluster object")
            })?;
            crate::manager::ca::trust::revoke(&mut cluster, &node.id)?;
            tx.update(cluster)?;
            Ok::<_, ApiError>(node.id)
        })
        .await?;
    manager.dispatcher.forget(&id);
    tracing::info!(node = %id, "removed the node: its certificate is refused from now on and the gossip key rotated");
    Ok(pb::RemoveNodeResponse { node_id: id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::new_id;
    use crate::store::test_support::single_manager;

    #[tokio::test]
    async fn a_removed_nodes_unfinished_tasks_are_orphaned() {
        let dir = tempfile::tempdir().unwrap();
        let store = single_manager(dir.path()).await;
        let task = |node: &str, state: TaskState| {
            let mut t = Task {
                id: new_id(),
                node_id: Some(node.to_owned()),
                desired_state: TaskState::Shutdown,
                ..Task::default()
            };
            t.status.state = state;
            t
        };
        let running = task("gone", TaskState::Running);
        let failed = task("gone", TaskState::Failed);
        let elsewhere = task("other", TaskState::Running);
        let all = [running.clone(), failed.clone(), elsewhere.clone()];
        store
            .update(|tx| {
                for t in &all {
                    tx.create(t.clone())?;
                }
                orphan_tasks_in(tx, "gone")
            })
            .await
            .unwrap();
        let state = |id: &str| {
            store
                .view(|tx| tx.get::<Task>(id))
                .unwrap()
                .map(|t| (t.status.state, t.status.message))
        };
        assert_eq!(
            state(&running.id),
            Some((
                TaskState::Orphaned,
                "Task belonged to a node that has been deleted".to_owned()
            ))
        );
        assert_eq!(state(&failed.id).map(|s| s.0), Some(TaskState::Failed));
        assert_eq!(state(&elsewhere.id).map(|s| s.0), Some(TaskState::Running));
    }
}

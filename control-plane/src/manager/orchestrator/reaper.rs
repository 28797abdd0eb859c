//! The task reaper (SwarmKit `manager/orchestrator/taskreaper`): deletes tasks nobody needs any more.
//!
//! - Tasks with desired `REMOVE` (scaled down, service removed) once they stopped, or if they
//!   never reached a node or their node is gone or down: they will never report again.
//! - History: per slot (per node for a global service) at most `task_history_limit` tasks are
//!   kept — the cluster's `--task-history-limit`, default 5, counting the live task as
//!   SwarmKit does; the oldest stopped ones go first, live or still running ones are never
//!   deleted. A negative limit keeps everything. A service whose restart policy has
//!   `max_attempts` keeps `max_attempts + 1` instead, as SwarmKit does, so its history shows
//!   every attempt.

use std::collections::{BTreeMap, BTreeSet};

use super::read_services;
use super::slots::{SlotKey, group, is_live};
use crate::store::objects::{Cluster, Node, NodeState, OrchestrationConfig, Task, TaskState};
use crate::store::{ReadView, StoreError, WriteTx};

/// One reaper pass in `tx`, over the tasks of `only` those services (all if `None`). Returns
/// the IDs of the tasks it deleted.
pub fn reap(tx: &mut WriteTx, only: Option<&BTreeSet<String>>) -> Result<Vec<String>, StoreError> {
    let limit = tx
        .list::<Cluster>()?
        .first()
        .map_or(OrchestrationConfig::default(), |c| c.spec.orchestration)
        .task_history_retention_limit;
    let nodes: BTreeMap<String, Node> = tx
        .list::<Node>()?
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect();
    let never_ran_or_gone = |task: &Task| {
        task.status.state < TaskState::Assigned
            || task.node_id.as_ref().is_none_or(|id| {
                nodes
                    .get(id)
                    .is_none_or(|n| n.status.state == NodeState::Down)
            })
    };
    let (services, tasks) = read_services(&*tx, only)?;
    let mut deleted = Vec::new();
    let mut kept = Vec::new();
    for task in tasks.into_values().flatten() {
        if task.desired_state == TaskState::Remove
            && (task.status.state.is_terminal() || never_ran_or_gone(&task))
        {
            tx.delete::<Task>(&task.id)?;
            deleted.push(task.id);
        } else {
            kept.push(task);
        }
    }
    let Ok(limit) = usize::try_from(limit) else {
        return Ok(deleted);
    };
    let mut by_service: BTreeMap<String, Vec<Task>> = BTreeMap::new();
    for task in kept {
        by_service
            .entry(task.service_id.clone())
            .or_default()
            .push(task);
    }
    for (service_id, tasks) in by_service {
        let max_attempts = services
            .get(&service_id)
            .map_or(0, |s| s.spec.task_template.restart_policy.max_attempts);
        let limit = if max_attempts > 0 {
            usize::try_from(max_attempts.saturating_add(1)).unwrap_or(usize::MAX)
        } else {
            limit
        };
        let slots: BTreeMap<SlotKey, Vec<Task>> = group(tasks);
        for tasks in slots.values() {
            let mut excess = tasks.len().saturating_sub(limit);
            for task in tasks {
                if excess == 0 {
                    break;
                }
                // A task whose node was removed will never report again.
                let stopped = task.status.state.is_terminal()
                    || task.status.state < TaskState::Assigned
                    || task
                        .node_id
                        .as_ref()
                        .is_some_and(|id| !nodes.contains_key(id));
                if !is_live(task) && stopped {
                    tx.delete::<Task>(&task.id)?;
                    deleted.push(task.id.clone());
                    excess -= 1;
                }
            }
        }
    }
    Ok(deleted)
}

//! The scheduler (SwarmKit `manager/scheduler`): places `PENDING` tasks on nodes and moves them
//! to `ASSIGNED`.
//!
//! Each task runs through the filter pipeline ([`filter`]) on every node; among the nodes that
//! pass, the spread placement preferences ([`spread`]) pick the emptiest branch, then the
//! spread strategy the node with the fewest tasks of the task's service, then the fewest
//! tasks overall. Global tasks arrive with their node chosen; the scheduler only
//! checks it. A task no node can take stays `PENDING` with `status.err` explaining why
//! (`no suitable node (scheduling constraints not satisfied on 3 nodes)`), and is tried again
//! on the next change of nodes or tasks. A task is placed once: nothing is rebalanced later.

pub mod constraint;
pub mod filter;
pub mod spread;

#[cfg(test)]
mod placement_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use constraint::Constraint;
use filter::{NodeInfo, explain, first_failure};

use crate::leader_loop::Reconciler;
use crate::manager::retry;
use crate::store::objects::{Node, ObjectKind, Task, TaskState, Timestamp};
use crate::store::{ReadView, Store, StoreError, WriteTx};

/// The scheduler loop; it keeps no state between passes.
#[derive(Debug, Default)]
pub struct Scheduler;

impl Reconciler for Scheduler {
    const NAME: &'static str = "scheduler";

    fn kinds(&self) -> &'static [ObjectKind] {
        &[ObjectKind::Node, ObjectKind::Task]
    }

    async fn pass(&mut self, store: &Store) -> Result<bool, StoreError> {
        retry::update(store, schedule).await
    }
}

/// One scheduler pass in `tx`. Returns whether it wrote anything.
pub fn schedule(tx: &mut WriteTx) -> Result<bool, StoreError> {
    let tasks = tx.list::<Task>()?;
    let mut nodes: BTreeMap<String, NodeInfo> = tx
        .list::<Node>()?
        .into_iter()
        .map(|n| (n.id.clone(), NodeInfo::new(n)))
        .collect();
    for task in &tasks {
        if task.status.state.is_terminal() || task.status.state < TaskState::Assigned {
            continue;
        }
        if let Some(info) = task.node_id.as_ref().and_then(|id| nodes.get_mut(id)) {
            info.add_task(task);
        }
    }
    let mut pending: Vec<Task> = tasks
        .into_iter()
        .filter(|t| t.status.state == TaskState::Pending && t.desired_state <= TaskState::Running)
        .collect();
    pending.sort_by_key(|t| (t.service_id.clone(), t.slot, t.id.clone()));
    let mut wrote = false;
    for mut task in pending {
        match place(&task, &nodes) {
            Ok(node_id) => {
                if let Some(info) = nodes.get_mut(&node_id) {
                    info.add_task(&task);
                }
                task.node_id = Some(node_id);
                task.status.state = TaskState::Assigned;
                task.status.timestamp = Timestamp::now();
                task.status.message = "scheduler assigned task to node".to_owned();
                task.status.err.clear();
                tx.update(task)?;
                wrote = true;
            }
            Err(reason) => {
                if task.status.err != reason {
                    tracing::debug!(task = %task.id, %reason, "scheduler: task stays pending");
                    task.status.err = reason;
                    task.status.timestamp = Timestamp::now();
                    tx.update(task)?;
                    wrote = true;
                }
            }
        }
    }
    Ok(wrote)
}

/// The node for `task`, or the explanation why there is none.
fn place(task: &Task, nodes: &BTreeMap<String, NodeInfo>) -> Result<String, String> {
    let constraints =
        Constraint::parse_all(&task.spec.placement.constraints).map_err(|e| e.to_string())?;
    let mut failures = BTreeMap::new();
    let mut best: Option<&NodeInfo> = None;
    let candidates: Vec<&NodeInfo> = match &task.node_id {
        // Global tasks come with their node.
        Some(id) => match nodes.get(id) {
            Some(info) => vec![info],
            None => return Err(format!("no suitable node (node {id} no longer exists)")),
        },
        None => nodes.values().collect(),
    };
    let mut eligible = Vec::new();
    for info in candidates {
        if let Some(filter) = first_failure(info, task, &constraints) {
            *failures.entry(filter).or_insert(0) += 1;
            continue;
        }
        eligible.push(info);
    }
    // Spread preferences first (the emptiest branch), then the fewest tasks of the service,
    // then the fewest tasks.
    let preferences = &task.spec.placement.preferences;
    let key = |i: &NodeInfo| {
        (
            spread::key(preferences, i, &eligible, &task.service_id),
            i.service_tasks(&task.service_id),
            i.total_tasks,
        )
    };
    for info in &eligible {
        if best.is_none_or(|b| key(info) < key(b)) {
            best = Some(info);
        }
    }
    best.map(|info| info.node.id.clone())
        .ok_or_else(|| explain(&failures))
}

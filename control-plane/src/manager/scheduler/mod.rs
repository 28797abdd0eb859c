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
use filter::{Filter, NodeInfo, explain, first_failure};

use crate::manager::leader_loop::{Reconciler, Scope};
use crate::store::objects::{Node, Object, ObjectKind, Task, TaskState, Timestamp};
use crate::store::{Event, ReadView, Store, StoreError, WriteTx};

/// The scheduler loop. It keeps what each node holds, built by a full pass and then kept by
/// the committed task changes, so a pass after a change looks only at the tasks it touched.
#[derive(Debug, Default)]
pub struct Scheduler {
    /// What the nodes hold; `None` until a full pass built it.
    nodes: Option<Nodes>,
    /// Pending tasks no node could take, and whether a node's freed capacity (resources, host
    /// ports, a place under the service's per-node replica limit) may let one take them. Other
    /// reasons change only with the nodes, whose every change brings a full pass.
    unplaced: BTreeMap<String, bool>,
}

/// The nodes by ID, and the index of the last change they reflect.
#[derive(Debug, Default)]
struct Nodes {
    by_id: BTreeMap<String, NodeInfo>,
    seen_through: u64,
}

impl Nodes {
    /// Reads every node and counts every task that holds a place on one.
    fn read(tx: &impl ReadView) -> Result<(Self, Vec<Task>), StoreError> {
        let mut by_id: BTreeMap<String, NodeInfo> = tx
            .list::<Node>()?
            .into_iter()
            .map(|n| (n.id.clone(), NodeInfo::new(n)))
            .collect();
        let tasks = tx.list::<Task>()?;
        for task in &tasks {
            if let Some(info) = placed_on(task).and_then(|id| by_id.get_mut(id)) {
                info.add_task(task);
            }
        }
        let nodes = Self {
            by_id,
            seen_through: tx.applied_index(),
        };
        Ok((nodes, tasks))
    }

    /// Follows one committed change of a task; returns whether it freed a place on a node.
    fn follow(&mut self, old: Option<&Task>, new: Option<&Task>) -> bool {
        let was = old.and_then(|t| placed_on(t).map(|node| (node, t)));
        let is = new.and_then(|t| placed_on(t).map(|node| (node, t)));
        if let Some((node, task)) = was
            && let Some(info) = self.by_id.get_mut(node)
        {
            info.remove_task(task);
        }
        if let Some((node, task)) = is
            && let Some(info) = self.by_id.get_mut(node)
        {
            info.add_task(task);
        }
        was.is_some() && was.map(|(n, _)| n) != is.map(|(n, _)| n)
    }
}

/// The node a task holds a place on: scheduled there and not stopped.
fn placed_on(task: &Task) -> Option<&str> {
    if task.status.state.is_terminal() || task.status.state < TaskState::Assigned {
        return None;
    }
    task.node_id.as_deref()
}

fn wants_a_node(task: &Task) -> bool {
    task.status.state == TaskState::Pending && task.desired_state <= TaskState::Running
}

fn as_task(object: &Object) -> Option<&Task> {
    match object {
        Object::Task(task) => Some(task),
        _ => None,
    }
}

impl Reconciler for Scheduler {
    const NAME: &'static str = "scheduler";

    fn kinds(&self) -> &'static [ObjectKind] {
        &[ObjectKind::Node, ObjectKind::Task]
    }

    async fn pass(&mut self, store: &Store, scope: Scope) -> Result<bool, StoreError> {
        let candidates = match scope {
            Scope::Tick => return Ok(false),
            Scope::Changed(events) => self.follow(&events),
            Scope::Full => None,
        };
        if candidates.as_ref().is_some_and(Vec::is_empty) {
            return Ok(false);
        }
        let mut nodes = match (self.nodes.take(), &candidates) {
            (Some(nodes), Some(_)) => nodes,
            _ => Nodes::default(),
        };
        let full = candidates.is_none();
        let mut added: Vec<(String, Task)> = Vec::new();
        let result = store
            .update_retrying(|tx| {
                // A retried attempt starts again from what the nodes held before the first.
                undo(&mut nodes, &mut added);
                let pending = if full {
                    let (read, tasks) = Nodes::read(&*tx)?;
                    nodes = read;
                    tasks.into_iter().filter(wants_a_node).collect()
                } else {
                    let mut pending = Vec::new();
                    for id in candidates.iter().flatten() {
                        if let Some(task) = tx.get::<Task>(id)?
                            && wants_a_node(&task)
                        {
                            pending.push(task);
                        }
                    }
                    pending
                };
                schedule(tx, &mut nodes.by_id, pending, &mut added)
            })
            .await;
        // The placements come back as changes, which count them.
        undo(&mut nodes, &mut added);
        let placed = result?;
        if full {
            self.unplaced.clear();
        }
        for (task, outcome) in &placed.outcomes {
            match outcome {
                Some(capacity) => self.unplaced.insert(task.clone(), *capacity),
                None => self.unplaced.remove(task),
            };
        }
        self.nodes = Some(nodes);
        Ok(placed.wrote)
    }

    fn reset(&mut self) {
        self.nodes = None;
        self.unplaced.clear();
    }
}

impl Scheduler {
    /// Follows `events`; returns the tasks to try to place, or `None` if a full pass is due
    /// (no counts yet, or a node changed).
    fn follow(&mut self, events: &[Event]) -> Option<Vec<String>> {
        let nodes = self.nodes.as_mut()?;
        let mut candidates = Vec::new();
        let mut freed = false;
        let seen_through = nodes.seen_through;
        for event in events.iter().filter(|e| e.index() > seen_through) {
            let (old, new) = match event {
                Event::Created { object, .. } => (None, Some(object)),
                Event::Updated { old, object, .. } => (Some(old), Some(object)),
                Event::Deleted { object, .. } => (Some(object), None),
            };
            if event.kind() != ObjectKind::Task {
                return None;
            }
            let (old, new) = (old.and_then(as_task), new.and_then(as_task));
            freed |= nodes.follow(old, new);
            match new {
                Some(task) if wants_a_node(task) => candidates.push(task.id.clone()),
                Some(_) => {}
                None => {
                    if let Some(task) = old {
                        self.unplaced.remove(&task.id);
                    }
                }
            }
        }
        if freed {
            candidates.extend(
                self.unplaced
                    .iter()
                    .filter(|(_, capacity)| **capacity)
                    .map(|(id, _)| id.clone()),
            );
        }
        candidates.sort();
        candidates.dedup();
        Some(candidates)
    }
}

/// Takes back the counts of placements a pass made (see [`Scheduler::pass`]).
fn undo(nodes: &mut Nodes, added: &mut Vec<(String, Task)>) {
    for (node, task) in added.drain(..) {
        if let Some(info) = nodes.by_id.get_mut(&node) {
            info.remove_task(&task);
        }
    }
}

/// What a scheduling pass did.
#[derive(Debug, Default)]
pub struct Placed {
    pub wrote: bool,
    /// Per task tried: `None` if placed, else whether freed capacity may place it later.
    pub outcomes: Vec<(String, Option<bool>)>,
}

/// Places `pending` tasks on `nodes` in `tx`, counting each placement on its node (and in
/// `added`).
fn schedule(
    tx: &mut WriteTx,
    nodes: &mut BTreeMap<String, NodeInfo>,
    mut pending: Vec<Task>,
    added: &mut Vec<(String, Task)>,
) -> Result<Placed, StoreError> {
    pending.sort_by_key(|t| (t.service_id.clone(), t.slot, t.id.clone()));
    let mut placed = Placed::default();
    for mut task in pending {
        match place(&task, nodes) {
            Ok(node_id) => {
                task.node_id = Some(node_id.clone());
                task.status.state = TaskState::Assigned;
                task.status.timestamp = Timestamp::now();
                task.status.message = "scheduler assigned task to node".to_owned();
                task.status.err.clear();
                if let Some(info) = nodes.get_mut(&node_id) {
                    info.add_task(&task);
                    added.push((node_id, task.clone()));
                }
                placed.outcomes.push((task.id.clone(), None));
                tx.update(task)?;
                placed.wrote = true;
            }
            Err((reason, capacity)) => {
                placed.outcomes.push((task.id.clone(), Some(capacity)));
                if task.status.err != reason {
                    tracing::debug!(task = %task.id, %reason, "scheduler: task stays pending");
                    task.status.err = reason;
                    task.status.timestamp = Timestamp::now();
                    tx.update(task)?;
                    placed.wrote = true;
                }
            }
        }
    }
    Ok(placed)
}

/// The node for `task`, or the explanation why there is none and whether freed capacity
/// (resources, host ports, a task of the service leaving a node at its replica limit) on a
/// node may change it.
fn place(task: &Task, nodes: &BTreeMap<String, NodeInfo>) -> Result<String, (String, bool)> {
    let constraints = Constraint::parse_all(&task.spec.placement.constraints)
        .map_err(|e| (e.to_string(), false))?;
    let mut failures = BTreeMap::new();
    let mut best: Option<&NodeInfo> = None;
    let candidates: Vec<&NodeInfo> = match &task.node_id {
        // Global tasks come with their node.
        Some(id) => match nodes.get(id) {
            Some(info) => vec![info],
            None => {
                return Err((
                    format!("no suitable node (node {id} no longer exists)"),
                    false,
                ));
            }
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
    let capacity = [Filter::Resources, Filter::HostPorts, Filter::MaxReplicas]
        .iter()
        .any(|filter| failures.contains_key(filter));
    best.map(|info| info.node.id.clone())
        .ok_or_else(|| (explain(&failures), capacity))
}

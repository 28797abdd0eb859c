//! The orchestrators (SwarmKit `manager/orchestrator`): they turn services into tasks.
//!
//! One pass reconciles every service: the replicated orchestrator ([`replicated`]) keeps one
//! live task in each slot `1..=replicas`, the global one ([`global`]) one per eligible node.
//! Within each slot the restart supervisor ([`restart`]) replaces tasks that stopped on their
//! own, tasks on nodes that went down or were drained are replaced elsewhere, and the updater
//! ([`update`]) replaces tasks made from an older template one slot at a time. Then the task
//! reaper ([`reaper`]) deletes what is no longer needed. Tasks of removed services get desired
//! `REMOVE`.
//!
//! The orchestrator only creates tasks (`NEW`) and sets desired states; the allocator and the
//! scheduler take them from there, and agents report their status.

pub mod global;
pub mod reaper;
pub mod replicated;
pub mod restart;
pub mod slots;
pub mod update;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use restart::{Decision, RestartHistory, RestartRecord, due_to_start};
use slots::{SlotKey, is_live, new_task, node_invalid};

use crate::leader_loop::Reconciler;
use crate::manager::retry;
use crate::store::objects::{Node, ObjectKind, Service, ServiceMode, Task, TaskState, Timestamp};
use crate::store::{ReadView, Store, StoreError, WriteTx};

/// The orchestrator loop. Its only memory is the restart history (attempts per slot).
#[derive(Debug, Default)]
pub struct Orchestrator {
    restarts: RestartHistory,
}

impl Reconciler for Orchestrator {
    const NAME: &'static str = "orchestrator";

    fn kinds(&self) -> &'static [ObjectKind] {
        &[
            ObjectKind::Service,
            ObjectKind::Task,
            ObjectKind::Node,
            ObjectKind::Cluster,
        ]
    }

    async fn pass(&mut self, store: &Store) -> Result<bool, StoreError> {
        let history = &self.restarts;
        let outcome = retry::update(store, |tx| orchestrate(tx, history)).await?;
        self.remember(&outcome);
        let reaped = retry::update(store, reaper::reap).await?;
        if reaped {
            let (services, tasks) = store.view(|tx| {
                let services: BTreeSet<String> =
                    tx.list::<Service>()?.into_iter().map(|s| s.id).collect();
                let tasks: BTreeSet<String> =
                    tx.list::<Task>()?.into_iter().map(|t| t.id).collect();
                Ok::<_, StoreError>((services, tasks))
            })?;
            self.restarts.retain(&services, &tasks);
        }
        Ok(outcome.wrote || reaped)
    }

    fn reset(&mut self) {
        self.restarts = RestartHistory::default();
    }
}

impl Orchestrator {
    /// Records what a committed pass decided about restarts.
    pub fn remember(&mut self, outcome: &Outcome) {
        for restart in &outcome.restarts {
            self.restarts.record_restart(restart);
        }
        for task in &outcome.given_up {
            self.restarts.record_given_up(task);
        }
    }

    pub fn history(&self) -> &RestartHistory {
        &self.restarts
    }
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub wrote: bool,
    /// Restarts made.
    pub restarts: Vec<RestartRecord>,
    /// Stopped tasks the restart policy leaves stopped.
    pub given_up: Vec<String>,
}

/// One orchestrator pass in `tx` (without the reaper).
pub fn orchestrate(tx: &mut WriteTx, history: &RestartHistory) -> Result<Outcome, StoreError> {
    let nodes: BTreeMap<String, Node> = tx
        .list::<Node>()?
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect();
    let services: BTreeMap<String, Service> = tx
        .list::<Service>()?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let mut by_service: BTreeMap<String, Vec<Task>> = BTreeMap::new();
    for task in tx.list::<Task>()? {
        by_service
            .entry(task.service_id.clone())
            .or_default()
            .push(task);
    }
    let mut plan = Plan {
        tx,
        history,
        now: SystemTime::now(),
        outcome: Outcome::default(),
    };
    for (service_id, tasks) in &by_service {
        if services.contains_key(service_id) {
            continue;
        }
        // The service was removed: all of its tasks go (the reaper deletes them once stopped).
        for task in tasks.iter().filter(|t| t.desired_state < TaskState::Remove) {
            plan.set_desired(task, TaskState::Remove)?;
        }
    }
    for service in services.values() {
        let tasks = by_service.remove(&service.id).unwrap_or_default();
        let slots = slots::group(tasks);
        match service.spec.mode {
            ServiceMode::Replicated { replicas } => {
                replicated::reconcile(&mut plan, service, replicas, &slots, &nodes)?;
            }
            ServiceMode::Global => global::reconcile(&mut plan, service, &slots, &nodes)?,
        }
    }
    Ok(plan.outcome)
}

/// The writes of one pass, and the decisions to remember once they commit.
#[derive(Debug)]
pub struct Plan<'a> {
    tx: &'a mut WriteTx,
    history: &'a RestartHistory,
    now: SystemTime,
    outcome: Outcome,
}

impl Plan<'_> {
    /// Sets a task's desired state (reading it afresh, so earlier changes in this pass stay).
    pub fn set_desired(&mut self, task: &Task, state: TaskState) -> Result<(), StoreError> {
        let current = self.tx.get::<Task>(&task.id)?;
        if current.is_some_and(|t| t.desired_state != state) {
            self.tx
                .modify::<Task>(&task.id, |t| t.desired_state = state)?;
            self.outcome.wrote = true;
        }
        Ok(())
    }

    /// Makes a new task; returns it with its ID.
    pub fn create(&mut self, mut task: Task) -> Result<Task, StoreError> {
        task.id = self.tx.create(task.clone())?;
        self.outcome.wrote = true;
        Ok(task)
    }

    /// Looks after one slot: keeps one live task, moves it off an invalid node (`movable`:
    /// replicated tasks), restarts it per policy, starts it after its restart delay. Returns
    /// the slot's live task afterwards, `None` if the slot is empty.
    pub fn supervise(
        &mut self,
        service: &Service,
        key: &SlotKey,
        tasks: &[Task],
        movable: bool,
        nodes: &BTreeMap<String, Node>,
    ) -> Result<Option<Task>, StoreError> {
        let live: Vec<&Task> = tasks.iter().filter(|t| is_live(t)).collect();
        let Some((current, older)) = live.split_last() else {
            return Ok(None);
        };
        for task in older {
            self.set_desired(task, TaskState::Shutdown)?;
        }
        if movable
            && let Some(node_id) = &current.node_id
            && node_invalid(nodes.get(node_id))
        {
            tracing::info!(task = %current.id, node = %node_id, "orchestrator: node unavailable, replacing task");
            self.set_desired(current, TaskState::Shutdown)?;
            return self
                .create(new_task(service, key, TaskState::Running))
                .map(Some);
        }
        if current.status.state.is_terminal() {
            return match self.history.decide(&service.id, key, current, self.now) {
                Decision::Restart { delayed } => {
                    tracing::info!(task = %current.id, state = %current.status.state, "orchestrator: restarting task");
                    self.set_desired(current, TaskState::Shutdown)?;
                    let desired = if delayed {
                        TaskState::Ready
                    } else {
                        TaskState::Running
                    };
                    let new = self.create(new_task(service, key, desired))?;
                    self.outcome.restarts.push(RestartRecord {
                        service_id: service.id.clone(),
                        key: key.clone(),
                        at: Timestamp::from_system_time(self.now),
                        rejected: current.status.state == TaskState::Rejected,
                    });
                    Ok(Some(new))
                }
                Decision::GiveUp => {
                    self.outcome.given_up.push(current.id.clone());
                    Ok(Some((*current).clone()))
                }
                Decision::AlreadyGivenUp | Decision::Wait => Ok(Some((*current).clone())),
            };
        }
        if due_to_start(current, self.now) {
            self.set_desired(current, TaskState::Running)?;
        }
        Ok(Some((*current).clone()))
    }

    /// The rolling update's step for a service whose slots hold `live`.
    pub fn update_step(
        &mut self,
        service: &Service,
        live: &BTreeMap<SlotKey, Task>,
    ) -> Result<(), StoreError> {
        // Stop-first would stop a task whose replacement the allocator cannot serve (a port
        // taken meanwhile): wait until the service's endpoint matches its spec.
        let allocated = service
            .endpoint
            .as_ref()
            .is_some_and(|e| e.spec == service.spec.endpoint_spec);
        if !allocated {
            return Ok(());
        }
        let refs: BTreeMap<SlotKey, &Task> = live.iter().map(|(k, t)| (k.clone(), t)).collect();
        let Some(key) = update::next_slot(service, &refs) else {
            return Ok(());
        };
        if let Some(old) = live.get(&key) {
            tracing::info!(service = %service.spec.annotations.name, %key, "orchestrator: updating task");
            self.set_desired(old, TaskState::Shutdown)?;
            self.create(new_task(service, &key, TaskState::Running))?;
        }
        Ok(())
    }
}

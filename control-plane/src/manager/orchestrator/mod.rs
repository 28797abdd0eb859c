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
//!
//! A pass after a change reconciles only the services the change touched (the service, or the
//! service of a changed task), reading their tasks through the store's per-service index; a
//! change of a node or of the cluster settings reconciles everything. The tick reconciles the
//! services with a timer running (a restart delay, a restart spacing), and nothing else.

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

use crate::manager::leader_loop::{Reconciler, Scope};
use crate::store::objects::{
    FailureAction, Node, Object, ObjectKind, Service, ServiceMode, Task, TaskState, Timestamp,
    UpdateConfig, UpdateOrder, UpdateState, UpdateStatus,
};
use crate::store::{Event, ReadView, Store, StoreError, WriteTx};

/// The orchestrator loop. Its memory is the restart history (attempts per slot) and the
/// services waiting for a timer.
#[derive(Debug, Default)]
pub struct Orchestrator {
    restarts: RestartHistory,
    /// Services with a slot waiting for time to pass (a delayed start, a restart spacing).
    waiting: BTreeSet<String>,
}

/// The services a pass must reconcile: `None` for all of them.
pub type Services = Option<BTreeSet<String>>;

/// The services `events` touch; `None` (all) if a node or the cluster settings changed.
pub fn touched(events: &[Event]) -> Services {
    let mut services = BTreeSet::new();
    for event in events {
        let objects: &[&Object] = match event {
            Event::Updated { old, object, .. } => &[old, object],
            Event::Created { object, .. } | Event::Deleted { object, .. } => &[object],
        };
        for object in objects {
            match object {
                Object::Service(service) => services.insert(service.id.clone()),
                Object::Task(task) => services.insert(task.service_id.clone()),
                Object::Node(_) | Object::Cluster(_) => return None,
                Object::Network(_) | Object::Secret(_) | Object::Config(_) => false,
            };
        }
    }
    Some(services)
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

    async fn pass(&mut self, store: &Store, scope: Scope) -> Result<bool, StoreError> {
        let services = match scope {
            Scope::Full => None,
            Scope::Changed(events) => touched(&events),
            Scope::Tick if self.waiting.is_empty() => return Ok(false),
            Scope::Tick => Some(self.waiting.clone()),
        };
        if services.as_ref().is_some_and(BTreeSet::is_empty) {
            return Ok(false);
        }
        let history = &self.restarts;
        let outcome = store
            .update_retrying(|tx| orchestrate(tx, history, services.as_ref()))
            .await?;
        self.remember(&outcome);
        match &services {
            None => self.waiting.clone_from(&outcome.waiting),
            Some(ids) => {
                self.waiting.retain(|id| !ids.contains(id));
                self.waiting.extend(outcome.waiting.iter().cloned());
            }
        }
        let reaped = store
            .update_retrying(|tx| reaper::reap(tx, services.as_ref()))
            .await?;
        if !reaped.is_empty() {
            let gone = store.view(|tx| {
                let mut gone = BTreeSet::new();
                let candidates: Vec<String> = match &services {
                    Some(ids) => ids.iter().cloned().collect(),
                    None => self.restarts.services().cloned().collect(),
                };
                for id in candidates {
                    if tx.get::<Service>(&id)?.is_none() {
                        gone.insert(id);
                    }
                }
                Ok::<_, StoreError>(gone)
            })?;
            self.restarts.forget(&gone, &reaped);
        }
        Ok(outcome.wrote || !reaped.is_empty())
    }

    fn reset(&mut self) {
        self.restarts = RestartHistory::default();
        self.waiting.clear();
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
    /// Services reconciled with a slot waiting for time to pass.
    pub waiting: BTreeSet<String>,
}

/// One orchestrator pass in `tx` (without the reaper), over `only` those services (all if
/// `None`).
pub fn orchestrate(
    tx: &mut WriteTx,
    history: &RestartHistory,
    only: Option<&BTreeSet<String>>,
) -> Result<Outcome, StoreError> {
    let nodes: BTreeMap<String, Node> = tx
        .list::<Node>()?
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect();
    let (services, mut by_service) = read_services(tx, only)?;
    let mut plan = Plan {
        tx,
        history,
        now: SystemTime::now(),
        outcome: Outcome::default(),
        service_waits: false,
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
        plan.service_waits = false;
        match service.spec.mode {
            ServiceMode::Replicated { replicas } => {
                replicated::reconcile(&mut plan, service, replicas, &slots, &nodes)?;
            }
            ServiceMode::Global => global::reconcile(&mut plan, service, &slots, &nodes)?,
        }
        if plan.service_waits {
            plan.outcome.waiting.insert(service.id.clone());
        }
    }
    Ok(plan.outcome)
}

/// Services by ID, and tasks by service ID: of `only` those services (through the store's
/// per-service index), or of all.
type ServicesAndTasks = (BTreeMap<String, Service>, BTreeMap<String, Vec<Task>>);

pub(crate) fn read_services(
    tx: &impl ReadView,
    only: Option<&BTreeSet<String>>,
) -> Result<ServicesAndTasks, StoreError> {
    let mut services = BTreeMap::new();
    let mut by_service: BTreeMap<String, Vec<Task>> = BTreeMap::new();
    match only {
        Some(ids) => {
            for id in ids {
                if let Some(service) = tx.get::<Service>(id)? {
                    services.insert(id.clone(), service);
                }
                let tasks = tx.tasks_of_service(id)?;
                if !tasks.is_empty() {
                    by_service.insert(id.clone(), tasks);
                }
            }
        }
        None => {
            for service in tx.list::<Service>()? {
                services.insert(service.id.clone(), service);
            }
            for task in tx.list::<Task>()? {
                by_service
                    .entry(task.service_id.clone())
                    .or_default()
                    .push(task);
            }
        }
    }
    Ok((services, by_service))
}

/// The writes of one pass, and the decisions to remember once they commit.
#[derive(Debug)]
pub struct Plan<'a> {
    tx: &'a mut WriteTx,
    history: &'a RestartHistory,
    now: SystemTime,
    outcome: Outcome,
    /// Whether the service being reconciled has a slot waiting for time to pass.
    service_waits: bool,
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
        // Start-first: an older task that runs keeps serving until the newest runs too (or
        // stops trying); then it leaves the mesh and stops.
        let start_first = update::config(service).order == UpdateOrder::StartFirst
            && current.status.state < TaskState::Running
            && current.desired_state == TaskState::Running;
        for task in older {
            if start_first && task.status.state == TaskState::Running {
                continue;
            }
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
                    self.service_waits |= delayed;
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
                Decision::Wait => {
                    self.service_waits = true;
                    Ok(Some((*current).clone()))
                }
                Decision::AlreadyGivenUp => Ok(Some((*current).clone())),
            };
        }
        if due_to_start(current, self.now) {
            self.set_desired(current, TaskState::Running)?;
        } else if current.desired_state == TaskState::Ready {
            self.service_waits = true;
        }
        Ok(Some((*current).clone()))
    }

    /// The rolling update's step for a service whose slots hold `live` (and, with their
    /// history, `slots`): replaces the next outdated slots, and keeps the update's status.
    pub fn update_step(
        &mut self,
        service: &Service,
        live: &BTreeMap<SlotKey, Task>,
        slots: &BTreeMap<SlotKey, Vec<Task>>,
    ) -> Result<(), StoreError> {
        // Stop-first would stop a task whose replacement the allocator cannot serve (a port
        // taken meanwhile): wait until the service's endpoint matches its spec.
        let allocated = service
            .endpoint
            .as_ref()
            .is_some_and(|e| e.spec == service.spec.endpoint_spec);
        if !allocated || update::paused(service) {
            return Ok(());
        }
        let refs: BTreeMap<SlotKey, &Task> = live.iter().map(|(k, t)| (k.clone(), t)).collect();
        let config = update::config(service).clone();
        let in_progress = service
            .update_status
            .as_ref()
            .is_some_and(|s| s.state.in_progress());
        if in_progress {
            let failed = update::failures(service, slots.values().flatten());
            if update::past_ratio(&config, failed.len(), live.len())
                && let Some(task) = failed.first()
            {
                return self.update_failed(service, &config, &task.id);
            }
        }
        let next = update::next_slots(service, &refs);
        let outdated = refs.values().any(|t| update::is_outdated(t, service));
        if !outdated {
            if in_progress
                && let Some(until) = update::monitored_until(service, refs.values().copied())
                && until > self.now
            {
                // A task that fails within the monitor still counts: not completed yet.
                self.service_waits = true;
                return Ok(());
            }
            if in_progress && refs.values().all(|t| t.status.state == TaskState::Running) {
                let rollback = service
                    .update_status
                    .as_ref()
                    .is_some_and(|s| s.state.is_rollback());
                self.set_update_status(service, |s| {
                    s.state = if rollback {
                        UpdateState::RollbackCompleted
                    } else {
                        UpdateState::Completed
                    };
                    s.completed_at = Some(Timestamp::now());
                    s.message = if rollback {
                        "rollback completed"
                    } else {
                        "update completed"
                    }
                    .to_owned();
                })?;
            }
            return Ok(());
        }
        if next.is_empty() {
            return Ok(());
        }
        // `delay` between one new task and the next.
        if !config.delay.is_zero() {
            let last = refs
                .values()
                .filter(|t| !update::is_outdated(t, service))
                .map(|t| t.meta.created_at)
                .max();
            if let Some(last) = last
                && last.to_system_time() + config.delay > self.now
            {
                self.service_waits = true;
                return Ok(());
            }
        }
        let batch = if config.delay.is_zero() {
            next.len()
        } else {
            1
        };
        for key in next.into_iter().take(batch) {
            if let Some(old) = live.get(&key) {
                tracing::info!(service = %service.spec.annotations.name, %key, order = config.order.as_str(), "orchestrator: updating task");
                // Start-first: the old task serves until the new one runs (`supervise`
                // stops it then).
                if config.order == UpdateOrder::StopFirst {
                    self.set_desired(old, TaskState::Shutdown)?;
                }
                self.create(new_task(service, &key, TaskState::Running))?;
            }
        }
        Ok(())
    }

    /// A new task failed past the update's failure ratio: the failure action applies.
    fn update_failed(
        &mut self,
        service: &Service,
        config: &UpdateConfig,
        task_id: &str,
    ) -> Result<(), StoreError> {
        let rollback = service
            .update_status
            .as_ref()
            .is_some_and(|s| s.state.is_rollback());
        match config.failure_action {
            FailureAction::Continue => Ok(()),
            FailureAction::Rollback if !rollback && service.previous_spec.is_some() => {
                tracing::warn!(service = %service.spec.annotations.name, task = %task_id, "orchestrator: update failed; rolling back");
                self.tx.modify::<Service>(&service.id, |s| {
                    if let Some(previous) = s.previous_spec.take() {
                        s.previous_spec = Some(std::mem::replace(&mut s.spec, previous));
                    }
                    let mut status = update::started(true);
                    status.message = format!(
                        "update rolled back due to failure or early termination of task {task_id}"
                    );
                    s.update_status = Some(status);
                })?;
                self.outcome.wrote = true;
                Ok(())
            }
            _ => {
                tracing::warn!(service = %service.spec.annotations.name, task = %task_id, "orchestrator: update failed; pausing");
                self.set_update_status(service, |s| {
                    s.state = if rollback {
                        UpdateState::RollbackPaused
                    } else {
                        UpdateState::Paused
                    };
                    s.message = format!(
                        "{} paused due to failure or early termination of task {task_id}",
                        if rollback { "rollback" } else { "update" }
                    );
                })
            }
        }
    }

    fn set_update_status(
        &mut self,
        service: &Service,
        change: impl FnOnce(&mut UpdateStatus),
    ) -> Result<(), StoreError> {
        let mut status = service.update_status.clone().unwrap_or_default();
        change(&mut status);
        if service.update_status.as_ref() != Some(&status) {
            self.tx
                .modify::<Service>(&service.id, |s| s.update_status = Some(status))?;
            self.outcome.wrote = true;
        }
        Ok(())
    }
}

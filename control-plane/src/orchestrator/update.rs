//! Rolling updates (SwarmKit `orchestrator/update`), with Swarm's default update config:
//! parallelism 1, no delay, `stop-first`. A slot whose live task was made from an older task
//! template (including `service update --force`, which bumps `force_update`) is replaced: the
//! old task gets desired `SHUTDOWN` and a new one is made from the current template. The next
//! slot is replaced only once no up-to-date task is still on its way to `RUNNING` (it runs, or
//! it failed and the restart supervisor took over).
//!
//! Tasks are compared by template rather than by `spec_version`: the store bumps the version on
//! every spec change, and a change of `replicas` alone must not replace every task.

use std::collections::BTreeMap;

use super::slots::SlotKey;
use crate::store::objects::{Service, Task, TaskState};

/// Whether `task` runs an older template than `service`'s, or was allocated for other
/// published ports (SwarmKit `IsTaskDirty` compares the endpoint spec too: host-mode ports are
/// bound by the task itself).
pub fn is_outdated(task: &Task, service: &Service) -> bool {
    task.spec != service.spec.task_template
        || task
            .endpoint
            .as_ref()
            .is_some_and(|e| e.spec != service.spec.endpoint_spec)
}

/// The slot to update now, if any: the first outdated one, unless an update is in flight.
/// `live` holds each slot's live task.
pub fn next_slot(service: &Service, live: &BTreeMap<SlotKey, &Task>) -> Option<SlotKey> {
    let mut outdated = live
        .iter()
        .filter(|(_, task)| is_outdated(task, service))
        .map(|(key, _)| key);
    let first = outdated.next()?;
    let in_flight = live
        .values()
        .any(|task| !is_outdated(task, service) && task.status.state < TaskState::Running);
    (!in_flight).then(|| first.clone())
}

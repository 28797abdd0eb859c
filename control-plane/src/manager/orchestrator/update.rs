//! Rolling updates (SwarmKit `manager/orchestrator/update`), as the service's `UpdateConfig` (or, while
//! rolling back, its `RollbackConfig`) says: `parallelism` slots at a time (0 = all), `delay`
//! between one slot's new task and the next, `stop-first` (the old task stops, then the new
//! one is made) or `start-first` (the old task keeps serving until the new one runs; see
//! [`super::Plan::supervise`]). A slot whose live task was made from an older task template
//! (including `service update --force`, which bumps `force_update`) is replaced. A new task
//! that fails during the update counts against `max_failure_ratio`; past it, the
//! `failure_action` applies: `pause` (nothing more is replaced until the next update),
//! `continue`, or `rollback` (the previous spec comes back, with the rollback config).
//!
//! Every old task is stopped the lifecycle's way (docs/lifecycle.md): out of every node's mesh
//! first, then its stop signal.
//!
//! Tasks are compared by template rather than by `spec_version`: the store bumps the version on
//! every spec change, and a change of `replicas` alone must not replace every task.

use std::collections::BTreeMap;

use super::slots::SlotKey;
use crate::store::objects::{
    Service, Task, TaskState, Timestamp, UpdateConfig, UpdateState, UpdateStatus,
};

/// Whether `task` runs an older template than `service`'s, or was allocated for other
/// published ports (SwarmKit `IsTaskDirty` compares the endpoint spec too: host-mode ports are
/// bound by the task itself).
///
/// New registry credentials alone do not replace a task that already has its image (desired
/// to run, and Ready to Running), as SwarmKit ignores `PullOptions` then (swarmkit#971):
/// `docker stack deploy --with-registry-auth` sends them on every deploy.
pub fn is_outdated(task: &Task, service: &Service) -> bool {
    let pulled = task.desired_state <= TaskState::Running
        && (TaskState::Ready..=TaskState::Running).contains(&task.status.state);
    let template_differs = if pulled
        && task.spec.container.registry_auth != service.spec.task_template.container.registry_auth
    {
        let mut template = service.spec.task_template.clone();
        template
            .container
            .registry_auth
            .clone_from(&task.spec.container.registry_auth);
        task.spec != template
    } else {
        task.spec != service.spec.task_template
    };
    template_differs
        || task
            .endpoint
            .as_ref()
            .is_some_and(|e| e.spec != service.spec.endpoint_spec)
}

/// The status of an update (or a rollback, `rollback`) that starts now.
pub fn started(rollback: bool) -> UpdateStatus {
    UpdateStatus {
        state: if rollback {
            UpdateState::RollbackStarted
        } else {
            UpdateState::Updating
        },
        started_at: Some(Timestamp::now()),
        completed_at: None,
        message: if rollback {
            "manually requested rollback"
        } else {
            "update in progress"
        }
        .to_owned(),
    }
}

/// The config the current replacement follows: the rollback config while rolling back.
pub fn config(service: &Service) -> &UpdateConfig {
    match &service.update_status {
        Some(s) if s.state.is_rollback() => &service.spec.rollback_config,
        _ => &service.spec.update_config,
    }
}

/// Whether replacing tasks is paused (after a failure, until the next update).
pub fn paused(service: &Service) -> bool {
    service
        .update_status
        .as_ref()
        .is_some_and(|s| matches!(s.state, UpdateState::Paused | UpdateState::RollbackPaused))
}

/// The slots to replace now: outdated ones, as many as `parallelism` allows next to the
/// up-to-date tasks still on their way to `RUNNING`. `live` holds each slot's live task.
pub fn next_slots(service: &Service, live: &BTreeMap<SlotKey, &Task>) -> Vec<SlotKey> {
    let parallelism = match config(service).parallelism {
        0 => usize::MAX,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let in_flight = live
        .values()
        .filter(|task| !is_outdated(task, service) && task.status.state < TaskState::Running)
        .count();
    live.iter()
        .filter(|(_, task)| is_outdated(task, service))
        .map(|(key, _)| key.clone())
        .take(parallelism.saturating_sub(in_flight))
        .collect()
}

/// Up-to-date tasks made since the update started that failed before they ran or within
/// `monitor` of their start (SwarmKit's updater), for the failure ratio.
pub fn failures<'a>(service: &Service, tasks: impl Iterator<Item = &'a Task>) -> Vec<&'a Task> {
    let since = service
        .update_status
        .as_ref()
        .and_then(|s| s.started_at)
        .unwrap_or_default();
    let monitor = config(service).monitor;
    tasks
        .filter(|t| {
            !is_outdated(t, service)
                && t.meta.created_at >= since
                && matches!(t.status.state, TaskState::Failed | TaskState::Rejected)
                && t.started_at.is_none_or(|started| {
                    t.status.timestamp.to_system_time() <= started.to_system_time() + monitor
                })
        })
        .collect()
}

/// Until when the update watches the tasks it made (`monitor` after the last one started):
/// it completes only then (SwarmKit waits one monitoring period after the last task).
pub fn monitored_until<'a>(
    service: &Service,
    tasks: impl Iterator<Item = &'a Task>,
) -> Option<std::time::SystemTime> {
    let monitor = config(service).monitor;
    tasks
        .filter(|t| !is_outdated(t, service))
        .filter_map(|t| t.started_at)
        .map(|started| started.to_system_time() + monitor)
        .max()
}

/// Whether `failed` of `total` tasks is past the config's ratio (Swarm: any failure with the
/// default ratio 0).
pub fn past_ratio(config: &UpdateConfig, failed: usize, total: usize) -> bool {
    if failed == 0 {
        return false;
    }
    #[allow(clippy::cast_precision_loss)]
    let ratio = failed as f32 / total.max(1) as f32;
    ratio > config.max_failure_ratio.0
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::image_store::RegistryAuth;

    fn at(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    /// A service whose update started at 100 s, with a 5 s monitor.
    fn updating() -> Service {
        let mut service = Service::default();
        service.spec.update_config.monitor = Duration::from_secs(5);
        service.update_status = Some(UpdateStatus {
            started_at: Some(at(100)),
            ..started(false)
        });
        service
    }

    /// An up-to-date task made at 101 s, started at `started`, in `state` since `since`.
    fn task(service: &Service, started: Option<i64>, state: TaskState, since: i64) -> Task {
        let mut task = Task {
            id: format!("t{started:?}{since}"),
            spec: service.spec.task_template.clone(),
            started_at: started.map(at),
            ..Task::default()
        };
        task.meta.created_at = at(101);
        task.status.state = state;
        task.status.timestamp = at(since);
        task
    }

    #[test]
    fn a_failure_counts_before_the_task_ran_or_within_the_monitor() {
        let service = updating();
        let never_ran = task(&service, None, TaskState::Failed, 130);
        let within = task(&service, Some(102), TaskState::Failed, 106);
        let after = task(&service, Some(102), TaskState::Failed, 108);
        let rejected = task(&service, None, TaskState::Rejected, 103);
        let tasks = [never_ran, within, after, rejected];
        let failed: Vec<&str> = failures(&service, tasks.iter())
            .iter()
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(failed, vec!["tNone130", "tSome(102)106", "tNone103"]);
    }

    #[test]
    fn the_update_watches_its_tasks_for_the_monitor_after_the_last_start() {
        let service = updating();
        let tasks = [
            task(&service, Some(102), TaskState::Running, 102),
            task(&service, Some(110), TaskState::Running, 110),
            task(&service, None, TaskState::Starting, 111),
        ];
        assert_eq!(
            monitored_until(&service, tasks.iter()),
            Some(at(115).to_system_time())
        );
        assert_eq!(monitored_until(&service, tasks[2..].iter()), None);
    }

    fn with_auth(password: &str) -> Option<RegistryAuth> {
        Some(RegistryAuth {
            username: "puller".into(),
            password: password.into(),
        })
    }

    #[test]
    fn new_credentials_alone_replace_only_tasks_that_have_not_pulled() {
        let mut service = Service::default();
        service.spec.task_template.container.image = "reg:5000/app:1".into();
        service.spec.task_template.container.registry_auth = with_auth("old");
        let mut task = Task {
            spec: service.spec.task_template.clone(),
            desired_state: TaskState::Running,
            ..Task::default()
        };
        task.status.state = TaskState::Running;
        service.spec.task_template.container.registry_auth = with_auth("new");
        assert!(
            !is_outdated(&task, &service),
            "a running task keeps running"
        );
        task.status.state = TaskState::Preparing;
        assert!(
            is_outdated(&task, &service),
            "a task still pulling is replaced"
        );
        task.status.state = TaskState::Running;
        service.spec.task_template.container.image = "reg:5000/app:2".into();
        assert!(is_outdated(&task, &service), "a new image still rolls");
    }
}

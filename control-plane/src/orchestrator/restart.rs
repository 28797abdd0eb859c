//! The restart supervisor (SwarmKit `orchestrator/restart`): what happens when a task the
//! manager wants running stops on its own.
//!
//! The old task gets desired `SHUTDOWN` and a replacement is made in the same slot with desired
//! `READY`; [`due_to_start`] raises it to `RUNNING` once the policy's delay has passed since it
//! was made (Swarm holds restarted tasks at `READY` the same way, so a crashing task does not
//! restart in a tight loop). The delay is read from the replacement itself, so it survives a
//! leader change. Attempts are counted in memory within the policy's window, as SwarmKit does;
//! a new leader starts counting afresh.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use super::slots::SlotKey;
use crate::store::objects::{RestartCondition, Task, TaskState, Timestamp};

/// The restarts made per slot, and the tasks the policy decided not to restart.
#[derive(Debug, Default)]
pub struct RestartHistory {
    restarts: BTreeMap<(String, SlotKey), Vec<Timestamp>>,
    given_up: BTreeSet<String>,
}

/// What the supervisor decided for a stopped task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Replace it, holding the replacement at `READY` for the delay if there is one.
    Restart { delayed: bool },
    /// Leave it stopped (condition `none`, `on-failure` after a clean exit, attempts used up).
    /// It keeps desired `RUNNING`, so the slot stays taken and nothing else replaces it.
    GiveUp,
    /// Decided before.
    AlreadyGivenUp,
}

impl RestartHistory {
    /// The policy's decision for `task` (live, stopped) in `key` of `service_id`.
    pub fn decide(
        &self,
        service_id: &str,
        key: &SlotKey,
        task: &Task,
        now: SystemTime,
    ) -> Decision {
        if self.given_up.contains(&task.id) {
            return Decision::AlreadyGivenUp;
        }
        let policy = task.spec.restart_policy;
        let restart = match policy.condition {
            RestartCondition::None => false,
            RestartCondition::OnFailure => task.status.state != TaskState::Complete,
            RestartCondition::Any => true,
        };
        if !restart {
            return Decision::GiveUp;
        }
        if policy.max_attempts > 0 {
            let attempts = self
                .restarts
                .get(&(service_id.to_owned(), key.clone()))
                .map_or(0, |times| {
                    times
                        .iter()
                        .filter(|at| within(policy.window, **at, now))
                        .count()
                });
            if attempts as u64 >= policy.max_attempts {
                return Decision::GiveUp;
            }
        }
        Decision::Restart {
            delayed: !policy.delay.is_zero(),
        }
    }

    /// Records a committed restart.
    pub fn record_restart(&mut self, service_id: &str, key: &SlotKey, at: Timestamp) {
        self.restarts
            .entry((service_id.to_owned(), key.clone()))
            .or_default()
            .push(at);
    }

    /// Records a committed decision not to restart `task_id`.
    pub fn record_given_up(&mut self, task_id: &str) {
        self.given_up.insert(task_id.to_owned());
    }

    /// Forgets services and tasks that no longer exist.
    pub fn retain(&mut self, services: &BTreeSet<String>, tasks: &BTreeSet<String>) {
        self.restarts
            .retain(|(service, _), _| services.contains(service));
        self.given_up.retain(|task| tasks.contains(task));
    }
}

fn within(window: Duration, at: Timestamp, now: SystemTime) -> bool {
    window.is_zero()
        || now
            .duration_since(at.to_system_time())
            .is_ok_and(|age| age <= window)
}

/// Whether a task held at desired `READY` by a restart delay may start now.
pub fn due_to_start(task: &Task, now: SystemTime) -> bool {
    task.desired_state == TaskState::Ready
        && now
            .duration_since(task.meta.created_at.to_system_time())
            .map_or(true, |age| age >= task.spec.restart_policy.delay)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::objects::RestartPolicy;

    fn failed(policy: RestartPolicy, state: TaskState) -> Task {
        let mut task = Task {
            id: "t1".into(),
            ..Task::default()
        };
        task.spec.restart_policy = policy;
        task.status.state = state;
        task
    }

    fn hours_ago(now: SystemTime, hours: u64) -> Timestamp {
        Timestamp::from_system_time(now - Duration::from_secs(hours * 3600))
    }

    #[test]
    fn conditions_decide_what_is_restarted() {
        let history = RestartHistory::default();
        let now = SystemTime::now();
        let key = SlotKey::Replica(1);
        let policy = |condition| RestartPolicy {
            condition,
            ..RestartPolicy::default()
        };
        let decide =
            |condition, state| history.decide("s", &key, &failed(policy(condition), state), now);
        assert_eq!(
            decide(RestartCondition::Any, TaskState::Complete),
            Decision::Restart { delayed: true }
        );
        assert_eq!(
            decide(RestartCondition::OnFailure, TaskState::Failed),
            Decision::Restart { delayed: true }
        );
        assert_eq!(
            decide(RestartCondition::OnFailure, TaskState::Complete),
            Decision::GiveUp
        );
        assert_eq!(
            decide(RestartCondition::None, TaskState::Failed),
            Decision::GiveUp
        );
    }

    #[test]
    fn attempts_count_only_within_the_window() {
        let now = SystemTime::now();
        let key = SlotKey::Replica(1);
        let policy = RestartPolicy {
            condition: RestartCondition::Any,
            delay: Duration::ZERO,
            max_attempts: 2,
            window: Duration::from_secs(3600),
        };
        let task = failed(policy, TaskState::Failed);
        let mut history = RestartHistory::default();
        history.record_restart("s", &key, hours_ago(now, 5));
        history.record_restart("s", &key, hours_ago(now, 4));
        assert_eq!(
            history.decide("s", &key, &task, now),
            Decision::Restart { delayed: false },
            "old attempts are outside the window"
        );
        history.record_restart("s", &key, hours_ago(now, 0));
        history.record_restart("s", &key, hours_ago(now, 0));
        assert_eq!(history.decide("s", &key, &task, now), Decision::GiveUp);
        // Other slots count on their own.
        assert_eq!(
            history.decide("s", &SlotKey::Replica(2), &task, now),
            Decision::Restart { delayed: false }
        );
        history.record_given_up("t1");
        assert_eq!(
            history.decide("s", &key, &task, now),
            Decision::AlreadyGivenUp
        );
    }

    #[test]
    fn a_delayed_replacement_starts_once_the_delay_passed() {
        let now = SystemTime::now();
        let mut task = failed(RestartPolicy::default(), TaskState::Assigned);
        task.desired_state = TaskState::Ready;
        task.meta.created_at = hours_ago(now, 0);
        assert!(!due_to_start(&task, now), "default delay is 5 s");
        task.meta.created_at = hours_ago(now, 1);
        assert!(due_to_start(&task, now));
        task.desired_state = TaskState::Running;
        assert!(!due_to_start(&task, now), "already started");
    }
}

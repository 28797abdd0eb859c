//! The restart supervisor (SwarmKit `manager/orchestrator/restart`): what happens when a task the
//! manager wants running stops on its own.
//!
//! The old task gets desired `SHUTDOWN` and a replacement is made in the same slot with desired
//! `READY`; [`due_to_start`] raises it to `RUNNING` once the policy's delay has passed since it
//! was made (Swarm holds restarted tasks at `READY` the same way, so a crashing task does not
//! restart in a tight loop). The delay is read from the replacement itself, so it survives a
//! leader change. Attempts are counted in memory within the policy's window, as SwarmKit does;
//! a new leader starts counting afresh.
//!
//! The delay also spaces the restarts themselves (issue 14): a replacement held at `READY` is
//! already prepared on its node, so one the node rejects (an image it cannot find, a spec it
//! cannot run) stops within milliseconds, long before its delay is over. Restarting it at once
//! made a hot loop of Raft writes. A slot is therefore restarted at most once per
//! [`RestartHistory::spacing`]: the policy's delay, and for a rejected task at least
//! [`MIN_RESTART_SPACING`], doubled for each rejection in a row up to [`MAX_REJECTED_BACKOFF`],
//! as Docker's restart manager backs off a container that keeps failing to start. A task that
//! ran and then stopped is restarted as before, since its replacement waited out the delay at
//! `READY`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use super::slots::SlotKey;
use crate::store::objects::{RestartCondition, Task, TaskState, Timestamp};

/// The shortest time between two restarts of a slot whose task was rejected, whatever the
/// policy's delay: even `--restart-delay 0` must not turn a task its node rejects into a hot
/// loop of Raft writes.
pub const MIN_RESTART_SPACING: Duration = Duration::from_secs(1);

/// The longest a slot whose tasks keep being rejected waits between two restarts.
pub const MAX_REJECTED_BACKOFF: Duration = Duration::from_secs(5 * 60);

/// A restart the orchestrator made, to remember once its write is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartRecord {
    pub service_id: String,
    pub key: SlotKey,
    pub at: Timestamp,
    /// The replaced task was rejected by its node (it never ran).
    pub rejected: bool,
}

/// The restarts made per slot, and the tasks the policy decided not to restart.
#[derive(Debug, Default)]
pub struct RestartHistory {
    restarts: BTreeMap<(String, SlotKey), Vec<Timestamp>>,
    /// Restarts in a row, per slot, that replaced a rejected task.
    rejected_streaks: BTreeMap<(String, SlotKey), u32>,
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
    /// Restart it, but not before the slot's restart spacing has passed since its previous
    /// restart; until then it stays as it is (a later pass decides again).
    Wait,
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
        let slot = (service_id.to_owned(), key.clone());
        let previous = self.restarts.get(&slot).and_then(|times| times.last());
        if let Some(previous) = previous {
            let streak = self.rejected_streaks.get(&slot).copied().unwrap_or(0);
            let rejected = task.status.state == TaskState::Rejected;
            let spacing = Self::spacing(policy.delay, streak + u32::from(rejected));
            if !elapsed_at_least(spacing, *previous, now) {
                return Decision::Wait;
            }
        }
        Decision::Restart {
            delayed: !policy.delay.is_zero(),
        }
    }

    /// The least time between a slot's previous restart and the next, after `rejections`
    /// rejected tasks in a row (this one included). Without a rejection it is the policy's
    /// delay; with one, the delay (at least [`MIN_RESTART_SPACING`]) doubled for each
    /// rejection after the first, up to [`MAX_REJECTED_BACKOFF`] (or the delay itself if that
    /// is longer).
    pub fn spacing(delay: Duration, rejections: u32) -> Duration {
        if rejections == 0 {
            return delay;
        }
        let base = delay.max(MIN_RESTART_SPACING);
        let doublings = (rejections - 1).min(16);
        base.saturating_mul(1 << doublings)
            .min(MAX_REJECTED_BACKOFF.max(base))
    }

    /// Records a committed restart.
    pub fn record_restart(&mut self, restart: &RestartRecord) {
        let slot = (restart.service_id.clone(), restart.key.clone());
        if restart.rejected {
            *self.rejected_streaks.entry(slot.clone()).or_default() += 1;
        } else {
            self.rejected_streaks.remove(&slot);
        }
        let times = self.restarts.entry(slot).or_default();
        times.push(restart.at);
        // Only the window's attempts and the last restart are ever read; keep the list short
        // for a slot that restarts for days.
        if times.len() > MAX_KEPT_RESTARTS {
            times.drain(..times.len() - MAX_KEPT_RESTARTS);
        }
    }

    /// Records a committed decision not to restart `task_id`.
    pub fn record_given_up(&mut self, task_id: &str) {
        self.given_up.insert(task_id.to_owned());
    }

    /// Forgets services and tasks that no longer exist.
    pub fn retain(&mut self, services: &BTreeSet<String>, tasks: &BTreeSet<String>) {
        self.restarts
            .retain(|(service, _), _| services.contains(service));
        self.rejected_streaks
            .retain(|(service, _), _| services.contains(service));
        self.given_up.retain(|task| tasks.contains(task));
    }

    /// Forgets the services and tasks named, which no longer exist.
    pub fn forget(&mut self, services: &BTreeSet<String>, tasks: &[String]) {
        self.restarts
            .retain(|(service, _), _| !services.contains(service));
        self.rejected_streaks
            .retain(|(service, _), _| !services.contains(service));
        for task in tasks {
            self.given_up.remove(task);
        }
    }

    /// The services with restarts on record.
    pub fn services(&self) -> impl Iterator<Item = &String> {
        self.restarts
            .keys()
            .chain(self.rejected_streaks.keys())
            .map(|(service, _)| service)
    }
}

/// Restart times kept per slot.
const MAX_KEPT_RESTARTS: usize = 1024;

/// Whether at least `spacing` has passed from `at` to `now` (a clock that went back counts
/// as not yet).
fn elapsed_at_least(spacing: Duration, at: Timestamp, now: SystemTime) -> bool {
    now.duration_since(at.to_system_time())
        .is_ok_and(|age| age >= spacing)
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

    fn record(key: &SlotKey, at: Timestamp, rejected: bool) -> RestartRecord {
        RestartRecord {
            service_id: "s".into(),
            key: key.clone(),
            at,
            rejected,
        }
    }

    #[test]
    fn rejected_tasks_are_restarted_with_a_growing_spacing() {
        let now = SystemTime::now();
        let key = SlotKey::Replica(1);
        let policy = RestartPolicy {
            delay: Duration::from_secs(5),
            ..RestartPolicy::default()
        };
        let rejected = failed(policy, TaskState::Rejected);
        let mut history = RestartHistory::default();
        assert_eq!(
            history.decide("s", &key, &rejected, now),
            Decision::Restart { delayed: true },
            "the first failure of a slot restarts at once"
        );
        let ago = |secs| Timestamp::from_system_time(now - Duration::from_secs(secs));
        history.record_restart(&record(&key, ago(1), false));
        assert_eq!(
            history.decide("s", &key, &rejected, now),
            Decision::Wait,
            "rejected 1 s after its restart: wait for the delay"
        );
        history.record_restart(&record(&key, ago(6), false));
        assert_eq!(
            history.decide("s", &key, &rejected, now),
            Decision::Restart { delayed: true }
        );
        // Rejected twice in a row already: this third one waits 5 × 2² s.
        history.record_restart(&record(&key, ago(19), true));
        history.record_restart(&record(&key, ago(19), true));
        assert_eq!(history.decide("s", &key, &rejected, now), Decision::Wait);
        history.record_restart(&record(&key, ago(21), true));
        history.record_restart(&record(&key, ago(21), true));
        assert_eq!(history.decide("s", &key, &rejected, now), Decision::Wait);
        let mut history = RestartHistory::default();
        history.record_restart(&record(&key, ago(21), true));
        history.record_restart(&record(&key, ago(21), true));
        assert_eq!(
            history.decide("s", &key, &rejected, now),
            Decision::Restart { delayed: true }
        );
        // A task that ran and crashed after its delay restarts at once.
        let crashed = failed(policy, TaskState::Failed);
        let mut history = RestartHistory::default();
        history.record_restart(&record(&key, ago(6), false));
        assert_eq!(
            history.decide("s", &key, &crashed, now),
            Decision::Restart { delayed: true }
        );
    }

    #[test]
    fn spacing_has_a_floor_and_a_ceiling() {
        assert_eq!(RestartHistory::spacing(Duration::ZERO, 0), Duration::ZERO);
        assert_eq!(
            RestartHistory::spacing(Duration::ZERO, 1),
            MIN_RESTART_SPACING
        );
        let five = Duration::from_secs(5);
        assert_eq!(RestartHistory::spacing(five, 1), five);
        assert_eq!(RestartHistory::spacing(five, 3), five * 4);
        assert_eq!(RestartHistory::spacing(five, 60), MAX_REJECTED_BACKOFF);
        let hour = Duration::from_secs(3600);
        assert_eq!(RestartHistory::spacing(hour, 9), hour);
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
        history.record_restart(&record(&key, hours_ago(now, 5), false));
        history.record_restart(&record(&key, hours_ago(now, 4), false));
        assert_eq!(
            history.decide("s", &key, &task, now),
            Decision::Restart { delayed: false },
            "old attempts are outside the window"
        );
        history.record_restart(&record(&key, hours_ago(now, 0), false));
        history.record_restart(&record(&key, hours_ago(now, 0), false));
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

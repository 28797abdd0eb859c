//! A task's health check, with Docker's semantics (moby `daemon/health.go`): the first probe
//! one interval after the start (the start interval while in the start period), each probe
//! killed after the timeout, a pass makes the task `healthy` and clears the failing streak,
//! a failure counts unless the task is still `starting` within its start period, and
//! `retries` failures in a row make it `unhealthy`. docs/health.md tells the whole story.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::executor::{Executor, PreparedTask};
use crate::store::objects::{Health, HealthCheck};

/// The check's verdicts so far.
#[derive(Debug, Clone)]
pub struct Tracker {
    check: HealthCheck,
    started: Instant,
    status: Health,
    failing_streak: u32,
}

impl Tracker {
    pub fn new(check: HealthCheck, started: Instant, status: Health) -> Self {
        Self {
            check,
            started,
            status,
            failing_streak: 0,
        }
    }

    pub fn status(&self) -> Health {
        self.status
    }

    fn in_start_period(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.started) < self.check.start_period
    }

    /// How long until the next probe.
    pub fn next_delay(&self, now: Instant) -> Duration {
        if self.status == Health::Starting && self.in_start_period(now) {
            self.check.start_interval
        } else {
            self.check.interval
        }
    }

    /// Takes a probe's result (`started_at`: when the probe began); returns the status.
    pub fn record(&mut self, passed: bool, started_at: Instant) -> Health {
        if passed {
            self.failing_streak = 0;
            self.status = Health::Healthy;
        } else if !(self.status == Health::Starting && self.in_start_period(started_at)) {
            self.failing_streak += 1;
            if self.failing_streak >= self.check.retries {
                self.status = Health::Unhealthy;
            }
        }
        self.status
    }
}

/// Probes `task` until the receivers of `status` are gone (or the task's runner aborts it),
/// publishing each change of status.
pub async fn monitor(
    check: HealthCheck,
    executor: Arc<dyn Executor>,
    task: PreparedTask,
    initial: Health,
    status: watch::Sender<Health>,
) {
    let mut tracker = Tracker::new(check.clone(), Instant::now(), initial);
    loop {
        let delay = tracker.next_delay(Instant::now());
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = status.closed() => return,
        }
        let began = Instant::now();
        let passed = match executor.exec(&task, &check.argv, check.timeout).await {
            Ok(outcome) => {
                if !outcome.passed() {
                    tracing::debug!(task = %task.task_id, code = ?outcome.exit_code,
                        output = %outcome.output, "health check failed");
                }
                outcome.passed()
            }
            Err(err) => {
                tracing::warn!(task = %task.task_id, %err, "health check could not run");
                false
            }
        };
        let before = tracker.status();
        let now = tracker.record(passed, began);
        if now != before {
            tracing::info!(task = %task.task_id, health = %now, "task health");
            if status.send(now).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(start_period: u64) -> HealthCheck {
        HealthCheck {
            argv: vec!["true".into()],
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            retries: 3,
            start_period: Duration::from_secs(start_period),
            start_interval: Duration::from_secs(5),
        }
    }

    #[test]
    fn retries_failures_in_a_row_make_a_task_unhealthy_and_a_pass_heals_the_streak() {
        let t0 = Instant::now();
        let mut t = Tracker::new(check(0), t0, Health::Starting);
        assert_eq!(t.record(false, t0), Health::Starting);
        assert_eq!(t.record(false, t0), Health::Starting);
        assert_eq!(t.record(true, t0), Health::Healthy);
        assert_eq!(t.record(false, t0), Health::Healthy);
        assert_eq!(t.record(false, t0), Health::Healthy);
        assert_eq!(t.record(false, t0), Health::Unhealthy);
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_and_probe_at_the_start_interval() {
        let t0 = Instant::now();
        let mut t = Tracker::new(check(60), t0, Health::Starting);
        assert_eq!(t.next_delay(t0), Duration::from_secs(5));
        for _ in 0..5 {
            assert_eq!(t.record(false, t0), Health::Starting);
        }
        let late = t0 + Duration::from_secs(61);
        assert_eq!(t.next_delay(late), Duration::from_secs(30));
        t.record(false, late);
        t.record(false, late);
        assert_eq!(t.record(false, late), Health::Unhealthy);
    }
}

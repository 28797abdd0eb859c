//! `--update-*` and `--rollback-*` on `service create|update` (Docker's flags and defaults;
//! omitted = default on create, unchanged on update).

use std::time::Duration;

use clap::Args;

use crate::cli::output::parse_duration;
use crate::store::objects::{FailureAction, FailureRatio, UpdateConfig, UpdateOrder};

#[derive(Debug, Clone, Default, Args)]
pub struct UpdateConfigOpts {
    /// Maximum number of tasks updated simultaneously (0 to update all at once) (default 1).
    #[arg(long)]
    pub update_parallelism: Option<u64>,
    /// Delay between updates (ns|us|ms|s|m|h) (default 0s).
    #[arg(long, value_parser = parse_duration)]
    pub update_delay: Option<Duration>,
    /// Action on update failure ("pause", "continue", "rollback") (default "pause").
    #[arg(long, value_parser = parse_update_failure_action)]
    pub update_failure_action: Option<FailureAction>,
    /// Duration after each task update to monitor for failure (ns|us|ms|s|m|h) (default 5s).
    #[arg(long, value_parser = parse_duration)]
    pub update_monitor: Option<Duration>,
    /// Failure rate to tolerate during an update (default 0).
    #[arg(long, value_parser = parse_ratio)]
    pub update_max_failure_ratio: Option<FailureRatio>,
    /// Update order ("start-first", "stop-first") (default "stop-first").
    #[arg(long, value_parser = parse_order)]
    pub update_order: Option<UpdateOrder>,
    /// Maximum number of tasks rolled back simultaneously (0 to roll back all at once)
    /// (default 1).
    #[arg(long)]
    pub rollback_parallelism: Option<u64>,
    /// Delay between task rollbacks (ns|us|ms|s|m|h) (default 0s).
    #[arg(long, value_parser = parse_duration)]
    pub rollback_delay: Option<Duration>,
    /// Action on rollback failure ("pause", "continue") (default "pause").
    #[arg(long, value_parser = parse_rollback_failure_action)]
    pub rollback_failure_action: Option<FailureAction>,
    /// Duration after each task rollback to monitor for failure (ns|us|ms|s|m|h) (default 5s).
    #[arg(long, value_parser = parse_duration)]
    pub rollback_monitor: Option<Duration>,
    /// Failure rate to tolerate during a rollback (default 0).
    #[arg(long, value_parser = parse_ratio)]
    pub rollback_max_failure_ratio: Option<FailureRatio>,
    /// Rollback order ("start-first", "stop-first") (default "stop-first").
    #[arg(long, value_parser = parse_order)]
    pub rollback_order: Option<UpdateOrder>,
}

impl UpdateConfigOpts {
    /// Applies the flags given to the spec's update and rollback configs.
    pub fn apply(&self, update: &mut UpdateConfig, rollback: &mut UpdateConfig) {
        fn set<T: Clone>(to: &mut T, from: Option<&T>) {
            if let Some(v) = from {
                *to = v.clone();
            }
        }
        set(&mut update.parallelism, self.update_parallelism.as_ref());
        set(&mut update.delay, self.update_delay.as_ref());
        set(
            &mut update.failure_action,
            self.update_failure_action.as_ref(),
        );
        set(&mut update.monitor, self.update_monitor.as_ref());
        set(
            &mut update.max_failure_ratio,
            self.update_max_failure_ratio.as_ref(),
        );
        set(&mut update.order, self.update_order.as_ref());
        set(
            &mut rollback.parallelism,
            self.rollback_parallelism.as_ref(),
        );
        set(&mut rollback.delay, self.rollback_delay.as_ref());
        set(
            &mut rollback.failure_action,
            self.rollback_failure_action.as_ref(),
        );
        set(&mut rollback.monitor, self.rollback_monitor.as_ref());
        set(
            &mut rollback.max_failure_ratio,
            self.rollback_max_failure_ratio.as_ref(),
        );
        set(&mut rollback.order, self.rollback_order.as_ref());
    }
}

fn parse_update_failure_action(s: &str) -> Result<FailureAction, String> {
    FailureAction::parse(s)
        .ok_or_else(|| format!("invalid argument {s:?}: must be pause, continue or rollback"))
}

fn parse_rollback_failure_action(s: &str) -> Result<FailureAction, String> {
    match FailureAction::parse(s) {
        Some(a @ (FailureAction::Pause | FailureAction::Continue)) => Ok(a),
        _ => Err(format!("invalid argument {s:?}: must be pause or continue")),
    }
}

fn parse_order(s: &str) -> Result<UpdateOrder, String> {
    UpdateOrder::parse(s)
        .ok_or_else(|| format!("invalid argument {s:?}: must be start-first or stop-first"))
}

fn parse_ratio(s: &str) -> Result<FailureRatio, String> {
    match s.parse::<f32>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(FailureRatio(r)),
        _ => Err(format!(
            "invalid argument {s:?}: must be a number between 0 and 1"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_flags_given_change_the_configs() {
        let opts = UpdateConfigOpts {
            update_parallelism: Some(2),
            update_order: Some(UpdateOrder::StartFirst),
            rollback_failure_action: Some(FailureAction::Continue),
            ..UpdateConfigOpts::default()
        };
        let (mut update, mut rollback) = (UpdateConfig::default(), UpdateConfig::default());
        opts.apply(&mut update, &mut rollback);
        assert_eq!(update.parallelism, 2);
        assert_eq!(update.order, UpdateOrder::StartFirst);
        assert_eq!(update.monitor, Duration::from_secs(5));
        assert_eq!(rollback.failure_action, FailureAction::Continue);
        assert_eq!(rollback.parallelism, 1);
        assert!(parse_rollback_failure_action("rollback").is_err());
        assert!(parse_ratio("1.5").is_err());
    }
}

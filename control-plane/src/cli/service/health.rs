//! `--health-*` and `--no-healthcheck` on `service create|update`, as docker's
//! (`cli/command/service/opts.go`, `update.go`: `updateHealthcheck`). docs/health.md.

use std::time::Duration;

use clap::Args;

use super::super::output::{CliFailure, parse_duration};
use crate::store::objects::{ContainerSpec, HealthConfig, HealthTest};

#[derive(Debug, Clone, Default, Args)]
pub struct HealthOpts {
    /// Command to run to check health.
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s).
    #[arg(long, value_parser = parse_duration)]
    pub health_interval: Option<Duration>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s).
    #[arg(long, value_parser = parse_duration)]
    pub health_timeout: Option<Duration>,
    /// Consecutive failures needed to report unhealthy.
    #[arg(long)]
    pub health_retries: Option<u32>,
    /// Start period for the container to initialize before counting retries towards
    /// unstable (ms|s|m|h) (default 0s).
    #[arg(long, value_parser = parse_duration)]
    pub health_start_period: Option<Duration>,
    /// Time between running the check during the start period (ms|s|m|h) (default 0s).
    #[arg(long, value_parser = parse_duration)]
    pub health_start_interval: Option<Duration>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long)]
    pub no_healthcheck: bool,
}

impl HealthOpts {
    fn any_health_flag(&self) -> bool {
        self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
            || self.health_start_interval.is_some()
    }

    /// Applies the flags given to `container` (create: over nothing; update: over the
    /// service's check, as docker's `updateHealthcheck`).
    pub fn apply(&self, container: &mut ContainerSpec) -> Result<(), CliFailure> {
        if self.no_healthcheck {
            if self.any_health_flag() {
                return Err(CliFailure::Usage(
                    "--no-healthcheck conflicts with --health-* options".to_owned(),
                ));
            }
            container.health_check = Some(HealthConfig {
                test: HealthTest::None,
                ..HealthConfig::default()
            });
            return Ok(());
        }
        if !self.any_health_flag() {
            return Ok(());
        }
        let check = container
            .health_check
            .get_or_insert_with(HealthConfig::default);
        if check.test == HealthTest::None {
            check.test = HealthTest::Inherit;
        }
        if let Some(cmd) = &self.health_cmd {
            check.test = if cmd.is_empty() {
                HealthTest::Inherit
            } else {
                HealthTest::Shell(cmd.clone())
            };
        }
        if let Some(d) = self.health_interval {
            check.interval = d;
        }
        if let Some(d) = self.health_timeout {
            check.timeout = d;
        }
        if let Some(n) = self.health_retries {
            check.retries = n;
        }
        if let Some(d) = self.health_start_period {
            check.start_period = d;
        }
        if let Some(d) = self.health_start_interval {
            check.start_interval = d;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_make_a_shell_check_and_no_healthcheck_turns_it_off() {
        let mut c = ContainerSpec::default();
        let opts = HealthOpts {
            health_cmd: Some("cat /tmp/ok".into()),
            health_interval: Some(Duration::from_secs(1)),
            health_retries: Some(2),
            ..HealthOpts::default()
        };
        opts.apply(&mut c).expect("valid");
        let check = c.health_check.clone().expect("a check");
        assert_eq!(check.test, HealthTest::Shell("cat /tmp/ok".into()));
        assert_eq!(check.interval, Duration::from_secs(1));
        assert_eq!(check.retries, 2);
        // An update of one field keeps the others.
        let update = HealthOpts {
            health_timeout: Some(Duration::from_secs(3)),
            ..HealthOpts::default()
        };
        update.apply(&mut c).expect("valid");
        let check = c.health_check.clone().expect("a check");
        assert_eq!(check.test, HealthTest::Shell("cat /tmp/ok".into()));
        assert_eq!(check.timeout, Duration::from_secs(3));
        let off = HealthOpts {
            no_healthcheck: true,
            ..HealthOpts::default()
        };
        off.apply(&mut c).expect("valid");
        assert_eq!(c.health_check.expect("a check").test, HealthTest::None);
        let both = HealthOpts {
            no_healthcheck: true,
            health_retries: Some(1),
            ..HealthOpts::default()
        };
        assert!(both.apply(&mut ContainerSpec::default()).is_err());
    }
}

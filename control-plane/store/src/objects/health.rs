//! Health checks (Docker's `HEALTHCHECK` / `HealthConfig`) and what a task's check says
//! (docs/health.md).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Docker's defaults (moby `daemon/health.go`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_RETRIES: u32 = 3;
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);

/// What a check runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthTest {
    /// Docker's empty `Test`: the image's check, if it has one.
    #[default]
    Inherit,
    /// `NONE` (`--no-healthcheck`): no check, even if the image has one.
    None,
    /// `CMD`: a program and its arguments, run without a shell.
    Cmd(Vec<String>),
    /// `CMD-SHELL`: a line run by `/bin/sh -c`.
    Shell(String),
}

impl HealthTest {
    /// Docker's `Test` array: `[]`, `["NONE"]`, `["CMD", ...]`, `["CMD-SHELL", line]`.
    pub fn to_docker(&self) -> Vec<String> {
        match self {
            Self::Inherit => Vec::new(),
            Self::None => vec!["NONE".to_owned()],
            Self::Cmd(argv) => std::iter::once("CMD".to_owned())
                .chain(argv.iter().cloned())
                .collect(),
            Self::Shell(line) => vec!["CMD-SHELL".to_owned(), line.clone()],
        }
    }

    /// Reads Docker's `Test` array; a bare list without a kind is a `CMD` (as the image
    /// config's `Healthcheck` may be written).
    pub fn from_docker(test: &[String]) -> Result<Self, HealthTestError> {
        match test.split_first() {
            None => Ok(Self::Inherit),
            Some((kind, rest)) => match kind.as_str() {
                "NONE" => Ok(Self::None),
                "CMD" if !rest.is_empty() => Ok(Self::Cmd(rest.to_vec())),
                "CMD-SHELL" if rest.len() == 1 => Ok(Self::Shell(rest[0].clone())),
                "CMD" | "CMD-SHELL" => Err(HealthTestError(test.to_vec())),
                _ => Err(HealthTestError(test.to_vec())),
            },
        }
    }

    /// The probe's argv (`/bin/sh -c LINE` for a shell line); `None` when nothing runs.
    pub fn argv(&self) -> Option<Vec<String>> {
        match self {
            Self::Inherit | Self::None => None,
            Self::Cmd(argv) => Some(argv.clone()),
            Self::Shell(line) => Some(vec!["/bin/sh".to_owned(), "-c".to_owned(), line.clone()]),
        }
    }
}

/// A `Test` array Docker would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid healthcheck test {0:?}: expected [], [\"NONE\"], [\"CMD\", args...] or [\"CMD-SHELL\", command]"
)]
pub struct HealthTestError(pub Vec<String>);

/// `ContainerSpec.Healthcheck`: a zero duration or retry count means "the image's, else
/// Docker's default", as in Docker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    pub test: HealthTest,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
    pub start_interval: Duration,
}

impl HealthConfig {
    /// This config over `base` (the image's): the test and every field set here win.
    pub fn over(&self, base: Option<&HealthConfig>) -> HealthConfig {
        let base = base.cloned().unwrap_or_default();
        let pick = |mine: Duration, theirs: Duration| if mine.is_zero() { theirs } else { mine };
        HealthConfig {
            test: match &self.test {
                HealthTest::Inherit => base.test,
                test => test.clone(),
            },
            interval: pick(self.interval, base.interval),
            timeout: pick(self.timeout, base.timeout),
            retries: if self.retries == 0 {
                base.retries
            } else {
                self.retries
            },
            start_period: pick(self.start_period, base.start_period),
            start_interval: pick(self.start_interval, base.start_interval),
        }
    }

    /// What a task runs: `None` without a command; Docker's defaults for what is unset.
    pub fn effective(&self) -> Option<HealthCheck> {
        let argv = self.test.argv()?;
        let or = |d: Duration, default: Duration| if d.is_zero() { default } else { d };
        Some(HealthCheck {
            argv,
            interval: or(self.interval, DEFAULT_INTERVAL),
            timeout: or(self.timeout, DEFAULT_TIMEOUT),
            retries: if self.retries == 0 {
                DEFAULT_RETRIES
            } else {
                self.retries
            },
            start_period: self.start_period,
            start_interval: or(self.start_interval, DEFAULT_START_INTERVAL),
        })
    }
}

/// A check with every value decided: what the agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub argv: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
    pub start_interval: Duration,
}

/// What a task's check says (Docker's `State.Health.Status`); a task without a check has
/// none (`Option::None` in [`super::TaskStatus::health`]).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    #[default]
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_test_arrays_round_trip() {
        for test in [
            vec![],
            vec!["NONE".to_owned()],
            vec!["CMD".to_owned(), "cat".to_owned(), "/ok".to_owned()],
            vec!["CMD-SHELL".to_owned(), "cat /ok".to_owned()],
        ] {
            let typed = HealthTest::from_docker(&test).expect("valid");
            assert_eq!(typed.to_docker(), test);
        }
        assert!(HealthTest::from_docker(&["CMD".to_owned()]).is_err());
        assert!(HealthTest::from_docker(&["curl".to_owned()]).is_err());
    }

    #[test]
    fn the_service_overrides_the_image_and_docker_fills_the_rest() {
        let image = HealthConfig {
            test: HealthTest::Shell("wget -q localhost".into()),
            interval: Duration::from_secs(10),
            retries: 5,
            ..HealthConfig::default()
        };
        let service = HealthConfig {
            interval: Duration::from_secs(2),
            ..HealthConfig::default()
        };
        let check = service.over(Some(&image)).effective().expect("a check");
        assert_eq!(check.argv, ["/bin/sh", "-c", "wget -q localhost"]);
        assert_eq!(check.interval, Duration::from_secs(2));
        assert_eq!(check.retries, 5);
        assert_eq!(check.timeout, DEFAULT_TIMEOUT);
        assert_eq!(check.start_interval, DEFAULT_START_INTERVAL);
        let off = HealthConfig {
            test: HealthTest::None,
            ..HealthConfig::default()
        };
        assert_eq!(off.over(Some(&image)).effective(), None);
    }
}

//! The Engine API's `ContainerSpec.HealthCheck` ↔ the store's [`HealthConfig`]
//! (docs/health.md). Durations are nanoseconds; zero or absent means the image's.

use std::time::Duration;

use bollard_stubs::models as m;

use super::error::EngineError;
use crate::store::objects::{HealthConfig, HealthTest};

pub fn health_in(h: m::HealthConfig) -> Result<HealthConfig, EngineError> {
    let nanos = |what: &str, v: Option<i64>| -> Result<Duration, EngineError> {
        let v = v.unwrap_or(0);
        u64::try_from(v)
            .map(Duration::from_nanos)
            .map_err(|_| EngineError::bad_request(format!("Healthcheck.{what} can't be negative")))
    };
    let test = HealthTest::from_docker(&h.test.unwrap_or_default())
        .map_err(|e| EngineError::bad_request(e.to_string()))?;
    let retries = u32::try_from(h.retries.unwrap_or(0))
        .map_err(|_| EngineError::bad_request("Healthcheck.Retries can't be negative"))?;
    Ok(HealthConfig {
        test,
        interval: nanos("Interval", h.interval)?,
        timeout: nanos("Timeout", h.timeout)?,
        retries,
        start_period: nanos("StartPeriod", h.start_period)?,
        start_interval: nanos("StartInterval", h.start_interval)?,
    })
}

pub fn health_out(h: &HealthConfig) -> m::HealthConfig {
    let nanos =
        |d: Duration| (!d.is_zero()).then(|| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let test = h.test.to_docker();
    m::HealthConfig {
        test: (!test.is_empty()).then_some(test),
        interval: nanos(h.interval),
        timeout: nanos(h.timeout),
        retries: (h.retries != 0).then(|| i64::from(h.retries)),
        start_period: nanos(h.start_period),
        start_interval: nanos(h.start_interval),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_health_configs_round_trip() {
        let docker = m::HealthConfig {
            test: Some(vec!["CMD-SHELL".into(), "cat /tmp/ok".into()]),
            interval: Some(1_000_000_000),
            timeout: None,
            retries: Some(2),
            start_period: None,
            start_interval: None,
        };
        let ours = health_in(docker.clone()).expect("valid");
        assert_eq!(ours.test, HealthTest::Shell("cat /tmp/ok".into()));
        assert_eq!(health_out(&ours), docker);
        let bad = m::HealthConfig {
            test: Some(vec!["CURL".into()]),
            ..m::HealthConfig::default()
        };
        assert!(health_in(bad).is_err());
    }
}

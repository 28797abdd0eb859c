//! The image's own `HEALTHCHECK`: docker's image configuration carries it as
//! `config.Healthcheck` (durations in nanoseconds), an extension the OCI image spec does not
//! define and `oci_spec` does not read. A service that sets no check runs it; one that sets
//! some fields lays them over it; `--no-healthcheck` disables it (docs/health.md).

use std::time::Duration;

use serde::Deserialize;

use hive_store::objects::{HealthConfig, HealthTest};

#[derive(Debug, Default, Deserialize)]
struct ImageConfigJson {
    #[serde(default)]
    config: Option<RuntimeConfigJson>,
}

#[derive(Debug, Default, Deserialize)]
struct RuntimeConfigJson {
    #[serde(rename = "Healthcheck", default)]
    healthcheck: Option<HealthcheckJson>,
}

/// docker's `container.HealthConfig` as its image configuration writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct HealthcheckJson {
    test: Vec<String>,
    interval: i64,
    timeout: i64,
    start_period: i64,
    start_interval: i64,
    retries: i64,
}

/// Why an image's `Healthcheck` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageHealthError {
    #[error("its configuration is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("its Healthcheck: {0}")]
    Test(#[from] hive_store::objects::HealthTestError),
    #[error("its Healthcheck.{field} is negative or too large: {value}")]
    Value { field: &'static str, value: i64 },
}

/// The check of an image configuration (the config blob's bytes); `None` without one.
pub fn image_health_check(config: &[u8]) -> Result<Option<HealthConfig>, ImageHealthError> {
    let parsed: ImageConfigJson = serde_json::from_slice(config)?;
    let Some(check) = parsed.config.and_then(|c| c.healthcheck) else {
        return Ok(None);
    };
    let duration = |field: &'static str, value: i64| {
        u64::try_from(value)
            .map(Duration::from_nanos)
            .map_err(|_| ImageHealthError::Value { field, value })
    };
    Ok(Some(HealthConfig {
        test: HealthTest::from_docker(&check.test)?,
        interval: duration("Interval", check.interval)?,
        timeout: duration("Timeout", check.timeout)?,
        start_period: duration("StartPeriod", check.start_period)?,
        start_interval: duration("StartInterval", check.start_interval)?,
        retries: u32::try_from(check.retries).map_err(|_| ImageHealthError::Value {
            field: "Retries",
            value: check.retries,
        })?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dockerfile_healthcheck_is_read_from_the_image_configuration() {
        // As `docker build` writes `HEALTHCHECK --interval=5s --retries=2 CMD curl -f localhost`.
        let config = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["nginx"],
            "Healthcheck":{"Test":["CMD-SHELL","curl -f localhost"],"Interval":5000000000,
            "Retries":2}},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let check = image_health_check(config).expect("valid").expect("a check");
        assert_eq!(
            check.test,
            HealthTest::Shell("curl -f localhost".to_owned())
        );
        assert_eq!(check.interval, Duration::from_secs(5));
        assert_eq!(check.retries, 2);
        assert_eq!(
            check.timeout,
            Duration::ZERO,
            "unset: docker's default applies"
        );
    }

    #[test]
    fn an_image_without_a_check_or_with_a_broken_one() {
        let none = br#"{"config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        assert!(image_health_check(none).expect("valid").is_none());
        let broken = br#"{"config":{"Healthcheck":{"Test":["CMD"]}}}"#;
        assert!(matches!(
            image_health_check(broken),
            Err(ImageHealthError::Test(_))
        ));
        let negative = br#"{"config":{"Healthcheck":{"Test":["NONE"],"Interval":-1}}}"#;
        assert!(matches!(
            image_health_check(negative),
            Err(ImageHealthError::Value {
                field: "Interval",
                ..
            })
        ));
    }
}

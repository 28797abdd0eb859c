//! Health checks and task health, store ↔ wire (docs/health.md).

use super::wire::{WireError, duration, duration_of, enumeration};
use crate::api::pb;
use crate::store::objects::{Health, HealthConfig, HealthTest};

pub fn health_config(h: &HealthConfig) -> pb::HealthConfig {
    let (kind, command) = match &h.test {
        HealthTest::Inherit => (pb::HealthTestKind::HealthTestInherit, Vec::new()),
        HealthTest::None => (pb::HealthTestKind::HealthTestNone, Vec::new()),
        HealthTest::Cmd(argv) => (pb::HealthTestKind::HealthTestCmd, argv.clone()),
        HealthTest::Shell(line) => (pb::HealthTestKind::HealthTestCmdShell, vec![line.clone()]),
    };
    pb::HealthConfig {
        kind: kind.into(),
        command,
        interval: Some(duration(h.interval)),
        timeout: Some(duration(h.timeout)),
        retries: h.retries,
        start_period: Some(duration(h.start_period)),
        start_interval: Some(duration(h.start_interval)),
    }
}

pub fn health_config_of(h: pb::HealthConfig) -> Result<HealthConfig, WireError> {
    let kind: pb::HealthTestKind = enumeration("HealthConfig.kind", h.kind)?;
    let test = match kind {
        pb::HealthTestKind::HealthTestInherit => HealthTest::Inherit,
        pb::HealthTestKind::HealthTestNone => HealthTest::None,
        pb::HealthTestKind::HealthTestCmd => HealthTest::Cmd(h.command),
        pb::HealthTestKind::HealthTestCmdShell => {
            HealthTest::Shell(h.command.into_iter().next().unwrap_or_default())
        }
    };
    let zero = std::time::Duration::ZERO;
    Ok(HealthConfig {
        test,
        interval: duration_of("HealthConfig.interval", h.interval.as_ref(), zero)?,
        timeout: duration_of("HealthConfig.timeout", h.timeout.as_ref(), zero)?,
        retries: h.retries,
        start_period: duration_of("HealthConfig.start_period", h.start_period.as_ref(), zero)?,
        start_interval: duration_of(
            "HealthConfig.start_interval",
            h.start_interval.as_ref(),
            zero,
        )?,
    })
}

pub fn task_health(h: Health) -> pb::TaskHealth {
    match h {
        Health::Starting => pb::TaskHealth::Starting,
        Health::Healthy => pb::TaskHealth::Healthy,
        Health::Unhealthy => pb::TaskHealth::Unhealthy,
    }
}

pub fn task_health_of(value: Option<i32>) -> Result<Option<Health>, WireError> {
    let Some(value) = value else { return Ok(None) };
    Ok(Some(
        match enumeration::<pb::TaskHealth>("TaskStatus.health", value)? {
            pb::TaskHealth::Starting => Health::Starting,
            pb::TaskHealth::Healthy => Health::Healthy,
            pb::TaskHealth::Unhealthy => Health::Unhealthy,
        },
    ))
}

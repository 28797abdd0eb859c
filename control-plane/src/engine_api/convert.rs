//! hive's objects to the Engine API's models (`bollard-stubs`) and back: the one place the
//! two meet. Requests are checked here, once, into store types; what hive does not model is
//! either refused (jobs) or named in the answer's `Warnings`, never dropped silently.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bollard_stubs::models as m;

use super::error::EngineError;
use crate::api::pb;
use crate::store::objects::{
    Annotations, Config, ContainerSpec, EndpointMode, EndpointSpec, FailureAction, FailureRatio,
    IpamConfig, IpamOptions, Network, NetworkAttachmentConfig, NetworkSpec, Placement,
    PlacementPreference, PortConfig, Protocol, ProtocolError, PublishMode, ResourceRequirements,
    Resources, RestartCondition, RestartPolicy, Secret, Service, ServiceMode, ServiceSpec, Task,
    TaskSpec, TaskState, Timestamp, UpdateConfig, UpdateOrder, UpdateState, UpdateStatus,
};

/// The overlay driver, the only one a swarm scope network may have in hive.
pub const OVERLAY: &str = "overlay";

/// RFC 3339 with nanoseconds, as Go's `time.Time` marshals.
pub fn date(t: Timestamp) -> Option<String> {
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
    at.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn pb_date(t: Option<&pb::Timestamp>) -> Option<String> {
    t.and_then(|t| {
        date(Timestamp {
            seconds: t.seconds,
            nanos: t.nanos,
        })
    })
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

pub(crate) fn duration(
    what: &str,
    nanos: Option<i64>,
    default: Duration,
) -> Result<Duration, EngineError> {
    match nanos {
        None => Ok(default),
        Some(n) => u64::try_from(n)
            .map(Duration::from_nanos)
            .map_err(|_| EngineError::bad_request(format!("{what} can't be negative"))),
    }
}

fn labels(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn labels_in(map: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    map.unwrap_or_default().into_iter().collect()
}

fn version(index: u64) -> Option<m::ObjectVersion> {
    Some(m::ObjectVersion { index: Some(index) })
}

// ---------------------------------------------------------------------------------------------
// Services

/// A service spec of the API as hive stores it, and the warnings for what hive ignores.
pub fn service_spec_in(spec: m::ServiceSpec) -> Result<(ServiceSpec, Vec<String>), EngineError> {
    let mut warnings = Vec::new();
    let mut ignored = |what: &str, set: bool| {
        if set {
            warnings.push(format!("hive ignores {what}: it does not support it yet"));
        }
    };
    let update_config = match spec.update_config {
        None => UpdateConfig::default(),
        Some(c) => update_config_in(
            "UpdateConfig",
            c.parallelism,
            c.delay,
            c.failure_action.map(|a| a.to_string()),
            c.monitor,
            c.max_failure_ratio,
            c.order.map(|o| o.to_string()),
        )?,
    };
    let rollback_config = match spec.rollback_config {
        None => UpdateConfig::default(),
        Some(c) => update_config_in(
            "RollbackConfig",
            c.parallelism,
            c.delay,
            c.failure_action.map(|a| a.to_string()),
            c.monitor,
            c.max_failure_ratio,
            c.order.map(|o| o.to_string()),
        )?,
    };
    let mode = match spec.mode {
        None => ServiceMode::default(),
        Some(m::ServiceSpecMode {
            replicated_job: Some(_),
            ..
        })
        | Some(m::ServiceSpecMode {
            global_job: Some(_),
            ..
        }) => {
            return Err(EngineError::bad_request(
                "hive does not run jobs (replicated-job, global-job) yet; use replicated or global",
            ));
        }
        Some(m::ServiceSpecMode {
            global: Some(_), ..
        }) => ServiceMode::Global,
        Some(m::ServiceSpecMode { replicated, .. }) => {
            let replicas = replicated.and_then(|r| r.replicas).unwrap_or(1);
            let replicas = u64::try_from(replicas).map_err(|_| {
                EngineError::bad_request(format!(
                    "invalid replicas value {replicas}: it can't be negative"
                ))
            })?;
            ServiceMode::Replicated { replicas }
        }
    };
    let template = spec.task_template.unwrap_or_default();
    let mut container = template.container_spec.unwrap_or_default();
    ignored(
        "ContainerSpec.Mounts",
        container.mounts.as_ref().is_some_and(|v| !v.is_empty()),
    );
    ignored(
        "ContainerSpec.Ulimits",
        container.ulimits.as_ref().is_some_and(|v| !v.is_empty()),
    );
    let (secrets, configs) = super::routes::secrets::references_in(
        container.secrets.take().unwrap_or_default(),
        container.configs.take().unwrap_or_default(),
    );
    let health_check = container
        .health_check
        .clone()
        .map(super::health::health_in)
        .transpose()?;
    ignored("ContainerSpec.TTY", container.tty == Some(true));
    ignored("TaskTemplate.LogDriver", template.log_driver.is_some());
    let placement = template.placement.unwrap_or_default();
    let restart = template.restart_policy.unwrap_or_default();
    let default_restart = RestartPolicy::default();
    let resources = template.resources.unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    let reservations = resources.reservations.unwrap_or_default();
    // `TaskTemplate.Networks`; the deprecated `Spec.Networks` when that is empty.
    let networks = template
        .networks
        .filter(|n| !n.is_empty())
        .or(spec.networks)
        .unwrap_or_default()
        .into_iter()
        .map(|n| NetworkAttachmentConfig {
            target: n.target.unwrap_or_default(),
            aliases: n.aliases.unwrap_or_default(),
        })
        .collect();
    let endpoint = spec.endpoint_spec.unwrap_or_default();
    let store = ServiceSpec {
        update_config,
        rollback_config,
        annotations: Annotations {
            name: spec.name.unwrap_or_default(),
            labels: labels_in(spec.labels),
        },
        mode,
        task_template: TaskSpec {
            container: ContainerSpec {
                image: container.image.unwrap_or_default(),
                command: container.command.unwrap_or_default(),
                args: container.args.unwrap_or_default(),
                env: container.env.unwrap_or_default(),
                stop_grace_period: duration(
                    "StopGracePeriod",
                    container.stop_grace_period,
                    ContainerSpec::default().stop_grace_period,
                )?,
                hostname: container.hostname.unwrap_or_default(),
                workdir: container.dir.unwrap_or_default(),
                user: container.user.unwrap_or_default(),
                init: container.init,
                read_only: container.read_only.unwrap_or(false),
                cap_add: container.capability_add.unwrap_or_default(),
                cap_drop: container.capability_drop.unwrap_or_default(),
                sysctls: container.sysctls.unwrap_or_default().into_iter().collect(),
                stop_signal: container.stop_signal.unwrap_or_default(),
                secrets,
                configs,
                health_check,
                // Mounts and ulimits are warned about above.
                ..ContainerSpec::default()
            },
            resources: ResourceRequirements {
                limits: Resources {
                    nano_cpus: limits.nano_cpus.unwrap_or(0),
                    memory_bytes: limits.memory_bytes.unwrap_or(0),
                },
                reservations: Resources {
                    nano_cpus: reservations.nano_cpus.unwrap_or(0),
                    memory_bytes: reservations.memory_bytes.unwrap_or(0),
                },
            },
            restart_policy: RestartPolicy {
                condition: match restart.condition {
                    None | Some(m::TaskSpecRestartPolicyConditionEnum::EMPTY) => {
                        default_restart.condition
                    }
                    Some(m::TaskSpecRestartPolicyConditionEnum::NONE) => RestartCondition::None,
                    Some(m::TaskSpecRestartPolicyConditionEnum::ON_FAILURE) => {
                        RestartCondition::OnFailure
                    }
                    Some(m::TaskSpecRestartPolicyConditionEnum::ANY) => RestartCondition::Any,
                },
                delay: duration("RestartPolicy.Delay", restart.delay, default_restart.delay)?,
                max_attempts: u64::try_from(restart.max_attempts.unwrap_or(0)).map_err(|_| {
                    EngineError::bad_request("RestartPolicy.MaxAttempts can't be negative")
                })?,
                window: duration(
                    "RestartPolicy.Window",
                    restart.window,
                    default_restart.window,
                )?,
            },
            placement: Placement {
                constraints: placement.constraints.unwrap_or_default(),
                preferences: placement
                    .preferences
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| PlacementPreference {
                        spread: p
                            .spread
                            .and_then(|s| s.spread_descriptor)
                            .unwrap_or_default(),
                    })
                    .collect(),
                max_replicas: u64::try_from(placement.max_replicas.unwrap_or(0)).map_err(|_| {
                    EngineError::bad_request("Placement.MaxReplicas can't be negative")
                })?,
            },
            networks,
            force_update: template.force_update.unwrap_or(0),
        },
        endpoint_spec: EndpointSpec {
            mode: match endpoint.mode {
                Some(m::EndpointSpecModeEnum::DNSRR) => EndpointMode::Dnsrr,
                _ => EndpointMode::Vip,
            },
            ports: endpoint
                .ports
                .unwrap_or_default()
                .into_iter()
                .map(port_in)
                .collect::<Result<_, _>>()?,
        },
    };
    Ok((store, warnings))
}

fn port_number(what: &str, value: Option<i64>) -> Result<u16, EngineError> {
    let value = value.unwrap_or(0);
    u16::try_from(value)
        .map_err(|_| EngineError::bad_request(format!("invalid {what} {value}: use 0 to 65535")))
}

fn port_in(port: m::EndpointPortConfig) -> Result<PortConfig, EngineError> {
    Ok(PortConfig {
        name: port.name.unwrap_or_default(),
        protocol: match port.protocol {
            Some(m::EndpointPortConfigProtocolEnum::UDP) => Protocol::Udp,
            Some(m::EndpointPortConfigProtocolEnum::SCTP) => {
                let port = port.target_port.unwrap_or(0);
                let port = u16::try_from(port).unwrap_or(0);
                return Err(EngineError::bad_request(
                    ProtocolError::Sctp { port }.to_string(),
                ));
            }
            _ => Protocol::Tcp,
        },
        target_port: port_number("TargetPort", port.target_port)?,
        published_port: port_number("PublishedPort", port.published_port)?,
        publish_mode: match port.publish_mode {
            Some(m::EndpointPortConfigPublishModeEnum::HOST) => PublishMode::Host,
            _ => PublishMode::Ingress,
        },
    })
}

fn port_out(port: &PortConfig) -> m::EndpointPortConfig {
    m::EndpointPortConfig {
        name: (!port.name.is_empty()).then(|| port.name.clone()),
        protocol: Some(match port.protocol {
            Protocol::Tcp => m::EndpointPortConfigProtocolEnum::TCP,
            Protocol::Udp => m::EndpointPortConfigProtocolEnum::UDP,
        }),
        target_port: Some(i64::from(port.target_port)),
        published_port: Some(i64::from(port.published_port)),
        publish_mode: Some(match port.publish_mode {
            PublishMode::Ingress => m::EndpointPortConfigPublishModeEnum::INGRESS,
            PublishMode::Host => m::EndpointPortConfigPublishModeEnum::HOST,
        }),
    }
}

fn endpoint_spec_out(spec: &EndpointSpec) -> m::EndpointSpec {
    m::EndpointSpec {
        mode: Some(match spec.mode {
            EndpointMode::Vip => m::EndpointSpecModeEnum::VIP,
            EndpointMode::Dnsrr => m::EndpointSpecModeEnum::DNSRR,
        }),
        ports: (!spec.ports.is_empty()).then(|| spec.ports.iter().map(port_out).collect()),
    }
}

pub fn task_spec_out(spec: &TaskSpec) -> m::TaskSpec {
    let c = &spec.container;
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let r = &spec.restart_policy;
    m::TaskSpec {
        container_spec: Some(m::TaskSpecContainerSpec {
            image: Some(c.image.clone()),
            command: non_empty(&c.command),
            args: non_empty(&c.args),
            env: non_empty(&c.env),
            hostname: (!c.hostname.is_empty()).then(|| c.hostname.clone()),
            dir: (!c.workdir.is_empty()).then(|| c.workdir.clone()),
            stop_grace_period: Some(nanos(c.stop_grace_period)),
            user: (!c.user.is_empty()).then(|| c.user.clone()),
            init: c.init,
            read_only: c.read_only.then_some(true),
            capability_add: non_empty(&c.cap_add),
            capability_drop: non_empty(&c.cap_drop),
            sysctls: (!c.sysctls.is_empty()).then(|| {
                c.sysctls
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
            stop_signal: (!c.stop_signal.is_empty()).then(|| c.stop_signal.clone()),
            secrets: super::routes::secrets::secret_references_out(&c.secrets),
            configs: super::routes::secrets::config_references_out(&c.configs),
            health_check: c.health_check.as_ref().map(super::health::health_out),
            ..Default::default()
        }),
        resources: Some(m::TaskSpecResources {
            limits: Some(m::Limit {
                nano_cpus: Some(spec.resources.limits.nano_cpus).filter(|v| *v != 0),
                memory_bytes: Some(spec.resources.limits.memory_bytes).filter(|v| *v != 0),
                pids: None,
            }),
            reservations: Some(m::ResourceObject {
                nano_cpus: Some(spec.resources.reservations.nano_cpus).filter(|v| *v != 0),
                memory_bytes: Some(spec.resources.reservations.memory_bytes).filter(|v| *v != 0),
                generic_resources: None,
            }),
            ..Default::default()
        }),
        restart_policy: Some(m::TaskSpecRestartPolicy {
            condition: Some(match r.condition {
                RestartCondition::None => m::TaskSpecRestartPolicyConditionEnum::NONE,
                RestartCondition::OnFailure => m::TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
                RestartCondition::Any => m::TaskSpecRestartPolicyConditionEnum::ANY,
            }),
            delay: Some(nanos(r.delay)),
            max_attempts: Some(i64::try_from(r.max_attempts).unwrap_or(i64::MAX)),
            window: Some(nanos(r.window)),
        }),
        placement: Some(m::TaskSpecPlacement {
            constraints: non_empty(&spec.placement.constraints),
            preferences: (!spec.placement.preferences.is_empty()).then(|| {
                spec.placement
                    .preferences
                    .iter()
                    .map(|p| m::TaskSpecPlacementPreferences {
                        spread: Some(m::TaskSpecPlacementSpread {
                            spread_descriptor: Some(p.spread.clone()),
                        }),
                    })
                    .collect()
            }),
            max_replicas: (spec.placement.max_replicas > 0)
                .then(|| i64::try_from(spec.placement.max_replicas).unwrap_or(i64::MAX)),
            ..Default::default()
        }),
        networks: (!spec.networks.is_empty()).then(|| {
            spec.networks
                .iter()
                .map(|n| m::NetworkAttachmentConfig {
                    target: Some(n.target.clone()),
                    aliases: non_empty(&n.aliases),
                    driver_opts: None,
                })
                .collect()
        }),
        force_update: Some(spec.force_update),
        runtime: Some("container".to_owned()),
        ..Default::default()
    }
}

/// An `UpdateConfig` or `RollbackConfig` of the API (both have the same fields); what is not
/// given keeps Swarm's default.
fn update_config_in(
    what: &str,
    parallelism: Option<i64>,
    delay: Option<i64>,
    failure_action: Option<String>,
    monitor: Option<i64>,
    max_failure_ratio: Option<f64>,
    order: Option<String>,
) -> Result<UpdateConfig, EngineError> {
    let defaults = UpdateConfig::default();
    let invalid = |field: &str, value: String| {
        EngineError::bad_request(format!("{what}.{field}: invalid value {value}"))
    };
    let nanos = |field: &str, value: Option<i64>, default: std::time::Duration| match value {
        None => Ok(default),
        Some(n) => u64::try_from(n)
            .map(std::time::Duration::from_nanos)
            .map_err(|_| invalid(field, n.to_string())),
    };
    Ok(UpdateConfig {
        parallelism: match parallelism {
            None => defaults.parallelism,
            Some(p) => u64::try_from(p).map_err(|_| invalid("Parallelism", p.to_string()))?,
        },
        delay: nanos("Delay", delay, defaults.delay)?,
        failure_action: match failure_action.as_deref() {
            None | Some("") => defaults.failure_action,
            Some(a) => {
                FailureAction::parse(a).ok_or_else(|| invalid("FailureAction", a.to_owned()))?
            }
        },
        monitor: nanos("Monitor", monitor, defaults.monitor)?,
        max_failure_ratio: match max_failure_ratio {
            None => defaults.max_failure_ratio,
            Some(r) if (0.0..=1.0).contains(&r) =>
            {
                #[allow(clippy::cast_possible_truncation)]
                FailureRatio(r as f32)
            }
            Some(r) => return Err(invalid("MaxFailureRatio", r.to_string())),
        },
        order: match order.as_deref() {
            None | Some("") => defaults.order,
            Some(o) => UpdateOrder::parse(o).ok_or_else(|| invalid("Order", o.to_owned()))?,
        },
    })
}

/// `Delay` and `Monitor`: Go leaves a zero out (`omitempty`).
fn nanos_out(d: std::time::Duration) -> Option<i64> {
    (!d.is_zero()).then(|| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn update_config_out(c: &UpdateConfig) -> m::ServiceSpecUpdateConfig {
    m::ServiceSpecUpdateConfig {
        parallelism: Some(i64::try_from(c.parallelism).unwrap_or(i64::MAX)),
        delay: nanos_out(c.delay),
        failure_action: Some(match c.failure_action {
            FailureAction::Pause => m::ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
            FailureAction::Continue => m::ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
            FailureAction::Rollback => m::ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
        }),
        monitor: nanos_out(c.monitor),
        max_failure_ratio: Some(f64::from(c.max_failure_ratio.0)),
        order: Some(match c.order {
            UpdateOrder::StopFirst => m::ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
            UpdateOrder::StartFirst => m::ServiceSpecUpdateConfigOrderEnum::START_FIRST,
        }),
    }
}

fn rollback_config_out(c: &UpdateConfig) -> m::ServiceSpecRollbackConfig {
    m::ServiceSpecRollbackConfig {
        parallelism: Some(i64::try_from(c.parallelism).unwrap_or(i64::MAX)),
        delay: nanos_out(c.delay),
        failure_action: Some(match c.failure_action {
            FailureAction::Continue => m::ServiceSpecRollbackConfigFailureActionEnum::CONTINUE,
            FailureAction::Pause | FailureAction::Rollback => {
                m::ServiceSpecRollbackConfigFailureActionEnum::PAUSE
            }
        }),
        monitor: nanos_out(c.monitor),
        max_failure_ratio: Some(f64::from(c.max_failure_ratio.0)),
        order: Some(match c.order {
            UpdateOrder::StopFirst => m::ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
            UpdateOrder::StartFirst => m::ServiceSpecRollbackConfigOrderEnum::START_FIRST,
        }),
    }
}

pub fn service_spec_out(spec: &ServiceSpec) -> m::ServiceSpec {
    m::ServiceSpec {
        name: Some(spec.annotations.name.clone()),
        labels: Some(labels(&spec.annotations.labels)),
        task_template: Some(task_spec_out(&spec.task_template)),
        mode: Some(match spec.mode {
            ServiceMode::Replicated { replicas } => m::ServiceSpecMode {
                replicated: Some(m::ServiceSpecModeReplicated {
                    replicas: Some(i64::try_from(replicas).unwrap_or(i64::MAX)),
                }),
                ..Default::default()
            },
            ServiceMode::Global => m::ServiceSpecMode {
                global: Some(HashMap::new()),
                ..Default::default()
            },
        }),
        endpoint_spec: Some(endpoint_spec_out(&spec.endpoint_spec)),
        update_config: Some(update_config_out(&spec.update_config)),
        rollback_config: Some(rollback_config_out(&spec.rollback_config)),
        ..Default::default()
    }
}

/// A service as hive shows it everywhere (`GET /services`, `hive service inspect`): Docker's
/// object with its `PreviousSpec`, which `bollard-stubs` does not model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServiceObject {
    #[serde(flatten)]
    pub service: m::Service,
    #[serde(
        rename = "PreviousSpec",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub previous_spec: Option<m::ServiceSpec>,
}

/// `status`: the task counts of `GET /services?status=true`.
pub fn service_out(service: &Service, status: Option<(u64, u64)>) -> ServiceObject {
    ServiceObject {
        service: service_model(service, status),
        previous_spec: service.previous_spec.as_ref().map(service_spec_out),
    }
}

fn service_model(service: &Service, status: Option<(u64, u64)>) -> m::Service {
    m::Service {
        id: Some(service.id.clone()),
        version: version(service.meta.version),
        created_at: date(service.meta.created_at),
        updated_at: date(service.meta.updated_at),
        spec: Some(service_spec_out(&service.spec)),
        endpoint: Some(match &service.endpoint {
            Some(endpoint) => m::ServiceEndpoint {
                spec: Some(endpoint_spec_out(&endpoint.spec)),
                ports: (!endpoint.ports.is_empty())
                    .then(|| endpoint.ports.iter().map(port_out).collect()),
                virtual_ips: (!endpoint.virtual_ips.is_empty()).then(|| {
                    endpoint
                        .virtual_ips
                        .iter()
                        .map(|v| m::ServiceEndpointVirtualIps {
                            network_id: Some(v.network_id.clone()),
                            addr: Some(v.addr.to_string()),
                        })
                        .collect()
                }),
            },
            None => m::ServiceEndpoint {
                spec: Some(endpoint_spec_out(&service.spec.endpoint_spec)),
                ..Default::default()
            },
        }),
        update_status: service.update_status.as_ref().map(update_status_out),
        service_status: status.map(|(running, desired)| m::ServiceServiceStatus {
            running_tasks: Some(running),
            desired_tasks: Some(desired),
            completed_tasks: Some(0),
        }),
        ..Default::default()
    }
}

/// Where the last update or rollback stands, as `docker service inspect` and the CLI's
/// `service update` progress read it.
pub fn update_status_out(status: &UpdateStatus) -> m::ServiceUpdateStatus {
    m::ServiceUpdateStatus {
        state: Some(match status.state {
            UpdateState::Updating => m::ServiceUpdateStatusStateEnum::UPDATING,
            UpdateState::Paused => m::ServiceUpdateStatusStateEnum::PAUSED,
            UpdateState::Completed => m::ServiceUpdateStatusStateEnum::COMPLETED,
            UpdateState::RollbackStarted => m::ServiceUpdateStatusStateEnum::ROLLBACK_STARTED,
            UpdateState::RollbackPaused => m::ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED,
            UpdateState::RollbackCompleted => m::ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED,
        }),
        started_at: status.started_at.and_then(date),
        completed_at: status.completed_at.and_then(date),
        message: (!status.message.is_empty()).then(|| status.message.clone()),
    }
}

// ---------------------------------------------------------------------------------------------
// Tasks

pub fn task_state_out(state: TaskState) -> m::TaskState {
    match state {
        TaskState::New => m::TaskState::NEW,
        TaskState::Pending => m::TaskState::PENDING,
        TaskState::Assigned => m::TaskState::ASSIGNED,
        TaskState::Accepted => m::TaskState::ACCEPTED,
        TaskState::Preparing => m::TaskState::PREPARING,
        TaskState::Ready => m::TaskState::READY,
        TaskState::Starting => m::TaskState::STARTING,
        TaskState::Running => m::TaskState::RUNNING,
        TaskState::Complete => m::TaskState::COMPLETE,
        TaskState::Shutdown => m::TaskState::SHUTDOWN,
        TaskState::Failed => m::TaskState::FAILED,
        TaskState::Rejected => m::TaskState::REJECTED,
        TaskState::Remove => m::TaskState::REMOVE,
        TaskState::Orphaned => m::TaskState::ORPHANED,
    }
}

pub fn task_out(task: &Task) -> m::Task {
    let status = &task.status;
    m::Task {
        id: Some(task.id.clone()),
        version: version(task.meta.version),
        created_at: date(task.meta.created_at),
        updated_at: date(task.meta.updated_at),
        labels: Some(HashMap::new()),
        spec: Some(task_spec_out(&task.spec)),
        service_id: Some(task.service_id.clone()),
        slot: Some(i64::try_from(task.slot).unwrap_or(i64::MAX)),
        node_id: task.node_id.clone(),
        status: Some(m::TaskStatus {
            timestamp: date(status.timestamp),
            state: Some(task_state_out(status.state)),
            message: Some(status.message.clone()),
            err: (!status.err.is_empty()).then(|| status.err.clone()),
            container_status: status.runtime.as_ref().map(|r| m::ContainerStatus {
                container_id: Some(r.runtime_id.clone()),
                pid: Some(i64::from(r.pid)),
                exit_code: Some(i64::from(r.exit_code)),
            }),
            port_status: Some(m::PortStatus {
                ports: (!status.port_status.is_empty())
                    .then(|| status.port_status.iter().map(port_out).collect()),
            }),
        }),
        desired_state: Some(task_state_out(task.desired_state)),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes

pub fn role_out(role: pb::Role) -> m::NodeSpecRoleEnum {
    match role {
        pb::Role::Worker => m::NodeSpecRoleEnum::WORKER,
        pb::Role::Manager => m::NodeSpecRoleEnum::MANAGER,
    }
}

pub fn role_in(role: Option<m::NodeSpecRoleEnum>) -> Option<pb::Role> {
    match role? {
        m::NodeSpecRoleEnum::WORKER => Some(pb::Role::Worker),
        m::NodeSpecRoleEnum::MANAGER => Some(pb::Role::Manager),
        m::NodeSpecRoleEnum::EMPTY => None,
    }
}

pub fn availability_in(a: Option<m::NodeSpecAvailabilityEnum>) -> Option<pb::Availability> {
    match a? {
        m::NodeSpecAvailabilityEnum::ACTIVE => Some(pb::Availability::Active),
        m::NodeSpecAvailabilityEnum::PAUSE => Some(pb::Availability::Pause),
        m::NodeSpecAvailabilityEnum::DRAIN => Some(pb::Availability::Drain),
        m::NodeSpecAvailabilityEnum::EMPTY => None,
    }
}

/// A node as hive shows it everywhere (`GET /nodes`, `hive node inspect`): Docker's object,
/// with `Description.DataplaneError` when the node's data plane failed to load (hive's own;
/// Docker's clients ignore it, and a node whose data plane loaded has none).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeObject {
    #[serde(flatten)]
    pub node: m::Node,
    #[serde(
        rename = "Description",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub description: Option<NodeDescriptionObject>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeDescriptionObject {
    #[serde(flatten)]
    pub description: m::NodeDescription,
    #[serde(
        rename = "DataplaneError",
        skip_serializing_if = "String::is_empty",
        default
    )]
    pub dataplane_error: String,
}

pub fn node_out(node: &pb::Node) -> NodeObject {
    let mut model = node_model(node);
    NodeObject {
        description: model
            .description
            .take()
            .map(|description| NodeDescriptionObject {
                description,
                dataplane_error: node
                    .description
                    .as_ref()
                    .map(|d| d.dataplane_error.clone())
                    .unwrap_or_default(),
            }),
        node: model,
    }
}

fn node_model(node: &pb::Node) -> m::Node {
    let spec = node.spec.clone().unwrap_or_default();
    let description = node.description.clone().unwrap_or_default();
    let status = node.status.clone().unwrap_or_default();
    m::Node {
        id: Some(node.id.clone()),
        version: version(node.version),
        created_at: pb_date(node.created_at.as_ref()),
        updated_at: pb_date(node.updated_at.as_ref()),
        spec: Some(m::NodeSpec {
            name: (!spec.name.is_empty()).then(|| spec.name.clone()),
            labels: Some(spec.labels.clone().into_iter().collect()),
            role: Some(role_out(spec.desired_role())),
            availability: Some(match spec.availability() {
                pb::Availability::Active => m::NodeSpecAvailabilityEnum::ACTIVE,
                pb::Availability::Pause => m::NodeSpecAvailabilityEnum::PAUSE,
                pb::Availability::Drain => m::NodeSpecAvailabilityEnum::DRAIN,
            }),
        }),
        description: Some(m::NodeDescription {
            hostname: Some(description.hostname.clone()),
            platform: Some(m::Platform {
                architecture: Some(description.architecture.clone()),
                os: Some(description.os.clone()),
            }),
            resources: Some(m::ResourceObject {
                nano_cpus: Some(description.nano_cpus),
                memory_bytes: Some(description.memory_bytes),
                generic_resources: None,
            }),
            engine: Some(m::EngineDescription {
                engine_version: Some(description.engine_version.clone()),
                // hive's agents report no engine labels (Go leaves an empty map out).
                labels: None,
                plugins: None,
            }),
            tls_info: node.tls_info.as_ref().map(tls_info_out),
        }),
        status: Some(m::NodeStatus {
            state: Some(match status.state() {
                pb::NodeState::Unknown => m::NodeState::UNKNOWN,
                pb::NodeState::Down => m::NodeState::DOWN,
                pb::NodeState::Ready => m::NodeState::READY,
                pb::NodeState::Disconnected => m::NodeState::DISCONNECTED,
            }),
            message: (!status.message.is_empty()).then(|| status.message.clone()),
            addr: Some(status.addr.clone()),
        }),
        manager_status: node.manager_status.as_ref().map(|ms| m::ManagerStatus {
            leader: Some(ms.leader),
            reachability: Some(match ms.reachability() {
                pb::Reachability::Unknown => m::Reachability::UNKNOWN,
                pb::Reachability::Unreachable => m::Reachability::UNREACHABLE,
                pb::Reachability::Reachable => m::Reachability::REACHABLE,
            }),
            addr: Some(ms.addr.clone()),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Networks

pub fn network_out(network: &Network) -> m::Network {
    let spec = &network.spec;
    let configs = if network.ipam.is_empty() {
        &spec.ipam.configs
    } else {
        &network.ipam
    };
    m::Network {
        name: Some(spec.annotations.name.clone()),
        id: Some(network.id.clone()),
        created: date(network.meta.created_at),
        scope: Some("swarm".to_owned()),
        driver: Some(spec.driver.clone()),
        enable_ipv4: Some(true),
        enable_ipv6: Some(false),
        ipam: Some(m::Ipam {
            driver: Some(if spec.ipam.driver.is_empty() {
                "default".to_owned()
            } else {
                spec.ipam.driver.clone()
            }),
            config: Some(
                configs
                    .iter()
                    .map(|c| m::IpamConfig {
                        subnet: Some(c.subnet.to_string()),
                        ip_range: c.range.map(|r| r.to_string()),
                        gateway: c.gateway.map(|g| g.to_string()),
                        auxiliary_addresses: None,
                    })
                    .collect(),
            ),
            options: None,
        }),
        internal: Some(spec.internal),
        attachable: Some(spec.attachable),
        ingress: Some(spec.ingress),
        config_only: Some(false),
        options: Some({
            let mut options = labels(&spec.driver_options);
            // What dockerd's overlay driver shows of the VNI it allocated.
            if let Some(vni) = network.vni {
                options.insert(VXLAN_ID_OPTION.to_owned(), vni.to_string());
            }
            options
        }),
        labels: Some(labels(&spec.annotations.labels)),
        ..Default::default()
    }
}

/// The overlay driver's option naming a network's VXLAN identifier.
pub const VXLAN_ID_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// `POST /networks/create` as hive stores it. Only swarm-scope overlay networks exist here.
pub fn network_spec_in(request: m::NetworkCreateRequest) -> Result<NetworkSpec, EngineError> {
    let driver = request.driver.unwrap_or_else(|| OVERLAY.to_owned());
    if driver != OVERLAY {
        return Err(EngineError::bad_request(format!(
            "hive has swarm-scope overlay networks only; driver \"{driver}\" is not supported, use -d overlay"
        )));
    }
    if request
        .scope
        .as_deref()
        .is_some_and(|s| !s.is_empty() && s != "swarm")
    {
        return Err(EngineError::bad_request(
            "hive's networks are swarm-scoped; use --scope swarm or leave it out",
        ));
    }
    if request.enable_ipv6 == Some(true) {
        return Err(EngineError::bad_request(
            "hive's overlay networks are IPv4 only",
        ));
    }
    if request.config_only == Some(true) || request.config_from.is_some() {
        return Err(EngineError::bad_request(
            "configuration-only networks are not supported by hive",
        ));
    }
    let ipam = request.ipam.unwrap_or_default();
    Ok(NetworkSpec {
        annotations: Annotations {
            name: request.name,
            labels: labels_in(request.labels),
        },
        driver,
        driver_options: labels_in(request.options),
        ipam: IpamOptions {
            driver: match ipam.driver.as_deref() {
                None | Some("") | Some("default") => String::new(),
                Some(other) => {
                    return Err(EngineError::bad_request(format!(
                        "IPAM driver \"{other}\" is not supported by hive; use the default"
                    )));
                }
            },
            configs: ipam
                .config
                .unwrap_or_default()
                .into_iter()
                .map(|c| {
                    IpamConfig::parse(
                        c.subnet.as_deref().unwrap_or_default(),
                        c.ip_range.as_deref().unwrap_or_default(),
                        c.gateway.as_deref().unwrap_or_default(),
                    )
                    .map_err(|err| EngineError::bad_request(err.to_string()))
                })
                .collect::<Result<_, _>>()?,
        },
        ingress: request.ingress.unwrap_or(false),
        attachable: request.attachable.unwrap_or(false),
        internal: request.internal.unwrap_or(false),
    })
}

// ---------------------------------------------------------------------------------------------
// Secrets and configs

/// A secret as dockerd shows it: never its data.
pub fn secret_out(s: &Secret) -> m::Secret {
    m::Secret {
        id: Some(s.id.clone()),
        version: version(s.meta.version),
        created_at: date(s.meta.created_at),
        updated_at: date(s.meta.updated_at),
        spec: Some(m::SecretSpec {
            name: Some(s.spec.annotations.name.clone()),
            labels: Some(labels(&s.spec.annotations.labels)),
            ..m::SecretSpec::default()
        }),
    }
}

/// A config as dockerd shows it, with its data (`Spec.Data`, base64).
pub fn config_out(c: &Config) -> m::Config {
    m::Config {
        id: Some(c.id.clone()),
        version: version(c.meta.version),
        created_at: date(c.meta.created_at),
        updated_at: date(c.meta.updated_at),
        spec: Some(m::ConfigSpec {
            name: Some(c.spec.annotations.name.clone()),
            labels: Some(labels(&c.spec.annotations.labels)),
            data: Some(STANDARD.encode(&c.spec.data)),
            templating: None,
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// The swarm

pub fn swarm_spec_out(settings: Option<&pb::ClusterSettings>) -> m::SwarmSpec {
    let s = settings.cloned().unwrap_or_default();
    let ms = |v: u64| i64::try_from(Duration::from_millis(v).as_nanos()).unwrap_or(i64::MAX);
    let secs = |v: u64| i64::try_from(Duration::from_secs(v).as_nanos()).unwrap_or(i64::MAX);
    m::SwarmSpec {
        name: Some("default".to_owned()),
        labels: Some(HashMap::new()),
        orchestration: Some(m::SwarmSpecOrchestration {
            task_history_retention_limit: s.task_history_limit,
        }),
        raft: Some(m::SwarmSpecRaft {
            snapshot_interval: s.snapshot_interval,
            keep_old_snapshots: Some(0),
            log_entries_for_slow_followers: Some(500),
            election_tick: Some(10),
            heartbeat_tick: Some(1),
        }),
        dispatcher: Some(m::SwarmSpecDispatcher {
            heartbeat_period: s.dispatcher_heartbeat_ms.map(ms),
        }),
        ca_config: Some(m::SwarmSpecCaConfig {
            node_cert_expiry: s.cert_expiry_secs.map(secs),
            ..Default::default()
        }),
        encryption_config: Some(m::SwarmSpecEncryptionConfig {
            auto_lock_managers: Some(s.autolock.unwrap_or(false)),
        }),
        task_defaults: Some(m::SwarmSpecTaskDefaults::default()),
    }
}

pub fn cluster_info_out(swarm: &pb::InspectSwarmResponse) -> m::ClusterInfo {
    m::ClusterInfo {
        id: Some(swarm.cluster_id.clone()),
        version: version(swarm.version),
        created_at: pb_date(swarm.created_at.as_ref()),
        updated_at: pb_date(swarm.updated_at.as_ref()),
        spec: Some(swarm_spec_out(swarm.settings.as_ref())),
        tls_info: swarm.tls_info.as_ref().map(tls_info_out),
        root_rotation_in_progress: Some(
            swarm.root_rotation.as_ref().is_some_and(|r| r.in_progress),
        ),
        data_path_port: Some(swarm.data_path_port),
        default_addr_pool: Some(swarm.default_addr_pool.clone()),
        subnet_size: Some(swarm.subnet_size),
    }
}

pub fn swarm_out(swarm: &pb::InspectSwarmResponse) -> m::Swarm {
    let info = cluster_info_out(swarm);
    m::Swarm {
        id: info.id,
        version: info.version,
        created_at: info.created_at,
        updated_at: info.updated_at,
        spec: info.spec,
        tls_info: info.tls_info,
        root_rotation_in_progress: info.root_rotation_in_progress,
        data_path_port: info.data_path_port,
        default_addr_pool: info.default_addr_pool,
        subnet_size: info.subnet_size,
        join_tokens: Some(m::JoinTokens {
            worker: Some(swarm.worker_token.clone()),
            manager: Some(swarm.manager_token.clone()),
        }),
    }
}

/// Docker's `TLSInfo`; Go's JSON has the DER bytes in standard base64.
pub fn tls_info_out(info: &pb::DockerTlsInfo) -> m::TlsInfo {
    m::TlsInfo {
        trust_root: Some(info.trust_root.clone()),
        cert_issuer_subject: Some(STANDARD.encode(&info.cert_issuer_subject)),
        cert_issuer_public_key: Some(STANDARD.encode(&info.cert_issuer_public_key)),
    }
}

/// What `POST /swarm/update` asks of hive: the settings it changes and a root CA rotation.
#[derive(Debug, Default, PartialEq)]
pub struct SwarmUpdate {
    pub settings: pb::ClusterSettings,
    pub rotation: Option<pb::RootRotationRequest>,
}

/// The changes from the current spec to `spec`, as hive's swarm update makes them. A root CA
/// rotation is asked by a `CAConfig.ForceRotate` other than the one shown (hive keeps no
/// counter and shows 0; `docker swarm ca --rotate` sends it plus one) or by a
/// `SigningCACert`/`SigningCAKey` (`--ca-cert`/`--ca-key`). A change hive cannot make (the
/// name, labels, Raft ticks, external CAs, task defaults) is refused, never dropped.
pub fn swarm_update_in(
    mut spec: m::SwarmSpec,
    current: Option<&pb::ClusterSettings>,
) -> Result<SwarmUpdate, EngineError> {
    let now = swarm_spec_out(current);
    let mut update = SwarmUpdate::default();
    let settings = &mut update.settings;

    // Each setting hive has: taken out of `spec` (left as now), applied if it changed.
    fn take<T: PartialEq + Clone>(asked: &mut Option<T>, now: &Option<T>) -> Option<T> {
        let value = asked.take();
        *asked = now.clone();
        value.filter(|v| Some(v) != now.as_ref())
    }
    let (orchestration, now_orchestration) = (
        spec.orchestration.get_or_insert_default(),
        now.orchestration.clone().unwrap_or_default(),
    );
    settings.task_history_limit = take(
        &mut orchestration.task_history_retention_limit,
        &now_orchestration.task_history_retention_limit,
    );
    let (raft, now_raft) = (
        spec.raft.get_or_insert_default(),
        now.raft.clone().unwrap_or_default(),
    );
    if let Some(interval) = take(&mut raft.snapshot_interval, &now_raft.snapshot_interval) {
        settings.snapshot_interval = Some(interval);
    }
    let (dispatcher, now_dispatcher) = (
        spec.dispatcher.get_or_insert_default(),
        now.dispatcher.clone().unwrap_or_default(),
    );
    if let Some(period) = take(
        &mut dispatcher.heartbeat_period,
        &now_dispatcher.heartbeat_period,
    ) {
        let period = duration("Dispatcher.HeartbeatPeriod", Some(period), Duration::ZERO)?;
        settings.dispatcher_heartbeat_ms =
            Some(u64::try_from(period.as_millis()).unwrap_or(u64::MAX));
    }
    let (encryption, now_encryption) = (
        spec.encryption_config.get_or_insert_default(),
        now.encryption_config.clone().unwrap_or_default(),
    );
    settings.autolock = take(
        &mut encryption.auto_lock_managers,
        &now_encryption.auto_lock_managers,
    );
    let (ca, now_ca) = (
        spec.ca_config.get_or_insert_default(),
        now.ca_config.clone().unwrap_or_default(),
    );
    if let Some(expiry) = take(&mut ca.node_cert_expiry, &now_ca.node_cert_expiry) {
        let expiry = duration("CAConfig.NodeCertExpiry", Some(expiry), Duration::ZERO)?;
        settings.cert_expiry_secs = Some(expiry.as_secs());
    }
    if ca.external_cas.take().is_some_and(|cas| !cas.is_empty()) {
        return Err(EngineError::not_implemented(
            "signing node certificates with an external CA",
        ));
    }
    let force = take(&mut ca.force_rotate, &now_ca.force_rotate).is_some_and(|n| n != 0);
    let cert = take(&mut ca.signing_ca_cert, &now_ca.signing_ca_cert).unwrap_or_default();
    let key = take(&mut ca.signing_ca_key, &now_ca.signing_ca_key).unwrap_or_default();
    if force || !cert.is_empty() || !key.is_empty() {
        update.rotation = Some(pb::RootRotationRequest {
            rotate: true,
            ca_cert_pem: cert,
            ca_key_pem: key,
        });
    }
    if spec != now {
        return Err(EngineError::not_implemented(
            "changing the swarm's name, labels, Raft ticks or task defaults (the other settings and the root CA can be changed)",
        ));
    }
    Ok(update)
}

pub fn local_node_state_out(state: pb::LocalNodeState) -> m::LocalNodeState {
    match state {
        pb::LocalNodeState::Inactive => m::LocalNodeState::INACTIVE,
        pb::LocalNodeState::Pending => m::LocalNodeState::PENDING,
        pb::LocalNodeState::Active => m::LocalNodeState::ACTIVE,
        pb::LocalNodeState::Error => m::LocalNodeState::ERROR,
        pb::LocalNodeState::Locked => m::LocalNodeState::LOCKED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `docker service create --name web --replicas 3 -p 8080:80 hive/whoami` sends.
    const CLI_CREATE: &str = r#"{"Name":"web","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":"hive/whoami","Init":false,"StopGracePeriod":10000000000,"DNSConfig":{},"Isolation":"default"},"Resources":{"Limits":{},"Reservations":{}},"RestartPolicy":{"Condition":"any","MaxAttempts":0},"Placement":{},"ForceUpdate":0,"Runtime":"container"},"Mode":{"Replicated":{"Replicas":3}},"EndpointSpec":{"Mode":"vip","Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080,"PublishMode":"ingress"}]}}"#;

    #[test]
    fn a_cli_create_round_trips() {
        let api: m::ServiceSpec = serde_json::from_str(CLI_CREATE).expect("model");
        let (spec, warnings) = service_spec_in(api).expect("spec");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(spec.annotations.name, "web");
        assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 3 });
        assert_eq!(spec.task_template.container.image, "hive/whoami");
        let port = &spec.endpoint_spec.ports[0];
        assert_eq!((port.target_port, port.published_port), (80, 8080));
        // What hive answers reads back into the same spec (docker service update sends it).
        let back = serde_json::to_string(&service_spec_out(&spec)).expect("json");
        let (again, _) =
            service_spec_in(serde_json::from_str(&back).expect("model")).expect("spec");
        assert_eq!(again, spec);
    }

    #[test]
    fn jobs_and_bad_numbers_are_refused() {
        let job: m::ServiceSpec =
            serde_json::from_str(r#"{"Name":"j","Mode":{"ReplicatedJob":{}}}"#).expect("model");
        assert_eq!(service_spec_in(job).unwrap_err().status, 400);
        let negative: m::ServiceSpec =
            serde_json::from_str(r#"{"Name":"n","Mode":{"Replicated":{"Replicas":-1}}}"#)
                .expect("model");
        assert_eq!(service_spec_in(negative).unwrap_err().status, 400);
        let mounts: m::ServiceSpec = serde_json::from_str(
            r#"{"Name":"m","TaskTemplate":{"ContainerSpec":{"Image":"x","Mounts":[{"Target":"/a"}]}}}"#,
        )
        .expect("model");
        let (_, warnings) = service_spec_in(mounts).expect("spec");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn dates_are_rfc3339() {
        let t = Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        };
        assert_eq!(date(t).as_deref(), Some("2023-11-14T22:13:20.000000005Z"));
    }

    fn settings() -> pb::ClusterSettings {
        pb::ClusterSettings {
            task_history_limit: Some(5),
            dispatcher_heartbeat_ms: Some(5_000),
            cert_expiry_secs: Some(90 * 24 * 3600),
            snapshot_interval: Some(10_000),
            autolock: Some(false),
            ..Default::default()
        }
    }

    /// What the docker CLI sends back: the spec it read, through Go's JSON.
    fn as_sent(spec: &m::SwarmSpec) -> m::SwarmSpec {
        serde_json::from_str(&serde_json::to_string(spec).expect("json")).expect("model")
    }

    #[test]
    fn swarm_updates_are_hives_settings_and_ca_rotations() {
        let now = swarm_spec_out(Some(&settings()));
        // `docker swarm join-token --rotate`: the spec as read changes nothing.
        let unchanged = swarm_update_in(as_sent(&now), Some(&settings())).expect("update");
        assert_eq!(unchanged, SwarmUpdate::default());

        // `docker swarm ca --rotate --cert-expiry 48h`: ForceRotate + 1 and the expiry.
        let mut rotate = as_sent(&now);
        let ca = rotate.ca_config.get_or_insert_default();
        ca.force_rotate = Some(1);
        ca.node_cert_expiry = Some(48 * 3600 * 1_000_000_000);
        let update = swarm_update_in(rotate, Some(&settings())).expect("update");
        assert_eq!(update.settings.cert_expiry_secs, Some(48 * 3600));
        assert_eq!(update.settings.task_history_limit, None);
        assert_eq!(
            update.rotation,
            Some(pb::RootRotationRequest {
                rotate: true,
                ..Default::default()
            })
        );

        // `--ca-cert/--ca-key`: the operator's root.
        let mut given = as_sent(&now);
        let ca = given.ca_config.get_or_insert_default();
        ca.signing_ca_cert = Some("CERT".to_owned());
        ca.signing_ca_key = Some("KEY".to_owned());
        let rotation = swarm_update_in(given, Some(&settings()))
            .expect("update")
            .rotation
            .expect("a rotation");
        assert_eq!(
            (rotation.ca_cert_pem.as_str(), rotation.ca_key_pem.as_str()),
            ("CERT", "KEY")
        );

        // `docker swarm update --task-history-limit 2 --autolock`.
        let mut changed = as_sent(&now);
        changed
            .orchestration
            .get_or_insert_default()
            .task_history_retention_limit = Some(2);
        changed
            .encryption_config
            .get_or_insert_default()
            .auto_lock_managers = Some(true);
        let update = swarm_update_in(changed, Some(&settings())).expect("update");
        assert_eq!(update.settings.task_history_limit, Some(2));
        assert_eq!(update.settings.autolock, Some(true));
        assert_eq!(update.rotation, None);

        // What hive cannot change is refused, not dropped.
        let mut renamed = as_sent(&now);
        renamed.name = Some("other".to_owned());
        assert_eq!(
            swarm_update_in(renamed, Some(&settings()))
                .unwrap_err()
                .status,
            501
        );
        let mut external = as_sent(&now);
        external.ca_config.get_or_insert_default().external_cas =
            Some(vec![m::SwarmSpecCaConfigExternalCas::default()]);
        assert_eq!(
            swarm_update_in(external, Some(&settings()))
                .unwrap_err()
                .status,
            501
        );
    }

    #[test]
    fn tls_info_and_update_status_are_in_dockers_shape() {
        let tls = tls_info_out(&pb::DockerTlsInfo {
            trust_root: "PEM".to_owned(),
            cert_issuer_subject: vec![0x30, 0x00],
            cert_issuer_public_key: vec![0xff],
        });
        let json = serde_json::to_value(&tls).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"TrustRoot": "PEM", "CertIssuerSubject": "MAA=", "CertIssuerPublicKey": "/w=="})
        );
        let status = update_status_out(&UpdateStatus {
            state: UpdateState::RollbackCompleted,
            started_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            completed_at: None,
            message: String::new(),
        });
        let json = serde_json::to_value(&status).expect("json");
        // Go leaves out what is empty (`omitempty`).
        assert_eq!(
            json,
            serde_json::json!({"State": "rollback_completed", "StartedAt": "2023-11-14T22:13:20Z"})
        );
    }

    #[test]
    fn only_overlay_networks_are_made() {
        let request: m::NetworkCreateRequest = serde_json::from_str(
            r#"{"Name":"mynet","Driver":"overlay","Scope":"","IPAM":{"Driver":"default","Options":{},"Config":[]},"Attachable":true,"Labels":{"a":"b"}}"#,
        )
        .expect("model");
        let spec = network_spec_in(request).expect("spec");
        assert!(spec.attachable);
        assert_eq!(
            spec.annotations.labels.get("a").map(String::as_str),
            Some("b")
        );
        let bridge: m::NetworkCreateRequest =
            serde_json::from_str(r#"{"Name":"b","Driver":"bridge"}"#).expect("model");
        assert_eq!(network_spec_in(bridge).unwrap_err().status, 400);
    }
}

//! Services and their specs, store ↔ wire. Every field of the store's types has its field in
//! the message, so a service survives the round trip unchanged (the tests below hold it).

use super::wire::{
    WireError, annotations, annotations_of, duration, duration_of, enumeration, meta_of, port,
    resources, resources_of, timestamp, timestamp_of,
};
use crate::api::pb;
use crate::image_store::RegistryAuth;
use crate::store::objects::{
    ContainerSpec, Endpoint, EndpointMode, EndpointSpec, Mount, MountType, NetworkAttachmentConfig,
    Placement, PlacementPreference, PortConfig, Protocol, ProtocolError, PublishMode,
    ResourceRequirements, RestartCondition, RestartPolicy, Service, ServiceMode, ServiceSpec,
    TaskSpec, Ulimit, VirtualIp,
};
use crate::store::objects::{
    FailureAction, FailureRatio, UpdateConfig, UpdateOrder, UpdateState, UpdateStatus,
};

impl From<&ServiceSpec> for pb::ServiceSpec {
    fn from(spec: &ServiceSpec) -> Self {
        Self {
            annotations: Some(annotations(&spec.annotations)),
            mode: Some(match spec.mode {
                ServiceMode::Replicated { replicas } => {
                    pb::service_spec::Mode::Replicated(pb::ReplicatedService { replicas })
                }
                ServiceMode::Global => pb::service_spec::Mode::Global(pb::GlobalService {}),
            }),
            task_template: Some((&spec.task_template).into()),
            endpoint_spec: Some((&spec.endpoint_spec).into()),
            update_config: Some(update_config(&spec.update_config)),
            rollback_config: Some(update_config(&spec.rollback_config)),
        }
    }
}

impl TryFrom<pb::ServiceSpec> for ServiceSpec {
    type Error = WireError;

    fn try_from(spec: pb::ServiceSpec) -> Result<Self, WireError> {
        Ok(Self {
            annotations: annotations_of(spec.annotations),
            mode: match spec.mode {
                Some(pb::service_spec::Mode::Replicated(r)) => ServiceMode::Replicated {
                    replicas: r.replicas,
                },
                Some(pb::service_spec::Mode::Global(_)) => ServiceMode::Global,
                None => ServiceMode::default(),
            },
            task_template: spec
                .task_template
                .map(TaskSpec::try_from)
                .transpose()?
                .unwrap_or_default(),
            endpoint_spec: spec
                .endpoint_spec
                .map(EndpointSpec::try_from)
                .transpose()?
                .unwrap_or_default(),
            update_config: update_config_of("ServiceSpec.update_config", spec.update_config)?,
            rollback_config: update_config_of("ServiceSpec.rollback_config", spec.rollback_config)?,
        })
    }
}

impl From<&TaskSpec> for pb::TaskSpec {
    fn from(t: &TaskSpec) -> Self {
        let c = &t.container;
        let r = &t.restart_policy;
        Self {
            container: Some(pb::ContainerSpec {
                image: c.image.clone(),
                command: c.command.clone(),
                args: c.args.clone(),
                env: c.env.clone(),
                stop_grace_period: Some(duration(c.stop_grace_period)),
                hostname: c.hostname.clone(),
                workdir: c.workdir.clone(),
                user: c.user.clone(),
                init: c.init,
                read_only: c.read_only,
                cap_add: c.cap_add.clone(),
                cap_drop: c.cap_drop.clone(),
                ulimits: c
                    .ulimits
                    .iter()
                    .map(|u| pb::Ulimit {
                        name: u.name.clone(),
                        soft: u.soft,
                        hard: u.hard,
                    })
                    .collect(),
                sysctls: c.sysctls.clone().into_iter().collect(),
                stop_signal: c.stop_signal.clone(),
                mounts: c.mounts.iter().map(mount).collect(),
                secrets: c.secrets.iter().map(super::secret::reference).collect(),
                configs: c.configs.iter().map(super::secret::reference).collect(),
                health_check: c.health_check.as_ref().map(super::health::health_config),
                registry_auth: c.registry_auth.as_ref().map(registry_credentials),
            }),
            resources: Some(pb::ResourceRequirements {
                limits: Some(resources(t.resources.limits)),
                reservations: Some(resources(t.resources.reservations)),
            }),
            restart_policy: Some(pb::RestartPolicy {
                condition: restart_condition(r.condition).into(),
                delay: Some(duration(r.delay)),
                max_attempts: r.max_attempts,
                window: Some(duration(r.window)),
            }),
            placement: Some(pb::Placement {
                constraints: t.placement.constraints.clone(),
                preferences: t
                    .placement
                    .preferences
                    .iter()
                    .map(|p| pb::PlacementPreference {
                        spread: p.spread.clone(),
                    })
                    .collect(),
                max_replicas: t.placement.max_replicas,
            }),
            networks: t
                .networks
                .iter()
                .map(|n| pb::NetworkAttachmentConfig {
                    target: n.target.clone(),
                    aliases: n.aliases.clone(),
                })
                .collect(),
            force_update: t.force_update,
        }
    }
}

impl TryFrom<pb::TaskSpec> for TaskSpec {
    type Error = WireError;

    fn try_from(t: pb::TaskSpec) -> Result<Self, WireError> {
        let defaults = ContainerSpec::default();
        let container = match t.container {
            None => defaults,
            Some(c) => ContainerSpec {
                stop_grace_period: duration_of(
                    "ContainerSpec.stop_grace_period",
                    c.stop_grace_period.as_ref(),
                    defaults.stop_grace_period,
                )?,
                image: c.image,
                command: c.command,
                args: c.args,
                env: c.env,
                hostname: c.hostname,
                workdir: c.workdir,
                user: c.user,
                init: c.init,
                read_only: c.read_only,
                cap_add: c.cap_add,
                cap_drop: c.cap_drop,
                ulimits: c
                    .ulimits
                    .into_iter()
                    .map(|u| Ulimit {
                        name: u.name,
                        soft: u.soft,
                        hard: u.hard,
                    })
                    .collect(),
                sysctls: c.sysctls.into_iter().collect(),
                stop_signal: c.stop_signal,
                mounts: c
                    .mounts
                    .into_iter()
                    .map(mount_of)
                    .collect::<Result<_, _>>()?,
                secrets: c
                    .secrets
                    .into_iter()
                    .map(super::secret::reference_of)
                    .collect(),
                configs: c
                    .configs
                    .into_iter()
                    .map(super::secret::reference_of)
                    .collect(),
                health_check: c
                    .health_check
                    .map(super::health::health_config_of)
                    .transpose()?,
                registry_auth: c.registry_auth.and_then(registry_auth_of),
            },
        };
        let resources = t.resources.unwrap_or_default();
        let defaults = RestartPolicy::default();
        let restart_policy = match t.restart_policy {
            None => defaults,
            Some(r) => RestartPolicy {
                condition: restart_condition_of(enumeration(
                    "RestartPolicy.condition",
                    r.condition,
                )?),
                delay: duration_of("RestartPolicy.delay", r.delay.as_ref(), defaults.delay)?,
                max_attempts: r.max_attempts,
                window: duration_of("RestartPolicy.window", r.window.as_ref(), defaults.window)?,
            },
        };
        Ok(Self {
            container,
            resources: ResourceRequirements {
                limits: resources_of(resources.limits),
                reservations: resources_of(resources.reservations),
            },
            restart_policy,
            placement: {
                let placement = t.placement.unwrap_or_default();
                Placement {
                    constraints: placement.constraints,
                    preferences: placement
                        .preferences
                        .into_iter()
                        .map(|p| PlacementPreference { spread: p.spread })
                        .collect(),
                    max_replicas: placement.max_replicas,
                }
            },
            networks: t
                .networks
                .into_iter()
                .map(|n| NetworkAttachmentConfig {
                    target: n.target,
                    aliases: n.aliases,
                })
                .collect(),
            force_update: t.force_update,
        })
    }
}

fn restart_condition(c: RestartCondition) -> pb::RestartCondition {
    match c {
        RestartCondition::None => pb::RestartCondition::None,
        RestartCondition::OnFailure => pb::RestartCondition::OnFailure,
        RestartCondition::Any => pb::RestartCondition::Any,
    }
}

fn restart_condition_of(c: pb::RestartCondition) -> RestartCondition {
    match c {
        pb::RestartCondition::None => RestartCondition::None,
        pb::RestartCondition::OnFailure => RestartCondition::OnFailure,
        pb::RestartCondition::Any => RestartCondition::Any,
    }
}

impl From<&EndpointSpec> for pb::EndpointSpec {
    fn from(e: &EndpointSpec) -> Self {
        Self {
            mode: match e.mode {
                EndpointMode::Vip => pb::EndpointMode::Vip,
                EndpointMode::Dnsrr => pb::EndpointMode::Dnsrr,
            }
            .into(),
            ports: e.ports.iter().map(pb::PortConfig::from).collect(),
        }
    }
}

impl TryFrom<pb::EndpointSpec> for EndpointSpec {
    type Error = WireError;

    fn try_from(e: pb::EndpointSpec) -> Result<Self, WireError> {
        Ok(Self {
            mode: match enumeration("EndpointSpec.mode", e.mode)? {
                pb::EndpointMode::Vip => EndpointMode::Vip,
                pb::EndpointMode::Dnsrr => EndpointMode::Dnsrr,
            },
            ports: ports_of(e.ports)?,
        })
    }
}

pub fn protocol(p: Protocol) -> pb::Protocol {
    match p {
        Protocol::Tcp => pb::Protocol::Tcp,
        Protocol::Udp => pb::Protocol::Udp,
    }
}

/// The protocol of the target port `target`; SCTP is refused here, at the door.
pub fn protocol_of(p: pb::Protocol, target: u16) -> Result<Protocol, ProtocolError> {
    match p {
        pb::Protocol::Tcp => Ok(Protocol::Tcp),
        pb::Protocol::Udp => Ok(Protocol::Udp),
        pb::Protocol::Sctp => Err(ProtocolError::Sctp { port: target }),
    }
}

impl From<&PortConfig> for pb::PortConfig {
    fn from(p: &PortConfig) -> Self {
        Self {
            name: p.name.clone(),
            protocol: protocol(p.protocol).into(),
            target_port: p.target_port.into(),
            published_port: p.published_port.into(),
            publish_mode: match p.publish_mode {
                PublishMode::Ingress => pb::PublishMode::Ingress,
                PublishMode::Host => pb::PublishMode::Host,
            }
            .into(),
        }
    }
}

impl TryFrom<pb::PortConfig> for PortConfig {
    type Error = WireError;

    fn try_from(p: pb::PortConfig) -> Result<Self, WireError> {
        let target_port = port("PortConfig.target_port", p.target_port)?;
        Ok(Self {
            name: p.name,
            protocol: protocol_of(enumeration("PortConfig.protocol", p.protocol)?, target_port)?,
            target_port,
            published_port: port("PortConfig.published_port", p.published_port)?,
            publish_mode: match enumeration("PortConfig.publish_mode", p.publish_mode)? {
                pb::PublishMode::Ingress => PublishMode::Ingress,
                pb::PublishMode::Host => PublishMode::Host,
            },
        })
    }
}

pub fn ports_of(ports: Vec<pb::PortConfig>) -> Result<Vec<PortConfig>, WireError> {
    ports.into_iter().map(PortConfig::try_from).collect()
}

impl From<&Endpoint> for pb::Endpoint {
    fn from(e: &Endpoint) -> Self {
        Self {
            spec: Some((&e.spec).into()),
            ports: e.ports.iter().map(pb::PortConfig::from).collect(),
            virtual_ips: e
                .virtual_ips
                .iter()
                .map(|v| pb::VirtualIp {
                    network_id: v.network_id.clone(),
                    addr: v.addr.to_string(),
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::Endpoint> for Endpoint {
    type Error = WireError;

    fn try_from(e: pb::Endpoint) -> Result<Self, WireError> {
        Ok(Self {
            spec: e
                .spec
                .map(EndpointSpec::try_from)
                .transpose()?
                .unwrap_or_default(),
            ports: ports_of(e.ports)?,
            virtual_ips: e
                .virtual_ips
                .into_iter()
                .map(|v| {
                    Ok(VirtualIp {
                        addr: super::wire::ipv4_network("VirtualIp.addr", &v.addr)?,
                        network_id: v.network_id,
                    })
                })
                .collect::<Result<_, WireError>>()?,
        })
    }
}

impl From<&Service> for pb::Service {
    fn from(s: &Service) -> Self {
        Self {
            id: s.id.clone(),
            version: s.meta.version,
            created_at: Some(timestamp(s.meta.created_at)),
            updated_at: Some(timestamp(s.meta.updated_at)),
            spec: Some((&s.spec).into()),
            previous_spec: s.previous_spec.as_ref().map(pb::ServiceSpec::from),
            spec_version: s.spec_version,
            endpoint: s.endpoint.as_ref().map(pb::Endpoint::from),
            update_status: s.update_status.as_ref().map(update_status),
        }
    }
}

impl TryFrom<pb::Service> for Service {
    type Error = WireError;

    fn try_from(s: pb::Service) -> Result<Self, WireError> {
        Ok(Self {
            meta: meta_of(s.version, s.created_at.as_ref(), s.updated_at.as_ref()),
            id: s.id,
            spec: s
                .spec
                .map(ServiceSpec::try_from)
                .transpose()?
                .unwrap_or_default(),
            previous_spec: s.previous_spec.map(ServiceSpec::try_from).transpose()?,
            spec_version: s.spec_version,
            endpoint: s.endpoint.map(Endpoint::try_from).transpose()?,
            update_status: s.update_status.map(update_status_of).transpose()?,
        })
    }
}

fn update_config(c: &UpdateConfig) -> pb::UpdateConfig {
    let UpdateConfig {
        parallelism,
        delay,
        failure_action,
        monitor,
        max_failure_ratio,
        order,
    } = c;
    pb::UpdateConfig {
        parallelism: *parallelism,
        delay: Some(duration(*delay)),
        failure_action: match failure_action {
            FailureAction::Pause => pb::UpdateFailureAction::Pause,
            FailureAction::Continue => pb::UpdateFailureAction::Continue,
            FailureAction::Rollback => pb::UpdateFailureAction::Rollback,
        }
        .into(),
        monitor: Some(duration(*monitor)),
        max_failure_ratio: max_failure_ratio.0,
        order: match order {
            UpdateOrder::StopFirst => pb::UpdateOrder::StopFirst,
            UpdateOrder::StartFirst => pb::UpdateOrder::StartFirst,
        }
        .into(),
    }
}

/// An update config off the wire; absent is Swarm's defaults.
fn update_config_of(
    field: &'static str,
    c: Option<pb::UpdateConfig>,
) -> Result<UpdateConfig, WireError> {
    let Some(c) = c else {
        return Ok(UpdateConfig::default());
    };
    let defaults = UpdateConfig::default();
    Ok(UpdateConfig {
        parallelism: c.parallelism,
        delay: duration_of(field, c.delay.as_ref(), defaults.delay)?,
        failure_action: match enumeration(field, c.failure_action)? {
            pb::UpdateFailureAction::Pause => FailureAction::Pause,
            pb::UpdateFailureAction::Continue => FailureAction::Continue,
            pb::UpdateFailureAction::Rollback => FailureAction::Rollback,
        },
        monitor: duration_of(field, c.monitor.as_ref(), defaults.monitor)?,
        max_failure_ratio: FailureRatio(c.max_failure_ratio),
        order: match enumeration(field, c.order)? {
            pb::UpdateOrder::StopFirst => UpdateOrder::StopFirst,
            pb::UpdateOrder::StartFirst => UpdateOrder::StartFirst,
        },
    })
}

fn update_state(s: UpdateState) -> pb::UpdateState {
    match s {
        UpdateState::Updating => pb::UpdateState::Updating,
        UpdateState::Paused => pb::UpdateState::Paused,
        UpdateState::Completed => pb::UpdateState::Completed,
        UpdateState::RollbackStarted => pb::UpdateState::RollbackStarted,
        UpdateState::RollbackPaused => pb::UpdateState::RollbackPaused,
        UpdateState::RollbackCompleted => pb::UpdateState::RollbackCompleted,
    }
}

fn update_status(s: &UpdateStatus) -> pb::UpdateStatus {
    pb::UpdateStatus {
        state: update_state(s.state).into(),
        started_at: s.started_at.map(timestamp),
        completed_at: s.completed_at.map(timestamp),
        message: s.message.clone(),
    }
}

fn update_status_of(s: pb::UpdateStatus) -> Result<UpdateStatus, WireError> {
    Ok(UpdateStatus {
        state: match enumeration("UpdateStatus.state", s.state)? {
            pb::UpdateState::Updating => UpdateState::Updating,
            pb::UpdateState::Paused => UpdateState::Paused,
            pb::UpdateState::Completed => UpdateState::Completed,
            pb::UpdateState::RollbackStarted => UpdateState::RollbackStarted,
            pb::UpdateState::RollbackPaused => UpdateState::RollbackPaused,
            pb::UpdateState::RollbackCompleted => UpdateState::RollbackCompleted,
        },
        started_at: s.started_at.as_ref().map(|t| timestamp_of(Some(t))),
        completed_at: s.completed_at.as_ref().map(|t| timestamp_of(Some(t))),
        message: s.message,
    })
}

fn mount(m: &Mount) -> pb::Mount {
    pb::Mount {
        r#type: match m.mount_type {
            MountType::Volume => pb::MountType::Volume,
            MountType::Bind => pb::MountType::Bind,
            MountType::Tmpfs => pb::MountType::Tmpfs,
        }
        .into(),
        source: m.source.clone(),
        target: m.target.clone(),
        readonly: m.readonly,
        volume_options: m.volume_options.clone().into_iter().collect(),
        tmpfs_size_bytes: m.tmpfs_size_bytes,
    }
}

fn mount_of(m: pb::Mount) -> Result<Mount, WireError> {
    let mount_type = match enumeration::<pb::MountType>("Mount.type", m.r#type)? {
        pb::MountType::Volume => MountType::Volume,
        pb::MountType::Bind => MountType::Bind,
        pb::MountType::Tmpfs => MountType::Tmpfs,
    };
    Ok(Mount {
        mount_type,
        source: m.source,
        target: m.target,
        readonly: m.readonly,
        volume_options: m.volume_options.into_iter().collect(),
        tmpfs_size_bytes: m.tmpfs_size_bytes,
    })
}

/// Registry credentials on the wire. Called only for what goes to a manager or to a node that
/// runs a task of the service: the replies to clients carry none
/// (`Service::without_credentials`).
pub fn registry_credentials(auth: &RegistryAuth) -> pb::RegistryCredentials {
    pb::RegistryCredentials {
        username: auth.username.clone(),
        password: auth.password.clone(),
    }
}

/// Empty credentials are none, as dockerd treats an empty `X-Registry-Auth`.
pub fn registry_auth_of(wire: pb::RegistryCredentials) -> Option<RegistryAuth> {
    (!wire.username.is_empty() || !wire.password.is_empty()).then_some(RegistryAuth {
        username: wire.username,
        password: wire.password,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::objects::{Annotations, Meta, Timestamp};

    pub(crate) fn full_spec() -> ServiceSpec {
        let mut spec = ServiceSpec {
            annotations: Annotations::named("web"),
            mode: ServiceMode::Global,
            ..ServiceSpec::default()
        };
        spec.annotations
            .labels
            .insert("tier".into(), "front".into());
        let t = &mut spec.task_template;
        t.container.image = "hive/whoami".into();
        t.container.command = vec!["/bin/sh".into()];
        t.container.args = vec!["-c".into(), "true".into()];
        t.container.env = vec!["A=1".into()];
        t.container.stop_grace_period = Duration::new(3, 500);
        t.container.hostname = "h".into();
        t.container.workdir = "/w".into();
        t.container.user = "1000:1000".into();
        t.container.init = Some(false);
        t.container.read_only = true;
        t.container.cap_add = vec!["NET_ADMIN".into()];
        t.container.cap_drop = vec!["CHOWN".into()];
        t.container.ulimits = vec![Ulimit {
            name: "nofile".into(),
            soft: 1024,
            hard: 2048,
        }];
        t.container.sysctls = [("net.core.somaxconn".into(), "1024".into())].into();
        t.container.stop_signal = "SIGQUIT".into();
        t.container.health_check = Some(crate::store::objects::HealthConfig {
            test: crate::store::objects::HealthTest::Shell("cat /tmp/ok".into()),
            interval: std::time::Duration::from_secs(2),
            retries: 4,
            ..crate::store::objects::HealthConfig::default()
        });
        t.container.mounts = vec![
            Mount {
                mount_type: MountType::Tmpfs,
                target: "/tmp".into(),
                tmpfs_size_bytes: Some(1 << 20),
                ..Mount::default()
            },
            Mount {
                mount_type: MountType::Bind,
                source: "/srv".into(),
                target: "/data".into(),
                readonly: true,
                ..Mount::default()
            },
        ];
        t.resources.limits.nano_cpus = 500_000_000;
        t.resources.reservations.memory_bytes = 1 << 20;
        t.restart_policy = RestartPolicy {
            condition: RestartCondition::OnFailure,
            delay: Duration::from_millis(1500),
            max_attempts: 3,
            window: Duration::from_secs(60),
        };
        t.placement.constraints = vec!["node.role==manager".into()];
        t.placement.preferences = vec![PlacementPreference {
            spread: "node.labels.zone".into(),
        }];
        t.placement.max_replicas = 2;
        t.networks = vec![NetworkAttachmentConfig {
            target: "net1".into(),
            aliases: vec!["db".into()],
        }];
        t.force_update = 2;
        spec.endpoint_spec = EndpointSpec {
            mode: EndpointMode::Dnsrr,
            ports: vec![PortConfig {
                name: "dns".into(),
                protocol: Protocol::Udp,
                target_port: 53,
                published_port: 5353,
                publish_mode: PublishMode::Host,
            }],
        };
        spec
    }

    #[test]
    fn a_service_survives_the_wire() {
        let spec = full_spec();
        let service = Service {
            id: "abc".into(),
            meta: Meta {
                version: 7,
                created_at: Timestamp {
                    seconds: 1,
                    nanos: 2,
                },
                updated_at: Timestamp {
                    seconds: 3,
                    nanos: 4,
                },
            },
            previous_spec: Some(ServiceSpec::default()),
            update_status: Some(crate::manager::orchestrator::update::started(true)),
            spec_version: 5,
            endpoint: Some(Endpoint {
                spec: spec.endpoint_spec.clone(),
                ports: spec.endpoint_spec.ports.clone(),
                virtual_ips: vec![VirtualIp {
                    network_id: "net1".into(),
                    addr: "10.0.0.2/24".parse().unwrap(),
                }],
            }),
            spec,
        };
        let back = Service::try_from(pb::Service::from(&service)).unwrap();
        assert_eq!(back, service);
        let plain = Service::default();
        assert_eq!(Service::try_from(pb::Service::from(&plain)).unwrap(), plain);
    }

    #[test]
    fn an_empty_message_is_the_default_spec() {
        assert_eq!(
            ServiceSpec::try_from(pb::ServiceSpec::default()).unwrap(),
            ServiceSpec::default()
        );
    }

    #[test]
    fn sctp_is_refused_at_the_door() {
        let mut spec = pb::ServiceSpec::from(&full_spec());
        let endpoint = spec.endpoint_spec.as_mut().unwrap();
        endpoint.ports[0].protocol = pb::Protocol::Sctp.into();
        endpoint.ports[0].target_port = 80;
        let err = ServiceSpec::try_from(spec.clone()).unwrap_err();
        assert_eq!(
            crate::api::ApiError::from(err).to_string(),
            "hive does not support SCTP ports yet (port 80/sctp): publish tcp or udp"
        );
        let endpoint = spec.endpoint_spec.as_mut().unwrap();
        endpoint.ports[0].protocol = 9;
        assert_eq!(
            ServiceSpec::try_from(spec.clone()).unwrap_err(),
            WireError::UnknownEnum {
                field: "PortConfig.protocol",
                value: 9
            }
        );
        let endpoint = spec.endpoint_spec.as_mut().unwrap();
        endpoint.ports[0].protocol = pb::Protocol::Tcp.into();
        endpoint.ports[0].target_port = 70_000;
        assert!(matches!(
            ServiceSpec::try_from(spec),
            Err(WireError::Port { value: 70_000, .. })
        ));
    }
}

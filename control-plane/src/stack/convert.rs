//! A loaded Compose file turned into the store's specs, named and labelled as docker names
//! them (docker/cli `cli/compose/convert`): `STACK_web`, `STACK_default`, the label
//! `com.docker.stack.namespace=STACK` on everything and `com.docker.stack.image` on services.
//!
//! Keys hive does not run yet are never dropped silently: the ones whose absence changes
//! what a task can do (volumes) are refused; the others are listed in a warning, as docker
//! lists the keys swarm ignores. Secrets and configs are made by `super::files`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::compose::types::{Config, NetworkConfig, ServiceConfig};
use super::files::{self, FileError, FileKind, FileObject};
use crate::cli::service::opts::parse_cpus;
use crate::store::objects::{
    Annotations, EndpointMode, FailureAction, FailureRatio, IpamConfig, IpamOptions,
    NetworkAttachmentConfig, NetworkSpec, PlacementPreference, PortConfig, Protocol, ProtocolError,
    PublishMode, RestartCondition, ServiceMode, ServiceSpec, UpdateConfig, UpdateOrder,
};

/// docker/cli `convert.LabelNamespace`.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";
/// docker/cli `convert.LabelImage`.
pub const IMAGE_LABEL: &str = "com.docker.stack.image";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConvertError {
    #[error("invalid image reference for service {service}: no image specified")]
    NoImage { service: String },
    #[error(
        "services.{service}.{key}: hive does not run {what} yet; remove the key to deploy this stack (docs/stacks.md lists what hive runs)"
    )]
    NotYet {
        service: String,
        key: &'static str,
        what: &'static str,
    },
    #[error("services.{service}.{key}: {message}")]
    Invalid {
        service: String,
        key: &'static str,
        message: String,
    },
    #[error(transparent)]
    Files(#[from] FileError),
    #[error(
        "invalid stack name \"{0}\": use letters, digits, '-' and '_', starting with a letter or digit (it prefixes the names of the stack's services and networks)"
    )]
    StackName(String),
    /// A network's `ipam.config` subnet that does not parse, with the message `network
    /// create` gives.
    #[error(transparent)]
    Ipam(#[from] crate::store::objects::IpamConfigError),
}

/// The objects of one stack, before they meet the swarm.
#[derive(Debug, Clone, PartialEq)]
pub struct StackPlan {
    /// Networks the stack creates, by full name (`app_front`).
    pub networks: BTreeMap<String, NetworkSpec>,
    /// External networks the stack's services use; they must exist.
    pub external_networks: BTreeSet<String>,
    /// Service specs by full name; network attachments hold network *names* until the
    /// deploy resolves them.
    pub services: BTreeMap<String, ServiceSpec>,
    /// Secrets the stack makes from files, by full name (external ones are only referenced).
    pub secrets: BTreeMap<String, FileObject>,
    /// Configs the stack makes from files, by full name.
    pub configs: BTreeMap<String, FileObject>,
    /// Keys hive does not run yet, sorted (printed as a warning).
    pub ignored: Vec<String>,
}

/// A stack name usable as the prefix of service names (which must be DNS components).
pub fn check_stack_name(stack: &str) -> Result<(), ConvertError> {
    let ok = stack
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && stack
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(ConvertError::StackName(stack.to_owned()))
    }
}

/// `STACK_name`.
pub fn scoped(stack: &str, name: &str) -> String {
    format!("{stack}_{name}")
}

fn stack_labels(stack: &str, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels = labels.clone();
    labels.insert(NAMESPACE_LABEL.to_owned(), stack.to_owned());
    labels
}

/// The full name of a stack's network key (`default` included).
fn network_name(stack: &str, key: &str, config: Option<&NetworkConfig>) -> String {
    match config {
        Some(n) if n.external.external || !n.name.is_empty() => n.name.clone(),
        _ => scoped(stack, key),
    }
}

/// Builds the plan for `stack` from a loaded file.
pub fn plan(stack: &str, config: &Config) -> Result<StackPlan, ConvertError> {
    check_stack_name(stack)?;
    let mut plan = StackPlan {
        networks: BTreeMap::new(),
        external_networks: BTreeSet::new(),
        services: BTreeMap::new(),
        secrets: files::objects(stack, FileKind::Secret, &config.secrets)?,
        configs: files::objects(stack, FileKind::Config, &config.configs)?,
        ignored: Vec::new(),
    };
    let mut ignored = BTreeSet::new();
    for (name, service) in &config.services {
        let spec = service_spec(stack, name, service, config, &mut ignored)?;
        for attachment in &spec.task_template.networks {
            let key = attachment_key(service, &attachment.target, stack, config);
            let network_config = config.networks.get(&key);
            match network_config {
                Some(n) if n.external.external => {
                    plan.external_networks.insert(attachment.target.clone());
                }
                _ => {
                    let default = NetworkConfig::default();
                    let n = network_config.unwrap_or(&default);
                    plan.networks.insert(
                        attachment.target.clone(),
                        network_spec(stack, &attachment.target, n, &mut ignored)?,
                    );
                }
            }
        }
        plan.services.insert(scoped(stack, name), spec);
    }
    plan.ignored = ignored.into_iter().collect();
    Ok(plan)
}

/// The Compose key of the network a service attachment came from.
fn attachment_key(service: &ServiceConfig, full: &str, stack: &str, config: &Config) -> String {
    service
        .networks
        .0
        .keys()
        .chain(std::iter::once(&"default".to_owned()))
        .find(|k| network_name(stack, k, config.networks.get(*k)) == full)
        .cloned()
        .unwrap_or_else(|| "default".to_owned())
}

fn network_spec(
    stack: &str,
    full_name: &str,
    n: &NetworkConfig,
    ignored: &mut BTreeSet<String>,
) -> Result<NetworkSpec, ConvertError> {
    if !n.ipam.driver.is_empty() && n.ipam.driver != "default" {
        ignored.insert("networks.ipam.driver".to_owned());
    }
    Ok(NetworkSpec {
        annotations: Annotations {
            name: full_name.to_owned(),
            labels: stack_labels(stack, &n.labels.0),
        },
        driver: if n.driver.is_empty() {
            "overlay".to_owned()
        } else {
            n.driver.clone()
        },
        driver_options: n.driver_opts.clone(),
        ipam: IpamOptions {
            driver: "default".to_owned(),
            configs: n
                .ipam
                .config
                .iter()
                .map(|p| IpamConfig::parse(&p.subnet, "", ""))
                .collect::<Result<_, _>>()?,
        },
        ingress: false,
        attachable: n.attachable,
        internal: n.internal,
    })
}

/// A Compose `healthcheck:` as docker stack's `convertHealthcheck`: `disable` is `NONE`
/// (and conflicts with a test), a string test is a `CMD-SHELL`.
fn health_check(
    h: &crate::stack::compose::types::HealthCheckConfig,
) -> Result<crate::store::objects::HealthConfig, String> {
    use crate::store::objects::{HealthConfig, HealthTest};
    let nanos = |d: Option<crate::stack::compose::types::Duration>| {
        d.map_or(Duration::ZERO, |d| to_duration(d.nanos))
    };
    if h.disable {
        if !h.test.0.is_empty() {
            return Err("test and disable can't be set at the same time".to_owned());
        }
        return Ok(HealthConfig {
            test: HealthTest::None,
            ..HealthConfig::default()
        });
    }
    Ok(HealthConfig {
        test: HealthTest::from_docker(&h.test.0).map_err(|e| e.to_string())?,
        interval: nanos(h.interval),
        timeout: nanos(h.timeout),
        retries: h
            .retries
            .map(u32::try_from)
            .transpose()
            .map_err(|_| "retries is too large".to_owned())?
            .unwrap_or(0),
        start_period: nanos(h.start_period),
        start_interval: nanos(h.start_interval),
    })
}

fn to_duration(nanos: i64) -> Duration {
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

fn service_spec(
    stack: &str,
    name: &str,
    s: &ServiceConfig,
    config: &Config,
    ignored: &mut BTreeSet<String>,
) -> Result<ServiceSpec, ConvertError> {
    let invalid = |key: &'static str, message: String| ConvertError::Invalid {
        service: name.to_owned(),
        key,
        message,
    };
    if s.image.is_empty() {
        return Err(ConvertError::NoImage {
            service: name.to_owned(),
        });
    }
    for (set, key, what) in [(!s.volumes.is_empty(), "volumes", "volumes and mounts")] {
        if set {
            return Err(ConvertError::NotYet {
                service: name.to_owned(),
                key,
                what,
            });
        }
    }
    // Keys hive accepts but does not run yet: said, never dropped silently.
    let not_yet: [(bool, &str); 10] = [
        (!s.user.is_empty(), "user"),
        (s.read_only, "read_only"),
        (s.init.is_some(), "init"),
        (!s.cap_add.is_empty(), "cap_add"),
        (!s.cap_drop.is_empty(), "cap_drop"),
        (!s.ulimits.is_empty(), "ulimits"),
        (!s.sysctls.is_empty(), "sysctls"),
        (!s.extra_hosts.is_empty(), "extra_hosts"),
        (!s.stop_signal.is_empty(), "stop_signal"),
        (!s.labels.is_empty(), "labels (container labels)"),
    ];
    for (set, key) in not_yet {
        if set {
            ignored.insert(key.to_owned());
        }
    }

    let mut spec = ServiceSpec::default();
    let mut labels = stack_labels(stack, &s.deploy.labels.0);
    labels.insert(IMAGE_LABEL.to_owned(), s.image.clone());
    spec.annotations = Annotations {
        name: scoped(stack, name),
        labels,
    };
    // deploy.update_config / rollback_config: what is given over Swarm's defaults.
    let update_config = |key: &'static str,
                         given: Option<&super::compose::types::UpdateConfig>,
                         rollback: bool|
     -> Result<UpdateConfig, ConvertError> {
        let mut config = UpdateConfig::default();
        let Some(given) = given else {
            return Ok(config);
        };
        if let Some(p) = given.parallelism {
            config.parallelism = p;
        }
        let nanos = |n: i64| Duration::from_nanos(u64::try_from(n).unwrap_or(0));
        if given.delay.nanos != 0 {
            config.delay = nanos(given.delay.nanos);
        }
        if given.monitor.nanos != 0 {
            config.monitor = nanos(given.monitor.nanos);
        }
        if !(0.0..=1.0).contains(&given.max_failure_ratio) {
            return Err(invalid(
                key,
                "max_failure_ratio must be between 0 and 1".to_owned(),
            ));
        }
        config.max_failure_ratio = FailureRatio(given.max_failure_ratio);
        if !given.failure_action.is_empty() {
            config.failure_action = match FailureAction::parse(&given.failure_action) {
                Some(FailureAction::Rollback) if rollback => None,
                action => action,
            }
            .ok_or_else(|| {
                invalid(
                    key,
                    format!("invalid failure_action: {}", given.failure_action),
                )
            })?;
        }
        if !given.order.is_empty() {
            config.order = UpdateOrder::parse(&given.order)
                .ok_or_else(|| invalid(key, format!("invalid order: {}", given.order)))?;
        }
        Ok(config)
    };
    spec.update_config = update_config(
        "deploy.update_config",
        s.deploy.update_config.as_ref(),
        false,
    )?;
    spec.rollback_config = update_config(
        "deploy.rollback_config",
        s.deploy.rollback_config.as_ref(),
        true,
    )?;
    spec.mode = match s.deploy.mode.as_str() {
        "global" => {
            if s.deploy.replicas.is_some() {
                return Err(invalid(
                    "deploy.replicas",
                    "replicas can only be used with replicated mode".to_owned(),
                ));
            }
            ServiceMode::Global
        }
        "" | "replicated" => ServiceMode::Replicated {
            replicas: s.deploy.replicas.unwrap_or(1),
        },
        other => {
            return Err(invalid(
                "deploy.mode",
                format!("unknown mode: {other}: use replicated or global"),
            ));
        }
    };

    let container = &mut spec.task_template.container;
    container.image = s.image.clone();
    container.command = s.entrypoint.0.clone();
    container.args = s.command.0.clone();
    // A variable without a value (and none in the environment of `stack deploy`) unsets the
    // image's variable in docker; hive's specs hold set variables only, so it is named in the
    // warning rather than sent.
    for (key, value) in &s.environment.0 {
        match value {
            Some(v) => container.env.push(format!("{key}={v}")),
            None => {
                ignored.insert(format!("environment.{key} (no value)"));
            }
        }
    }
    container.hostname = s.hostname.clone();
    container.workdir = s.working_dir.clone();
    if let Some(grace) = s.stop_grace_period {
        container.stop_grace_period = to_duration(grace.nanos);
    }
    if let Some(check) = &s.healthcheck {
        container.health_check = Some(health_check(check).map_err(|m| invalid("healthcheck", m))?);
    }
    container.secrets =
        files::references(stack, name, FileKind::Secret, &s.secrets, &config.secrets)?;
    container.configs =
        files::references(stack, name, FileKind::Config, &s.configs, &config.configs)?;

    let resources = &mut spec.task_template.resources;
    if let Some(limits) = &s.deploy.resources.limits {
        if !limits.cpus.is_empty() {
            resources.limits.nano_cpus = parse_cpus(&limits.cpus.0)
                .map_err(|m| invalid("deploy.resources.limits.cpus", m))?;
        }
        resources.limits.memory_bytes = limits.memory.0;
        if limits.pids != 0 {
            ignored.insert("deploy.resources.limits.pids".to_owned());
        }
    }
    if let Some(reservations) = &s.deploy.resources.reservations {
        if !reservations.cpus.is_empty() {
            resources.reservations.nano_cpus = parse_cpus(&reservations.cpus.0)
                .map_err(|m| invalid("deploy.resources.reservations.cpus", m))?;
        }
        resources.reservations.memory_bytes = reservations.memory.0;
        if !reservations.generic_resources.is_empty() {
            ignored.insert("deploy.resources.reservations.generic_resources".to_owned());
        }
    }

    let restart = &mut spec.task_template.restart_policy;
    if let Some(policy) = &s.deploy.restart_policy {
        restart.condition = match policy.condition.as_str() {
            "" | "any" => RestartCondition::Any,
            "on-failure" => RestartCondition::OnFailure,
            "none" => RestartCondition::None,
            other => {
                return Err(invalid(
                    "deploy.restart_policy.condition",
                    format!("invalid restart condition \"{other}\": use none, on-failure or any"),
                ));
            }
        };
        if let Some(d) = policy.delay {
            restart.delay = to_duration(d.nanos);
        }
        if let Some(n) = policy.max_attempts {
            restart.max_attempts = n;
        }
        if let Some(w) = policy.window {
            restart.window = to_duration(w.nanos);
        }
    } else if !s.restart.is_empty() {
        // docker/cli `convertRestartPolicy`: `restart:` when deploy has none.
        let (condition, attempts) = s.restart.split_once(':').unwrap_or((&s.restart, ""));
        restart.condition = match condition {
            "no" => RestartCondition::None,
            "always" | "unless-stopped" => RestartCondition::Any,
            "on-failure" => RestartCondition::OnFailure,
            other => {
                return Err(invalid(
                    "restart",
                    format!("unknown restart policy: {other}"),
                ));
            }
        };
        if !attempts.is_empty() {
            restart.max_attempts = attempts.parse().map_err(|_| {
                invalid(
                    "restart",
                    format!("invalid maximum retry count: {attempts}"),
                )
            })?;
        }
    }

    let placement = &mut spec.task_template.placement;
    placement.constraints = s.deploy.placement.constraints.clone();
    placement.max_replicas = s.deploy.placement.max_replicas_per_node;
    for preference in &s.deploy.placement.preferences {
        if !crate::manager::scheduler::spread::valid_descriptor(&preference.spread) {
            return Err(invalid(
                "deploy.placement.preferences",
                format!(
                    "invalid spread descriptor \"{}\": use node.labels.NAME or engine.labels.NAME",
                    preference.spread
                ),
            ));
        }
        placement.preferences.push(PlacementPreference {
            spread: preference.spread.clone(),
        });
    }

    // docker attaches a service that names no network to STACK_default; every attachment
    // carries the service's short name as an alias.
    let mut networks: Vec<NetworkAttachmentConfig> = Vec::new();
    let keys: Vec<(String, Vec<String>)> = if s.networks.is_empty() {
        vec![("default".to_owned(), Vec::new())]
    } else {
        s.networks
            .0
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_ref().map(|c| c.aliases.clone()).unwrap_or_default(),
                )
            })
            .collect()
    };
    for (key, extra_aliases) in keys {
        let mut aliases = vec![name.to_owned()];
        aliases.extend(extra_aliases);
        networks.push(NetworkAttachmentConfig {
            target: network_name(stack, &key, config.networks.get(&key)),
            aliases,
        });
    }
    networks.sort_by(|a, b| a.target.cmp(&b.target));
    spec.task_template.networks = networks;

    spec.endpoint_spec.mode = match s.deploy.endpoint_mode.as_str() {
        "" | "vip" => EndpointMode::Vip,
        "dnsrr" => EndpointMode::Dnsrr,
        other => {
            return Err(invalid(
                "deploy.endpoint_mode",
                format!("unknown endpoint mode \"{other}\": use vip or dnsrr"),
            ));
        }
    };
    for port in &s.ports.0 {
        let number = |value: u32, what: &str| {
            u16::try_from(value).map_err(|_| {
                invalid(
                    "ports",
                    format!("{what} port {value} is out of range: use 1 to 65535"),
                )
            })
        };
        spec.endpoint_spec.ports.push(PortConfig {
            name: String::new(),
            protocol: match port.protocol.as_str() {
                "" | "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "sctp" => {
                    let port = number(port.target, "target")?;
                    return Err(invalid("ports", ProtocolError::Sctp { port }.to_string()));
                }
                other => return Err(invalid("ports", format!("invalid protocol \"{other}\""))),
            },
            target_port: number(port.target, "target")?,
            published_port: number(port.published, "published")?,
            publish_mode: match port.mode.as_str() {
                "" | "ingress" => PublishMode::Ingress,
                "host" => PublishMode::Host,
                other => {
                    return Err(invalid(
                        "ports",
                        format!("invalid publish mode \"{other}\": use ingress or host"),
                    ));
                }
            },
        });
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::compose::{self, Context, Source};

    fn load(text: &str) -> Config {
        let ctx = Context {
            working_dir: "/srv".into(),
            environment: Default::default(),
            skip_interpolation: false,
        };
        compose::load(
            &[Source {
                name: "app.yml".to_owned(),
                text: text.to_owned(),
            }],
            &ctx,
        )
        .expect("load")
        .config
    }

    #[test]
    fn services_and_networks_are_named_and_labelled_as_docker_does() {
        let config = load(
            "services:\n  web:\n    image: hive/whoami\n    command: --port 80\n    ports: [\"8080:80\"]\n    environment: [A=1, B]\n    deploy:\n      replicas: 3\n      labels: {tier: front}\n      placement:\n        preferences: [{spread: node.labels.zone}]\n        max_replicas_per_node: 2\n  backend:\n    image: hive/echo\n    networks:\n      back:\n        aliases: [api]\nnetworks:\n  back:\n    driver: overlay\n    attachable: true\n  unused:\n",
        );
        let plan = plan("app", &config).expect("plan");
        assert_eq!(
            plan.networks.keys().collect::<Vec<_>>(),
            ["app_back", "app_default"],
            "a network no service uses is not created"
        );
        let back = &plan.networks["app_back"];
        assert!(back.attachable);
        assert_eq!(back.annotations.labels[NAMESPACE_LABEL], "app");

        let web = &plan.services["app_web"];
        assert_eq!(web.annotations.name, "app_web");
        assert_eq!(web.annotations.labels[NAMESPACE_LABEL], "app");
        assert_eq!(web.annotations.labels[IMAGE_LABEL], "hive/whoami");
        assert_eq!(web.annotations.labels["tier"], "front");
        assert_eq!(web.mode, ServiceMode::Replicated { replicas: 3 });
        assert_eq!(web.task_template.container.args, ["--port", "80"]);
        assert_eq!(web.task_template.container.env, ["A=1"]);
        assert_eq!(plan.ignored, ["environment.B (no value)"]);
        assert_eq!(web.task_template.networks[0].target, "app_default");
        assert_eq!(web.task_template.networks[0].aliases, ["web"]);
        assert_eq!(web.endpoint_spec.ports[0].published_port, 8080);
        assert_eq!(web.task_template.placement.max_replicas, 2);
        assert_eq!(
            web.task_template.placement.preferences[0].spread,
            "node.labels.zone"
        );
        assert_eq!(web.endpoint_spec.ports[0].target_port, 80);

        let backend = &plan.services["app_backend"];
        assert_eq!(backend.task_template.networks[0].target, "app_back");
        assert_eq!(
            backend.task_template.networks[0].aliases,
            ["backend", "api"]
        );
    }

    #[test]
    fn keys_hive_does_not_run_are_refused_or_listed() {
        let config = load("services:\n  web:\n    image: x\n    volumes: [\"/a:/b\"]\n");
        assert!(matches!(
            plan("app", &config),
            Err(ConvertError::NotYet { key: "volumes", .. })
        ));
        // Secrets and configs are the stack's own objects, referenced by their full names.
        let config = load(
            "services:\n  web:\n    image: x\n    secrets: [s]\n    configs:\n      - source: c\n        target: /etc/c.conf\nsecrets:\n  s:\n    file: ./s\nconfigs:\n  c:\n    external: true\n",
        );
        let with_files = plan("app", &config).expect("plan");
        assert_eq!(with_files.secrets.keys().collect::<Vec<_>>(), ["app_s"]);
        assert!(
            with_files.configs.is_empty(),
            "an external config is not made"
        );
        let container = &with_files.services["app_web"].task_template.container;
        assert_eq!(container.secrets[0].name, "app_s");
        assert_eq!(container.secrets[0].target.name, "s");
        assert_eq!(container.configs[0].name, "c");
        assert_eq!(container.configs[0].target.name, "/etc/c.conf");
        let config = load(
            "services:\n  web:\n    image: x\n    user: \"1000\"\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n",
        );
        let plan = plan("app", &config).expect("plan");
        assert_eq!(plan.ignored, ["user"]);
        let check = plan.services["app_web"]
            .task_template
            .container
            .health_check
            .clone()
            .expect("the healthcheck is the service's");
        assert_eq!(
            check.test,
            crate::store::objects::HealthTest::Cmd(vec!["true".into()])
        );
    }

    #[test]
    fn external_networks_are_used_not_created() {
        let config = load(
            "services:\n  web:\n    image: x\n    networks: [shared]\nnetworks:\n  shared:\n    external: true\n    name: corp_net\n",
        );
        let plan = plan("app", &config).expect("plan");
        assert!(plan.networks.is_empty());
        assert_eq!(
            plan.external_networks.iter().collect::<Vec<_>>(),
            ["corp_net"]
        );
        assert_eq!(
            plan.services["app_web"].task_template.networks[0].target,
            "corp_net"
        );
    }

    #[test]
    fn a_bad_stack_name_or_missing_image_is_refused() {
        let config = load("services:\n  web:\n    command: x\n");
        assert_eq!(
            plan("app", &config),
            Err(ConvertError::NoImage {
                service: "web".to_owned()
            })
        );
        assert!(plan("_bad", &load("services: {}\n")).is_err());
    }
}

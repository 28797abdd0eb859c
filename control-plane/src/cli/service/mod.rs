//! `hive service create|ls|ps|inspect|logs|scale|update|rm`, with docker's flags, columns and
//! texts (docker/cli `cli/command/service/*`). The flags are parsed into the store's
//! `ServiceSpec`, which goes to the manager through `client::Control`; the manager checks it
//! (docs/control-plane.md, "The wire").

pub mod health;
pub mod opts;
pub mod progress;
pub mod render;
pub mod update_flags;

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand, ValueEnum};
use futures::StreamExt;

use self::opts::{
    env_add, env_rm, parse_constraint, parse_cpus, parse_env, parse_labels, parse_memory,
    parse_mount, parse_placement_pref, parse_publish, parse_sysctl, parse_ulimit, publish_add,
    publish_rm, random_name,
};
use self::render::{TaskFilter, TaskTableOptions, log_context, render_tasks};
use super::format::{Format, inspect_format, inspect_output, parse_format};
use super::network::{network_id, parse_network, resolve};
use super::output::{CliFailure, out, parse_duration, run_client};
use crate::api::pb;
use crate::client::{DaemonClient, ImageResolution, LogsRequest, TaskList};
use crate::store::objects::{
    EndpointMode, Mount, NetworkAttachmentConfig, PlacementPreference, PortConfig,
    RestartCondition, Service, ServiceMode, ServiceSpec, Ulimit,
};

#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    pub command: ServiceCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Replicated,
    Global,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RestartConditionArg {
    None,
    OnFailure,
    Any,
}

impl From<RestartConditionArg> for RestartCondition {
    fn from(c: RestartConditionArg) -> Self {
        match c {
            RestartConditionArg::None => Self::None,
            RestartConditionArg::OnFailure => Self::OnFailure,
            RestartConditionArg::Any => Self::Any,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EndpointModeArg {
    Vip,
    Dnsrr,
}

/// Flags `create` and `update` share (omitted = default on create, unchanged on update).
#[derive(Debug, Clone, Default, Args)]
pub struct CommonOpts {
    #[command(flatten)]
    pub update_config: update_flags::UpdateConfigOpts,
    /// Number of tasks.
    #[arg(long)]
    pub replicas: Option<u64>,
    /// Reserve CPUs.
    #[arg(long, value_parser = parse_cpus)]
    pub reserve_cpu: Option<i64>,
    /// Reserve Memory.
    #[arg(long, value_parser = parse_memory)]
    pub reserve_memory: Option<i64>,
    /// Limit CPUs.
    #[arg(long, value_parser = parse_cpus)]
    pub limit_cpu: Option<i64>,
    /// Limit Memory.
    #[arg(long, value_parser = parse_memory)]
    pub limit_memory: Option<i64>,
    /// Restart when condition is met ("none", "on-failure", "any") (default "any").
    #[arg(long, value_enum)]
    pub restart_condition: Option<RestartConditionArg>,
    /// Delay between restart attempts (ns|us|ms|s|m|h) (default 5s).
    #[arg(long, value_parser = parse_duration)]
    pub restart_delay: Option<Duration>,
    /// Maximum number of restarts before giving up.
    #[arg(long)]
    pub restart_max_attempts: Option<u64>,
    /// Window used to evaluate the restart policy (ns|us|ms|s|m|h).
    #[arg(long, value_parser = parse_duration)]
    pub restart_window: Option<Duration>,
    /// Endpoint mode (vip or dnsrr) (default "vip").
    #[arg(long, value_enum)]
    pub endpoint_mode: Option<EndpointModeArg>,
    /// Container hostname.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Time to wait before force killing a container (ns|us|ms|s|m|h) (default 10s).
    #[arg(long, value_parser = parse_duration)]
    pub stop_grace_period: Option<Duration>,
    /// Signal to stop the container (default: the image's, else SIGTERM).
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Use an init inside each service container to forward signals and reap processes.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub init: Option<bool>,
    /// Mount the container's root filesystem as read only.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub read_only: Option<bool>,
    /// Add Linux capabilities.
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities.
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Maximum number of tasks per node (default 0 = unlimited).
    #[arg(long)]
    pub replicas_max_per_node: Option<u64>,
    /// Exit immediately instead of waiting for the service to converge.
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub health: health::HealthOpts,
    /// Send registry authentication details to swarm agents.
    #[arg(long)]
    pub with_registry_auth: bool,
    /// Do not query the registry to resolve image digest and supported platforms.
    #[arg(long)]
    pub no_resolve_image: bool,
}

impl CommonOpts {
    /// Whether the manager pins the image (`--no-resolve-image` says not).
    pub fn image_resolution(&self) -> ImageResolution {
        if self.no_resolve_image {
            ImageResolution::AsWritten
        } else {
            ImageResolution::Resolve
        }
    }
}

#[derive(Debug, Subcommand)]
// Parsed once per command; boxing clap's flattened option groups would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum ServiceCommand {
    /// Create a new service.
    #[command(override_usage = "hive service create [OPTIONS] IMAGE [COMMAND] [ARG...]")]
    Create {
        /// Service name.
        #[arg(long)]
        name: Option<String>,
        /// Service mode ("replicated", "global").
        #[arg(long, value_enum, default_value = "replicated")]
        mode: ModeArg,
        /// Publish a port as a node port (`8080:80`, `8080:80/udp`,
        /// `published=8080,target=80,protocol=udp,mode=host`).
        #[arg(short, long, value_parser = parse_publish)]
        publish: Vec<PortConfig>,
        /// Set environment variables.
        #[arg(short, long, value_parser = parse_env)]
        env: Vec<String>,
        /// Placement constraints.
        #[arg(long, value_parser = parse_constraint)]
        constraint: Vec<String>,
        /// Add a placement preference (`spread=node.labels.zone`).
        #[arg(long, value_parser = parse_placement_pref)]
        placement_pref: Vec<PlacementPreference>,
        /// Service labels.
        #[arg(short, long)]
        label: Vec<String>,
        /// Network attachments (`NAME`, or `name=NAME,alias=ALIAS`).
        #[arg(long, value_parser = parse_network)]
        network: Vec<NetworkAttachmentConfig>,
        #[command(flatten)]
        common: CommonOpts,
        #[command(flatten)]
        container: CreateContainerOpts,
        /// Image, then the command and its arguments. Only what follows the image may start
        /// with `-` (it is the task's): a flag before it that hive does not know is refused.
        #[arg(required = true, trailing_var_arg = true)]
        image_and_args: Vec<String>,
    },
    /// List services.
    #[command(alias = "list")]
    Ls {
        /// Only display IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or
        /// 'TEMPLATE' (a Go template over .ID .Name .Mode .Replicas .Image .Ports).
        #[arg(long)]
        format: Option<String>,
    },
    /// List the tasks of one or more services.
    Ps {
        #[command(flatten)]
        table: TaskTableArgs,
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Display detailed information on one or more services.
    Inspect {
        /// Print the information in a human friendly format.
        #[arg(long)]
        pretty: bool,
        /// Format output using a custom template (over the Engine API's service object).
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Fetch the logs of a service or task.
    Logs {
        /// Follow log output.
        #[arg(short, long)]
        follow: bool,
        /// Number of lines to show from the end of the logs (default "all").
        #[arg(short = 'n', long, default_value = "all")]
        tail: String,
        /// Show timestamps.
        #[arg(short, long)]
        timestamps: bool,
        /// Do not truncate output.
        #[arg(long)]
        no_trunc: bool,
        target: String,
    },
    /// Scale one or multiple replicated services.
    Scale {
        /// Exit immediately instead of waiting for the service to converge.
        #[arg(short, long)]
        detach: bool,
        /// SERVICE=REPLICAS pairs.
        #[arg(required = true)]
        scales: Vec<String>,
    },
    /// Update a service.
    Update {
        #[command(flatten)]
        update: UpdateOpts,
        service: String,
    },
    /// Revert changes to a service's configuration.
    Rollback {
        /// Exit immediately instead of waiting for the service to converge.
        #[arg(short, long)]
        detach: bool,
        service: String,
    },
    /// Remove one or more services.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        services: Vec<String>,
    },
}

/// `service create`'s container flags that `update` spells `--X-add`/`--X-rm`.
#[derive(Debug, Clone, Default, Args)]
pub struct CreateContainerOpts {
    /// Attach a filesystem mount to the service
    /// (`type=volume|bind|tmpfs,source=...,target=...,readonly`).
    #[arg(long, value_parser = parse_mount)]
    pub mount: Vec<Mount>,
    /// Ulimit options (`nofile=1024:2048`).
    #[arg(long, value_parser = parse_ulimit)]
    pub ulimit: Vec<Ulimit>,
    /// Sysctl options (`net.core.somaxconn=1024`).
    #[arg(long, value_parser = parse_sysctl)]
    pub sysctl: Vec<(String, String)>,
    /// Specify secrets to expose to the service (`NAME` or `source=,target=,uid=,gid=,mode=`).
    #[arg(long, value_parser = crate::cli::secret::parse_file_reference)]
    pub secret: Vec<crate::store::objects::FileReference>,
    /// Specify configurations to expose to the service.
    #[arg(long, value_parser = crate::cli::secret::parse_file_reference)]
    pub config: Vec<crate::store::objects::FileReference>,
}

impl CreateContainerOpts {
    pub fn apply(&self, spec: &mut ServiceSpec) {
        let container = &mut spec.task_template.container;
        container.mounts = self.mount.clone();
        container.ulimits = self.ulimit.clone();
        container.sysctls = self.sysctl.iter().cloned().collect();
        container.secrets = self.secret.clone();
        container.configs = self.config.clone();
    }
}

/// `service update`'s flags.
#[derive(Debug, Clone, Default, Args)]
pub struct UpdateOpts {
    /// Service image tag.
    #[arg(long)]
    pub image: Option<String>,
    /// Add or update an environment variable.
    #[arg(long, value_parser = parse_env)]
    pub env_add: Vec<String>,
    /// Remove an environment variable.
    #[arg(long)]
    pub env_rm: Vec<String>,
    /// Add or update a published port.
    #[arg(long, value_parser = parse_publish)]
    pub publish_add: Vec<PortConfig>,
    /// Remove a published port by its target port.
    #[arg(long)]
    pub publish_rm: Vec<String>,
    /// Add or update a placement constraint.
    #[arg(long, value_parser = parse_constraint)]
    pub constraint_add: Vec<String>,
    /// Remove a constraint.
    #[arg(long)]
    pub constraint_rm: Vec<String>,
    /// Add a placement preference (`spread=node.labels.zone`).
    #[arg(long, value_parser = parse_placement_pref)]
    pub placement_pref_add: Vec<PlacementPreference>,
    /// Remove a placement preference.
    #[arg(long, value_parser = parse_placement_pref)]
    pub placement_pref_rm: Vec<PlacementPreference>,
    /// Add or update a service label.
    #[arg(long)]
    pub label_add: Vec<String>,
    /// Remove a label by its key.
    #[arg(long)]
    pub label_rm: Vec<String>,
    /// Add a network (`NAME`, or `name=NAME,alias=ALIAS`).
    #[arg(long, value_parser = parse_network)]
    pub network_add: Vec<NetworkAttachmentConfig>,
    /// Remove a network.
    #[arg(long)]
    pub network_rm: Vec<String>,
    /// Add or update a mount on a service.
    #[arg(long, value_parser = parse_mount)]
    pub mount_add: Vec<Mount>,
    /// Remove a mount by its target path.
    #[arg(long)]
    pub mount_rm: Vec<String>,
    /// Add or update a secret on a service.
    #[arg(long, value_parser = crate::cli::secret::parse_file_reference)]
    pub secret_add: Vec<crate::store::objects::FileReference>,
    /// Remove a secret (its name or ID).
    #[arg(long)]
    pub secret_rm: Vec<String>,
    /// Add or update a config file on a service.
    #[arg(long, value_parser = crate::cli::secret::parse_file_reference)]
    pub config_add: Vec<crate::store::objects::FileReference>,
    /// Remove a config (its name or ID).
    #[arg(long)]
    pub config_rm: Vec<String>,
    /// Add or update a ulimit option.
    #[arg(long, value_parser = parse_ulimit)]
    pub ulimit_add: Vec<Ulimit>,
    /// Remove a ulimit option by its name.
    #[arg(long)]
    pub ulimit_rm: Vec<String>,
    /// Add or update a sysctl option.
    #[arg(long, value_parser = parse_sysctl)]
    pub sysctl_add: Vec<(String, String)>,
    /// Remove a sysctl option by its key.
    #[arg(long)]
    pub sysctl_rm: Vec<String>,
    /// Force update even if no changes require it.
    #[arg(long)]
    pub force: bool,
    /// Rollback to previous specification.
    #[arg(long)]
    pub rollback: bool,
    #[command(flatten)]
    pub common: CommonOpts,
}

/// Applies `service update`'s flags to `spec` (removals before additions, as docker).
pub fn apply_update(spec: &mut ServiceSpec, opts: &UpdateOpts) -> Result<(), CliFailure> {
    if let Some(image) = &opts.image {
        spec.task_template.container.image = image.clone();
    }
    let env = &mut spec.task_template.container.env;
    for key in &opts.env_rm {
        env_rm(env, key);
    }
    for entry in &opts.env_add {
        env_add(env, entry);
    }
    let container = &mut spec.task_template.container;
    // As docker: a mount is identified by its target, a ulimit by its name.
    container
        .mounts
        .retain(|m| !opts.mount_rm.contains(&m.target));
    for mount in &opts.mount_add {
        container.mounts.retain(|m| m.target != mount.target);
        container.mounts.push(mount.clone());
    }
    // As docker: a secret or config is removed by its name (or ID); one added again replaces
    // the earlier reference to the same source.
    for (references, remove, add) in [
        (&mut container.secrets, &opts.secret_rm, &opts.secret_add),
        (&mut container.configs, &opts.config_rm, &opts.config_add),
    ] {
        references.retain(|r| !remove.contains(&r.name) && !remove.contains(&r.id));
        for reference in add {
            references.retain(|r| r.name != reference.name);
            references.push(reference.clone());
        }
    }
    container
        .ulimits
        .retain(|u| !opts.ulimit_rm.contains(&u.name));
    for ulimit in &opts.ulimit_add {
        container.ulimits.retain(|u| u.name != ulimit.name);
        container.ulimits.push(ulimit.clone());
    }
    for key in &opts.sysctl_rm {
        container.sysctls.remove(key);
    }
    container.sysctls.extend(opts.sysctl_add.iter().cloned());
    let ports = &mut spec.endpoint_spec.ports;
    for text in &opts.publish_rm {
        publish_rm(ports, text).map_err(CliFailure::Usage)?;
    }
    for port in &opts.publish_add {
        publish_add(ports, port.clone());
    }
    let constraints = &mut spec.task_template.placement.constraints;
    constraints.retain(|c| !opts.constraint_rm.iter().any(|r| r.trim() == c));
    for c in &opts.constraint_add {
        if !constraints.contains(c) {
            constraints.push(c.clone());
        }
    }
    let preferences = &mut spec.task_template.placement.preferences;
    preferences.retain(|p| !opts.placement_pref_rm.contains(p));
    preferences.extend(opts.placement_pref_add.iter().cloned());
    let labels = &mut spec.annotations.labels;
    for key in &opts.label_rm {
        labels.remove(key);
    }
    labels.extend(parse_labels(&opts.label_add));
    // Network flags hold IDs here: `run` resolved the names (`network::resolve`).
    let networks = &mut spec.task_template.networks;
    networks.retain(|n| !opts.network_rm.contains(&n.target));
    for attachment in &opts.network_add {
        if networks.iter().any(|n| n.target == attachment.target) {
            return Err(CliFailure::Usage(format!(
                "service is already attached to network {}",
                attachment.target
            )));
        }
        networks.push(attachment.clone());
    }
    if opts.force {
        spec.task_template.force_update += 1;
    }
    apply_common(spec, &opts.common)
}

/// Flags of the task table (`service ps`, `node ps`).
#[derive(Debug, Clone, Args)]
pub struct TaskTableArgs {
    /// Only display task IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter output based on conditions provided (desired-state, id, name, node).
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or
    /// 'TEMPLATE' (a Go template over .ID .Name .Image .Node .DesiredState .CurrentState
    /// .Error .Ports).
    #[arg(long)]
    pub format: Option<String>,
}

impl TaskTableArgs {
    fn options(&self) -> TaskTableOptions {
        TaskTableOptions {
            no_trunc: self.no_trunc,
            quiet: self.quiet,
        }
    }

    /// The `--filter` flags.
    pub fn task_filter(&self) -> Result<TaskFilter, CliFailure> {
        TaskFilter::parse(&self.filter).map_err(CliFailure::Usage)
    }

    /// The `--format` flag, checked before the daemon is asked.
    pub fn format(&self) -> Result<Option<Format>, CliFailure> {
        parse_format(self.format.as_deref())
    }
}

/// Applies the shared flags that were given to `spec`.
pub fn apply_common(spec: &mut ServiceSpec, common: &CommonOpts) -> Result<(), CliFailure> {
    common
        .update_config
        .apply(&mut spec.update_config, &mut spec.rollback_config);
    let template = &mut spec.task_template;
    if let Some(replicas) = common.replicas {
        match &mut spec.mode {
            ServiceMode::Replicated { replicas: r } => *r = replicas,
            ServiceMode::Global => {
                return Err(CliFailure::Usage(
                    "replicas can only be used with replicated or replicated-job mode".to_owned(),
                ));
            }
        }
    }
    let resources = &mut template.resources;
    if let Some(v) = common.reserve_cpu {
        resources.reservations.nano_cpus = v;
    }
    if let Some(v) = common.reserve_memory {
        resources.reservations.memory_bytes = v;
    }
    if let Some(v) = common.limit_cpu {
        resources.limits.nano_cpus = v;
    }
    if let Some(v) = common.limit_memory {
        resources.limits.memory_bytes = v;
    }
    let restart = &mut template.restart_policy;
    if let Some(c) = common.restart_condition {
        restart.condition = c.into();
    }
    if let Some(d) = common.restart_delay {
        restart.delay = d;
    }
    if let Some(n) = common.restart_max_attempts {
        restart.max_attempts = n;
    }
    if let Some(w) = common.restart_window {
        restart.window = w;
    }
    if let Some(max) = common.replicas_max_per_node {
        template.placement.max_replicas = max;
    }
    if let Some(mode) = common.endpoint_mode {
        spec.endpoint_spec.mode = match mode {
            EndpointModeArg::Vip => EndpointMode::Vip,
            EndpointModeArg::Dnsrr => EndpointMode::Dnsrr,
        };
    }
    let container = &mut template.container;
    common.health.apply(container)?;
    if let Some(h) = &common.hostname {
        container.hostname = h.clone();
    }
    if let Some(w) = &common.workdir {
        container.workdir = w.clone();
    }
    if let Some(e) = &common.entrypoint {
        container.command = e.split_whitespace().map(str::to_owned).collect();
    }
    if let Some(g) = common.stop_grace_period {
        container.stop_grace_period = g;
    }
    if let Some(signal) = &common.stop_signal {
        container.stop_signal = signal.clone();
    }
    if let Some(user) = &common.user {
        container.user = user.clone();
    }
    if common.init.is_some() {
        container.init = common.init;
    }
    if let Some(read_only) = common.read_only {
        container.read_only = read_only;
    }
    // As docker's update: a capability added is no longer dropped, and the other way round.
    for cap in &common.cap_add {
        container.cap_drop.retain(|c| !c.eq_ignore_ascii_case(cap));
        if !container
            .cap_add
            .iter()
            .any(|c| c.eq_ignore_ascii_case(cap))
        {
            container.cap_add.push(cap.clone());
        }
    }
    for cap in &common.cap_drop {
        container.cap_add.retain(|c| !c.eq_ignore_ascii_case(cap));
        if !container
            .cap_drop
            .iter()
            .any(|c| c.eq_ignore_ascii_case(cap))
        {
            container.cap_drop.push(cap.clone());
        }
    }
    Ok(())
}

/// The spec `service create` sends.
#[allow(clippy::too_many_arguments)]
pub fn create_spec(
    name: Option<String>,
    mode: ModeArg,
    publish: Vec<PortConfig>,
    env: Vec<String>,
    constraint: Vec<String>,
    label: &[String],
    common: &CommonOpts,
    image_and_args: &[String],
) -> Result<ServiceSpec, CliFailure> {
    let mut spec = ServiceSpec::default();
    spec.annotations.name = name.unwrap_or_else(random_name);
    spec.annotations.labels = parse_labels(label);
    spec.mode = match mode {
        ModeArg::Replicated => ServiceMode::Replicated { replicas: 1 },
        ModeArg::Global => ServiceMode::Global,
    };
    let (image, args) = image_and_args.split_first().ok_or_else(|| {
        CliFailure::Usage("\"hive service create\" requires at least 1 argument.".to_owned())
    })?;
    let container = &mut spec.task_template.container;
    container.image = image.clone();
    container.args = args.to_vec();
    container.env = env;
    spec.task_template.placement.constraints = constraint;
    spec.endpoint_spec.ports = publish;
    apply_common(&mut spec, common)?;
    Ok(spec)
}

/// `SERVICE=REPLICAS`.
pub fn parse_scale(text: &str) -> Result<(String, u64), CliFailure> {
    text.split_once('=')
        .and_then(|(name, n)| Some((name.to_owned(), n.parse().ok()?)))
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| {
            CliFailure::Usage(format!(
                "invalid scale specifier '{text}'.\nSee 'hive service scale --help'."
            ))
        })
}

async fn inspect(client: &mut DaemonClient, service: &str) -> Result<Service, CliFailure> {
    Ok(client.control.inspect_service(service).await?)
}

/// Read-modify-write of a service's spec, read again and retried when another change
/// committed in between (the manager answers `Aborted`).
pub async fn modify_service(
    client: &mut DaemonClient,
    service: &str,
    change: impl FnMut(&Service, &mut ServiceSpec) -> Result<(), CliFailure>,
) -> Result<Service, CliFailure> {
    modify_service_with(
        client,
        service,
        pb::RegistryAuthFrom::Spec,
        ImageResolution::Resolve,
        change,
    )
    .await
}

/// [`modify_service`], the registry credentials kept from `auth_from` when the changed spec
/// carries none (docker's `registryAuthFrom`: a rollback takes the previous spec's).
pub async fn modify_service_with(
    client: &mut DaemonClient,
    service: &str,
    auth_from: pb::RegistryAuthFrom,
    resolution: ImageResolution,
    mut change: impl FnMut(&Service, &mut ServiceSpec) -> Result<(), CliFailure>,
) -> Result<Service, CliFailure> {
    const ATTEMPTS: usize = 5;
    let mut attempt = 1;
    loop {
        let current = inspect(client, service).await?;
        let mut spec = current.spec.clone();
        change(&current, &mut spec)?;
        let result = client
            .control
            .update_service_with(
                &current.id,
                current.meta.version,
                &spec,
                auth_from,
                resolution,
            )
            .await;
        match result {
            Ok(service) => return Ok(service),
            Err(err) if err.is_conflict() && attempt < ATTEMPTS => attempt += 1,
            Err(err) => return Err(err.into()),
        }
    }
}

/// `service scale`'s change; docker's refusal for global services.
pub fn set_replicas(
    service: &str,
    spec: &mut ServiceSpec,
    replicas: u64,
) -> Result<(), CliFailure> {
    match &mut spec.mode {
        ServiceMode::Replicated { replicas: r } => {
            *r = replicas;
            Ok(())
        }
        ServiceMode::Global => Err(CliFailure::Usage(format!(
            "{service}: scale can only be used with replicated or replicated-job mode"
        ))),
    }
}

/// `service rollback`: the previous spec becomes the spec (and, as in Swarm, the current one
/// the previous, so a second rollback undoes the first).
pub async fn rollback(client: &mut DaemonClient, service: &str) -> Result<Service, CliFailure> {
    modify_service_with(
        client,
        service,
        pb::RegistryAuthFrom::PreviousSpec,
        ImageResolution::Resolve,
        |current, spec| {
            *spec = current.previous_spec.clone().ok_or_else(|| {
                CliFailure::Usage(format!("service {service} does not have a previous spec"))
            })?;
            Ok(())
        },
    )
    .await
}

async fn list_tasks(
    client: &mut DaemonClient,
    service: &str,
    node: &str,
) -> Result<TaskList, CliFailure> {
    let filter = crate::client::TaskFilter {
        service: Some(service).filter(|s| !s.is_empty()),
        node: Some(node).filter(|n| !n.is_empty()),
    };
    client.control.list_tasks(filter).await.map_err(|err| {
        // docker's CLI resolves the service first and says so in its own words.
        if err.code() == Some(tonic::Code::NotFound) && !service.is_empty() {
            CliFailure::Usage(format!("no such service: {service}"))
        } else {
            err.into()
        }
    })
}

/// The task table for `service` and/or `node` (`service ps`, `node ps`).
pub async fn print_tasks(
    client: &mut DaemonClient,
    queries: &[(String, String)],
    table: &TaskTableArgs,
) -> Result<(), CliFailure> {
    let filter = table.task_filter()?;
    let format = table.format()?;
    let mut all = Vec::new();
    let mut seen = HashSet::new();
    // Every query's names: `stack ps` asks once per service.
    let mut names: (HashMap<String, String>, HashMap<String, String>) = Default::default();
    for (service, node) in queries {
        let list = list_tasks(client, service, node).await?;
        all.extend(list.tasks.into_iter().filter(|t| seen.insert(t.id.clone())));
        names.0.extend(list.node_names);
        names.1.extend(list.service_names);
    }
    all.retain(|t| filter.keep(t, &names.0, &names.1));
    let text = render_tasks(
        &all,
        &names.0,
        &names.1,
        table.options(),
        format.as_ref(),
        SystemTime::now(),
    )
    .map_err(CliFailure::Usage)?;
    out(&text);
    Ok(())
}

/// Prints one log line as docker does (`[TIMESTAMP ]CONTEXT    | TEXT`); false once stdout is
/// closed.
fn print_log_line(
    line: &pb::LogLine,
    timestamps: bool,
    no_trunc: bool,
    slot_digits: usize,
) -> bool {
    let text = String::from_utf8_lossy(&line.line);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    if line.task_id.is_empty() {
        eprintln!("{text}");
        return true;
    }
    let context = log_context(
        &line.service_name,
        line.slot,
        &line.task_id,
        &line.node_name,
        no_trunc,
        slot_digits,
    );
    let stamp = if let Some(ts) = line.timestamp.as_ref().filter(|_| timestamps) {
        format!("{} ", crate::cli::output::rfc3339(Some(ts)))
    } else {
        String::new()
    };
    let formatted = format!("{stamp}{context}    | {text}");
    if line.stderr {
        eprintln!("{formatted}");
        true
    } else {
        out(&format!("{formatted}\n"))
    }
}

pub fn run(host: Option<&str>, args: ServiceArgs) -> anyhow::Result<ExitCode> {
    run_client(async move {
        let mut client = DaemonClient::connect(host).await?;
        match args.command {
            ServiceCommand::Create {
                name,
                mode,
                publish,
                env,
                constraint,
                placement_pref,
                label,
                mut network,
                common,
                container,
                image_and_args,
            } => {
                let mut spec = create_spec(
                    name,
                    mode,
                    publish,
                    env,
                    constraint,
                    &label,
                    &common,
                    &image_and_args,
                )?;
                container.apply(&mut spec);
                spec.task_template.placement.preferences = placement_pref;
                if common.with_registry_auth {
                    crate::cli::registry_auth::attach(&mut spec)?;
                }
                resolve(&mut client, &mut network).await?;
                spec.task_template.networks = network;
                let service = client
                    .control
                    .create_service_with(&spec, common.image_resolution())
                    .await?;
                println!("{}", service.id);
                if !common.detach {
                    progress::wait_converged(&mut client, &service.id, false).await?;
                }
            }
            ServiceCommand::Ls { quiet, format } => {
                let format = parse_format(format.as_deref())?;
                let rows = client.control.list_services().await?;
                out(&render::render_ls(&rows, quiet, format.as_ref()).map_err(CliFailure::Usage)?);
            }
            ServiceCommand::Ps { table, services } => {
                let queries: Vec<(String, String)> =
                    services.into_iter().map(|s| (s, String::new())).collect();
                print_tasks(&mut client, &queries, &table).await?;
            }
            ServiceCommand::Inspect {
                pretty,
                format,
                services,
            } => {
                let format = inspect_format(pretty, format.as_deref())?;
                let mut found = Vec::new();
                for service in &services {
                    found.push(inspect(&mut client, service).await?);
                }
                if pretty {
                    let texts: Vec<String> = found.iter().map(render::render_pretty).collect();
                    out(&texts.join("\n\n"));
                } else {
                    // The Engine API's object, from the same conversion (docker's shape).
                    let objects: Vec<_> = found
                        .iter()
                        .map(|s| crate::engine_api::convert::service_out(s, None))
                        .collect();
                    out(&inspect_output(&objects, format.as_ref()).map_err(CliFailure::Usage)?);
                }
            }
            ServiceCommand::Logs {
                follow,
                tail,
                timestamps,
                no_trunc,
                target,
            } => {
                let tail = if tail == "all" {
                    0
                } else {
                    tail.parse().map_err(|_| {
                        CliFailure::Usage(format!(
                            "invalid --tail \"{tail}\": use a number of lines or \"all\""
                        ))
                    })?
                };
                // docker pads slots to the replica count's digits; a task target gets none.
                let slot_digits = match inspect(&mut client, &target).await {
                    Ok(Service {
                        spec:
                            ServiceSpec {
                                mode: ServiceMode::Replicated { replicas },
                                ..
                            },
                        ..
                    }) => replicas.to_string().len(),
                    _ => 0,
                };
                let mut stream = client
                    .control
                    .service_logs(LogsRequest {
                        target,
                        follow,
                        tail,
                        timestamps,
                    })
                    .await?;
                while let Some(line) = stream.next().await {
                    if !print_log_line(&line?, timestamps, no_trunc, slot_digits) {
                        break;
                    }
                }
            }
            ServiceCommand::Scale { detach, scales } => {
                let scales = scales
                    .iter()
                    .map(|s| parse_scale(s))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut errors = Vec::new();
                let mut scaled = Vec::new();
                for (service, replicas) in scales {
                    let result = modify_service(&mut client, &service, |_, spec| {
                        set_replicas(&service, spec, replicas)
                    })
                    .await;
                    match result {
                        Ok(_) => {
                            println!("{service} scaled to {replicas}");
                            scaled.push(service);
                        }
                        Err(CliFailure::Client(err)) => errors.push(err.to_string()),
                        Err(CliFailure::Usage(message)) => errors.push(message),
                    }
                }
                if !detach {
                    for service in &scaled {
                        progress::wait_converged(&mut client, service, false).await?;
                    }
                }
                if !errors.is_empty() {
                    return Err(CliFailure::Usage(errors.join("\n")));
                }
            }
            ServiceCommand::Update {
                mut update,
                service,
            } => {
                resolve(&mut client, &mut update.network_add).await?;
                for name in &mut update.network_rm {
                    *name = network_id(&mut client, name).await?;
                }
                if update.rollback {
                    rollback(&mut client, &service).await?;
                } else {
                    let resolution = update.common.image_resolution();
                    modify_service_with(
                        &mut client,
                        &service,
                        pb::RegistryAuthFrom::Spec,
                        resolution,
                        |_, spec| {
                            apply_update(spec, &update)?;
                            if update.common.with_registry_auth {
                                crate::cli::registry_auth::attach(spec)?;
                            }
                            Ok(())
                        },
                    )
                    .await?;
                }
                println!("{service}");
                if !update.common.detach {
                    progress::wait_converged(&mut client, &service, update.rollback).await?;
                }
            }
            ServiceCommand::Rollback { detach, service } => {
                rollback(&mut client, &service).await?;
                println!("{service}");
                if !detach {
                    progress::wait_converged(&mut client, &service, true).await?;
                }
            }
            ServiceCommand::Rm { services } => {
                let mut errors = Vec::new();
                for service in services {
                    match client.control.remove_service(&service).await {
                        Ok(_) => println!("{service}"),
                        Err(err) => errors.push(err.to_string()),
                    }
                }
                if !errors.is_empty() {
                    return Err(CliFailure::Usage(errors.join("\n")));
                }
            }
        }
        Ok::<(), CliFailure>(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::objects::TaskState;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: ServiceCommand,
    }

    fn parse(args: &[&str]) -> ServiceCommand {
        let mut all = vec!["service"];
        all.extend_from_slice(args);
        TestCli::try_parse_from(all).unwrap().command
    }

    fn spec_of(command: ServiceCommand) -> Result<ServiceSpec, CliFailure> {
        let ServiceCommand::Create {
            name,
            mode,
            publish,
            env,
            constraint,
            label,
            common,
            container,
            image_and_args,
            ..
        } = command
        else {
            panic!("not a create");
        };
        let mut spec = create_spec(
            name,
            mode,
            publish,
            env,
            constraint,
            &label,
            &common,
            &image_and_args,
        )?;
        container.apply(&mut spec);
        Ok(spec)
    }

    #[test]
    fn container_flags_on_create_and_update() {
        let mut spec = spec_of(parse(&[
            "create",
            "--mount",
            "type=volume,source=db,target=/var/lib/db",
            "--mount",
            "type=tmpfs,target=/cache,tmpfs-size=1m",
            "--user",
            "app:staff",
            "--read-only",
            "--cap-add",
            "NET_ADMIN",
            "--ulimit",
            "nofile=100:200",
            "--sysctl",
            "net.core.somaxconn=1024",
            "--stop-signal",
            "SIGQUIT",
            "--init",
            "registry.example/app:1",
        ]))
        .unwrap();
        let c = &spec.task_template.container;
        assert_eq!(c.mounts.len(), 2);
        assert_eq!(c.mounts[1].tmpfs_size_bytes, Some(1 << 20));
        assert_eq!(c.user, "app:staff");
        assert!(c.read_only);
        assert_eq!(c.init, Some(true));
        assert_eq!(c.cap_add, ["NET_ADMIN"]);
        assert_eq!(c.ulimits[0].hard, 200);
        assert_eq!(c.sysctls["net.core.somaxconn"], "1024");
        assert_eq!(c.stop_signal, "SIGQUIT");

        let ServiceCommand::Update { update, .. } = parse(&[
            "update",
            "--mount-rm",
            "/cache",
            "--mount-add",
            "type=bind,source=/srv,target=/var/lib/db,readonly",
            "--cap-drop",
            "NET_ADMIN",
            "--read-only=false",
            "--ulimit-rm",
            "nofile",
            "--sysctl-rm",
            "net.core.somaxconn",
            "app",
        ]) else {
            panic!("not an update");
        };
        apply_update(&mut spec, &update).unwrap();
        let c = &spec.task_template.container;
        assert_eq!(c.mounts.len(), 1, "{:?}", c.mounts);
        assert_eq!(c.mounts[0].source, "/srv");
        assert!(c.mounts[0].readonly);
        assert!(c.cap_add.is_empty());
        assert_eq!(c.cap_drop, ["NET_ADMIN"]);
        assert!(!c.read_only);
        assert!(c.ulimits.is_empty() && c.sysctls.is_empty());
        assert_eq!(c.user, "app:staff", "flags not given stay");
    }

    #[test]
    fn create_flags_build_the_spec() {
        let spec = spec_of(parse(&[
            "create",
            "--name",
            "web",
            "--replicas",
            "3",
            "-p",
            "8080:80",
            "--publish",
            "published=53,target=53,protocol=udp,mode=host",
            "-e",
            "A=1",
            "--constraint",
            "node.role==manager",
            "--limit-memory",
            "512M",
            "--reserve-cpu",
            "0.5",
            "--restart-condition",
            "on-failure",
            "--restart-delay",
            "2s",
            "--endpoint-mode",
            "dnsrr",
            "-l",
            "tier=front",
            "--entrypoint",
            "/bin/sh -c",
            "--stop-grace-period",
            "1m",
            "-d",
            "hive/whoami",
            "--port",
            "80",
        ]))
        .unwrap();
        assert_eq!(spec.annotations.name, "web");
        assert_eq!(spec.annotations.labels["tier"], "front");
        assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 3 });
        let c = &spec.task_template.container;
        assert_eq!(c.image, "hive/whoami");
        assert_eq!(c.args, ["--port", "80"]);
        assert_eq!(c.command, ["/bin/sh", "-c"]);
        assert_eq!(c.env, ["A=1"]);
        assert_eq!(c.stop_grace_period, Duration::from_secs(60));
        assert_eq!(spec.endpoint_spec.ports.len(), 2);
        assert_eq!(spec.endpoint_spec.mode, EndpointMode::Dnsrr);
        assert_eq!(spec.task_template.resources.limits.memory_bytes, 512 << 20);
        assert_eq!(
            spec.task_template.resources.reservations.nano_cpus,
            500_000_000
        );
        assert_eq!(
            spec.task_template.restart_policy.condition,
            RestartCondition::OnFailure
        );
        assert_eq!(
            spec.task_template.restart_policy.delay,
            Duration::from_secs(2)
        );
        assert_eq!(
            spec.task_template.placement.constraints,
            ["node.role==manager"]
        );
    }

    #[test]
    fn create_defaults_and_refusals() {
        let spec = spec_of(parse(&["create", "hive/echo"])).unwrap();
        assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 1 });
        assert!(!spec.annotations.name.is_empty());
        let err = spec_of(parse(&[
            "create",
            "--mode",
            "global",
            "--replicas",
            "2",
            "x",
        ]));
        let Err(CliFailure::Usage(message)) = err else {
            panic!("global with --replicas was accepted");
        };
        assert_eq!(
            message,
            "replicas can only be used with replicated or replicated-job mode"
        );
        let bad = TestCli::try_parse_from(["service", "create", "-p", "8080:80/sctp", "x"]);
        assert!(bad.is_err());
        let bad = TestCli::try_parse_from(["service", "create", "--limit-memory", "lots", "x"]);
        assert!(bad.is_err());
    }

    #[test]
    fn network_flags_on_create_and_update() {
        let ServiceCommand::Create { network, .. } = parse(&[
            "create",
            "--network",
            "backend",
            "--network",
            "name=front,alias=web",
            "hive/whoami",
        ]) else {
            panic!("not a create");
        };
        let targets: Vec<&str> = network.iter().map(|n| n.target.as_str()).collect();
        assert_eq!(targets, ["backend", "front"]);
        assert_eq!(network[1].aliases, ["web"]);
        assert!(
            TestCli::try_parse_from(["service", "create", "--network", "alias=x", "x"]).is_err()
        );

        // `run` resolves names to IDs before applying; here the "IDs" are as given.
        let mut spec = ServiceSpec::default();
        spec.task_template.networks = network;
        let ServiceCommand::Update { update, .. } = parse(&[
            "update",
            "--network-rm",
            "backend",
            "--network-add",
            "name=db,alias=database",
            "web",
        ]) else {
            panic!("not an update");
        };
        apply_update(&mut spec, &update).unwrap();
        let targets: Vec<&str> = spec
            .task_template
            .networks
            .iter()
            .map(|n| n.target.as_str())
            .collect();
        assert_eq!(targets, ["front", "db"]);
        let ServiceCommand::Update { update, .. } =
            parse(&["update", "--network-add", "front", "web"])
        else {
            panic!("not an update");
        };
        let Err(CliFailure::Usage(message)) = apply_update(&mut spec, &update) else {
            panic!("a second attachment was accepted");
        };
        assert_eq!(message, "service is already attached to network front");
    }

    #[test]
    fn update_flags_modify_the_spec() {
        let mut spec = spec_of(parse(&[
            "create",
            "--name",
            "web",
            "-e",
            "A=1",
            "-e",
            "B=2",
            "-p",
            "8080:80",
            "--constraint",
            "node.role==worker",
            "-l",
            "old=1",
            "hive/whoami",
        ]))
        .unwrap();
        let ServiceCommand::Update { update, service } = parse(&[
            "update",
            "--image",
            "hive/echo",
            "--env-add",
            "A=3",
            "--env-rm",
            "B",
            "--publish-rm",
            "80",
            "--publish-add",
            "9090:90/udp",
            "--constraint-rm",
            "node.role==worker",
            "--constraint-add",
            "node.labels.zone==a",
            "--label-rm",
            "old",
            "--label-add",
            "new=2",
            "--force",
            "--replicas",
            "4",
            "-d",
            "web",
        ]) else {
            panic!("not an update");
        };
        assert_eq!(service, "web");
        apply_update(&mut spec, &update).unwrap();
        assert_eq!(spec.task_template.container.image, "hive/echo");
        assert_eq!(spec.task_template.container.env, ["A=3"]);
        assert_eq!(
            spec.endpoint_spec.ports,
            [parse_publish("9090:90/udp").unwrap()]
        );
        assert_eq!(
            spec.task_template.placement.constraints,
            ["node.labels.zone==a"]
        );
        assert_eq!(spec.annotations.labels.len(), 1);
        assert_eq!(spec.annotations.labels["new"], "2");
        assert_eq!(spec.task_template.force_update, 1);
        assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 4 });
        assert!(update.common.detach);

        // Flags not given leave the spec alone.
        let before = spec.clone();
        apply_update(&mut spec, &UpdateOpts::default()).unwrap();
        assert_eq!(spec, before);
    }

    #[test]
    fn scale_specifiers_and_filters() {
        assert_eq!(parse_scale("web=5").unwrap(), ("web".to_owned(), 5));
        let Err(CliFailure::Usage(message)) = parse_scale("web") else {
            panic!("a bad scale specifier was accepted");
        };
        assert!(message.starts_with("invalid scale specifier 'web'."));
        let mut global = ServiceSpec {
            mode: ServiceMode::Global,
            ..ServiceSpec::default()
        };
        let Err(CliFailure::Usage(message)) = set_replicas("agent", &mut global, 2) else {
            panic!("a global service was scaled");
        };
        assert_eq!(
            message,
            "agent: scale can only be used with replicated or replicated-job mode"
        );
        assert!(parse_scale("=3").is_err());
        let ServiceCommand::Ps { table, .. } =
            parse(&["ps", "--filter", "desired-state=running", "web"])
        else {
            panic!("not ps");
        };
        assert_eq!(table.task_filter().unwrap().desired, [TaskState::Running]);
        let ServiceCommand::Ps { table, .. } = parse(&["ps", "-f", "label=x", "web"]) else {
            panic!("not ps");
        };
        assert!(table.task_filter().is_err());
    }

    #[test]
    fn placement_preferences_and_the_per_node_limit() {
        let ServiceCommand::Create {
            placement_pref,
            common,
            ..
        } = parse(&[
            "create",
            "--placement-pref",
            "spread=node.labels.zone",
            "--replicas-max-per-node",
            "2",
            "hive/whoami",
        ])
        else {
            panic!("not a create");
        };
        assert_eq!(placement_pref[0].spread, "node.labels.zone");
        assert_eq!(common.replicas_max_per_node, Some(2));
        for bad in ["pack=node.labels.zone", "spread", "spread=node.id"] {
            assert!(
                TestCli::try_parse_from(["service", "create", "--placement-pref", bad, "x"])
                    .is_err(),
                "{bad}"
            );
        }
        let mut spec = ServiceSpec::default();
        spec.task_template.placement.preferences = placement_pref;
        let ServiceCommand::Update { update: opts, .. } = parse(&[
            "update",
            "--placement-pref-rm",
            "spread=node.labels.zone",
            "--placement-pref-add",
            "spread=node.labels.rack",
            "--replicas-max-per-node",
            "0",
            "web",
        ]) else {
            panic!("not an update");
        };
        apply_update(&mut spec, &opts).expect("update applies");
        let placement = &spec.task_template.placement;
        assert_eq!(placement.preferences.len(), 1);
        assert_eq!(placement.preferences[0].spread, "node.labels.rack");
        assert_eq!(placement.max_replicas, 0);
    }
}

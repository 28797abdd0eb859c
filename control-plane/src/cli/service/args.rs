//! `hive service`'s command line: the subcommands and their flags, as docker's
//! (`docker/cli` `cli/command/service/opts.go`), parsed by clap.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use super::{health, update_flags};

use super::opts::{
    parse_constraint, parse_cpus, parse_env, parse_memory, parse_mount, parse_placement_pref,
    parse_publish, parse_sysctl, parse_ulimit,
};
use super::render::{TaskFilter, TaskTableOptions};
use crate::cli::format::{Format, parse_format};
use crate::cli::network::parse_network;
use crate::cli::output::{CliFailure, parse_duration};
use crate::client::ImageResolution;
use crate::store::objects::{
    Mount, NetworkAttachmentConfig, PlacementPreference, PortConfig, RestartCondition, ServiceSpec,
    Ulimit,
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
    pub(super) fn options(&self) -> TaskTableOptions {
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

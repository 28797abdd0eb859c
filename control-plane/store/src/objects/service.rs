//! A service: the desired state of a set of tasks (Swarm's `Service`).

use std::{collections::BTreeMap, time::Duration};

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use super::common::{Annotations, Meta, ResourceRequirements};

/// A service. `spec` is the user's; `endpoint` is what the allocator assigned (VIPs, published
/// ports); `spec_version` is maintained by the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Service {
    pub id: String,
    pub meta: Meta,
    pub spec: ServiceSpec,
    /// The spec before the last update, for `hive service rollback`.
    pub previous_spec: Option<ServiceSpec>,
    /// Store version at which `spec` last changed. Tasks record the spec version they were made
    /// from, so the updater can tell outdated tasks without comparing whole specs. The store
    /// sets it on create and whenever an update changes `spec`.
    pub spec_version: u64,
    /// Allocated by the allocator; `None` until then.
    pub endpoint: Option<Endpoint>,
    /// Where the last update or rollback stands (`None` before the first update).
    pub update_status: Option<super::UpdateStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceSpec {
    /// The service name, unique among services (the store enforces it).
    pub annotations: Annotations,
    pub mode: ServiceMode,
    pub task_template: TaskSpec,
    pub endpoint_spec: EndpointSpec,
    /// `--update-*` (Swarm's defaults when not given).
    pub update_config: super::UpdateConfig,
    /// `--rollback-*`.
    pub rollback_config: super::UpdateConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceMode {
    /// `--mode replicated --replicas N`; Docker's default is 1 replica.
    Replicated { replicas: u64 },
    /// One task on every eligible node.
    Global,
}

impl Default for ServiceMode {
    fn default() -> Self {
        Self::Replicated { replicas: 1 }
    }
}

/// What every task of a service runs. Copied into each task when the task is made, so a task
/// keeps running what it was created with while a rolling update replaces it.
///
/// `networks` lives here, not on the service spec: Docker's API deprecated
/// `ServiceSpec.Networks` in favour of `TaskTemplate.Networks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskSpec {
    pub container: ContainerSpec,
    pub resources: ResourceRequirements,
    pub restart_policy: RestartPolicy,
    pub placement: Placement,
    pub networks: Vec<NetworkAttachmentConfig>,
    /// Bumped by `hive service update --force`: a changed template, so every task is replaced
    /// even when nothing else changed (SwarmKit's `ForceUpdate`).
    pub force_update: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerSpec {
    /// `hive/whoami`, `hive/echo`, `host nginx`, or later an OCI reference.
    pub image: String,
    /// Replaces the image's entry point when not empty (`--entrypoint`).
    pub command: Vec<String>,
    /// Arguments after the image on `hive service create`.
    pub args: Vec<String>,
    /// `KEY=value` entries, in the order given.
    pub env: Vec<String>,
    /// Time between SIGTERM and SIGKILL (`--stop-grace-period`, default 10 s).
    pub stop_grace_period: Duration,
    /// `--hostname`; empty means the short container ID, as Docker. May hold Swarm's
    /// templates (`{{.Task.Slot}}`...) later; today it is used as given.
    pub hostname: String,
    /// `--workdir`; empty means `/`.
    pub workdir: String,
    /// `--user` (`name|uid[:group|gid]`); empty means the image's `User`. OCI images only, as
    /// every field below.
    pub user: String,
    /// `--init`; `None` lets the image decide.
    pub init: Option<bool>,
    /// `--read-only`: the root file system is mounted read-only.
    pub read_only: bool,
    /// `--cap-add` / `--cap-drop`, on top of Docker's default capabilities.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `--ulimit NAME=SOFT[:HARD]`.
    pub ulimits: Vec<Ulimit>,
    /// `--sysctl KEY=VALUE`.
    pub sysctls: BTreeMap<String, String>,
    /// `--stop-signal`; empty means the image's `StopSignal`, else SIGTERM.
    pub stop_signal: String,
    /// `--mount`.
    pub mounts: Vec<Mount>,
    /// `--secret` / `--config` (docs/secrets.md).
    pub secrets: Vec<super::FileReference>,
    pub configs: Vec<super::FileReference>,
    /// `--health-*` / `--no-healthcheck` (docs/health.md); `None` is the image's check.
    pub health_check: Option<super::health::HealthConfig>,
    /// `--with-registry-auth` (docs/images.md, "Credentials"): what the nodes that run a task
    /// of the service pull its image with (SwarmKit's `PullOptions.RegistryAuth`). Stored in
    /// the (encrypted) store, sent to the nodes assigned a task, never in a reply to a client
    /// ([`Service::without_credentials`]). `Debug` hides the password.
    pub registry_auth: Option<super::RegistryAuth>,
}

/// One `--ulimit` (Swarm's `ContainerSpec.Ulimits`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// One `--mount` (Swarm's `api.Mount`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Mount {
    pub mount_type: MountType,
    /// Volume name, or host path of a bind; empty for tmpfs.
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    pub readonly: bool,
    /// `volume-opt=KEY=VALUE` for the volume driver.
    pub volume_options: BTreeMap<String, String>,
    /// `tmpfs-size`; unlimited (half the RAM, the kernel's default) when `None`.
    pub tmpfs_size_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountType {
    #[default]
    Volume,
    Bind,
    Tmpfs,
}

impl Default for ContainerSpec {
    fn default() -> Self {
        Self {
            image: String::new(),
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            stop_grace_period: Duration::from_secs(10),
            hostname: String::new(),
            workdir: String::new(),
            user: String::new(),
            init: None,
            read_only: false,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            ulimits: Vec::new(),
            sysctls: BTreeMap::new(),
            stop_signal: String::new(),
            mounts: Vec::new(),
            secrets: Vec::new(),
            configs: Vec::new(),
            health_check: None,
            registry_auth: None,
        }
    }
}

impl Service {
    /// The service as a client may see it: without the registry credentials of its spec and
    /// previous spec, as dockerd never returns `PullOptions`.
    pub fn without_credentials(&self) -> Self {
        let mut service = self.clone();
        service.spec.task_template.container.registry_auth = None;
        if let Some(previous) = service.previous_spec.as_mut() {
            previous.task_template.container.registry_auth = None;
        }
        service
    }

    /// The published ports the service holds: those the allocator assigned (`endpoint.ports`)
    /// and those its spec asks for by number (not yet allocated, or changed by an update).
    pub fn held_ports(&self) -> impl Iterator<Item = &PortConfig> {
        let allocated = self.endpoint.iter().flat_map(|e| e.ports.iter());
        allocated
            .chain(self.spec.endpoint_spec.ports.iter())
            .filter(|p| p.published_port != 0)
    }
}

/// `--restart-*`. Defaults are SwarmKit's (`api/defaults/service.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    pub delay: Duration,
    /// 0 means unlimited.
    pub max_attempts: u64,
    /// Window over which attempts are counted; zero means unbounded.
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            condition: RestartCondition::Any,
            delay: Duration::from_secs(5),
            max_attempts: 0,
            window: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    None,
    OnFailure,
    #[default]
    Any,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Placement {
    /// Expressions as given to `--constraint` (`node.role==manager`, `node.labels.zone!=b`);
    /// the scheduler parses them.
    pub constraints: Vec<String>,
    /// `--placement-pref spread=node.labels.zone`: tasks spread evenly over the values of a
    /// label, each preference nested in the one before (SwarmKit's `PlacementPreference`).
    pub preferences: Vec<PlacementPreference>,
    /// `--replicas-max-per-node`: at most this many tasks of the service on one node; 0 is
    /// no limit.
    pub max_replicas: u64,
}

/// One spread preference: the label whose values the tasks are spread over
/// (`node.labels.zone` or `engine.labels.zone`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlacementPreference {
    pub spread: String,
}

/// `--network`: a network to attach tasks to, by ID (the API resolves names before storing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkAttachmentConfig {
    pub target: String,
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointSpec {
    pub mode: EndpointMode,
    pub ports: Vec<PortConfig>,
}

/// `--endpoint-mode`: one virtual IP load-balanced by the mesh, or DNS round robin over the
/// task IPs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointMode {
    #[default]
    Vip,
    Dnsrr,
}

/// One `--publish` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct PortConfig {
    pub name: String,
    pub protocol: Protocol,
    /// Port inside the task.
    pub target_port: u16,
    /// Port on the nodes; 0 in a spec asks the allocator for one from 30000–32767.
    pub published_port: u16,
    pub publish_mode: PublishMode,
}

/// The protocol of a port: the data plane's own type (`tcp` or `udp` in JSON, as before), so
/// what the store holds is what the mesh programs.
pub use hive_dataplane::mesh::state::Protocol;

/// A protocol name a port may not have. Refused where a spec enters the cluster (the CLI's
/// flags, the API's conversion of a spec), never dropped further down.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("hive does not support SCTP ports yet (port {port}/sctp): publish tcp or udp")]
    Sctp { port: u16 },
    #[error("invalid protocol \"{name}\" (port {port}): publish tcp or udp")]
    Unknown { name: String, port: u16 },
}

/// The protocol `name` (`tcp`, `udp`, any case) of the target port `port`.
pub fn parse_protocol(name: &str, port: u16) -> Result<Protocol, ProtocolError> {
    match name.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        "sctp" => Err(ProtocolError::Sctp { port }),
        _ => Err(ProtocolError::Unknown {
            name: name.to_owned(),
            port,
        }),
    }
}

/// `mode=ingress` publishes on every node through the mesh; `mode=host` binds only where a
/// task runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishMode {
    #[default]
    Ingress,
    Host,
}

/// What the allocator assigned to a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Endpoint {
    /// The endpoint spec these allocations were made for.
    pub spec: EndpointSpec,
    /// Ports with `published_port` filled in.
    pub ports: Vec<PortConfig>,
    pub virtual_ips: Vec<VirtualIp>,
}

/// One VIP per network the service is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualIp {
    pub network_id: String,
    /// The VIP with its network's prefix, e.g. `10.0.0.5/24` (stored as that string).
    pub addr: Ipv4Network,
}

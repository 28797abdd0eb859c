//! hive's Compose model: the file as `docker stack deploy` reads it (versions 3.x and the
//! unversioned Compose Specification), already normalised: every short syntax is turned into
//! its long form while decoding, exactly as docker/cli's loader does, so that
//! `hive stack config` prints what `docker stack config` prints and the deploy code reads
//! one shape only.
//!
//! Field order and key names are docker/cli's (`cli/compose/types/types.go`): they decide
//! the order of the printed document. Unknown keys are refused; `x-` keys are extensions.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::decode::{Either, Shape, by_shape};
use super::node::Node;
use super::scalars::{format_go_duration, go_float, parse_go_duration};

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Extension fields (`x-...`) as written, printed back sorted by key.
pub type Extras = BTreeMap<String, Node>;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Config {
    pub version: String,
    pub services: BTreeMap<String, ServiceConfig>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, NetworkConfig>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, VolumeConfig>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, FileObjectConfig>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, FileObjectConfig>,
    #[serde(flatten)]
    pub extras: Extras,
}

/// The top level as written: the sections are decoded one by one by the loader.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopLevel {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub services: Option<BTreeMap<String, ServiceConfig>>,
    #[serde(default)]
    pub networks: Option<BTreeMap<String, Option<NetworkConfig>>>,
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, Option<VolumeConfig>>>,
    #[serde(default)]
    pub secrets: Option<BTreeMap<String, FileObjectConfig>>,
    #[serde(default)]
    pub configs: Option<BTreeMap<String, FileObjectConfig>>,
    /// Compose Specification only (`docker stack deploy` ignores it).
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    #[serde(default, skip_serializing_if = "is_default")]
    pub build: BuildConfig,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cgroupns_mode: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cgroup_parent: String,
    #[serde(default, skip_serializing_if = "ShellCommand::is_empty")]
    pub command: ShellCommand,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileReference>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_name: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub credential_spec: CredentialSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub deploy: DeployConfig,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    #[serde(default, skip_serializing_if = "StringList::is_empty")]
    pub dns: StringList,
    #[serde(default, skip_serializing_if = "StringList::is_empty")]
    pub dns_search: StringList,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domainname: String,
    #[serde(default, skip_serializing_if = "ShellCommand::is_empty")]
    pub entrypoint: ShellCommand,
    #[serde(default, skip_serializing_if = "MappingWithEquals::is_empty")]
    pub environment: MappingWithEquals,
    #[serde(default, skip_serializing_if = "StringList::is_empty")]
    pub env_file: StringList,
    #[serde(default, skip_serializing_if = "StringOrNumberList::is_empty")]
    pub expose: StringOrNumberList,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_links: Vec<String>,
    #[serde(default, skip_serializing_if = "HostsList::is_empty")]
    pub extra_hosts: HostsList,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthCheckConfig>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ipc: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub isolation: String,
    #[serde(default, skip_serializing_if = "Mapping::is_empty")]
    pub labels: Mapping,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<LoggingConfig>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network_mode: String,
    #[serde(default, skip_serializing_if = "ServiceNetworks::is_empty")]
    pub networks: ServiceNetworks,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pid: String,
    #[serde(default, skip_serializing_if = "Ports::is_empty")]
    pub ports: Ports,
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub restart: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<Scalar>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub stdin_open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<Duration>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    #[serde(default, skip_serializing_if = "Mapping::is_empty")]
    pub sysctls: Mapping,
    #[serde(default, skip_serializing_if = "StringList::is_empty")]
    pub tmpfs: StringList,
    #[serde(default, skip_serializing_if = "is_false")]
    pub tty: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub oom_score_adj: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub userns_mode: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<ServiceVolume>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(flatten, skip_deserializing)]
    pub extras: Extras,
}

/// `build: ./dir` or `build: {context, dockerfile, ...}`; swarm ignores it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BuildConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub context: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dockerfile: String,
    #[serde(skip_serializing_if = "MappingWithEquals::is_empty")]
    pub args: MappingWithEquals,
    #[serde(skip_serializing_if = "Mapping::is_empty")]
    pub labels: Mapping,
    #[serde(skip_serializing_if = "StringList::is_empty")]
    pub cache_from: StringList,
    #[serde(skip_serializing_if = "HostsList::is_empty")]
    pub extra_hosts: HostsList,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub network: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildLong {
    #[serde(default)]
    context: String,
    #[serde(default)]
    dockerfile: String,
    #[serde(default)]
    args: MappingWithEquals,
    #[serde(default)]
    labels: Mapping,
    #[serde(default)]
    cache_from: StringList,
    #[serde(default)]
    extra_hosts: HostsList,
    #[serde(default)]
    network: String,
    #[serde(default)]
    target: String,
}

impl<'de> Deserialize<'de> for BuildConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match StrOr::<BuildLong>::deserialize(d)? {
            Either::Left(context) => Ok(BuildConfig {
                context,
                ..BuildConfig::default()
            }),
            Either::Right(b) => Ok(BuildConfig {
                context: b.context,
                dockerfile: b.dockerfile,
                args: b.args,
                labels: b.labels,
                cache_from: b.cache_from,
                extra_hosts: b.extra_hosts,
                network: b.network,
                target: b.target,
            }),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registry: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
    #[serde(default, skip_serializing_if = "Mapping::is_empty")]
    pub labels: Mapping,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub resources: Resources,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub placement: Placement,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint_mode: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    #[serde(default, skip_serializing_if = "HealthCheckTest::is_empty")]
    pub test: HealthCheckTest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u64>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub delay: Duration,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failure_action: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub monitor: Duration,
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_failure_ratio: f32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub order: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<Resource>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimit {
    #[serde(default, skip_serializing_if = "Scalar::is_empty")]
    pub cpus: Scalar,
    #[serde(default, skip_serializing_if = "is_default")]
    pub memory: UnitBytes,
    #[serde(default, skip_serializing_if = "is_default")]
    pub pids: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    #[serde(default, skip_serializing_if = "Scalar::is_empty")]
    pub cpus: Scalar,
    #[serde(default, skip_serializing_if = "is_default")]
    pub memory: UnitBytes,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generic_resources: Vec<GenericResource>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericResource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discrete_resource_spec: Option<DiscreteGenericResource>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscreteGenericResource {
    pub kind: String,
    pub value: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub condition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<PlacementPreference>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_replicas_per_node: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementPreference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub spread: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetworkConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ipv4_address: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ipv6_address: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub target: u32,
    #[serde(default, skip_serializing_if = "is_default")]
    pub published: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
}

/// A service's `secrets:`/`configs:` entry: `- name` or `{source, target, uid, gid, mode}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FileReference {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileReferenceLong {
    #[serde(default)]
    source: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    gid: String,
    #[serde(default)]
    mode: Option<u32>,
}

impl<'de> Deserialize<'de> for FileReference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match StrOr::<FileReferenceLong>::deserialize(d)? {
            Either::Left(source) => FileReference {
                source,
                ..FileReference::default()
            },
            Either::Right(l) => FileReference {
                source: l.source,
                target: l.target,
                uid: l.uid,
                gid: l.gid,
                mode: l.mode,
            },
        })
    }
}

/// A service's `volumes:` entry, short (`data:/var/lib/db:ro`) or long syntax.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub consistency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<BindOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<TmpfsOptions>,
}

pub type ServiceVolume = VolumeMountEntry;

/// Decodes either syntax into [`VolumeMount`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct VolumeMountEntry(pub VolumeMount);

impl<'de> Deserialize<'de> for VolumeMountEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match StrOr::<VolumeMount>::deserialize(d)? {
            Either::Left(spec) => parse_volume_spec(&spec)
                .map(VolumeMountEntry)
                .map_err(de::Error::custom),
            Either::Right(v) => Ok(VolumeMountEntry(v)),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindOptions {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub propagation: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeOptions {
    #[serde(default, skip_serializing_if = "is_false")]
    pub nocopy: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subpath: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmpfsOptions {
    #[serde(default, skip_serializing_if = "is_default")]
    pub size: i64,
}

/// docker/cli `volumespec.Parse`: `[SOURCE:]TARGET[:OPTIONS]`.
pub fn parse_volume_spec(spec: &str) -> Result<VolumeMount, String> {
    let mut volume = VolumeMount::default();
    if spec.is_empty() {
        return Err("invalid empty volume spec".to_owned());
    }
    if spec.chars().count() <= 2 {
        volume.target = spec.to_owned();
        volume.kind = "volume".to_owned();
        return Ok(volume);
    }
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "invalid spec: {spec}: empty section between colons"
        ));
    }
    match parts.as_slice() {
        [target] => volume.target = (*target).to_owned(),
        [source, target] => {
            volume.source = (*source).to_owned();
            volume.target = (*target).to_owned();
        }
        [source, target, options] => {
            volume.source = (*source).to_owned();
            volume.target = (*target).to_owned();
            for option in options.split(',') {
                match option {
                    "ro" => volume.read_only = true,
                    "rw" => volume.read_only = false,
                    "nocopy" => {
                        volume.volume = Some(VolumeOptions {
                            nocopy: true,
                            ..VolumeOptions::default()
                        })
                    }
                    "rprivate" | "private" | "rshared" | "shared" | "rslave" | "slave" => {
                        volume.bind = Some(BindOptions {
                            propagation: option.to_owned(),
                        })
                    }
                    _ => {}
                }
            }
        }
        _ => return Err(format!("invalid spec: {spec}: too many colons")),
    }
    volume.kind = if volume.source.starts_with(['.', '/', '~']) {
        "bind".to_owned()
    } else {
        "volume".to_owned()
    };
    Ok(volume)
}

/// `nofile: 20000` or `nofile: {soft: 20000, hard: 40000}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ulimit {
    pub single: i64,
    pub soft: i64,
    pub hard: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UlimitLong {
    soft: i64,
    hard: i64,
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match IntOr::<UlimitLong>::deserialize(d)? {
            Either::Left(single) => Ok(Ulimit {
                single,
                ..Ulimit::default()
            }),
            Either::Right(l) => Ok(Ulimit {
                single: 0,
                soft: l.soft,
                hard: l.hard,
            }),
        }
    }
}

impl Serialize for Ulimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.single != 0 {
            return s.serialize_i64(self.single);
        }
        let mut map = s.serialize_map(None)?;
        if self.soft != 0 {
            map.serialize_entry("soft", &self.soft)?;
        }
        if self.hard != 0 {
            map.serialize_entry("hard", &self.hard)?;
        }
        map.end()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub ipam: IpamConfig,
    #[serde(default, skip_serializing_if = "is_default")]
    pub external: External,
    #[serde(default, skip_serializing_if = "is_false")]
    pub internal: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub attachable: bool,
    #[serde(default, skip_serializing_if = "Mapping::is_empty")]
    pub labels: Mapping,
    #[serde(flatten, skip_deserializing)]
    pub extras: Extras,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpamConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamPool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpamPool {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subnet: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub external: External,
    #[serde(default, skip_serializing_if = "Mapping::is_empty")]
    pub labels: Mapping,
    #[serde(flatten, skip_deserializing)]
    pub extras: Extras,
}

/// A top-level secret or config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileObjectConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub external: External,
    #[serde(default, skip_serializing_if = "Mapping::is_empty")]
    pub labels: Mapping,
    #[serde(flatten, skip_deserializing)]
    pub extras: Extras,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub template_driver: String,
}

/// `external: true` or the deprecated `external: {name: NAME}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct External {
    pub name: String,
    pub external: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExternalLong {
    #[serde(default)]
    name: String,
}

impl<'de> Deserialize<'de> for External {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match BoolOr::<ExternalLong>::deserialize(d)? {
            Either::Left(external) => Ok(External {
                name: String::new(),
                external,
            }),
            Either::Right(l) => Ok(External {
                name: l.name,
                external: true,
            }),
        }
    }
}

impl Serialize for External {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.name.is_empty() {
            return s.serialize_bool(self.external);
        }
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("name", &self.name)?;
        map.end()
    }
}

// ---- scalar and list syntaxes ---------------------------------------------------------

/// A scalar kept as text (`fmt.Sprint` of what YAML gave): `cpus: 0.5`, `shm_size: 64M`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Scalar(pub String);

impl Scalar {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor).map(Scalar)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a number")
    }
    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_i64<E>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E>(self, v: f64) -> Result<String, E> {
        Ok(go_float(v))
    }
    fn visit_bool<E>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// A Go duration string (`10s`, `1m30s`), printed back as Go prints it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Duration {
    pub nanos: i64,
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_go_duration(&text)
            .map(|nanos| Duration { nanos })
            .map_err(de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_go_duration(self.nanos))
    }
}

/// A size in bytes (`memory: 512M`), printed as a string of bytes as docker does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnitBytes(pub i64);

impl<'de> Deserialize<'de> for UnitBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match IntOr::<String>::deserialize(d)? {
            Either::Left(i) => Ok(UnitBytes(i)),
            Either::Right(text) => crate::cli::service::opts::parse_memory(&text)
                .map(UnitBytes)
                .map_err(de::Error::custom),
        }
    }
}

impl Serialize for UnitBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

/// `command: echo hi` (split as a shell would) or `command: [echo, hi]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ShellCommand(pub Vec<String>);

impl ShellCommand {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for ShellCommand {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match StrOr::<Vec<String>>::deserialize(d)? {
            Either::Left(line) => shlex::split(&line).map(ShellCommand).ok_or_else(|| {
                de::Error::custom(format!(
                    "cannot split \"{line}\" into words: a quote is not closed"
                ))
            }),
            Either::Right(words) => Ok(ShellCommand(words)),
        }
    }
}

/// `healthcheck.test`: a string means `CMD-SHELL string`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct HealthCheckTest(pub Vec<String>);

impl HealthCheckTest {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for HealthCheckTest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match StrOr::<Vec<String>>::deserialize(d)? {
            Either::Left(line) => Ok(HealthCheckTest(vec!["CMD-SHELL".to_owned(), line])),
            Either::Right(words) => Ok(HealthCheckTest(words)),
        }
    }
}

/// One string or a list of strings (`dns`, `env_file`, `tmpfs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct StringList(pub Vec<String>);

impl StringList {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match StrOr::<Vec<String>>::deserialize(d)? {
            Either::Left(s) => Ok(StringList(vec![s])),
            Either::Right(v) => Ok(StringList(v)),
        }
    }
}

/// `expose: [80, "443"]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct StringOrNumberList(pub Vec<String>);

impl StringOrNumberList {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for StringOrNumberList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<Scalar>::deserialize(d)?;
        Ok(StringOrNumberList(items.into_iter().map(|s| s.0).collect()))
    }
}

/// `labels`, `sysctls`: a mapping or a list of `KEY=VALUE` (a bare `KEY` is `KEY=`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Mapping(pub BTreeMap<String, String>);

impl Mapping {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Mapping {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = d.deserialize_any(ListOrMapVisitor)?;
        Ok(Mapping(
            entries
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect(),
        ))
    }
}

/// `environment`, `build.args`: like [`Mapping`] but a bare `KEY` has no value (null).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct MappingWithEquals(pub BTreeMap<String, Option<String>>);

impl MappingWithEquals {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for MappingWithEquals {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(MappingWithEquals(
            d.deserialize_any(ListOrMapVisitor)?.into_iter().collect(),
        ))
    }
}

struct ListOrMapVisitor;

impl<'de> Visitor<'de> for ListOrMapVisitor {
    type Value = Vec<(String, Option<String>)>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping or a list of KEY=VALUE strings")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<String>()? {
            match item.split_once('=') {
                Some((k, v)) => out.push((k.to_owned(), Some(v.to_owned()))),
                None => out.push((item, None)),
            }
        }
        Ok(out)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Option<Scalar>>()? {
            out.push((k, v.map(|s| s.0)));
        }
        Ok(out)
    }
}

/// `extra_hosts`: `["host:ip"]`, `["host=ip"]` or `{host: ip}`, kept as `host:ip`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct HostsList(pub Vec<String>);

impl HostsList {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for HostsList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of host:ip strings or a mapping of host to ip")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    let pair = item.split_once('=').or_else(|| item.split_once(':'));
                    if let Some((host, ip)) = pair {
                        out.push((host.to_owned(), ip.to_owned()));
                    }
                }
                Ok(out.into_iter().map(|(h, ip)| host_entry(&h, &ip)).collect())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Option<Scalar>>()? {
                    if let Some(ip) = v {
                        out.push(format!("{k}:{}", ip.0));
                    }
                }
                out.sort();
                Ok(out
                    .into_iter()
                    .map(|e| {
                        let (h, ip) = e.split_once(':').unwrap_or((&e, ""));
                        host_entry(h, ip)
                    })
                    .collect())
            }
        }
        d.deserialize_any(V).map(HostsList)
    }
}

fn host_entry(host: &str, ip: &str) -> String {
    let ip = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .filter(|i| !i.is_empty())
        .unwrap_or(ip);
    format!("{host}:{ip}")
}

/// A service's `networks:`: a list of names or a mapping of name to options (or null).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ServiceNetworks(pub BTreeMap<String, Option<ServiceNetworkConfig>>);

impl ServiceNetworks {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for ServiceNetworks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match SeqOr::<BTreeMap<String, Option<ServiceNetworkConfig>>>::deserialize(d)? {
            Either::Left(names) => Ok(ServiceNetworks(
                names.into_iter().map(|n| (n, None)).collect(),
            )),
            Either::Right(map) => Ok(ServiceNetworks(map)),
        }
    }
}

/// A service's `ports:`, short entries expanded (`8080-8081:80-81/udp` is two ports).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Ports(pub Vec<PortConfig>);

impl Ports {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<PortEntry>::deserialize(d)?;
        Ok(Ports(entries.into_iter().flat_map(|e| e.0).collect()))
    }
}

struct PortEntry(Vec<PortConfig>);

impl<'de> Deserialize<'de> for PortEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match IntOr::<StrOr<PortConfig>>::deserialize(d)? {
            Either::Left(port) => parse_port_spec(&port.to_string()),
            Either::Right(Either::Left(spec)) => parse_port_spec(&spec),
            Either::Right(Either::Right(long)) => Ok(vec![long]),
        }
        .map(PortEntry)
        .map_err(de::Error::custom)
    }
}

fn parse_range(text: &str, spec: &str) -> Result<(u32, u32), String> {
    let bad = || {
        format!(
            "invalid port \"{text}\" in \"{spec}\": use a port or a range such as 8000-8010, from 1 to 65535"
        )
    };
    let (start, end) = text.split_once('-').unwrap_or((text, text));
    let start: u32 = start.parse().map_err(|_| bad())?;
    let end: u32 = end.parse().map_err(|_| bad())?;
    if end < start || end > 65535 {
        return Err(bad());
    }
    Ok((start, end))
}

/// docker's short port syntax (go-connections `nat.ParsePortSpecs`):
/// `[IP:][PUBLISHED[-END]:]TARGET[-END][/PROTOCOL]`, always in ingress mode.
pub fn parse_port_spec(spec: &str) -> Result<Vec<PortConfig>, String> {
    let (ports, protocol) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
    let protocol = protocol.to_ascii_lowercase();
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {protocol}"));
    }
    let parts: Vec<&str> = match ports.rsplit_once(':') {
        None => vec![ports],
        Some((front, target)) => match front.rsplit_once(':') {
            // IP:PUBLISHED:TARGET (the IP is not used by swarm mode).
            Some((_ip, published)) => vec![published, target],
            None => vec![front, target],
        },
    };
    let (target, published) = match parts.as_slice() {
        [target] => (parse_range(target, spec)?, None),
        ["", target] => (parse_range(target, spec)?, None),
        [published, target] => (
            parse_range(target, spec)?,
            Some(parse_range(published, spec)?),
        ),
        _ => return Err(format!("invalid port specification: \"{spec}\"")),
    };
    let count = target.1 - target.0 + 1;
    if let Some(p) = published
        && p.1 - p.0 + 1 != count
        && p.1 != p.0
    {
        return Err(format!(
            "invalid ranges specified for container and host ports in \"{spec}\": they must have the same length"
        ));
    }
    let mut configs: Vec<(String, PortConfig)> = (0..count)
        .map(|i| {
            let target_port = target.0 + i;
            let published_port = match published {
                None => 0,
                Some((start, end)) if start == end => start,
                Some((start, _)) => start + i,
            };
            (
                format!("{target_port}/{protocol}"),
                PortConfig {
                    mode: "ingress".to_owned(),
                    target: target_port,
                    published: published_port,
                    protocol: protocol.clone(),
                },
            )
        })
        .collect();
    // docker sorts by the "PORT/PROTO" text.
    configs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(configs.into_iter().map(|(_, c)| c).collect())
}

// ---- short or long syntax ----------------------------------------------------------------

/// The scalar shapes of a key's short syntax: a string, an integer, a boolean or a list of
/// strings. Anything else is the long syntax.
trait ShortSyntax {
    const SHAPES: &'static [Shape];
}

impl ShortSyntax for String {
    const SHAPES: &'static [Shape] = &[Shape::Str];
}

impl ShortSyntax for i64 {
    const SHAPES: &'static [Shape] = &[Shape::Int];
}

impl ShortSyntax for bool {
    const SHAPES: &'static [Shape] = &[Shape::Bool];
}

impl ShortSyntax for Vec<String> {
    const SHAPES: &'static [Shape] = &[Shape::Seq];
}

/// A key's short syntax `A`, or its long syntax `T` decoded from anything else.
impl<'de, A, T> Deserialize<'de> for Either<A, T>
where
    A: ShortSyntax + Deserialize<'de>,
    T: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        by_shape::<D, A, T>(d, A::SHAPES)
    }
}

/// A string, or a `T`.
type StrOr<T> = Either<String, T>;
/// An integer, or a `T`.
type IntOr<T> = Either<i64, T>;
/// A boolean, or a `T`.
type BoolOr<T> = Either<bool, T>;
/// A list of strings, or a `T`.
type SeqOr<T> = Either<Vec<String>, T>;

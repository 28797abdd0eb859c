//! What the agent asks the executor to run ([`TaskSpec`]), what `prepare`
//! made of it ([`PreparedTask`]), and how a task ended ([`ExitStatus`]).
//!
//! These are the executor's own types, not the store's: the agent converts a
//! store `Task` into a [`TaskSpec`], so the executor does not change when the
//! cluster objects grow fields it does not use.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::{
    network::{AssignedAddr, TaskNetworks},
    oci::{Mount, OciContainer, Ulimit},
};

/// Docker's default `--stop-grace-period` (SwarmKit `api/defaults/service.go`).
pub const DEFAULT_STOP_GRACE_PERIOD: Duration = Duration::from_secs(10);

/// Docker refuses memory limits below 6 MiB ("Minimum memory limit allowed
/// is 6MB"); a smaller one only makes the task die at start.
pub const MIN_MEMORY_LIMIT: i64 = 6 * 1024 * 1024;

/// Docker's smallest `--limit-cpu` (0.01 CPU): the kernel's smallest CFS quota
/// is 1 ms per 100 ms period.
pub const MIN_NANO_CPUS: i64 = 10_000_000;

/// Longest hostname the kernel accepts (`HOST_NAME_MAX`).
const MAX_HOSTNAME_LEN: usize = 64;

/// Task IDs become file and cgroup names, so they are kept short and plain.
const MAX_TASK_ID_LEN: usize = 64;

/// One task to run, as the agent hands it to [`super::Executor::prepare`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The task's ID in the cluster; names its cgroup, namespace file and logs.
    pub task_id: String,
    /// `hive/whoami`, `hive/echo`, `host` or `host:<program>` (see `docs/executor.md`).
    pub image: String,
    /// Replaces the image's entry point when not empty (`--entrypoint`).
    pub command: Vec<String>,
    /// Replaces the image's default arguments when not empty (`IMAGE [ARG...]`).
    pub args: Vec<String>,
    /// `KEY=value`, in order; later entries win (`--env`).
    pub env: Vec<String>,
    /// Working directory (`--workdir`); `/` when `None`. Must exist on the node:
    /// tasks run on the host's file system, so hive does not create it.
    pub workdir: Option<PathBuf>,
    /// Hostname (`--hostname`); the short container ID when `None`, as Docker.
    pub hostname: Option<String>,
    /// Run hive's init as PID 1 in front of the program (`--init`). `None`
    /// lets the image decide: built-in images use it (they have no SIGTERM
    /// handler of their own), host programs do not, as in Docker.
    pub init: Option<bool>,
    /// `--limit-cpu` / `--limit-memory`.
    pub limits: ResourceLimits,
    /// Time between SIGTERM and SIGKILL on shutdown (`--stop-grace-period`).
    pub stop_grace_period: Duration,
    /// Networks the task joins; handed to the [`super::NetworkAttacher`].
    pub networks: Vec<NetworkAttachment>,
    /// `--user` (`name|uid[:group|gid]`); the image's `User` when `None`.
    /// OCI images only, as every field below.
    pub user: Option<String>,
    /// `--read-only`: the container's root file system is mounted read-only.
    pub read_only: bool,
    /// `--cap-add` / `--cap-drop` on top of Docker's default capabilities.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `--ulimit`.
    pub ulimits: Vec<Ulimit>,
    /// `--sysctl KEY=VALUE`.
    pub sysctls: BTreeMap<String, String>,
    /// `--stop-signal`; the image's `StopSignal`, else SIGTERM, when `None`.
    pub stop_signal: Option<String>,
    /// `--mount`: volumes, binds, tmpfs.
    pub mounts: Vec<Mount>,
    /// `--secret` / `--config`: their bytes, held in memory and never serialised.
    #[serde(skip)]
    pub files: Vec<super::files::TaskFile>,
    /// `--with-registry-auth`: what the image is pulled with. Held in memory only, never
    /// serialised (a worker keeps no credentials on its disk).
    #[serde(skip)]
    pub registry_auth: Option<hive_store::objects::RegistryAuth>,
}

impl TaskSpec {
    /// A spec with Docker's defaults: no command override, no limits, 10 s grace.
    pub fn new(task_id: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            task_id: task_id.into(),
            image: image.into(),
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            workdir: None,
            hostname: None,
            init: None,
            limits: ResourceLimits::default(),
            stop_grace_period: DEFAULT_STOP_GRACE_PERIOD,
            networks: Vec::new(),
            user: None,
            read_only: false,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            ulimits: Vec::new(),
            sysctls: BTreeMap::new(),
            stop_signal: None,
            mounts: Vec::new(),
            files: Vec::new(),
            registry_auth: None,
        }
    }

    /// The first option set that only an OCI image can honour (the
    /// built-in and host images run on the host's file system as root).
    pub fn oci_only_option(&self) -> Option<&'static str> {
        [
            (self.user.is_some(), "--user"),
            (self.read_only, "--read-only"),
            (!self.cap_add.is_empty(), "--cap-add"),
            (!self.cap_drop.is_empty(), "--cap-drop"),
            (!self.ulimits.is_empty(), "--ulimit"),
            (!self.sysctls.is_empty(), "--sysctl"),
            (self.stop_signal.is_some(), "--stop-signal"),
            (!self.mounts.is_empty(), "--mount"),
            (!self.files.is_empty(), "--secret/--config"),
        ]
        .into_iter()
        .find_map(|(set, flag)| set.then_some(flag))
    }

    /// Check everything that does not need the file system; `prepare` calls
    /// this before it makes anything.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_task_id(&self.task_id)?;
        for entry in &self.env {
            match entry.split_once('=') {
                Some((key, _)) if !key.is_empty() && !entry.contains('\0') => {}
                _ => {
                    return Err(SpecError::Env {
                        entry: entry.clone(),
                    });
                }
            }
        }
        if let Some(arg) = self
            .command
            .iter()
            .chain(&self.args)
            .find(|a| a.contains('\0'))
        {
            return Err(SpecError::NulInArgument { arg: arg.clone() });
        }
        if let Some(hostname) = &self.hostname {
            validate_hostname(hostname)?;
        }
        if let Some(dir) = &self.workdir
            && !dir.is_absolute()
        {
            return Err(SpecError::RelativeWorkdir { dir: dir.clone() });
        }
        self.limits.validate()
    }
}

/// CPU and memory limits in Swarm's units (`Resources` in the store).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimits {
    /// 10⁻⁹ CPUs (`--limit-cpu 0.5` → 500 000 000); 0 = unlimited.
    pub nano_cpus: i64,
    /// Bytes; 0 = unlimited.
    pub memory_bytes: i64,
}

impl ResourceLimits {
    fn validate(&self) -> Result<(), SpecError> {
        if self.memory_bytes != 0 && self.memory_bytes < MIN_MEMORY_LIMIT {
            return Err(SpecError::MemoryTooSmall {
                bytes: self.memory_bytes,
            });
        }
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        // i64 holds 9.2e9 CPUs' worth of nano-CPUs; no host has that many.
        let max = i64::try_from(cpus).unwrap_or(i64::MAX / 1_000_000_000) * 1_000_000_000;
        if self.nano_cpus != 0 && !(MIN_NANO_CPUS..=max).contains(&self.nano_cpus) {
            return Err(SpecError::CpuOutOfRange {
                nano_cpus: self.nano_cpus,
                cpus,
            });
        }
        Ok(())
    }
}

/// One network the task joins, with what the allocator gave it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachment {
    pub network_id: String,
    /// CIDR notation, e.g. `10.0.1.7/24`.
    pub addresses: Vec<String>,
    pub aliases: Vec<String>,
}

/// What `prepare` made for a task. Plain data: every path it names is enough
/// to tear the task down again, also by a new daemon after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedTask {
    pub task_id: String,
    /// 64 hex characters, as Docker's container IDs.
    pub container_id: String,
    /// The task's hostname (by default the short container ID).
    pub hostname: String,
    /// The bind-mounted network namespace file.
    pub netns: PathBuf,
    /// The task's cgroup directories (one in the unified hierarchy, plus one per
    /// cgroup v1 hierarchy that carries a controller hive uses).
    pub cgroups: Vec<PathBuf>,
    /// Directory of the task's files (its log).
    pub state_dir: PathBuf,
    /// The log file (JSON lines, see [`super::logs`]).
    pub log_path: PathBuf,
    /// What runs, after image resolution: program and arguments.
    pub argv: Vec<String>,
    /// Whether hive's init is PID 1 (else the program itself is).
    pub init: bool,
    /// Addresses the network attacher configured inside the namespace.
    pub addresses: Vec<AssignedAddr>,
    pub networks: TaskNetworks,
    pub stop_grace_period: Duration,
    /// Set for a task of an OCI image run by runc.
    #[serde(default)]
    pub container: Option<OciContainer>,
}

impl PreparedTask {
    /// The 12-character container ID Docker shows (and uses as hostname).
    pub fn short_id(&self) -> &str {
        short_id(&self.container_id)
    }
}

/// The first 12 characters of a container ID (the whole string if shorter).
pub fn short_id(container_id: &str) -> &str {
    container_id.get(..12).unwrap_or(container_id)
}

/// What [`super::Executor::start`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartedTask {
    /// The host's PID of the task's PID 1.
    pub pid: u32,
}

/// How a task's PID 1 ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it (SIGKILL after the grace period, for example).
    Signaled(Signal),
}

impl ExitStatus {
    /// Whether the task completed (exit code 0): Swarm's COMPLETE vs FAILED.
    pub fn success(self) -> bool {
        self == Self::Exited(0)
    }

    /// The exit code Docker shows: the code, or 128 + signal number.
    pub fn code(self) -> i32 {
        match self {
            Self::Exited(code) => code,
            Self::Signaled(signal) => 128 + signal as i32,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exited(code) => write!(f, "exit code {code}"),
            Self::Signaled(signal) => write!(f, "killed by {signal}"),
        }
    }
}

/// A task spec that cannot run, whatever the node.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(
        "invalid task ID {task_id:?}: use 1 to {MAX_TASK_ID_LEN} characters of [A-Za-z0-9_.-] (it names files and cgroups)"
    )]
    TaskId { task_id: String },
    #[error("invalid environment entry {entry:?}: expected KEY=value with a non-empty KEY")]
    Env { entry: String },
    #[error("argument {arg:?} contains a NUL byte, which no program can receive")]
    NulInArgument { arg: String },
    #[error(
        "invalid hostname {hostname:?}: use 1 to {MAX_HOSTNAME_LEN} characters of letters, digits, '-' and '.'"
    )]
    Hostname { hostname: String },
    #[error(
        "{option} needs an OCI image: image {image:?} runs on the host's file system as root; drop {option} or use an OCI image"
    )]
    NeedsOciImage { option: &'static str, image: String },
    #[error("working directory {dir:?} must be an absolute path")]
    RelativeWorkdir { dir: PathBuf },
    #[error(
        "working directory {dir:?} does not exist on this node: tasks run on the host's file system, so create it or choose another --workdir"
    )]
    MissingWorkdir { dir: PathBuf },
    #[error("memory limit of {bytes} bytes is too small: the minimum is 6MB")]
    MemoryTooSmall { bytes: i64 },
    #[error(
        "CPU limit of {nano_cpus} nano-CPUs is out of range: use 0.01 to {cpus} CPUs, as this node has {cpus}"
    )]
    CpuOutOfRange { nano_cpus: i64, cpus: usize },
}

/// Task IDs name files and cgroups: no separators, no `.`/`..`.
pub fn validate_task_id(task_id: &str) -> Result<(), SpecError> {
    let plain = task_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if plain && (1..=MAX_TASK_ID_LEN).contains(&task_id.len()) && !task_id.starts_with('.') {
        Ok(())
    } else {
        Err(SpecError::TaskId {
            task_id: task_id.to_owned(),
        })
    }
}

pub fn validate_hostname(hostname: &str) -> Result<(), SpecError> {
    let ok = (1..=MAX_HOSTNAME_LEN).contains(&hostname.len())
        && hostname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(SpecError::Hostname {
            hostname: hostname.to_owned(),
        })
    }
}

/// The working directory must exist: checked at `prepare`, so a typo shows
/// as a rejected task in `service ps` instead of a crash loop.
pub fn check_workdir(dir: &Path) -> Result<(), SpecError> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(SpecError::MissingWorkdir {
            dir: dir.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_dockers() {
        let spec = TaskSpec::new("t1", "hive/whoami");
        assert_eq!(spec.stop_grace_period, Duration::from_secs(10));
        assert_eq!(spec.limits, ResourceLimits::default());
        spec.validate().expect("a plain spec is valid");
    }

    #[test]
    fn task_ids_that_could_escape_a_directory_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", ".hidden", &"x".repeat(65)] {
            assert!(validate_task_id(bad).is_err(), "{bad:?}");
        }
        for good in ["abc", "0123456789abcdefghijklmno", "web.1-x_y"] {
            validate_task_id(good).expect(good);
        }
    }

    #[test]
    fn env_entries_need_a_key_and_an_equals_sign() {
        for bad in ["FOO", "=x", "A=b\0c"] {
            let mut spec = TaskSpec::new("t", "host");
            spec.env = vec![bad.to_owned()];
            let err = spec.validate().expect_err(bad);
            assert!(err.to_string().contains("KEY=value"), "{err}");
        }
        let mut spec = TaskSpec::new("t", "host");
        spec.env = vec!["A=".to_owned(), "B=c=d".to_owned()];
        spec.validate()
            .expect("empty values and '=' in values are fine");
    }

    #[test]
    fn limits_follow_dockers_ranges() {
        let mut spec = TaskSpec::new("t", "host");
        spec.limits.memory_bytes = 1024;
        assert!(matches!(
            spec.validate(),
            Err(SpecError::MemoryTooSmall { .. })
        ));
        spec.limits.memory_bytes = MIN_MEMORY_LIMIT;
        spec.limits.nano_cpus = 1_000;
        let err = spec.validate().expect_err("0.000001 CPU");
        assert!(err.to_string().contains("0.01 to"), "{err}");
        spec.limits.nano_cpus = MIN_NANO_CPUS;
        spec.validate().expect("0.01 CPU is allowed");
    }

    #[test]
    fn hostnames_and_workdirs_are_checked() {
        let mut spec = TaskSpec::new("t", "host");
        spec.hostname = Some("bad host".to_owned());
        assert!(matches!(spec.validate(), Err(SpecError::Hostname { .. })));
        spec.hostname = Some("web-1.example".to_owned());
        spec.workdir = Some(PathBuf::from("relative"));
        assert!(matches!(
            spec.validate(),
            Err(SpecError::RelativeWorkdir { .. })
        ));
        assert!(check_workdir(Path::new("/")).is_ok());
        assert!(check_workdir(Path::new("/no/such/hive/dir")).is_err());
    }

    #[test]
    fn exit_codes_are_dockers() {
        assert!(ExitStatus::Exited(0).success());
        assert_eq!(ExitStatus::Exited(3).code(), 3);
        assert_eq!(ExitStatus::Signaled(Signal::SIGKILL).code(), 137);
        assert_eq!(
            ExitStatus::Signaled(Signal::SIGKILL).to_string(),
            "killed by SIGKILL"
        );
        assert_eq!(short_id("0123456789abcdef"), "0123456789ab");
    }
}

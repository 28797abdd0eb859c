//! OCI images run by runc, behind the same [`super::Executor`] as the
//! built-in images: `NamespaceExecutor` picks runc for every image that is
//! not built in (`hive/whoami`, `hive/echo`, `host...`) once it has an
//! [`OciRuntime`] (`NamespaceExecutor::with_oci`).
//!
//! What stays hive's: the task's state directory and log, its cgroups with
//! their limits (runc joins them by absolute `cgroupsPath`), its network
//! namespace attached by the data plane (runc joins it by path), the
//! `resolv.conf` naming the embedded resolver, the log FIFOs and the
//! pidfd-based wait and stop. What is new: the root file system (an
//! overlay of the image's read-only layers with the task's own upper
//! directory, mounted by hive), the bundle's `config.json` ([`bundle`]),
//! the process as Docker derives it from image and task ([`process`]),
//! mounts and volumes ([`mounts`]) and the `runc` calls ([`runc`]).
//!
//! runc's container init is reparented to the daemon when `runc create`
//! exits (the daemon is a child subreaper), so the executor reaps it and
//! knows its exit status, exactly as for its own clone3 children.

pub mod bundle;
pub mod image;
pub mod mounts;
pub mod process;
pub mod rootfs;
pub mod runc;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

pub use self::{
    image::{ContainerImage, ImageSource, ImageSourceError},
    mounts::{Mount, MountError, MountKind},
    process::Ulimit,
    runc::{Runc, RuncError},
};
use super::{
    error::ExecutorError,
    namespaced::{NamespaceExecutor, Slot, TaskLaunch, blocking, new_container_id},
    network::TaskNetworks,
    spec::{self, PreparedTask, TaskSpec},
};

/// Docker's init inside a container started with `--init` (dockerd bind-mounts its
/// `docker-init`, tini, there).
pub const DOCKER_INIT: &str = "/sbin/docker-init";
/// The node's tini, statically linked so that it runs in any image (Debian's `tini`).
pub const DOCKER_INIT_SOURCE: &str = "/usr/bin/tini-static";

/// Where the OCI runtime of a node lives and where its images come from.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    pub runc: Runc,
    pub images: Arc<dyn ImageSource>,
    /// Named volumes: `<volumes_dir>/<name>/_data`.
    pub volumes_dir: PathBuf,
}

impl OciRuntime {
    /// The daemon's layout: runc's state in `/run/hive/<scope>/runc`,
    /// volumes in `<data_dir>/volumes`, `runc` from `PATH`.
    pub fn for_daemon(scope: &str, data_dir: &Path, images: Arc<dyn ImageSource>) -> Self {
        Self {
            runc: Runc {
                binary: PathBuf::from("runc"),
                root: Path::new("/run/hive").join(scope).join("runc"),
            },
            images,
            volumes_dir: crate::volume_store::VolumeStore::for_daemon(data_dir)
                .volumes_dir()
                .to_owned(),
        }
    }
}

/// What a container task adds to its [`PreparedTask`]: enough to delete it
/// and unmount its root, also from a daemon started later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciContainer {
    pub runc: Runc,
    /// The bundle directory (holds `config.json`; the task's state dir).
    pub bundle: PathBuf,
    /// The mounted overlay root; empty until it is mounted.
    pub rootfs: PathBuf,
    /// `SIGTERM` unless the image or `--stop-signal` says otherwise.
    pub stop_signal: String,
    /// The image's `HEALTHCHECK`: the agent runs it when the service sets none
    /// (docs/health.md).
    #[serde(default)]
    pub health_check: Option<hive_store::objects::HealthConfig>,
}

impl OciContainer {
    pub fn stop_signal(&self) -> nix::sys::signal::Signal {
        process::parse_signal(&self.stop_signal).unwrap_or(nix::sys::signal::Signal::SIGTERM)
    }
}

/// Errors about a task's container: the task cannot run as specified.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// Docker's text when neither image nor task gives a command.
    #[error("no command specified")]
    NoCommand,
    #[error("Invalid signal: {signal}")]
    Signal { signal: String },
    #[error("unknown capability: {name:?}")]
    Capability { name: String },
    #[error("invalid ulimit {name:?}: not a resource limit name (nofile, nproc, core, ...)")]
    Ulimit { name: String },
    #[error("user {user:?}: {reason}")]
    User { user: String, reason: String },
    /// `--init` on a node without Debian's `tini` (what `cargo xtask setup` installs).
    #[error(
        "--init: the init {DOCKER_INIT_SOURCE} is not on this node: install Debian's tini (cargo xtask setup)"
    )]
    InitMissing,
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Files(#[from] super::files::FilesError),
    #[error(transparent)]
    Runc(#[from] RuncError),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error("building the container's configuration: {reason}")]
    Config { reason: String },
}

impl NamespaceExecutor {
    /// `prepare` for an OCI image: the sandbox as for every task (state
    /// directory, cgroups, network namespace, networks), then the overlay
    /// root, the `/etc` files, volumes and the bundle.
    pub(crate) async fn prepare_container(
        &self,
        spec: &TaskSpec,
        oci: &OciRuntime,
    ) -> Result<PreparedTask, ExecutorError> {
        let task_id = spec.task_id.clone();
        let container_error = |source| ExecutorError::Container {
            task_id: task_id.clone(),
            source,
        };
        spec.validate().map_err(|source| ExecutorError::Spec {
            task_id: task_id.clone(),
            source,
        })?;
        // `--init`: docker's init (tini) runs as PID 1, the command under it after `--`.
        let init = spec.init == Some(true);
        if init && !Path::new(DOCKER_INIT_SOURCE).is_file() {
            return Err(container_error(ContainerError::InitMissing));
        }
        let image = oci
            .images
            .image(&spec.image, spec.registry_auth.as_ref())
            .await?;
        rootfs::check_layers(&image.layers).map_err(|e| container_error(e.into()))?;
        let container_id = new_container_id();
        let hostname = spec
            .hostname
            .clone()
            .unwrap_or_else(|| spec::short_id(&container_id).to_owned());
        let mut plan = process::plan(&image, spec, &hostname).map_err(container_error)?;
        if init {
            plan.args
                .splice(0..0, [DOCKER_INIT.to_owned(), "--".to_owned()]);
        }
        let user = process::resolve_user(&image, &plan.user).map_err(container_error)?;
        let capabilities =
            process::capabilities(&spec.cap_add, &spec.cap_drop).map_err(container_error)?;

        {
            let mut tasks = self.tasks();
            if tasks.contains_key(&task_id) {
                return Err(ExecutorError::AlreadyPrepared { task_id });
            }
            tasks.insert(task_id.clone(), Slot::Preparing);
        }
        let mut prepared = PreparedTask {
            task_id: task_id.clone(),
            container_id: container_id.clone(),
            hostname: hostname.clone(),
            netns: PathBuf::new(),
            cgroups: Vec::new(),
            state_dir: PathBuf::new(),
            log_path: PathBuf::new(),
            argv: plan.args.clone(),
            init: false,
            addresses: Vec::new(),
            networks: TaskNetworks {
                task_id: task_id.clone(),
                container_id,
                networks: spec.networks.clone(),
            },
            stop_grace_period: spec.stop_grace_period,
            container: Some(OciContainer {
                runc: oci.runc.clone(),
                bundle: PathBuf::new(),
                rootfs: PathBuf::new(),
                stop_signal: plan.stop_signal.as_str().to_owned(),
                health_check: image.health_check.clone(),
            }),
        };
        let built = async {
            self.build_sandbox(spec, &mut prepared).await?;
            let parts = ContainerParts {
                image: &image,
                plan: &plan,
                user: &user,
                capabilities: &capabilities,
            };
            self.build_container(spec, oci, &parts, &mut prepared)
                .await
                .map_err(container_error)
        }
        .await;
        match built {
            Ok(()) => {
                self.tasks().insert(
                    task_id,
                    Slot::Prepared {
                        launch: Some(TaskLaunch::Container),
                        process: None,
                    },
                );
                Ok(prepared)
            }
            Err(err) => {
                if let Err(cleanup) = self.teardown(&prepared, false).await {
                    tracing::warn!(task = %task_id, error = %cleanup, "cleaning up a failed prepare");
                }
                self.tasks().remove(&task_id);
                Err(err)
            }
        }
    }

    async fn build_container(
        &self,
        spec: &TaskSpec,
        oci: &OciRuntime,
        parts: &ContainerParts<'_>,
        prepared: &mut PreparedTask,
    ) -> Result<(), ContainerError> {
        let state_dir = prepared.state_dir.clone();
        let etc = rootfs::EtcFiles {
            hostname: prepared.hostname.clone(),
            addresses: prepared.addresses.iter().map(|a| a.address).collect(),
            // build_sandbox wrote the resolver's file for a task on networks.
            resolv_conf_written: !prepared.addresses.is_empty(),
        };
        let dir = state_dir.clone();
        let mut etc_mounts = blocking(move || etc.write(&dir)).await?;

        let layers = parts.image.layers.clone();
        let dir = state_dir.clone();
        let root = blocking(move || rootfs::mount_overlay(&layers, &dir)).await?;
        if let Some(container) = prepared.container.as_mut() {
            container.rootfs = root.clone();
            container.bundle = state_dir.clone();
        }

        let mut task_mounts = spec.mounts.clone();
        if spec.init == Some(true) {
            task_mounts.push(mounts::Mount {
                target: PathBuf::from(DOCKER_INIT),
                readonly: true,
                kind: mounts::MountKind::Bind {
                    source: PathBuf::from(DOCKER_INIT_SOURCE),
                },
            });
        }
        if !spec.files.is_empty() {
            let dir = super::files::files_dir(&self.config.run_dir, &prepared.task_id);
            let files = spec.files.clone();
            let file_mounts = blocking(move || super::files::materialise(&dir, &files)).await?;
            task_mounts.extend(file_mounts);
        }
        let volumes = oci.volumes_dir.clone();
        let user_mounts = blocking(move || mounts::resolve(&task_mounts, &volumes)).await?;
        etc_mounts.extend(user_mounts);

        let cgroups_path = Path::new("/")
            .join(&self.config.cgroup_parent)
            .join(&prepared.task_id);
        let config = bundle::BundleConfig {
            process: parts.plan,
            user: parts.user,
            capabilities: parts.capabilities,
            ulimits: &spec.ulimits,
            hostname: &prepared.hostname,
            rootfs: root,
            read_only: spec.read_only,
            netns: prepared.netns.clone(),
            cgroups_path,
            limits: spec.limits,
            sysctls: spec
                .sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
            mounts: etc_mounts,
        };
        let runtime = bundle::runtime_spec(&config)?;
        let path = state_dir.join("config.json");
        blocking(move || runtime.save(&path))
            .await
            .map_err(|e| ContainerError::Config {
                reason: format!("writing config.json: {e}"),
            })
    }

    /// Delete the container (runc kills what runs) and unmount its root.
    /// Returns whether the state directory may be removed (not while the
    /// root could still be mounted in it).
    pub(crate) async fn teardown_container(
        task: &PreparedTask,
        container: &OciContainer,
        errors: &mut Vec<ExecutorError>,
    ) -> bool {
        let task_id = task.task_id.clone();
        if let Err(source) = container.runc.delete(&task.container_id).await {
            errors.push(ExecutorError::Container {
                task_id: task_id.clone(),
                source: source.into(),
            });
        }
        if container.rootfs.as_os_str().is_empty() {
            return true;
        }
        let root = container.rootfs.clone();
        match blocking(move || rootfs::unmount(&root)).await {
            Ok(()) => true,
            Err(source) => {
                errors.push(ExecutorError::Container {
                    task_id,
                    source: source.into(),
                });
                false
            }
        }
    }

    /// Whether `pid` is still the running init of `task`'s container.
    pub(crate) async fn container_runs(
        task: &PreparedTask,
        container: &OciContainer,
        pid: u32,
    ) -> Result<(), String> {
        match container.runc.state(&task.container_id).await {
            Ok(Some(state)) if state.status == "running" && state.pid == pid => Ok(()),
            Ok(Some(state)) => Err(format!(
                "runc reports its container {} with PID {}",
                state.status, state.pid
            )),
            Ok(None) => Err("runc does not know its container any more".to_owned()),
            Err(err) => Err(err.to_string()),
        }
    }
}

struct ContainerParts<'a> {
    image: &'a ContainerImage,
    plan: &'a process::ProcessPlan,
    user: &'a process::ResolvedUser,
    capabilities: &'a [String],
}

/// Make this process a child subreaper (`PR_SET_CHILD_SUBREAPER`, 3.4+):
/// a container's init, orphaned when `runc create` exits, becomes our child,
/// so its exit status can be reaped.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) only sets a flag on this process.
    let ret = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Remove `parent` (and its ancestors, where empty) in every cgroup
/// hierarchy: runc made the task's cgroups in all of them, not only in
/// those hive writes limits to.
pub fn release_cgroup_parents(parent: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mount_point), Some(fstype)) = (fields.get(4), fields.get(dash + 1)) else {
            continue;
        };
        if !matches!(*fstype, "cgroup" | "cgroup2") {
            continue;
        }
        let root = Path::new(mount_point);
        let mut dir = root.join(parent);
        while dir != root && std::fs::remove_dir(&dir).is_ok() {
            if !dir.pop() {
                break;
            }
        }
    }
}

//! The embedded executor: each task is a real process in its own network,
//! mount, PID, UTS and IPC namespaces, in its own cgroup, with its output
//! in a log file. `prepare` builds the sandbox (cgroup with limits, network
//! namespace with loopback, attached networks, log file), `start` runs the
//! process in it ([`super::process`], then [`super::init`] inside), and
//! `remove` takes everything down again.
//!
//! Layout on a node (the agent picks the directories, see
//! [`ExecutorConfig::for_daemon`]):
//! - `<run_dir>/netns/<task-id>`: the task's network namespace (nsfs bind
//!   mount, like `ip netns add`);
//! - `<state_dir>/<task-id>/output.log`: its log;
//! - `<state_dir>/<task-id>/resolv.conf`: its `/etc/resolv.conf`, if it is on
//!   a network;
//! - `<cgroup mount>/<cgroup_parent>/<task-id>`: its cgroup(s).

use std::{
    collections::{BTreeMap, HashMap},
    ffi::{CString, OsString},
    os::unix::{ffi::OsStringExt as _, fs::OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use hive_dataplane::netns;

use super::{
    cgroup::{CgroupMounts, Cgroups},
    error::ExecutorError,
    image::{self, Image},
    init::InitTaskArgs,
    network::{self, NetworkAttacher, TaskNetworks},
    oci::OciRuntime,
    process::SYNC_FD,
    resolv_conf::ResolvConf,
    running::Process,
    spec::{self, PreparedTask, TaskSpec},
};

/// The log file's name in a task's state directory.
pub const LOG_FILE: &str = "output.log";

/// The task's `/etc/resolv.conf` in its state directory.
const RESOLV_CONF_FILE: &str = "resolv.conf";

/// Where the embedded executor keeps things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// Network namespace files go to `<run_dir>/netns/<task-id>`.
    pub run_dir: PathBuf,
    /// Per-task files (logs) go to `<state_dir>/<task-id>/`.
    pub state_dir: PathBuf,
    /// Relative to each cgroup hierarchy's root, e.g. `hive/<node-id>`.
    pub cgroup_parent: PathBuf,
    /// The `hive` binary: it runs `init-task` and the built-in images.
    pub hive_binary: PathBuf,
}

impl ExecutorConfig {
    /// The daemon's layout: `scope` tells daemons on one host apart (the
    /// node ID, or the lab node's name), `data_dir` is the daemon's.
    /// `/run/hive/<scope>`, `<data_dir>/tasks`, cgroup `hive/<scope>`, and
    /// the running binary.
    pub fn for_daemon(scope: &str, data_dir: &Path) -> Result<Self, ExecutorError> {
        spec::validate_task_id(scope).map_err(|_| ExecutorError::Config {
            reason: format!(
                "scope {scope:?} must be a plain name ([A-Za-z0-9_.-]), e.g. the node ID"
            ),
        })?;
        let hive_binary = std::env::current_exe().map_err(|err| ExecutorError::Config {
            reason: format!("cannot find the running hive binary (/proc/self/exe): {err}"),
        })?;
        Ok(Self {
            run_dir: Path::new("/run/hive").join(scope),
            state_dir: data_dir.join("tasks"),
            cgroup_parent: Path::new("hive").join(scope),
            hive_binary,
        })
    }

    fn netns_dir(&self) -> PathBuf {
        self.run_dir.join("netns")
    }
}

/// What `start` needs, built once by `prepare` (all strings checked for
/// NUL bytes there).
#[derive(Debug, Clone)]
pub(super) struct LaunchPlan {
    pub program: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
}

/// How `start` runs a prepared task.
#[derive(Debug, Clone)]
pub(super) enum TaskLaunch {
    /// clone3, then `hive init-task` (built-in and host images).
    Process(LaunchPlan),
    /// `runc create` + `runc start` of the bundle in the state directory.
    Container,
}

/// One task known to this executor.
#[derive(Debug)]
pub(super) enum Slot {
    /// `prepare` is running for it.
    Preparing,
    Prepared {
        /// Taken by `start`, so a task is started at most once.
        launch: Option<TaskLaunch>,
        process: Option<Process>,
    },
}

/// The embedded executor (see the module docs).
#[derive(Debug)]
pub struct NamespaceExecutor {
    pub(super) config: ExecutorConfig,
    pub(super) cgroups: Cgroups,
    pub(super) attacher: Arc<dyn NetworkAttacher>,
    pub(super) tasks: Mutex<HashMap<String, Slot>>,
    /// Runs OCI images when set (`with_oci`); otherwise only built-in and
    /// host images are known.
    pub(super) oci: Option<OciRuntime>,
    /// Whether `<run_dir>/netns` was made a shared mount point already.
    netns_dir_ready: Mutex<bool>,
}

impl NamespaceExecutor {
    /// An executor with `config`, attaching tasks through `attacher`. Reads
    /// the host's cgroup layout once.
    pub fn new(
        config: ExecutorConfig,
        attacher: Arc<dyn NetworkAttacher>,
    ) -> Result<Self, ExecutorError> {
        let config_error = |reason: String| ExecutorError::Config { reason };
        let mounts = CgroupMounts::discover().map_err(|e| config_error(e.to_string()))?;
        let cgroups = Cgroups::new(mounts, config.cgroup_parent.clone())
            .map_err(|e| config_error(e.to_string()))?;
        Ok(Self {
            config,
            cgroups,
            attacher,
            tasks: Mutex::new(HashMap::new()),
            oci: None,
            netns_dir_ready: Mutex::new(false),
        })
    }

    /// Run OCI images (every image that is not built in) with runc, taking
    /// them from `oci.images`. Makes this process a child subreaper, so
    /// that container processes can be reaped (see [`super::oci`]).
    pub fn with_oci(mut self, oci: OciRuntime) -> Result<Self, ExecutorError> {
        super::oci::become_subreaper().map_err(|err| ExecutorError::Config {
            reason: format!("cannot become a child subreaper for runc's containers: {err}"),
        })?;
        self.oci = Some(oci);
        Ok(self)
    }

    pub fn config(&self) -> &ExecutorConfig {
        &self.config
    }

    /// The cgroup v2 directory every task cgroup of this executor goes below; `None` on a
    /// host without cgroup v2.
    pub fn cgroup_v2_parent(&self) -> Option<PathBuf> {
        self.cgroups.unified_parent()
    }

    pub(super) fn tasks(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        // A panic while holding the lock left a consistent map (every
        // critical section is a single insert/remove/lookup).
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) async fn prepare_task(
        &self,
        spec: &TaskSpec,
    ) -> Result<PreparedTask, ExecutorError> {
        let task_id = spec.task_id.clone();
        let spec_error = |source| ExecutorError::Spec {
            task_id: task_id.clone(),
            source,
        };
        spec.validate().map_err(spec_error)?;
        let image = match (Image::parse(&spec.image), &self.oci) {
            (Ok(image), _) => image,
            (Err(image::ImageError::Unknown { .. }), Some(oci)) => {
                return self.prepare_container(spec, oci).await;
            }
            (Err(err), _) => return Err(err.into()),
        };
        if let Some(option) = spec.oci_only_option() {
            return Err(spec_error(spec::SpecError::NeedsOciImage {
                option,
                image: spec.image.clone(),
            }));
        }
        let workdir = spec.workdir.clone().unwrap_or_else(|| PathBuf::from("/"));
        spec::check_workdir(&workdir).map_err(spec_error)?;

        let container_id = new_container_id();
        let hostname = spec
            .hostname
            .clone()
            .unwrap_or_else(|| spec::short_id(&container_id).to_owned());
        let env = environment(&spec.env, &hostname);
        let path = env.get("PATH").map_or(image::DEFAULT_PATH, String::as_str);
        let mut argv = image.command_line(&self.config.hive_binary, &spec.command, &spec.args)?;
        if let Some(program) = argv.first_mut() {
            let resolved = image::resolve_program(program, path, &workdir)?;
            *program = resolved.to_string_lossy().into_owned();
        }
        let init = spec.init.unwrap_or(image.default_init());
        // A task on a network asks the node's embedded resolver (docs/services.md), if
        // `build_sandbox` writes this file: only when the networks were attached.
        let resolv_conf = (!spec.networks.is_empty())
            .then(|| self.config.state_dir.join(&task_id).join(RESOLV_CONF_FILE));
        let ready_fd = image.says_when_serving(&spec.command);
        let launch = self.launch_plan(
            &hostname,
            &workdir,
            (init, ready_fd),
            &argv,
            &env,
            resolv_conf,
        )?;

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
            hostname,
            // Filled in as each part is made, so a failure tears down
            // exactly what exists (and never someone else's leftovers).
            netns: PathBuf::new(),
            cgroups: Vec::new(),
            state_dir: PathBuf::new(),
            log_path: PathBuf::new(),
            argv,
            init,
            addresses: Vec::new(),
            networks: TaskNetworks {
                task_id: task_id.clone(),
                container_id,
                networks: spec.networks.clone(),
            },
            stop_grace_period: spec.stop_grace_period,
            container: None,
        };
        match self.build_sandbox(spec, &mut prepared).await {
            Ok(()) => {
                self.tasks().insert(
                    task_id,
                    Slot::Prepared {
                        launch: Some(TaskLaunch::Process(launch)),
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

    fn launch_plan(
        &self,
        hostname: &str,
        workdir: &Path,
        (init, ready_fd): (bool, bool),
        argv: &[String],
        env: &BTreeMap<String, String>,
        resolv_conf: Option<PathBuf>,
    ) -> Result<LaunchPlan, ExecutorError> {
        let nul = |what: &str| ExecutorError::Config {
            reason: format!("{what} contains a NUL byte"),
        };
        let binary = self.config.hive_binary.clone().into_os_string().into_vec();
        let program = CString::new(binary).map_err(|_| nul("the hive binary path"))?;
        let init_args = InitTaskArgs {
            hostname: hostname.to_owned(),
            workdir: workdir.to_path_buf(),
            init,
            // The task must not see (or pin) any namespace file: ours, or
            // iproute2's (lab nodes live there).
            unmount: vec![self.config.netns_dir(), PathBuf::from(netns::NETNS_RUN_DIR)],
            resolv_conf,
            sync_fd: Some(SYNC_FD),
            ready_fd,
            command: argv.iter().map(OsString::from).collect(),
        };
        let argv = std::iter::once(OsString::from(self.config.hive_binary.clone()))
            .chain(init_args.to_args())
            .map(|arg| CString::new(arg.into_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| nul("an argument"))?;
        let envp = env
            .iter()
            .map(|(key, value)| CString::new(format!("{key}={value}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| nul("an environment entry"))?;
        Ok(LaunchPlan {
            program,
            argv,
            envp,
        })
    }

    /// State directory and log, cgroup, network namespace with loopback,
    /// then the networks. Fills `prepared` as it goes.
    pub(super) async fn build_sandbox(
        &self,
        spec: &TaskSpec,
        prepared: &mut PreparedTask,
    ) -> Result<(), ExecutorError> {
        let task_id = prepared.task_id.clone();
        let state_dir = self.config.state_dir.join(&task_id);
        let log_path = state_dir.join(LOG_FILE);
        let (root, dir, log) = (
            self.config.state_dir.clone(),
            state_dir.clone(),
            log_path.clone(),
        );
        blocking(move || make_state_dir(&root, &dir, &log))
            .await
            .map_err(|(action, path, source)| ExecutorError::Io {
                task_id: task_id.clone(),
                action,
                path,
                source,
            })?;
        prepared.state_dir = state_dir;
        prepared.log_path = log_path;

        let cgroups = self.cgroups.clone();
        let limits = spec.limits;
        let id = task_id.clone();
        prepared.cgroups = blocking(move || cgroups.create(&id, limits))
            .await
            .map_err(|source| ExecutorError::Cgroup {
                task_id: task_id.clone(),
                source,
            })?;

        let netns_path = self.config.netns_dir().join(&task_id);
        self.ensure_netns_dir(&task_id)?;
        let path = netns_path.clone();
        blocking(move || netns::create_netns(&path))
            .await
            .map_err(|source| ExecutorError::Netns {
                task_id: task_id.clone(),
                source,
            })?;
        prepared.netns = netns_path.clone();
        blocking(move || network::loopback_up(&netns_path))
            .await
            .map_err(|source| ExecutorError::Loopback {
                task_id: task_id.clone(),
                source,
            })?;

        prepared.addresses = self
            .attacher
            .attach(&prepared.networks, &prepared.netns)
            .await
            .map_err(|source| ExecutorError::Attach {
                task_id: task_id.clone(),
                source,
            })?;

        // Attached networks come with the node's embedded resolver: the task
        // asks it. Without (no data plane), the task keeps the host's file.
        if !prepared.addresses.is_empty() {
            let path = prepared.state_dir.join(RESOLV_CONF_FILE);
            let text = ResolvConf::of_host().for_task();
            let write = path.clone();
            blocking(move || std::fs::write(&write, text))
                .await
                .map_err(|source| ExecutorError::Io {
                    task_id: task_id.clone(),
                    action: "write",
                    path,
                    source,
                })?;
        }
        Ok(())
    }

    /// `<run_dir>/netns` must be a shared mount point before the first
    /// namespace file is mounted in it (see `netns::ensure_shared_dir`).
    fn ensure_netns_dir(&self, task_id: &str) -> Result<(), ExecutorError> {
        let mut ready = self
            .netns_dir_ready
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !*ready {
            netns::ensure_shared_dir(&self.config.netns_dir()).map_err(|source| {
                ExecutorError::Netns {
                    task_id: task_id.to_owned(),
                    source,
                }
            })?;
            *ready = true;
        }
        Ok(())
    }

    /// Free everything `prepare` made for `task` (what exists of it):
    /// networks (when `detach`), namespace file, cgroups (killing what is
    /// left in them), state directory. Tries every step; returns the first
    /// error.
    pub(super) async fn teardown(
        &self,
        task: &PreparedTask,
        detach: bool,
    ) -> Result<(), ExecutorError> {
        let task_id = task.task_id.clone();
        let mut errors = Vec::new();
        // The container first: runc kills its processes and unmounts nothing
        // of ours; its root must be unmounted before the state dir goes.
        let mut state_dir_free = true;
        if let Some(container) = &task.container {
            state_dir_free = Self::teardown_container(task, container, &mut errors).await;
        }
        // The secrets' and configs' tmpfs, once runc no longer holds its files.
        let files = super::files::files_dir(&self.config.run_dir, &task_id);
        if let Err(source) = blocking(move || super::files::release(&files)).await {
            errors.push(ExecutorError::Container {
                task_id: task_id.clone(),
                source: source.into(),
            });
        }
        if detach && let Err(source) = self.attacher.detach(&task.networks).await {
            errors.push(ExecutorError::Detach {
                task_id: task_id.clone(),
                source,
            });
        }
        if !task.netns.as_os_str().is_empty() {
            let path = task.netns.clone();
            if let Err(source) = blocking(move || netns::remove(&path)).await {
                errors.push(ExecutorError::Netns {
                    task_id: task_id.clone(),
                    source,
                });
            }
        }
        let dirs = task.cgroups.clone();
        let removed = blocking(move || {
            super::cgroup::kill(&dirs)?;
            super::cgroup::remove(&dirs)
        })
        .await;
        if let Err(source) = removed {
            errors.push(ExecutorError::Cgroup {
                task_id: task_id.clone(),
                source,
            });
        }
        if state_dir_free && !task.state_dir.as_os_str().is_empty() {
            match std::fs::remove_dir_all(&task.state_dir) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => errors.push(ExecutorError::Io {
                    task_id: task_id.clone(),
                    action: "remove",
                    path: task.state_dir.clone(),
                    source,
                }),
            }
        }
        let mut errors = errors.into_iter();
        let first = errors.next();
        for other in errors {
            tracing::warn!(task = %task_id, error = %other, "removing task");
        }
        first.map_or(Ok(()), Err)
    }

    /// Remove the executor's own directories and mount point where nothing
    /// uses them any more (daemon shutdown with no tasks left; tests).
    pub async fn release(&self) {
        if !self.tasks().is_empty() {
            return;
        }
        let netns_dir = self.config.netns_dir();
        let run_dir = self.config.run_dir.clone();
        let state_dir = self.config.state_dir.clone();
        let cgroups = self.cgroups.clone();
        let was_ready = std::mem::replace(
            &mut *self
                .netns_dir_ready
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
            false,
        );
        blocking(move || {
            if was_ready {
                // The bind mount ensure_shared_dir made; only when empty.
                let empty = std::fs::read_dir(&netns_dir).is_ok_and(|mut d| d.next().is_none());
                if empty {
                    let _ = nix::mount::umount2(&netns_dir, nix::mount::MntFlags::MNT_DETACH);
                }
            }
            for dir in [&netns_dir, &run_dir, &state_dir] {
                // ENOTEMPTY: something still lives there; leave it.
                let _ = std::fs::remove_dir(dir);
            }
            cgroups.release_parent();
        })
        .await;
        if let Some(oci) = &self.oci {
            let parent = self.config.cgroup_parent.clone();
            let runc_root = oci.runc.root.clone();
            let run_dir = self.config.run_dir.clone();
            blocking(move || {
                super::oci::release_cgroup_parents(&parent);
                // runc's state directory, once it holds no container.
                let _ = std::fs::remove_dir(&runc_root);
                let _ = std::fs::remove_dir(&run_dir);
            })
            .await;
        }
    }
}

/// `<state_dir>/<task-id>/` with an empty log. A directory left by a
/// crashed daemon holds only an old log: it is replaced.
fn make_state_dir(
    root: &Path,
    dir: &Path,
    log: &Path,
) -> Result<(), (&'static str, PathBuf, std::io::Error)> {
    fn failed(
        action: &'static str,
        path: &Path,
    ) -> impl FnOnce(std::io::Error) -> (&'static str, PathBuf, std::io::Error) + use<> {
        let path = path.to_path_buf();
        move |err| (action, path, err)
    }
    std::fs::create_dir_all(root).map_err(failed("create", root))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(failed("remove", dir))?;
    }
    std::fs::create_dir(dir).map_err(failed("create", dir))?;
    std::fs::File::create(log).map_err(failed("create", log))?;
    Ok(())
}

/// Run blocking file-system and namespace work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(err) => match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only a runtime shutting down cancels blocking work.
            Err(_) => std::panic::resume_unwind(Box::new("the tokio runtime shut down")),
        },
    }
}

/// A fresh container ID: 64 hex characters from 256 random bits. Like
/// Docker (`stringid.GenerateRandomID`), never one whose 12-character
/// prefix reads as a number, so a short ID cannot be mistaken for one.
pub fn new_container_id() -> String {
    // (10/16)^12 ≈ 0.4 %: a second draw is rare, a sixteenth unheard of.
    let mut id = random_hex();
    for _ in 0..16 {
        if !spec::short_id(&id).bytes().all(|b| b.is_ascii_digit()) {
            break;
        }
        id = random_hex();
    }
    id
}

fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The task's environment: Docker's defaults (`PATH`, `HOSTNAME`, `HOME`),
/// then the spec's entries, later ones winning. Nothing is inherited from
/// the daemon.
pub fn environment(entries: &[String], hostname: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        ("PATH".to_owned(), image::DEFAULT_PATH.to_owned()),
        ("HOSTNAME".to_owned(), hostname.to_owned()),
        ("HOME".to_owned(), "/root".to_owned()),
    ]);
    for entry in entries {
        if let Some((key, value)) = entry.split_once('=') {
            env.insert(key.to_owned(), value.to_owned());
        }
    }
    env
}

/// Open a cgroup v1 `cgroup.procs` for the child to write itself into.
pub(super) fn open_for_write(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_look_like_dockers() {
        let id = new_container_id();
        assert_eq!(id.len(), 64);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert!(!spec::short_id(&id).bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(id, new_container_id());
    }

    #[test]
    fn the_environment_has_dockers_defaults_and_the_spec_wins() {
        let env = environment(
            &[
                "FOO=bar".to_owned(),
                "PATH=/opt/bin".to_owned(),
                "FOO=baz".to_owned(),
            ],
            "abc123",
        );
        assert_eq!(env["PATH"], "/opt/bin");
        assert_eq!(env["HOSTNAME"], "abc123");
        assert_eq!(env["HOME"], "/root");
        assert_eq!(env["FOO"], "baz");
    }

    #[test]
    fn daemons_get_their_own_directories_and_cgroups() {
        let config =
            ExecutorConfig::for_daemon("node1", Path::new("/var/lib/hive")).expect("config");
        assert_eq!(config.run_dir, Path::new("/run/hive/node1"));
        assert_eq!(config.state_dir, Path::new("/var/lib/hive/tasks"));
        assert_eq!(config.cgroup_parent, Path::new("hive/node1"));
        assert!(ExecutorConfig::for_daemon("../x", Path::new("/d")).is_err());
    }
}

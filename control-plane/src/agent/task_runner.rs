//! One task on this node, from its assignment to its removal: Swarm's agent-side state
//! machine over the [`Executor`].
//!
//! ```text
//! desired READY/RUNNING, nothing made ─ prepare ─▶ PREPARING ─▶ READY     (error: REJECTED)
//! desired RUNNING, prepared ──────────── start ──▶ STARTING ──▶ RUNNING   (error: FAILED)
//! RUNNING, the process exits ─────────────────────▶ COMPLETE (0) / FAILED (non-zero exit (N))
//! desired SHUTDOWN/REMOVE/... ───────── shutdown ─▶ SHUTDOWN
//! the task leaves the assignment set ── shutdown + remove, and the runner ends
//! ```
//!
//! Every state goes to the [`StatusQueue`]; the leader keeps only forward moves. What
//! `prepare` made is written under the data dir ([`PreparedStore`]) so that a daemon that
//! starts again finds what an earlier one left (docs/agent.md, "Restart").

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::status::StatusQueue;
use super::worker::MeshRefusals;
use crate::executor::{
    self, Executor, ExitStatus, PreparedTask, ResourceLimits, TaskSpec as ExecSpec,
};
use crate::store::objects::{
    Health, HealthCheck, Mount, MountType, RuntimeStatus, Task, TaskState, TaskStatus, Timestamp,
};

/// What the worker wants of a runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desired {
    pub state: TaskState,
    /// The task left the assignment set (or the agent stops for good): free everything and
    /// end.
    pub gone: bool,
    /// The daemon stops but the task keeps running, for the next daemon to adopt: end
    /// without touching it.
    pub detach: bool,
}

impl Desired {
    pub fn new(state: TaskState) -> Self {
        Self {
            state,
            gone: false,
            detach: false,
        }
    }
}

/// What the agent remembers of a prepared task: what `prepare` made, and the PID of its
/// process once started.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PreparedRecord {
    #[serde(flatten)]
    pub task: PreparedTask,
    #[serde(default)]
    pub pid: Option<u32>,
}

/// The executor's spec of a store task.
pub fn executor_spec(task: &Task) -> ExecSpec {
    let container = &task.spec.container;
    let mut spec = ExecSpec::new(task.id.clone(), container.image.clone());
    spec.command = container.command.clone();
    spec.args = container.args.clone();
    spec.env = container.env.clone();
    spec.hostname = (!container.hostname.is_empty()).then(|| container.hostname.clone());
    spec.workdir = (!container.workdir.is_empty()).then(|| PathBuf::from(&container.workdir));
    spec.limits = ResourceLimits {
        nano_cpus: task.spec.resources.limits.nano_cpus,
        memory_bytes: task.spec.resources.limits.memory_bytes,
    };
    spec.stop_grace_period = container.stop_grace_period;
    spec.user = (!container.user.is_empty()).then(|| container.user.clone());
    spec.init = container.init;
    spec.read_only = container.read_only;
    spec.cap_add = container.cap_add.clone();
    spec.cap_drop = container.cap_drop.clone();
    spec.ulimits = container
        .ulimits
        .iter()
        .map(|u| executor::Ulimit {
            name: u.name.clone(),
            soft: u.soft,
            hard: u.hard,
        })
        .collect();
    spec.sysctls = container.sysctls.clone();
    spec.stop_signal = (!container.stop_signal.is_empty()).then(|| container.stop_signal.clone());
    spec.mounts = container.mounts.iter().map(executor_mount).collect();
    spec.registry_auth.clone_from(&container.registry_auth);
    spec.networks = task
        .networks
        .iter()
        .map(|n| executor::NetworkAttachment {
            network_id: n.network_id.clone(),
            addresses: n.addresses.iter().map(ToString::to_string).collect(),
            aliases: n.aliases.clone(),
        })
        .collect();
    spec
}

/// The files of `task`'s secrets (under `/run/secrets` unless absolute) and configs (under
/// `/` unless absolute), with the data this node holds; an error names one whose data the
/// node did not receive.
pub fn task_files(
    task: &Task,
    held: &super::assignment::HeldFiles,
) -> Result<Vec<executor::files::TaskFile>, String> {
    let container = &task.spec.container;
    let kinds = [
        ("secret", &container.secrets, &held.secrets, "/run/secrets"),
        ("config", &container.configs, &held.configs, "/"),
    ];
    let mut files = Vec::new();
    for (word, references, data, base) in kinds {
        for reference in references {
            let data = data.get(&reference.id).ok_or_else(|| {
                format!(
                    "the data of {word} {} did not reach this node",
                    reference.name
                )
            })?;
            let target = &reference.target;
            let number = |what: &str, value: &str| {
                value
                    .parse::<u32>()
                    .map_err(|_| format!("{word} {}: invalid {what} {value:?}", reference.name))
            };
            files.push(executor::files::TaskFile {
                target: std::path::Path::new(base).join(&target.name),
                data: data.clone(),
                uid: number("uid", &target.uid)?,
                gid: number("gid", &target.gid)?,
                mode: target.mode,
            });
        }
    }
    Ok(files)
}

/// A store `--mount` as the executor takes it. An anonymous volume (no
/// source) gets a random name, as Docker's; it stays on the node.
fn executor_mount(mount: &Mount) -> executor::Mount {
    let kind = match mount.mount_type {
        MountType::Volume => executor::MountKind::Volume {
            name: if mount.source.is_empty() {
                executor::new_container_id()
            } else {
                mount.source.clone()
            },
            options: mount.volume_options.clone(),
        },
        MountType::Bind => executor::MountKind::Bind {
            source: PathBuf::from(&mount.source),
        },
        MountType::Tmpfs => executor::MountKind::Tmpfs {
            size_bytes: mount.tmpfs_size_bytes,
        },
    };
    executor::Mount {
        target: PathBuf::from(&mount.target),
        readonly: mount.readonly,
        kind,
    }
}

/// Where prepared tasks are remembered: `<dir>/<task-id>.json`.
#[derive(Debug, Clone)]
pub struct PreparedStore {
    pub dir: PathBuf,
}

impl PreparedStore {
    pub fn save(&self, task: &PreparedTask, pid: Option<u32>) {
        let record = PreparedRecord {
            task: task.clone(),
            pid,
        };
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let path = self.path(&task.task_id);
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&record)?)?;
            std::fs::rename(tmp, path)
        };
        if let Err(err) = write() {
            tracing::warn!(task = %task.task_id, %err, dir = %self.dir.display(),
                "could not record the prepared task; a restarted daemon will not find it");
        }
    }

    pub fn forget(&self, task_id: &str) {
        let _ = std::fs::remove_file(self.path(task_id));
    }

    /// Every task an earlier daemon prepared and did not remove.
    /// A record that cannot be read is logged with its path and cause: its task is not
    /// adopted, and what it left (namespace, processes) must be cleaned up by hand.
    pub fn list(&self) -> Vec<PreparedRecord> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(err) => {
                tracing::error!(dir = %self.dir.display(), %err,
                    "agent: cannot list the prepared tasks; none is adopted");
                return Vec::new();
            }
        };
        entries
            .filter_map(|entry| {
                entry
                    .inspect_err(|err| {
                        tracing::error!(dir = %self.dir.display(), %err,
                            "agent: cannot read an entry of the prepared tasks");
                    })
                    .ok()
            })
            .map(|e| e.path())
            .filter(|path| path.extension().is_some_and(|x| x == "json"))
            .filter_map(|path| {
                let record = std::fs::read(&path)
                    .map_err(|err| err.to_string())
                    .and_then(|bytes| {
                        serde_json::from_slice(&bytes).map_err(|err| err.to_string())
                    });
                record
                    .inspect_err(|err| {
                        tracing::error!(path = %path.display(), %err,
                            "agent: prepared task not adopted: its record cannot be read");
                    })
                    .ok()
            })
            .collect()
    }

    fn path(&self, task_id: &str) -> PathBuf {
        self.dir.join(format!("{task_id}.json"))
    }
}

/// One task's runner.
#[derive(Debug)]
pub struct TaskRunner {
    pub task: Task,
    pub executor: Arc<dyn Executor>,
    pub statuses: StatusQueue,
    pub prepared_store: PreparedStore,
    /// What an earlier daemon left of this task, to take over.
    pub adopt: Option<PreparedRecord>,
    /// The services the node's data plane refuses to program: while its service is one of
    /// them, the running task reports why as its error (`service ps` shows it).
    pub mesh_refusals: Option<watch::Receiver<MeshRefusals>>,
    /// Before the manager's stop reaches a running task, every node applies the mesh that took
    /// it out (docs/lifecycle.md); `None` in tests without a leader.
    pub mesh_link: Option<Arc<super::mesh_link::MeshLink>>,
    /// The task's secrets and configs (`task_files`), or why it cannot have them.
    pub files: Result<Vec<executor::files::TaskFile>, String>,
    /// The status last reported (starts as the store's).
    last: TaskStatus,
}

/// How long an unhealthy task's stop waits for the leader to take its status before it goes
/// ahead (the leader's own wait for every node's mesh is bounded apart).
const STATUS_BOUND: std::time::Duration = std::time::Duration::from_secs(5);

/// The health check a task runs, if any: its spec's over its image's `HEALTHCHECK`; the
/// image's alone when the spec sets none; none with `--no-healthcheck` (docs/health.md).
pub fn health_check(task: &Task, prepared: &PreparedTask) -> Option<HealthCheck> {
    let image = prepared
        .container
        .as_ref()
        .and_then(|c| c.health_check.as_ref());
    match &task.spec.container.health_check {
        Some(service) => service.over(image).effective(),
        None => image?.effective(),
    }
}

/// The error of a task its health check stopped, as Swarm words it.
fn unhealthy_error(code: i32) -> String {
    format!("task: non-zero exit ({code}): unhealthy container")
}

impl TaskRunner {
    pub fn new(
        task: Task,
        executor: Arc<dyn Executor>,
        statuses: StatusQueue,
        prepared_store: PreparedStore,
    ) -> Self {
        let last = task.status.clone();
        Self {
            task,
            executor,
            statuses,
            prepared_store,
            adopt: None,
            mesh_refusals: None,
            mesh_link: None,
            files: Ok(Vec::new()),
            last,
        }
    }

    fn report(&mut self, state: TaskState, message: &str, err: &str, exit: Option<ExitStatus>) {
        let mut status = TaskStatus {
            timestamp: Timestamp::now(),
            state,
            message: message.to_owned(),
            err: err.to_owned(),
            runtime: self.last.runtime.clone(),
            // Host-mode ports are published on this node while the task runs (the node's
            // mesh delivers them; `service ps` shows them in PORTS).
            port_status: if state == TaskState::Running {
                self.host_ports()
            } else {
                Vec::new()
            },
            health: self.last.health,
        };
        if let (Some(runtime), Some(exit)) = (status.runtime.as_mut(), exit) {
            runtime.exit_code = exit.code();
        }
        tracing::info!(task = %self.task.id, %state, message, err, "task status");
        self.last = status.clone();
        self.statuses.report(&self.task.id, status);
    }

    /// The task's host-mode published ports.
    fn host_ports(&self) -> Vec<crate::store::objects::PortConfig> {
        self.task
            .endpoint
            .as_ref()
            .map(|e| {
                e.ports
                    .iter()
                    .filter(|p| {
                        p.publish_mode == crate::store::objects::PublishMode::Host
                            && p.published_port != 0
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Takes over what an earlier daemon left running; `Some` if it still runs.
    async fn adopt(&mut self) -> Option<PreparedTask> {
        let record = self.adopt.take()?;
        let adopted = match record.pid {
            Some(pid) => self.executor.adopt(&record.task, pid).await,
            None => Err(crate::executor::ExecutorError::NotStarted {
                task_id: record.task.task_id.clone(),
            }),
        };
        match adopted {
            Ok(started) => {
                tracing::info!(task = %record.task.task_id, pid = started.pid, "agent: adopted a running task");
                self.last.runtime = Some(RuntimeStatus {
                    runtime_id: record.task.container_id.clone(),
                    pid: started.pid,
                    exit_code: 0,
                });
                Some(record.task)
            }
            Err(err) => {
                tracing::info!(task = %record.task.task_id, %err, "agent: cannot adopt a task; removing it");
                if let Err(err) = self.executor.remove(&record.task).await {
                    tracing::warn!(task = %record.task.task_id, %err, "removing a left-over task");
                }
                self.prepared_store.forget(&record.task.task_id);
                None
            }
        }
    }

    /// Runs until the task is gone (`desired.gone`, or the sender dropped).
    pub async fn run(mut self, mut desired: watch::Receiver<Desired>) {
        let mut prepared: Option<PreparedTask> = None;
        if let Some(task) = self.adopt().await {
            if self.last.state != TaskState::Running {
                self.report(TaskState::Running, "adopted", "", None);
            }
            let detached = self.supervise(&task, &mut desired).await;
            prepared = Some(task);
            if detached {
                return;
            }
        }
        let state = self.last.state;
        if prepared.is_none() && (TaskState::Preparing..=TaskState::Running).contains(&state) {
            // The store says an agent of this node was running it, but this one does not
            // have it: an earlier daemon's, which could not be re-adopted.
            self.report(
                TaskState::Failed,
                "lost",
                "task: lost when the hive daemon restarted",
                None,
            );
        }
        loop {
            let want = *desired.borrow_and_update();
            if want.detach {
                return;
            }
            if want.gone {
                break;
            }
            let state = self.last.state;
            if state.is_terminal() {
                if desired.changed().await.is_err() {
                    break;
                }
                continue;
            }
            if want.state > TaskState::Running {
                self.report(TaskState::Shutdown, "shutdown", "", None);
                continue;
            }
            match &prepared {
                None if want.state >= TaskState::Ready => {
                    self.report(TaskState::Preparing, "preparing", "", None);
                    let mut spec = executor_spec(&self.task);
                    match &self.files {
                        Ok(files) => spec.files.clone_from(files),
                        Err(err) => {
                            let err = err.clone();
                            self.report(TaskState::Rejected, "rejected", &err, None);
                            continue;
                        }
                    }
                    match self.executor.prepare(&spec).await {
                        Ok(task) => {
                            self.prepared_store.save(&task, None);
                            prepared = Some(task);
                            self.report(TaskState::Ready, "prepared", "", None);
                        }
                        Err(err) => {
                            self.report(TaskState::Rejected, "rejected", &err.to_string(), None)
                        }
                    }
                }
                Some(task) if want.state == TaskState::Running => {
                    let task = task.clone();
                    self.report(TaskState::Starting, "starting", "", None);
                    match self.executor.start(&task).await {
                        Ok(started) => {
                            self.prepared_store.save(&task, Some(started.pid));
                            self.last.runtime = Some(RuntimeStatus {
                                runtime_id: task.container_id.clone(),
                                pid: started.pid,
                                exit_code: 0,
                            });
                            if health_check(&self.task, &task).is_some() {
                                // Swarm's rule: RUNNING once the check first passed.
                                self.last.health = Some(Health::Starting);
                                self.report(TaskState::Starting, "starting", "", None);
                            } else {
                                self.report(TaskState::Running, "started", "", None);
                            }
                            if self.supervise(&task, &mut desired).await {
                                return;
                            }
                        }
                        Err(err) => {
                            self.report(TaskState::Failed, "starting", &err.to_string(), None)
                        }
                    }
                }
                _ => {
                    if desired.changed().await.is_err() {
                        break;
                    }
                }
            }
        }
        if let Some(task) = prepared {
            if let Err(err) = self.executor.shutdown(&task).await {
                tracing::warn!(task = %task.task_id, %err, "stopping the task");
            }
            if let Err(err) = self.executor.remove(&task).await {
                tracing::warn!(task = %task.task_id, %err, "removing the task");
            }
            self.prepared_store.forget(&task.task_id);
        }
    }

    /// Reports the running task again if what the node's data plane says of its service
    /// changed: the error while the service cannot be programmed, none once it is again.
    fn report_mesh(&mut self, refusals: &MeshRefusals) {
        let err = refusals
            .get(&self.task.service_id)
            .map_or(String::new(), Clone::clone);
        if self.last.state == TaskState::Running && self.last.err != err {
            let message = self.last.message.clone();
            self.report(TaskState::Running, &message, &err, None);
        }
    }

    /// Reports what the health check says: a task still starting runs once healthy; an
    /// unhealthy one is reported (which takes it out of every node's mesh at once) before it
    /// is stopped. True if it is unhealthy.
    fn report_health(&mut self, health: Health) -> bool {
        if self.last.health == Some(health) {
            return false;
        }
        self.last.health = Some(health);
        let state = self.last.state;
        match health {
            Health::Healthy if state == TaskState::Starting => {
                self.report(TaskState::Running, "started", "", None);
            }
            Health::Unhealthy if state == TaskState::Running => {
                let err = self.last.err.clone();
                self.report(TaskState::Running, "unhealthy", &err, None);
            }
            _ => {
                let (message, err) = (self.last.message.clone(), self.last.err.clone());
                self.report(state, &message, &err, None);
            }
        }
        health == Health::Unhealthy
    }

    /// Returns once every node's mesh applied the status last reported (the `unhealthy` that
    /// takes the task out of it): the leader answers the store version of its write, then
    /// the leader waits for every node to apply that version (docs/lifecycle.md). Bounded by
    /// [`STATUS_BOUND`] while the leader does not take the status (no session): the stop
    /// then goes ahead, logged.
    async fn reported_drained(&self) {
        let Some(link) = &self.mesh_link else {
            return;
        };
        let written = self.statuses.written(&self.task.id, &self.last);
        match tokio::time::timeout(STATUS_BOUND, written).await {
            Ok(version) => link.drained_at(version).await,
            Err(_) => tracing::warn!(task = %self.task.id, bound = ?STATUS_BOUND,
                "agent: the leader did not take the task's unhealthy status within the bound; stopping it without waiting for every node's mesh"),
        }
    }

    /// A running task: until it exits, or the manager (or the worker) stops it. True if the
    /// agent detached from it instead (it runs on, for the next daemon).
    async fn supervise(
        &mut self,
        task: &PreparedTask,
        desired: &mut watch::Receiver<Desired>,
    ) -> bool {
        let mut stopping = false;
        let mut unhealthy = false;
        let mut first = true;
        let mut refusals = self.mesh_refusals.take();
        let (health_tx, mut health) = watch::channel(self.last.health.unwrap_or_default());
        let monitor = health_check(&self.task, task).map(|check| {
            let initial = self.last.health.unwrap_or_default();
            tokio::spawn(super::health::monitor(
                check,
                self.executor.clone(),
                task.clone(),
                initial,
                health_tx,
            ))
        });
        let exit = loop {
            let check = if first {
                first = false;
                if let Some(refusals) = &mut refusals {
                    let now = refusals.borrow_and_update().clone();
                    self.report_mesh(&now);
                }
                Ok(())
            } else {
                tokio::select! {
                    exit = self.executor.wait(task) => break exit,
                    changed = desired.changed(), if !stopping => changed,
                    Some(now) = next_refusals(&mut refusals), if !stopping => {
                        self.report_mesh(&now);
                        continue;
                    }
                    Ok(()) = health.changed(), if !stopping && monitor.is_some() => {
                        let now = *health.borrow_and_update();
                        let serving = self.last.state == TaskState::Running;
                        unhealthy = self.report_health(now);
                        if unhealthy {
                            stopping = true;
                            // As for any stop: no node sends it new flows by the time it
                            // gets its stop signal (one that was still starting never had any).
                            if serving {
                                tokio::select! {
                                    () = self.reported_drained() => {}
                                    exit = self.executor.wait(task) => break exit,
                                }
                            }
                            if let Err(err) = self.executor.shutdown(task).await {
                                tracing::warn!(task = %task.task_id, %err, "stopping an unhealthy task");
                            }
                        }
                        continue;
                    }
                }
            };
            let want = *desired.borrow();
            if want.detach {
                return true;
            }
            if !stopping && (check.is_err() || want.gone || want.state > TaskState::Running) {
                stopping = true;
                // No node sends the task new flows by the time it gets its stop signal:
                // wait until every node applied the mesh without it (its established
                // connections go on until it exits).
                if let Some(link) = self.mesh_link.clone() {
                    tokio::select! {
                        () = link.drained() => {}
                        exit = self.executor.wait(task) => break exit,
                    }
                }
                if let Err(err) = self.executor.shutdown(task).await {
                    tracing::warn!(task = %task.task_id, %err, "stopping the task");
                }
            }
        };
        if let Some(monitor) = monitor {
            monitor.abort();
        }
        match exit {
            Ok(exit) if unhealthy => self.report(
                TaskState::Failed,
                "unhealthy",
                &unhealthy_error(exit.code()),
                Some(exit),
            ),
            Err(_) if unhealthy => {
                self.report(TaskState::Failed, "unhealthy", &unhealthy_error(137), None)
            }
            Ok(exit) if stopping => self.report(TaskState::Shutdown, "shutdown", "", Some(exit)),
            Err(_) if stopping => self.report(TaskState::Shutdown, "shutdown", "", None),
            Ok(exit) if exit.success() => {
                self.report(TaskState::Complete, "finished", "", Some(exit))
            }
            Ok(exit) => self.report(
                TaskState::Failed,
                "finished",
                &format!("task: non-zero exit ({})", exit.code()),
                Some(exit),
            ),
            Err(err) => self.report(TaskState::Failed, "finished", &err.to_string(), None),
        }
        self.mesh_refusals = refusals;
        false
    }
}

/// The next refusals of the node's data plane; `None` when there will be none (no data
/// plane, or it closed), which disables the branch that waits for them.
async fn next_refusals(
    refusals: &mut Option<watch::Receiver<MeshRefusals>>,
) -> Option<MeshRefusals> {
    let receiver = refusals.as_mut()?;
    match receiver.changed().await {
        Ok(()) => Some(receiver.borrow_and_update().clone()),
        Err(_closed) => None,
    }
}

#[cfg(test)]
mod tests;

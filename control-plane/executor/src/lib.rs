//! The task executor: how the agent runs a task on its node.
//!
//! [`Executor`] has SwarmKit's shape (`agent/exec.Controller`): `prepare`
//! (make everything the task needs, or reject it), `start`, `wait` (until
//! it exits), `shutdown` (SIGTERM, then SIGKILL after the stop grace
//! period), `remove` (free everything). The agent maps the steps onto
//! Swarm's task states: PREPARING → READY → STARTING → RUNNING, then
//! COMPLETE or FAILED from the exit status, SHUTDOWN after `shutdown`,
//! REJECTED when `prepare` fails (unknown image, missing program, ...).
//!
//! [`NamespaceExecutor`] is the embedded implementation: a process per
//! task in its own network, mount, PID, UTS and IPC namespaces, with
//! cgroup limits and a log file. OCI images through crun/runc can come
//! later behind the same trait. `docs/executor.md` tells the whole story.
//!
//! Modules: [`spec`] (the types), [`image`] (image → program),
//! [`cgroup`], [`network`] (the data plane's seam and the loopback),
//! [`logs`], [`process`] (clone3, pidfd), [`init`] (`hive init-task`,
//! inside the task), `namespaced` (prepare/remove) and `running`
//! (start/wait/shutdown/logs).

use futures::future::BoxFuture;

pub mod cgroup;
mod error;
pub mod files;
pub mod image;
pub mod init;
pub mod logs;
mod namespaced;
pub mod network;
pub mod oci;
pub mod probe;
pub mod process;
pub mod resolv_conf;
mod running;
pub mod spec;
pub mod volume_store;

pub use error::ExecutorError;
pub use image::ImageError;
pub use logs::{LogEntry, LogError, LogOptions, LogReader, Stream};
pub use namespaced::{ExecutorConfig, LOG_FILE, NamespaceExecutor, environment, new_container_id};
pub use network::{
    AssignedAddr, AttachError, DataplaneMissing, NetworkAttacher, NoDataplane, NoNetworks,
    TaskNetworks,
};
pub use oci::{
    ContainerImage, ImageSource, ImageSourceError, Mount, MountKind, OciContainer, OciRuntime,
    Ulimit,
};
pub use probe::ProbeOutcome;
pub use spec::{
    DEFAULT_STOP_GRACE_PERIOD, ExitStatus, NetworkAttachment, PreparedTask, ResourceLimits,
    SpecError, StartedTask, TaskSpec,
};

/// Runs tasks. Object-safe, so the agent can hold an `Arc<dyn Executor>`
/// and an OCI runtime can be chosen at start-up later.
///
/// Each task goes `prepare` → `start` → `wait` (concurrently with an
/// optional `shutdown`) → `remove`. `remove` is valid at any point after
/// `prepare` returned (it kills what runs) and is idempotent.
pub trait Executor: Send + Sync + std::fmt::Debug {
    /// Make everything the task needs without running it. Errors here mean
    /// the task cannot run on this node (Swarm: REJECTED); nothing is left
    /// behind.
    fn prepare<'a>(
        &'a self,
        spec: &'a TaskSpec,
    ) -> BoxFuture<'a, Result<PreparedTask, ExecutorError>>;

    /// Run the prepared task; returns once its program runs (or failed to).
    fn start<'a>(
        &'a self,
        task: &'a PreparedTask,
    ) -> BoxFuture<'a, Result<StartedTask, ExecutorError>>;

    /// Wait until the task's PID 1 exits; its log is complete by then. Any
    /// number of callers may wait.
    fn wait<'a>(
        &'a self,
        task: &'a PreparedTask,
    ) -> BoxFuture<'a, Result<ExitStatus, ExecutorError>>;

    /// Stop the task: SIGTERM to its PID 1, SIGKILL to all of it after
    /// `stop_grace_period`. Returns once it is gone; `wait` tells how it
    /// ended.
    fn shutdown<'a>(&'a self, task: &'a PreparedTask) -> BoxFuture<'a, Result<(), ExecutorError>>;

    /// Kill what still runs and free everything: networks, namespace,
    /// cgroups, logs.
    fn remove<'a>(&'a self, task: &'a PreparedTask) -> BoxFuture<'a, Result<(), ExecutorError>>;

    /// Read (or follow) the task's output.
    fn logs<'a>(
        &'a self,
        task: &'a PreparedTask,
        options: LogOptions,
    ) -> BoxFuture<'a, Result<LogReader, ExecutorError>>;

    /// Run `argv` inside the running task (its namespaces, root and cgroups, as
    /// `docker exec`), killing it after `timeout`: a health check's probe. Executors that
    /// cannot do this say so.
    fn exec<'a>(
        &'a self,
        task: &'a PreparedTask,
        _argv: &'a [String],
        _timeout: std::time::Duration,
    ) -> BoxFuture<'a, Result<ProbeOutcome, ExecutorError>> {
        Box::pin(async move {
            Err(ExecutorError::Start {
                task_id: task.task_id.clone(),
                reason: "this executor cannot run a command in a task".to_owned(),
            })
        })
    }

    /// Take over a task an earlier daemon prepared and started (PID 1 `pid`), so that it
    /// can be waited for, stopped and removed, and its output is logged again. Fails if it
    /// is not running any more. Executors that cannot do this say so.
    fn adopt<'a>(
        &'a self,
        task: &'a PreparedTask,
        _pid: u32,
    ) -> BoxFuture<'a, Result<StartedTask, ExecutorError>> {
        Box::pin(async move {
            Err(ExecutorError::Start {
                task_id: task.task_id.clone(),
                reason: "this executor cannot adopt tasks".to_owned(),
            })
        })
    }
}

impl Executor for NamespaceExecutor {
    fn prepare<'a>(
        &'a self,
        spec: &'a TaskSpec,
    ) -> BoxFuture<'a, Result<PreparedTask, ExecutorError>> {
        Box::pin(self.prepare_task(spec))
    }

    fn start<'a>(
        &'a self,
        task: &'a PreparedTask,
    ) -> BoxFuture<'a, Result<StartedTask, ExecutorError>> {
        Box::pin(self.start_task(task))
    }

    fn wait<'a>(
        &'a self,
        task: &'a PreparedTask,
    ) -> BoxFuture<'a, Result<ExitStatus, ExecutorError>> {
        Box::pin(self.wait_task(task))
    }

    fn shutdown<'a>(&'a self, task: &'a PreparedTask) -> BoxFuture<'a, Result<(), ExecutorError>> {
        Box::pin(self.shutdown_task(task))
    }

    fn remove<'a>(&'a self, task: &'a PreparedTask) -> BoxFuture<'a, Result<(), ExecutorError>> {
        Box::pin(self.remove_task(task))
    }

    fn logs<'a>(
        &'a self,
        task: &'a PreparedTask,
        options: LogOptions,
    ) -> BoxFuture<'a, Result<LogReader, ExecutorError>> {
        Box::pin(self.task_logs(task, options))
    }

    fn adopt<'a>(
        &'a self,
        task: &'a PreparedTask,
        pid: u32,
    ) -> BoxFuture<'a, Result<StartedTask, ExecutorError>> {
        Box::pin(self.adopt_task(task, pid))
    }

    fn exec<'a>(
        &'a self,
        task: &'a PreparedTask,
        argv: &'a [String],
        timeout: std::time::Duration,
    ) -> BoxFuture<'a, Result<ProbeOutcome, ExecutorError>> {
        Box::pin(self.exec_in_task(task, argv, timeout))
    }
}

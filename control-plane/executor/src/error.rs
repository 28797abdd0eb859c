//! The executor's error type. Every message names the task and says what
//! went wrong and what to do; the agent shows it in `service ps`.

use std::{io, path::PathBuf, time::Duration};

use hive_dataplane::netns::NetnsError;

use super::{
    cgroup::CgroupError,
    image::ImageError,
    logs::LogError,
    network::{AttachError, LoopbackError},
    oci::{ContainerError, ImageSourceError},
    spec::SpecError,
};

/// Errors of [`super::Executor`] operations.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The image or its program is not available here (task → REJECTED).
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("task {task_id}: {source}")]
    Spec { task_id: String, source: SpecError },
    #[error("task {task_id} is already prepared on this node; remove it before preparing it again")]
    AlreadyPrepared { task_id: String },
    #[error("task {task_id} is not prepared on this node; prepare it first")]
    NotPrepared { task_id: String },
    #[error("task {task_id} is being prepared right now; retry once `prepare` has returned")]
    Busy { task_id: String },
    #[error(
        "task {task_id} was started already; a task runs once (the orchestrator makes a new task to restart it)"
    )]
    AlreadyStarted { task_id: String },
    #[error("task {task_id} has not been started; start it first")]
    NotStarted { task_id: String },
    #[error("task {task_id}: {source}")]
    Cgroup {
        task_id: String,
        source: CgroupError,
    },
    #[error("task {task_id}: {source}")]
    Netns { task_id: String, source: NetnsError },
    #[error("task {task_id}: {source}")]
    Loopback {
        task_id: String,
        source: LoopbackError,
    },
    #[error("task {task_id}: attaching it to its networks failed: {source}")]
    Attach {
        task_id: String,
        source: AttachError,
    },
    #[error("task {task_id}: detaching it from its networks failed: {source}")]
    Detach {
        task_id: String,
        source: AttachError,
    },
    #[error("task {task_id}: cannot {action} {path}: {source}")]
    Io {
        task_id: String,
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("task {task_id} failed to start: {reason}")]
    Start { task_id: String, reason: String },
    #[error(
        "task {task_id} did not finish starting within {waited:?} and was killed; is the node overloaded, or a file system hanging?"
    )]
    StartTimeout { task_id: String, waited: Duration },
    #[error("task {task_id}: cannot signal its process {pid}: {source}")]
    Signal {
        task_id: String,
        pid: u32,
        source: io::Error,
    },
    #[error("task {task_id}: cannot learn how its process ended: {reason}")]
    Wait { task_id: String, reason: String },
    #[error(
        "task {task_id}: process {pid} did not exit within {waited:?} after SIGKILL; it is stuck in the kernel (see /proc/{pid}/stack)"
    )]
    Unkillable {
        task_id: String,
        pid: u32,
        waited: Duration,
    },
    #[error("task {task_id}: {source}")]
    Logs { task_id: String, source: LogError },
    /// The image is not on the node, or unusable (task → REJECTED).
    #[error(transparent)]
    ImageSource(#[from] ImageSourceError),
    #[error("task {task_id}: {source}")]
    Container {
        task_id: String,
        source: ContainerError,
    },
    #[error("executor configuration: {reason}")]
    Config { reason: String },
}

//! The running part of the embedded executor: start a prepared task, wait
//! for it, stop it (SIGTERM, grace period, SIGKILL), remove it, read its
//! logs.
//!
//! After `start`, two tokio tasks serve each task process: the log pump
//! (pipes → log file) and the reaper, which waits on the pidfd, reaps the
//! process, lets the pump drain, and then publishes the exit status. So
//! when `wait` returns, the log is complete.

use std::{
    os::fd::{AsFd as _, OwnedFd},
    sync::Arc,
    time::Duration,
};

use nix::{fcntl::OFlag, sys::signal::Signal};
use tokio::{io::AsyncReadExt as _, net::unix::pipe, sync::watch, task::JoinHandle};

use super::{
    cgroup,
    error::ExecutorError,
    logs::{self, LogOptions, LogReader},
    namespaced::{self, NamespaceExecutor, Slot, TaskLaunch},
    process::{self, Launch},
    spec::{ExitStatus, PreparedTask, StartedTask},
};

/// How long `start` waits for the task to report that its program runs
/// (namespaces, mounts, exec); far more than it takes, less than forever.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a SIGKILLed task may take to be gone. Only a process stuck in
/// uninterruptible sleep (a hung file system) takes longer.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the reaper lets the log pump finish after the task exited. The
/// kernel has killed the whole PID namespace by then, so the pipes close at
/// once; this bounds only pathological cases.
const PUMP_DRAIN: Duration = Duration::from_secs(5);

/// Largest start-up failure report read from the sync pipe.
const MAX_REPORT: u64 = 64 * 1024;

/// How the reaper's result is shared: `None` while running.
type ExitSlot = Option<Result<ExitStatus, String>>;

/// A started task process.
#[derive(Debug, Clone)]
pub(super) struct Process {
    pid: u32,
    pidfd: Arc<OwnedFd>,
    exit: watch::Receiver<ExitSlot>,
    /// The log pump's progress, for followers.
    logs: watch::Receiver<u64>,
}

impl Process {
    /// Its PID 1, as the host sees it.
    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    fn exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Wait for the reaper's verdict.
    async fn wait(&self, task_id: &str) -> Result<ExitStatus, ExecutorError> {
        let wait_error = |reason: String| ExecutorError::Wait {
            task_id: task_id.to_owned(),
            reason,
        };
        let mut exit = self.exit.clone();
        let slot = exit
            .wait_for(Option::is_some)
            .await
            .map_err(|_| wait_error("the executor's runtime is shutting down".to_owned()))?
            .clone();
        match slot {
            Some(Ok(status)) => Ok(status),
            Some(Err(reason)) => Err(wait_error(reason)),
            None => Err(wait_error("no exit status".to_owned())),
        }
    }

    fn signal(&self, task_id: &str, signal: Signal) -> Result<bool, ExecutorError> {
        process::send_signal(self.pidfd.as_fd(), signal).map_err(|source| ExecutorError::Signal {
            task_id: task_id.to_owned(),
            pid: self.pid,
            source,
        })
    }
}

impl NamespaceExecutor {
    fn process(&self, task: &PreparedTask) -> Result<Option<Process>, ExecutorError> {
        match self.tasks().get(&task.task_id) {
            Some(Slot::Prepared { process, .. }) => Ok(process.clone()),
            Some(Slot::Preparing) => Err(ExecutorError::Busy {
                task_id: task.task_id.clone(),
            }),
            None => Err(ExecutorError::NotPrepared {
                task_id: task.task_id.clone(),
            }),
        }
    }

    pub(super) async fn start_task(
        &self,
        task: &PreparedTask,
    ) -> Result<StartedTask, ExecutorError> {
        let task_id = task.task_id.clone();
        let plan = match self.tasks().get_mut(&task_id) {
            Some(Slot::Prepared { launch, .. }) => launch.take(),
            Some(Slot::Preparing) => return Err(ExecutorError::Busy { task_id }),
            None => return Err(ExecutorError::NotPrepared { task_id }),
        }
        .ok_or_else(|| ExecutorError::AlreadyStarted {
            task_id: task_id.clone(),
        })?;
        let plan = match plan {
            TaskLaunch::Process(plan) => plan,
            TaskLaunch::Container => return self.start_container(task).await,
        };
        let io_error = |action: &'static str, path: &std::path::Path| {
            let task_id = task_id.clone();
            let path = path.to_path_buf();
            move |source: std::io::Error| ExecutorError::Io {
                task_id,
                action,
                path,
                source,
            }
        };

        let netns =
            hive_dataplane::netns::open(&task.netns).map_err(|source| ExecutorError::Netns {
                task_id: task_id.clone(),
                source,
            })?;
        let mut unified = None;
        let mut v1_procs = Vec::new();
        for dir in &task.cgroups {
            if cgroup::is_unified(dir) {
                let file = std::fs::File::open(dir).map_err(io_error("open", dir))?;
                unified = Some(OwnedFd::from(file));
            } else {
                let procs = dir.join("cgroup.procs");
                let file = namespaced::open_for_write(&procs).map_err(io_error("open", &procs))?;
                v1_procs.push(OwnedFd::from(file));
            }
        }
        let pipe = || {
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|errno| ExecutorError::Io {
                task_id: task_id.clone(),
                action: "create a pipe for",
                path: task.log_path.clone(),
                source: errno.into(),
            })
        };
        // stdout and stderr are FIFOs in the task's state dir, not pipes, so that a daemon
        // started later can read them again (`adopt_task`). The task holds its end read-write:
        // while no daemon reads, its writes block once the FIFO is full instead of killing it
        // with SIGPIPE; once every task process is gone, the reader still sees end-of-file.
        let fifo = |stream: &str| {
            make_fifo(&fifo_path(task, stream))
                .map_err(io_error("create", &fifo_path(task, stream)))
        };
        let (stdout_r, stdout_w) = fifo("stdout")?;
        let (stderr_r, stderr_w) = fifo("stderr")?;
        let (sync_r, sync_w) = pipe()?;
        let log_file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&task.log_path)
            .await
            .map_err(io_error("open", &task.log_path))?;
        let receiver = |fd: OwnedFd| {
            pipe::Receiver::from_owned_fd(fd).map_err(io_error("watch", &task.log_path))
        };
        let sync_r = receiver(sync_r)?;

        let child = process::spawn(&Launch {
            program: &plan.program,
            argv: &plan.argv,
            envp: &plan.envp,
            netns: netns.as_fd(),
            cgroup: unified.as_ref().map(|fd| fd.as_fd()),
            cgroup_v1_procs: &v1_procs,
            stdout: stdout_w.as_fd(),
            stderr: stderr_w.as_fd(),
            sync: sync_w.as_fd(),
        })
        .map_err(|source| ExecutorError::Start {
            task_id: task_id.clone(),
            reason: format!("cannot create the task's process (clone3): {source}"),
        })?;
        // Only the child may hold the write ends now, or no pipe would
        // ever reach end-of-file.
        drop((stdout_w, stderr_w, sync_w));

        // Pump and reaper first: the process exists and must be reaped
        // whatever start-up reports, and must never block on a full pipe.
        let (progress_tx, progress_rx) = watch::channel(0);
        let pump = tokio::spawn(logs::pump(stdout_r, stderr_r, log_file, progress_tx));
        let (exit_tx, exit_rx) = watch::channel(None);
        let waiter = child
            .pidfd
            .try_clone()
            .map_err(|source| ExecutorError::Start {
                task_id: task_id.clone(),
                reason: format!("cannot duplicate the task's pidfd: {source}"),
            });
        let process = Process {
            pid: child.pid,
            pidfd: Arc::new(child.pidfd),
            exit: exit_rx,
            logs: progress_rx,
        };
        let waiter = match waiter {
            Ok(waiter) => waiter,
            Err(err) => {
                // Without a waiter nobody would reap it: kill it now.
                let _ = process.signal(&task_id, Signal::SIGKILL);
                return Err(err);
            }
        };
        tokio::spawn(reap(task_id.clone(), waiter, pump, exit_tx));
        if let Some(Slot::Prepared { process: slot, .. }) = self.tasks().get_mut(&task_id) {
            *slot = Some(process.clone());
        }

        let mut report = Vec::new();
        let read = tokio::time::timeout(
            START_TIMEOUT,
            sync_r.take(MAX_REPORT).read_to_end(&mut report),
        )
        .await;
        match read {
            Ok(Ok(_)) => match process::start_failure(&report) {
                None => Ok(StartedTask { pid: process.pid }),
                Some(reason) => Err(ExecutorError::Start { task_id, reason }),
            },
            Ok(Err(source)) => Err(ExecutorError::Start {
                task_id,
                reason: format!("cannot read the task's start-up report: {source}"),
            }),
            Err(_) => {
                self.kill(task, &process).await?;
                Err(ExecutorError::StartTimeout {
                    task_id,
                    waited: START_TIMEOUT,
                })
            }
        }
    }

    /// `runc create` with the task's log FIFOs as the container's stdout
    /// and stderr, a pidfd on its init (our child once `runc create` has
    /// exited: the executor is a subreaper), the log pump and the reaper as
    /// for a clone3 task, then `runc start`.
    async fn start_container(&self, task: &PreparedTask) -> Result<StartedTask, ExecutorError> {
        let task_id = task.task_id.clone();
        let Some(container) = &task.container else {
            return Err(ExecutorError::NotPrepared { task_id });
        };
        let io_error = |action: &'static str, path: std::path::PathBuf| {
            let task_id = task_id.clone();
            move |source: std::io::Error| ExecutorError::Io {
                task_id,
                action,
                path,
                source,
            }
        };
        let container_error = |source: super::oci::RuncError| ExecutorError::Container {
            task_id: task_id.clone(),
            source: source.into(),
        };
        let fifo = |stream: &str| {
            let path = fifo_path(task, stream);
            make_fifo(&path).map_err(io_error("create", path))
        };
        let (stdout_r, stdout_w) = fifo("stdout")?;
        let (stderr_r, stderr_w) = fifo("stderr")?;
        let log_file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&task.log_path)
            .await
            .map_err(io_error("open", task.log_path.clone()))?;
        let (progress_tx, progress_rx) = watch::channel(0);
        let pump = tokio::spawn(logs::pump(stdout_r, stderr_r, log_file, progress_tx));
        let runc_log = task.state_dir.join("runc.log");
        let created = container
            .runc
            .create(
                &task.container_id,
                &container.bundle,
                stdout_w,
                stderr_w,
                &runc_log,
            )
            .await;
        let pid = match created {
            Ok(pid) => pid,
            Err(err) => {
                pump.abort();
                return Err(container_error(err));
            }
        };
        let pidfd = process::pidfd_open(pid).map_err(|e| ExecutorError::Start {
            task_id: task_id.clone(),
            reason: format!("pidfd_open({pid}) of the container's init: {e}"),
        });
        let pidfd = match pidfd {
            Ok(pidfd) => pidfd,
            Err(err) => {
                pump.abort();
                let _ = container.runc.delete(&task.container_id).await;
                return Err(err);
            }
        };
        let waiter = pidfd.try_clone().map_err(|e| ExecutorError::Start {
            task_id: task_id.clone(),
            reason: format!("cannot duplicate the container's pidfd: {e}"),
        });
        let (exit_tx, exit_rx) = watch::channel(None);
        let process = Process {
            pid,
            pidfd: Arc::new(pidfd),
            exit: exit_rx,
            logs: progress_rx,
        };
        let waiter = match waiter {
            Ok(waiter) => waiter,
            Err(err) => {
                pump.abort();
                let _ = process.signal(&task_id, Signal::SIGKILL);
                return Err(err);
            }
        };
        tokio::spawn(reap(task_id.clone(), waiter, pump, exit_tx));
        if let Some(Slot::Prepared { process: slot, .. }) = self.tasks().get_mut(&task_id) {
            *slot = Some(process.clone());
        }
        if let Err(err) = container.runc.start(&task.container_id).await {
            self.kill(task, &process).await?;
            return Err(container_error(err));
        }
        Ok(StartedTask { pid })
    }

    /// Takes over task `task` whose PID 1 is `pid`, started by an earlier daemon: its output
    /// is read again from its FIFOs, and it can be waited for and stopped. Its exit status
    /// cannot be learnt (it is not this process's child): `wait` then fails with a reason.
    pub(super) async fn adopt_task(
        &self,
        task: &PreparedTask,
        pid: u32,
    ) -> Result<StartedTask, ExecutorError> {
        let task_id = task.task_id.clone();
        let gone = |reason: String| ExecutorError::Start {
            task_id: task_id.clone(),
            reason,
        };
        // The PID must still be the task's: a recycled one is in another cgroup.
        let procs = task
            .cgroups
            .first()
            .map(|dir| dir.join("cgroup.procs"))
            .ok_or_else(|| gone("it has no cgroup".to_owned()))?;
        let members = std::fs::read_to_string(&procs).unwrap_or_default();
        if !members.lines().any(|line| line.trim() == pid.to_string()) {
            return Err(gone(format!("its process {pid} is gone")));
        }
        if let Some(container) = &task.container {
            Self::container_runs(task, container, pid)
                .await
                .map_err(gone)?;
        }
        let pidfd =
            process::pidfd_open(pid).map_err(|e| gone(format!("pidfd_open({pid}): {e}")))?;
        let io_error = |action: &'static str, path: std::path::PathBuf| {
            let task_id = task_id.clone();
            move |source: std::io::Error| ExecutorError::Io {
                task_id,
                action,
                path,
                source,
            }
        };
        let reader = |stream: &str| {
            let path = fifo_path(task, stream);
            open_fifo_reader(&path)
                .and_then(pipe::Receiver::from_owned_fd)
                .map_err(io_error("open", path))
        };
        let (stdout_r, stderr_r) = (reader("stdout")?, reader("stderr")?);
        let log_file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&task.log_path)
            .await
            .map_err(io_error("open", task.log_path.clone()))?;
        let (progress_tx, progress_rx) = watch::channel(0);
        let pump = tokio::spawn(logs::pump(stdout_r, stderr_r, log_file, progress_tx));
        let (exit_tx, exit_rx) = watch::channel(None);
        let waiter = pidfd
            .try_clone()
            .map_err(|e| gone(format!("cannot duplicate the pidfd: {e}")))?;
        let process = Process {
            pid,
            pidfd: Arc::new(pidfd),
            exit: exit_rx,
            logs: progress_rx,
        };
        {
            let mut tasks = self.tasks();
            if tasks.contains_key(&task_id) {
                pump.abort();
                return Err(ExecutorError::AlreadyPrepared { task_id });
            }
            tasks.insert(
                task_id.clone(),
                Slot::Prepared {
                    launch: None,
                    process: Some(process),
                },
            );
        }
        tokio::spawn(reap_adopted(task_id, waiter, pump, exit_tx));
        Ok(StartedTask { pid })
    }

    pub(super) async fn wait_task(&self, task: &PreparedTask) -> Result<ExitStatus, ExecutorError> {
        let process = self
            .process(task)?
            .ok_or_else(|| ExecutorError::NotStarted {
                task_id: task.task_id.clone(),
            })?;
        process.wait(&task.task_id).await
    }

    /// Docker's stop: SIGTERM to PID 1, then SIGKILL to everything after the
    /// grace period. A task never started has nothing to stop.
    pub(super) async fn shutdown_task(&self, task: &PreparedTask) -> Result<(), ExecutorError> {
        let Some(process) = self.process(task)? else {
            return Ok(());
        };
        // Docker's stop signal: the image's or --stop-signal's for a container.
        let signal = task
            .container
            .as_ref()
            .map_or(Signal::SIGTERM, |c| c.stop_signal());
        if process.exited() || !process.signal(&task.task_id, signal)? {
            return Ok(());
        }
        let graceful =
            tokio::time::timeout(task.stop_grace_period, process.wait(&task.task_id)).await;
        match graceful {
            Ok(_) => Ok(()),
            Err(_) => self.kill(task, &process).await,
        }
    }

    /// SIGKILL to PID 1 (the kernel then kills the whole PID namespace)
    /// and `cgroup.kill`, then wait a bounded time for the exit.
    async fn kill(&self, task: &PreparedTask, process: &Process) -> Result<(), ExecutorError> {
        process.signal(&task.task_id, Signal::SIGKILL)?;
        let dirs = task.cgroups.clone();
        namespaced::blocking(move || cgroup::kill(&dirs))
            .await
            .map_err(|source| ExecutorError::Cgroup {
                task_id: task.task_id.clone(),
                source,
            })?;
        match tokio::time::timeout(KILL_TIMEOUT, process.wait(&task.task_id)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(ExecutorError::Unkillable {
                task_id: task.task_id.clone(),
                pid: process.pid,
                waited: KILL_TIMEOUT,
            }),
        }
    }

    /// Kill what still runs, then free everything. Also works for a task
    /// this executor does not know (made by an earlier daemon), from the
    /// paths in `task`: `cgroup.kill` ends its processes.
    pub(super) async fn remove_task(&self, task: &PreparedTask) -> Result<(), ExecutorError> {
        let slot = {
            let mut tasks = self.tasks();
            if matches!(tasks.get(&task.task_id), Some(Slot::Preparing)) {
                return Err(ExecutorError::Busy {
                    task_id: task.task_id.clone(),
                });
            }
            tasks.remove(&task.task_id)
        };
        let mut killed = Ok(());
        if let Some(Slot::Prepared {
            process: Some(process),
            ..
        }) = slot
            && !process.exited()
        {
            killed = self.kill(task, &process).await;
        }
        let torn_down = self.teardown(task, true).await;
        killed.and(torn_down)
    }

    pub(super) async fn task_logs(
        &self,
        task: &PreparedTask,
        options: LogOptions,
    ) -> Result<LogReader, ExecutorError> {
        // A task of an earlier daemon (or removed) has no pump: read the file.
        let progress = self.process(task).ok().flatten().map(|p| p.logs);
        LogReader::open(&task.log_path, options, progress)
            .await
            .map_err(|source| ExecutorError::Logs {
                task_id: task.task_id.clone(),
                source,
            })
    }
}

/// `<state_dir>/<stream>.fifo`.
fn fifo_path(task: &PreparedTask, stream: &str) -> std::path::PathBuf {
    task.state_dir.join(format!("{stream}.fifo"))
}

/// A fresh FIFO at `path`: (the daemon's non-blocking read end, the task's read-write end).
fn make_fifo(path: &std::path::Path) -> std::io::Result<(pipe::Receiver, OwnedFd)> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    nix::unistd::mkfifo(
        path,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )?;
    let read = pipe::Receiver::from_owned_fd(open_fifo_reader(path)?)?;
    // Read-write: opening never blocks, and the task counts as a reader of its own output.
    let write = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    Ok((read, OwnedFd::from(write)))
}

fn open_fifo_reader(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    Ok(OwnedFd::from(file))
}

/// An adopted task's end: its pidfd polls readable, but only its parent could reap it.
async fn reap_adopted(
    task_id: String,
    pidfd: OwnedFd,
    pump: JoinHandle<std::io::Result<()>>,
    exit: watch::Sender<ExitSlot>,
) {
    if let Err(err) = process::exited(pidfd).await {
        tracing::warn!(task = %task_id, error = %err, "waiting for an adopted task");
    }
    if tokio::time::timeout(PUMP_DRAIN, pump).await.is_err() {
        tracing::warn!(task = %task_id, "the task's output did not end after it exited");
    }
    exit.send_replace(Some(Err(
        "the task was started by an earlier hive daemon, so its exit status is unknown".to_owned(),
    )));
}

/// Wait for the task's PID 1, let the pump finish, publish the status.
async fn reap(
    task_id: String,
    pidfd: OwnedFd,
    pump: JoinHandle<std::io::Result<()>>,
    exit: watch::Sender<ExitSlot>,
) {
    let status = process::wait(pidfd).await.map_err(|e| e.to_string());
    let abort = pump.abort_handle();
    match tokio::time::timeout(PUMP_DRAIN, pump).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => tracing::warn!(task = %task_id, error = %err, "writing the task's log"),
        Ok(Err(err)) => tracing::warn!(task = %task_id, error = %err, "the task's log pump failed"),
        Err(_) => {
            abort.abort();
            tracing::warn!(task = %task_id, "the task's output did not end after it exited");
        }
    }
    exit.send_replace(Some(status));
}

//! Running a command inside a running task, as `docker exec` does: what a health check
//! probe needs (docs/health.md). An OCI container gets `runc exec` (its namespaces, cgroup,
//! user, environment and capabilities); a built-in or host task gets a process that joins
//! its namespaces (IPC, UTS, network, PID, mount), its root and its cgroups before it
//! executes the command.

use std::{
    ffi::CString,
    fs::File,
    os::fd::{AsRawFd as _, RawFd},
    path::Path,
    process::Stdio,
    time::Duration,
};

use tokio::{io::AsyncReadExt as _, process::Command};

use super::{
    error::ExecutorError,
    namespaced::{NamespaceExecutor, Slot},
    spec::PreparedTask,
};

/// Most output kept of a probe (Docker keeps 4 KiB).
const MAX_OUTPUT: usize = 4096;

/// `PATH` of a probe in a built-in or host task (its root is the host's).
const PROBE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How a probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// Its exit code (128 + signal if killed); `None` if it outlived its timeout and was
    /// killed.
    pub exit_code: Option<i32>,
    /// The start of what it wrote (stdout then stderr).
    pub output: String,
}

impl ProbeOutcome {
    pub fn passed(&self) -> bool {
        self.exit_code == Some(0)
    }
}

impl NamespaceExecutor {
    pub(super) async fn exec_in_task(
        &self,
        task: &PreparedTask,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ProbeOutcome, ExecutorError> {
        let fail = |reason: String| ExecutorError::Start {
            task_id: task.task_id.clone(),
            reason: format!("health check: {reason}"),
        };
        let (Some(program), true) = (argv.first(), !argv.is_empty()) else {
            return Err(fail("empty command".to_owned()));
        };
        let mut command = match &task.container {
            Some(container) => {
                let pid_file = task.state_dir.join("probe.pid");
                let mut command = Command::new(&container.runc.binary);
                command
                    .arg("--root")
                    .arg(&container.runc.root)
                    .arg("exec")
                    .arg("--pid-file")
                    .arg(&pid_file)
                    .arg(&task.container_id)
                    .args(argv);
                command
            }
            None => {
                let pid = match self.tasks().get(&task.task_id) {
                    Some(Slot::Prepared {
                        process: Some(process),
                        ..
                    }) => process.pid(),
                    _ => return Err(fail("the task does not run".to_owned())),
                };
                let join = Join::open(pid, &task.cgroups).map_err(|e| fail(e.to_string()))?;
                let mut command = Command::new(program);
                command.args(&argv[1..]).env_clear().env("PATH", PROBE_PATH);
                // SAFETY: `Join::enter` makes only async-signal-safe system calls on
                // descriptors and strings made before the fork; it allocates nothing.
                unsafe {
                    command.pre_exec(move || join.enter());
                }
                command
            }
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let read = async {
            let mut out = Vec::new();
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut out).await;
            }
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut out).await;
            }
            out
        };
        let ran = tokio::time::timeout(timeout, async {
            let (out, status) = tokio::join!(read, child.wait());
            (out, status)
        })
        .await;
        match ran {
            Ok((out, status)) => {
                let status = status.map_err(|e| fail(format!("waiting for {program}: {e}")))?;
                let code = {
                    use std::os::unix::process::ExitStatusExt as _;
                    status
                        .code()
                        .or(status.signal().map(|s| 128 + s))
                        .unwrap_or(-1)
                };
                let mut output = String::from_utf8_lossy(&out).into_owned();
                output.truncate(output.floor_char_boundary(MAX_OUTPUT));
                Ok(ProbeOutcome {
                    exit_code: Some(code),
                    output,
                })
            }
            Err(_elapsed) => {
                if task.container.is_some() {
                    kill_pid_file(&task.state_dir.join("probe.pid"));
                }
                let _ = child.start_kill();
                let _ = child.wait().await;
                Ok(ProbeOutcome {
                    exit_code: None,
                    output: format!("Health check exceeded timeout ({timeout:?})"),
                })
            }
        }
    }
}

/// Kills the process whose PID `runc exec --pid-file` wrote (runc itself does not pass
/// SIGKILL on).
fn kill_pid_file(path: &Path) {
    let pid = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok());
    if let Some(pid) = pid.filter(|pid| *pid > 1) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// What a probe of a built-in or host task joins, opened before the fork.
struct Join {
    namespaces: Vec<(File, libc::c_int)>,
    root: File,
    cgroup_procs: Vec<File>,
    dot: CString,
    slash: CString,
}

impl Join {
    fn open(pid: u32, cgroups: &[std::path::PathBuf]) -> std::io::Result<Self> {
        let ns = |name: &str, flag| -> std::io::Result<(File, libc::c_int)> {
            Ok((File::open(format!("/proc/{pid}/ns/{name}"))?, flag))
        };
        // The mount namespace last: after it, /proc is the task's.
        let namespaces = vec![
            ns("ipc", libc::CLONE_NEWIPC)?,
            ns("uts", libc::CLONE_NEWUTS)?,
            ns("net", libc::CLONE_NEWNET)?,
            ns("pid", libc::CLONE_NEWPID)?,
            ns("mnt", libc::CLONE_NEWNS)?,
        ];
        let root = File::open(format!("/proc/{pid}/root"))?;
        let cgroup_procs = cgroups
            .iter()
            .filter_map(|dir| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(dir.join("cgroup.procs"))
                    .ok()
            })
            .collect();
        Ok(Self {
            namespaces,
            root,
            cgroup_procs,
            dot: CString::from(c"."),
            slash: CString::from(c"/"),
        })
    }

    /// In the child, before `execve`: into the task's cgroups, namespaces and root.
    fn enter(&self) -> std::io::Result<()> {
        let check = |rc: libc::c_int| {
            if rc < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        // SAFETY: plain system calls on descriptors and NUL-terminated strings owned by
        // `self`, which outlives the call; none allocates or takes a lock.
        unsafe {
            for procs in &self.cgroup_procs {
                // "0": the writing process.
                let fd: RawFd = procs.as_raw_fd();
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (file, flag) in &self.namespaces {
                check(libc::setns(file.as_raw_fd(), *flag))?;
            }
            check(libc::fchdir(self.root.as_raw_fd()))?;
            check(libc::chroot(self.dot.as_ptr()))?;
            check(libc::chdir(self.slash.as_ptr()))?;
        }
        Ok(())
    }
}

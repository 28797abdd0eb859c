//! `hive init-task`: the first program of every task, running as PID 1 of
//! the task's new PID namespace, inside its new mount and UTS namespaces.
//!
//! It finishes the sandbox from the inside, where each step has to happen:
//! 1. signals back to defaults and unblocked (a daemon's ignored signals
//!    would otherwise be inherited across `exec`);
//! 2. mount propagation to "slave": the task's own mounts (its `/proc`)
//!    never reach the host, while the host's unmounts still reach the task.
//!    Not "private": a private copy would keep every other task's network
//!    namespace file (bind mounts) alive for as long as this task runs;
//! 3. the executor's namespace-file directories unmounted in this mount
//!    namespace, so the task neither sees nor pins other tasks' namespaces;
//! 4. a fresh `/proc` for the new PID namespace (`ps` shows the task's own
//!    processes, `$$` is 1);
//! 5. the task's `/etc/resolv.conf`, if it is on a network (the embedded resolver);
//! 6. hostname, working directory;
//! 7. then either `exec` the program, which becomes PID 1 itself (Docker's
//!    default), or, with `--init`, stay PID 1 as a tiny init: start the
//!    program as PID 2, forward every signal to it, reap every zombie, and
//!    exit with the program's status (Docker's `--init`, tini).
//!
//! Failures are written to the executor's sync pipe (`--sync-fd`), which
//! the executor turns into a typed start error. Its end-of-file is the
//! "started" signal: at `exec` (close-on-exec) for any program; with
//! `--ready-fd` (hive's built-in images), once the program closes it after
//! it started serving (hive's `images::serving`).

use std::{
    ffi::OsString,
    io::Write as _,
    os::{
        fd::{AsRawFd, FromRawFd as _, OwnedFd, RawFd},
        unix::process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use nix::{
    errno::Errno,
    fcntl::{FcntlArg, FdFlag},
    mount::{MntFlags, MsFlags},
    sys::{
        signal::{SigHandler, SigSet, Signal},
        wait::{WaitPidFlag, WaitStatus},
    },
    unistd::Pid,
};

/// The subcommand name (`hive init-task`).
pub const SUBCOMMAND: &str = "init-task";

/// Exit code when the task could not be set up or its program not run
/// (as a shell's "command not found").
const SETUP_FAILED: u8 = 127;

/// Arguments of `hive init-task` (hidden; the executor builds them with
/// [`InitTaskArgs::to_args`]).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct InitTaskArgs {
    /// Hostname to set in the task's UTS namespace.
    #[arg(long)]
    pub hostname: String,
    /// Working directory of the program.
    #[arg(long, default_value = "/")]
    pub workdir: PathBuf,
    /// Stay PID 1: run the program as PID 2, forward signals, reap zombies.
    #[arg(long)]
    pub init: bool,
    /// Mount points to detach inside the task (namespace-file directories).
    #[arg(long = "unmount", value_name = "DIR")]
    pub unmount: Vec<PathBuf>,
    /// A file to bind over `/etc/resolv.conf` inside the task (tasks on a network ask the
    /// node's embedded resolver).
    #[arg(long, value_name = "FILE")]
    pub resolv_conf: Option<PathBuf>,
    /// The executor's sync pipe; start-up failures are reported on it.
    #[arg(long, value_name = "FD")]
    pub sync_fd: Option<RawFd>,
    /// The program says when it serves: it inherits the sync pipe under the number in
    /// `HIVE_READY_FD` and closes it once it listens (hive's built-in images), instead of
    /// the pipe closing at `exec`.
    #[arg(long)]
    pub ready_fd: bool,
    /// The program (an absolute path) and its arguments.
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    pub command: Vec<OsString>,
}

impl InitTaskArgs {
    /// The arguments after the binary's name, subcommand first.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            SUBCOMMAND.into(),
            "--hostname".into(),
            self.hostname.clone().into(),
            "--workdir".into(),
            self.workdir.clone().into(),
        ];
        if self.init {
            args.push("--init".into());
        }
        for dir in &self.unmount {
            args.push("--unmount".into());
            args.push(dir.clone().into());
        }
        if let Some(file) = &self.resolv_conf {
            args.push("--resolv-conf".into());
            args.push(file.clone().into());
        }
        if let Some(fd) = self.sync_fd {
            args.push("--sync-fd".into());
            args.push(fd.to_string().into());
        }
        if self.ready_fd {
            args.push("--ready-fd".into());
        }
        args.push("--".into());
        args.extend(self.command.iter().cloned());
        args
    }
}

/// Why the task could not be set up from the inside.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "hive init-task must be PID 1 of a new PID namespace (it is started by the task executor, not by hand)"
    )]
    NotPid1,
    #[error("cannot reset signal handling: {0}")]
    Signals(Errno),
    #[error("cannot {action}: {source}")]
    Mount { action: String, source: Errno },
    #[error("cannot set the hostname to {hostname:?}: {source}")]
    Hostname { hostname: String, source: Errno },
    #[error("cannot change to the working directory {dir}: {source}")]
    Workdir { dir: PathBuf, source: Errno },
    #[error("cannot run {program:?}: {source}")]
    Exec {
        program: OsString,
        source: std::io::Error,
    },
    #[error("cannot hand the sync pipe over to the program: {0}")]
    ReadyFd(Errno),
    #[error("cannot wait for the task's program: {0}")]
    Wait(Errno),
}

/// Run `hive init-task`. Returns only on failure, or in `--init` mode when
/// the program has exited.
pub fn run(args: &InitTaskArgs) -> ExitCode {
    let sync = args.sync_fd.and_then(take_sync_fd);
    match set_up_and_run(args, sync) {
        Ok(code) => code,
        Err((err, sync)) => {
            // stderr is the task's log: `service logs` shows it too.
            eprintln!("hive init-task: {err}");
            if let Some(sync) = sync {
                let _ = std::fs::File::from(sync).write_all(err.to_string().as_bytes());
            }
            ExitCode::from(SETUP_FAILED)
        }
    }
}

/// Take ownership of the sync pipe, close-on-exec so the program never
/// inherits it: its closing at `exec` is the "started" signal.
fn take_sync_fd(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only reads the descriptor table; an unused number
    // gives EBADF and we then leave it alone.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the executor hands its sync pipe over under this number
    // (`--sync-fd`), and nothing else in this process uses it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    nix::fcntl::fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).ok()?;
    Some(owned)
}

type Failure = (InitError, Option<OwnedFd>);

fn set_up_and_run(args: &InitTaskArgs, sync: Option<OwnedFd>) -> Result<ExitCode, Failure> {
    if let Err(err) = set_up(args) {
        return Err((err, sync));
    }
    let hand_over = args.ready_fd.then(|| sync.as_ref().map(AsRawFd::as_raw_fd));
    let mut program = program(&args.command, hand_over.flatten());
    if args.init {
        supervise(program, &args.command, sync, hand_over.flatten())
    } else {
        if let Some(fd) = sync.as_ref().filter(|_| args.ready_fd)
            && let Err(errno) = nix::fcntl::fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))
        {
            return Err((InitError::ReadyFd(errno), sync));
        }
        let err = program.exec();
        Err((
            InitError::Exec {
                program: args.command.first().cloned().unwrap_or_default(),
                source: err,
            },
            sync,
        ))
    }
}

fn set_up(args: &InitTaskArgs) -> Result<(), InitError> {
    if nix::unistd::getpid() != Pid::from_raw(1) {
        return Err(InitError::NotPid1);
    }
    reset_signals()?;
    mount(
        None,
        "/",
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "make the task's mounts one-way (rslave) copies of the host's",
    )?;
    for dir in &args.unmount {
        match nix::mount::umount2(dir, MntFlags::MNT_DETACH) {
            // EINVAL: not a mount point; ENOENT: not there.
            Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
            Err(source) => {
                return Err(InitError::Mount {
                    action: format!("unmount {} inside the task", dir.display()),
                    source,
                });
            }
        }
    }
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        "mount /proc for the task's PID namespace",
    )?;
    if let Some(file) = &args.resolv_conf {
        bind_resolv_conf(file)?;
    }
    nix::unistd::sethostname(&args.hostname).map_err(|source| InitError::Hostname {
        hostname: args.hostname.clone(),
        source,
    })?;
    nix::unistd::chdir(&args.workdir).map_err(|source| InitError::Workdir {
        dir: args.workdir.clone(),
        source,
    })
}

/// The task's `/etc/resolv.conf` becomes `file`, in the task's mount namespace only (its
/// mounts are one-way copies of the host's, so the host never sees this). No `file` (the
/// executor wrote none: the node attached no network) leaves the host's; a host without
/// `/etc/resolv.conf` leaves the task without one too: nothing to create on the host.
fn bind_resolv_conf(file: &Path) -> Result<(), InitError> {
    if !file.exists() {
        return Ok(());
    }
    let target = Path::new(super::resolv_conf::HOST_RESOLV_CONF);
    match nix::mount::mount::<Path, Path, str, str>(
        Some(file),
        target,
        None,
        MsFlags::MS_BIND,
        None,
    ) {
        Ok(()) => Ok(()),
        // No file (or a dangling link) there on the host.
        Err(Errno::ENOENT) if !target.exists() => Ok(()),
        Err(source) => Err(InitError::Mount {
            action: format!("bind {} over {}", file.display(), target.display()),
            source,
        }),
    }
}

fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: MsFlags,
    action: &str,
) -> Result<(), InitError> {
    nix::mount::mount::<str, Path, str, str>(source, Path::new(target), fstype, flags, None)
        .map_err(|source| InitError::Mount {
            action: action.to_owned(),
            source,
        })
}

/// Every handler back to SIG_DFL (ignored signals are inherited across
/// `exec`, e.g. SIGPIPE from a Rust daemon) and nothing blocked.
fn reset_signals() -> Result<(), InitError> {
    for signal in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        // SAFETY: installing SIG_DFL registers no code of ours to run in
        // signal context.
        unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) }
            .map_err(InitError::Signals)?;
    }
    SigSet::empty()
        .thread_set_mask()
        .map_err(InitError::Signals)
}

/// The environment variable naming the descriptor a built-in image closes once it serves
/// (`hive init-task --ready-fd` sets it, and removes it for every other program).
pub const READY_FD_ENV: &str = "HIVE_READY_FD";

/// The program's command; `ready` is the sync pipe it inherits to close once it serves,
/// named in its `HIVE_READY_FD` (which is removed from any other program's environment, so
/// that a task's own setting never makes a built-in image close a descriptor of its own).
fn program(command: &[OsString], ready: Option<RawFd>) -> Command {
    let mut iter = command.iter();
    let mut cmd = Command::new(iter.next().map_or_else(OsString::new, Clone::clone));
    cmd.args(iter);
    match ready {
        Some(fd) => cmd.env(READY_FD_ENV, fd.to_string()),
        None => cmd.env_remove(READY_FD_ENV),
    };
    cmd
}

/// Signals an init passes on to its program: all but SIGCHLD (its own
/// business), the unblockable ones, and those the kernel raises for the
/// init's own faults.
fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in Signal::iterator() {
        let own = matches!(
            signal,
            Signal::SIGCHLD
                | Signal::SIGKILL
                | Signal::SIGSTOP
                | Signal::SIGSEGV
                | Signal::SIGBUS
                | Signal::SIGILL
                | Signal::SIGFPE
                | Signal::SIGTRAP
                | Signal::SIGSYS
                | Signal::SIGABRT
        );
        if !own {
            set.add(signal);
        }
    }
    set
}

/// `--init` mode: PID 1 that runs the program as PID 2.
fn supervise(
    mut program: Command,
    command: &[OsString],
    sync: Option<OwnedFd>,
    ready: Option<RawFd>,
) -> Result<ExitCode, Failure> {
    let forwarded = forwarded_signals();
    let mut waited = forwarded;
    waited.add(Signal::SIGCHLD);
    // Blocked before the program exists, so no signal is lost in between.
    if let Err(errno) = waited.thread_block() {
        return Err((InitError::Signals(errno), sync));
    }
    // The mask is inherited across fork and exec, and std's spawn leaves
    // it alone: without this the program would never see SIGTERM. A program
    // that says when it serves inherits the sync pipe (close-on-exec here).
    let unblock = move || {
        SigSet::empty()
            .thread_set_mask()
            .map_err(std::io::Error::from)?;
        if let Some(fd) = ready {
            // SAFETY: fcntl(2) on a descriptor number only changes its flags.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before exec; it only calls
    // pthread_sigmask(3) and fcntl(2), which are async-signal-safe, on a set
    // built on its own stack and a descriptor number, and turns an errno into
    // an io::Error (no allocation).
    unsafe {
        program.pre_exec(unblock);
    }
    let child = match program.spawn() {
        Ok(child) => child,
        Err(source) => {
            let program = command.first().cloned().unwrap_or_default();
            return Err((InitError::Exec { program, source }, sync));
        }
    };
    // The program runs: closing the sync pipe tells the executor so (the
    // program's own copy, if it has one, closes once it serves).
    drop(sync);
    let main = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    loop {
        let signal = waited
            .wait()
            .map_err(|errno| (InitError::Signals(errno), None))?;
        if signal != Signal::SIGCHLD {
            // ESRCH: the program is exiting; its SIGCHLD follows.
            let _ = nix::sys::signal::kill(main, signal);
            continue;
        }
        if let Some(code) = reap(main).map_err(|errno| (InitError::Wait(errno), None))? {
            return Ok(ExitCode::from(code));
        }
    }
}

/// Reap every exited child (orphans of the namespace land on PID 1);
/// return the exit code if the program was among them.
fn reap(main: Pid) -> Result<Option<u8>, Errno> {
    let mut main_status = None;
    loop {
        match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => {
                main_status = Some(u8::try_from(code).unwrap_or(u8::MAX));
            }
            // As a shell reports it, and Docker for `--init` tasks.
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == main => {
                main_status = Some(128u8.saturating_add(signal as u8));
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(main_status),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_signals_include_term_but_not_the_inits_own() {
        let set = forwarded_signals();
        for signal in [
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGUSR1,
        ] {
            assert!(set.contains(signal), "{signal}");
        }
        for signal in [Signal::SIGCHLD, Signal::SIGKILL, Signal::SIGSEGV] {
            assert!(!set.contains(signal), "{signal}");
        }
    }

    #[test]
    fn setting_up_outside_a_new_pid_namespace_is_refused() {
        if nix::unistd::getpid() == Pid::from_raw(1) {
            return;
        }
        let args = InitTaskArgs {
            hostname: "h".to_owned(),
            workdir: PathBuf::from("/"),
            init: false,
            unmount: Vec::new(),
            resolv_conf: None,
            sync_fd: None,
            ready_fd: false,
            command: vec!["/bin/true".into()],
        };
        // The check comes first: nothing is reset or mounted in the runner.
        assert!(matches!(set_up(&args), Err(InitError::NotPid1)));
    }
}

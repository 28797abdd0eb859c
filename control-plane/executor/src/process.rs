//! Starting a task's process in its own namespaces, waiting for it and
//! signalling it. Every `unsafe` block of the executor's process handling
//! lives here.
//!
//! The process is made with one `clone3` (5.3+; `CLONE_INTO_CGROUP` 5.7+)
//! that creates its mount, PID, UTS and IPC namespaces, places it in its
//! cgroup before it runs a single instruction, and returns a pidfd. The
//! child is PID 1 of the new PID namespace; it joins the network namespace
//! the executor prepared (`setns`), joins the cgroup v1 hierarchies if the
//! host has them, sets up its standard streams and execs `hive init-task`,
//! which does the rest inside the namespaces (see [`super::init`]).
//!
//! The pidfd is what the executor holds afterwards: it is pollable (exit
//! wakes a tokio task, no SIGCHLD handler), it is reaped with
//! `waitid(P_PIDFD)`, and `pidfd_send_signal` can never hit a recycled PID.
//!
//! A sync pipe (the child's fd 3) tells the parent how start-up went: it is
//! close-on-exec for the program, so end-of-file with nothing read means the
//! program is running; anything read is a failure report, either
//! [`SETUP_FAILURE_TAG`] + stage + errno from the child before `exec`, or a
//! message from `hive init-task`.

use std::{
    ffi::{CStr, CString},
    io,
    os::fd::{AsFd, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd},
    ptr,
};

use nix::{
    errno::Errno,
    fcntl::{FcntlArg, OFlag},
    sys::{
        signal::Signal,
        wait::{Id, WaitPidFlag, WaitStatus},
    },
};
use tokio::io::{Interest, unix::AsyncFd};

use super::spec::ExitStatus;

/// The fd number of the sync pipe in the child (after stdin, stdout, stderr).
pub const SYNC_FD: RawFd = 3;

/// First byte of a failure report from the child before `exec`; never the
/// first byte of UTF-8 text, so it cannot be confused with `init-task`'s.
pub const SETUP_FAILURE_TAG: u8 = 0xFF;

/// Lowest fd number for the child's descriptors before they are moved to
/// 0..=3, so that no source is overwritten by an earlier `dup2`.
const HIGH_FD: RawFd = 10;

/// clone3-only flags of `<linux/sched.h>` (libc's constants are `c_int`
/// and overflow): reset handled signals to SIG_DFL in the child (5.5+), and
/// start the child in the cgroup given by `clone_args.cgroup` (5.7+).
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of `<linux/sched.h>` up to `cgroup`
/// (`CLONE_ARGS_SIZE_VER2`, 88 bytes): every field is a `__aligned_u64`
/// on every architecture, so this layout is the kernel's everywhere.
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const _: () = assert!(size_of::<CloneArgs>() == 88);

/// Where the child's set-up failed (reported through the sync pipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Stage {
    Netns = 1,
    CgroupV1 = 2,
    Stdio = 3,
    Exec = 4,
}

/// What to start.
#[derive(Debug)]
pub struct Launch<'a> {
    /// The `hive` binary (it runs `init-task` first).
    pub program: &'a CStr,
    pub argv: &'a [CString],
    pub envp: &'a [CString],
    pub netns: BorrowedFd<'a>,
    /// The task's cgroup v2 directory, opened `O_DIRECTORY`.
    pub cgroup: Option<BorrowedFd<'a>>,
    /// `cgroup.procs` of the task's cgroup v1 directories, opened for writing.
    pub cgroup_v1_procs: &'a [OwnedFd],
    pub stdout: BorrowedFd<'a>,
    pub stderr: BorrowedFd<'a>,
    pub sync: BorrowedFd<'a>,
}

/// A started task process: the host's PID of its PID 1, and a pidfd for it.
#[derive(Debug)]
pub struct Child {
    pub pid: u32,
    pub pidfd: OwnedFd,
}

/// Everything the child touches between `clone3` and `execve`, prepared
/// beforehand so that the child needs no allocation.
struct ChildPlan<'a> {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    netns: RawFd,
    v1_procs: &'a [RawFd],
    /// (source, target) pairs for `dup2`; sources are all ≥ [`HIGH_FD`].
    stdio: [(RawFd, RawFd); 4],
    /// The sync pipe's own (high) number, valid until `exec`.
    sync: RawFd,
}

/// Start the task's PID 1. Blocks only for the `clone3` itself.
pub fn spawn(launch: &Launch<'_>) -> io::Result<Child> {
    let argv = null_terminated(launch.argv);
    let envp = null_terminated(launch.envp);
    let dev_null = nix::fcntl::open(
        c"/dev/null",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let stdin = dup_high(dev_null.as_fd())?;
    let stdout = dup_high(launch.stdout)?;
    let stderr = dup_high(launch.stderr)?;
    let sync = dup_high(launch.sync)?;
    let v1_procs: Vec<RawFd> = launch
        .cgroup_v1_procs
        .iter()
        .map(|fd| fd.as_raw_fd())
        .collect();
    let plan = ChildPlan {
        program: launch.program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        netns: launch.netns.as_raw_fd(),
        v1_procs: &v1_procs,
        stdio: [
            (stdin.as_raw_fd(), 0),
            (stdout.as_raw_fd(), 1),
            (stderr.as_raw_fd(), 2),
            (sync.as_raw_fd(), SYNC_FD),
        ],
        sync: sync.as_raw_fd(),
    };

    let mut pidfd: libc::c_int = -1;
    let mut flags = (libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_PIDFD) as u64
        // Handlers of the daemon (tokio's) must not run in the child before
        // exec: reset them to the default at clone time.
        | CLONE_CLEAR_SIGHAND;
    let mut cgroup = 0;
    if let Some(dir) = launch.cgroup {
        flags |= CLONE_INTO_CGROUP;
        cgroup = dir.as_raw_fd() as u64;
    }
    let mut args = CloneArgs {
        flags,
        pidfd: ptr::addr_of_mut!(pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 with no stack behaves like fork: the child continues
    // here on a copy of this thread's stack. `args` is a valid, initialised
    // clone_args of the size passed; `pidfd` outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            ptr::addr_of_mut!(args),
            size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        // SAFETY: we are the child of clone3, alone in a copy of a
        // multi-threaded process; `exec_child` keeps to async-signal-safe
        // system calls on memory prepared above, and never returns.
        unsafe { exec_child(&plan) }
    }
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: with CLONE_PIDFD the kernel stored a new file descriptor in
    // `pidfd` that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let pid = u32::try_from(ret).map_err(|_| io::Error::other("clone3 returned an invalid PID"))?;
    // The child has its own copy; ours must live until clone3 returned.
    drop((argv, envp));
    Ok(Child { pid, pidfd })
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect()
}

/// A close-on-exec copy of `fd` numbered ≥ [`HIGH_FD`].
fn dup_high(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let raw = nix::fcntl::fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(HIGH_FD))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that only we own.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// The umask a task starts with: Docker's default (runc's spec leaves the process's, 022).
const TASK_UMASK: libc::mode_t = 0o022;

/// The child between `clone3` and `execve`.
///
/// # Safety
///
/// Must only be called in the child of `clone3`. It makes only system calls
/// that POSIX lists as async-signal-safe (`setns` and `dup2` are plain
/// system calls too), reads only memory prepared before the clone,
/// allocates nothing, takes no lock and cannot panic.
unsafe fn exec_child(plan: &ChildPlan<'_>) -> ! {
    // SAFETY: every call below is a plain system call on descriptors and
    // NUL-terminated arrays that the parent built and kept alive (the child
    // has a copy of them); none allocates, locks or can unwind.
    unsafe {
        if libc::setns(plan.netns, libc::CLONE_NEWNET) != 0 {
            fail(plan.sync, Stage::Netns);
        }
        for &fd in plan.v1_procs {
            // "0" means the writing process: PIDs written here would be
            // read in the writer's PID namespace, where we are PID 1.
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                fail(plan.sync, Stage::CgroupV1);
            }
        }
        for (from, to) in plan.stdio {
            if libc::dup2(from, to) < 0 {
                fail(plan.sync, Stage::Stdio);
            }
        }
        // The daemon runs with umask 077 (its data directory is private); a task gets the
        // umask a Docker container starts with.
        libc::umask(TASK_UMASK);
        libc::execve(plan.program, plan.argv, plan.envp);
        fail(plan.sync, Stage::Exec)
    }
}

/// Report `stage` and errno on the sync pipe and exit.
///
/// # Safety
///
/// Child-only, as [`exec_child`].
unsafe fn fail(sync: RawFd, stage: Stage) -> ! {
    let errno = Errno::last_raw().to_ne_bytes();
    let report = [
        SETUP_FAILURE_TAG,
        stage as u8,
        errno[0],
        errno[1],
        errno[2],
        errno[3],
    ];
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `report` is on
    // our own stack.
    unsafe {
        libc::write(sync, report.as_ptr().cast(), report.len());
        libc::_exit(127)
    }
}

/// Turn what the sync pipe delivered into a failure message; `None` means
/// the program is running.
pub fn start_failure(report: &[u8]) -> Option<String> {
    match report {
        [] => None,
        [SETUP_FAILURE_TAG, stage, e0, e1, e2, e3] => {
            let errno = Errno::from_raw(i32::from_ne_bytes([*e0, *e1, *e2, *e3]));
            let what = match *stage {
                s if s == Stage::Netns as u8 => "cannot enter the task's network namespace",
                s if s == Stage::CgroupV1 as u8 => "cannot join the task's cgroup v1 hierarchies",
                s if s == Stage::Stdio as u8 => "cannot set up the task's standard streams",
                s if s == Stage::Exec as u8 => "cannot run `hive init-task` (the hive binary)",
                _ => "task set-up failed",
            };
            Some(format!("{what}: {}", errno.desc()))
        }
        text => Some(String::from_utf8_lossy(text).trim_end().to_owned()),
    }
}

/// Send `signal` to the process behind `pidfd` (5.1+). `Ok(false)`: it
/// has exited already.
pub fn send_signal(pidfd: BorrowedFd<'_>, signal: Signal) -> io::Result<bool> {
    // SAFETY: pidfd_send_signal(2) with a valid pidfd, a valid signal
    // number, no siginfo (NULL) and flags 0 touches no memory of ours.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as libc::c_int,
            ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret == 0 {
        return Ok(true);
    }
    match Errno::last() {
        Errno::ESRCH => Ok(false),
        errno => Err(errno.into()),
    }
}

/// A pidfd for process `pid` (`pidfd_open`, 5.3+), for a process this one did not start.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: pidfd_open(2) takes a PID and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Wait until the process behind `pidfd` has exited, without reaping it (for a process that
/// is not this one's child).
pub async fn exited(pidfd: OwnedFd) -> io::Result<()> {
    // SAFETY: as in `wait`.
    let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
        .map_err(io::Error::from)?;
    let _ready = pidfd.readable().await?;
    Ok(())
}

/// Wait until the process behind `pidfd` exits, reap it, and say how it
/// ended. A pidfd polls readable once its process has exited.
pub async fn wait(pidfd: OwnedFd) -> io::Result<ExitStatus> {
    // SAFETY: an OwnedFd returns the same open descriptor for as long as it
    // lives, and the AsyncFd owns it for its whole life.
    let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
        .map_err(io::Error::from)?;
    loop {
        let mut ready = pidfd.readable().await?;
        match nix::sys::wait::waitid(
            Id::PIDFd(pidfd.get_ref().as_fd()),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
        ) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(ExitStatus::Exited(code)),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(ExitStatus::Signaled(signal)),
            // Spurious readiness: wait for the next one.
            Ok(_) | Err(Errno::EINTR) => ready.clear_ready(),
            Err(errno) => return Err(errno.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_reports_are_decoded() {
        assert_eq!(start_failure(b""), None);
        let errno = (libc::ENOENT).to_ne_bytes();
        let report = [
            SETUP_FAILURE_TAG,
            Stage::Exec as u8,
            errno[0],
            errno[1],
            errno[2],
            errno[3],
        ];
        let text = start_failure(&report).expect("a failure");
        assert!(
            text.contains("hive init-task") && text.contains("No such file"),
            "{text}"
        );
        assert_eq!(
            start_failure(b"cannot mount /proc: EPERM\n").as_deref(),
            Some("cannot mount /proc: EPERM")
        );
    }
}

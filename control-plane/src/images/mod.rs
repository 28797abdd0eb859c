//! Images built into hive: programs a task can run without an image
//! registry. `hive/whoami` answers HTTP with what the task sees of the
//! request (like containous/whoami); `hive/echo` echoes TCP and UDP.
//!
//! The executor runs them as `hive builtin <name> ...` inside the task's
//! namespaces, so the task is a real process with a real socket.

pub mod echo;
pub mod whoami;

/// Errors of the built-in images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot listen on {addr}: {source}; is the port already in use?")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the task's hostname or addresses failed: {0}")]
    Identity(#[source] std::io::Error),
    #[error("cannot handle SIGTERM: {0}")]
    Signal(#[source] std::io::Error),
}

/// The environment variable naming the descriptor a built-in image closes once it serves
/// (the executor's: `hive init-task --ready-fd` sets it).
pub use crate::executor::init::READY_FD_ENV;

/// Tells the executor that this task serves now: the executor reports a task `RUNNING` (and
/// every node's mesh sends it new flows) only then, so no connection reaches it before it
/// listens (docs/lifecycle.md). Call once, after binding every socket and installing the stop
/// signal's handler. Without `HIVE_READY_FD` (not started by the executor) it does nothing.
pub fn serving() {
    let Some(fd) = std::env::var(READY_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<std::os::fd::RawFd>().ok())
    else {
        return;
    };
    // SAFETY: F_GETFD only reads the descriptor table; an unused number gives EBADF and we
    // then leave it alone.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return;
    }
    // SAFETY: `hive init-task` handed its sync pipe over under this number for this one use,
    // and set the variable only then; nothing else in this process owns the descriptor.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
}

/// Resolves when the task is asked to stop: SIGTERM (what the executor sends first, after
/// the mesh stopped sending new flows) or SIGINT. The built-in images are often PID 1 of
/// their task, which the kernel gives no default action for these signals: without a handler
/// they would be ignored until the grace period ends in SIGKILL.
pub fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

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

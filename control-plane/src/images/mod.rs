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
}

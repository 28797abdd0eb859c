//! The local API socket: created mode 0660 (as docker's, owned by the daemon's user and group),
//! and every connection's peer credentials checked, so that only root, the daemon's own user
//! (tests run unprivileged) or a member of the socket's group can drive the daemon — the
//! socket is as powerful as root on every node of the swarm. A user the file system keeps out
//! gets `permission denied` from `connect(2)`, which the CLI reports as such.

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// Where the daemon listens and the CLI connects when neither is told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/hive/hive.sock";

use super::TransportError;

const ACCEPT_BACKLOG: usize = 64;

/// Mode of the socket file: its owner and its group (docker's `docker.sock` is 0660 too).
pub const SOCKET_MODE: u32 = 0o660;
/// Mode of a socket directory the daemon creates: others may reach the socket file (whose own
/// mode then decides), even under the daemon's umask 077.
const SOCKET_DIR_MODE: u32 = 0o755;

/// The bound local socket; removes its file when dropped.
#[derive(Debug)]
pub struct LocalSocket {
    pub listener: UnixListener,
    path: PathBuf,
}

impl LocalSocket {
    /// Binds `path` with mode [`SOCKET_MODE`]. A stale socket file (no daemon answering) is
    /// replaced; a live one is refused.
    pub fn bind(path: &Path) -> Result<Self, TransportError> {
        let err = |action| {
            let path = path.to_owned();
            move |source| TransportError::Socket {
                action,
                path,
                source,
            }
        };
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(err("create the directory of"))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(SOCKET_DIR_MODE))
                .map_err(err("set the permissions of the directory of"))?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(TransportError::SocketInUse {
                        path: path.to_owned(),
                    });
                }
                std::fs::remove_file(path).map_err(err("remove the stale"))?;
            }
            Ok(_) => {
                return Err(TransportError::Socket {
                    action: "replace",
                    path: path.to_owned(),
                    source: std::io::Error::other("it exists and is not a socket"),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(err("inspect")(source)),
        }
        let listener = UnixListener::bind(path).map_err(err("bind"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(err("restrict the permissions of"))?;
        Ok(Self {
            listener,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LocalSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a peer with `uid` and primary group `gid` may use the local API: root, the
/// daemon's own user, or a member of the socket's group (`SO_PEERCRED` carries the primary
/// group only, so a supplementary member is refused).
fn allowed(uid: u32, gid: u32, socket_gid: Option<u32>) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw() || socket_gid == Some(gid)
}

/// The group owning the socket file, if it can be read.
fn socket_group(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| m.gid())
}

/// Accepts local API connections until `shutdown`; refuses (closes) those of other users.
pub fn unix_incoming(
    socket: LocalSocket,
    mut shutdown: watch::Receiver<bool>,
) -> ReceiverStream<Result<UnixStream, std::io::Error>> {
    let (sender, receiver) = mpsc::channel(ACCEPT_BACKLOG);
    tokio::spawn(async move {
        // Owning the socket here removes its file when the accept loop ends.
        let socket = socket;
        loop {
            let accepted = tokio::select! {
                accepted = socket.listener.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => return,
                () = sender.closed() => return,
            };
            match accepted {
                Ok((stream, _)) => match stream.peer_cred() {
                    Ok(cred) if allowed(cred.uid(), cred.gid(), socket_group(&socket.path)) => {
                        if sender.send(Ok(stream)).await.is_err() {
                            return;
                        }
                    }
                    Ok(cred) => tracing::warn!(
                        uid = cred.uid(),
                        "refused a local API connection: only root or the socket's group may use the hive socket"
                    ),
                    Err(err) => {
                        tracing::warn!(%err, "cannot read the peer credentials of a local API connection")
                    }
                },
                Err(err) => {
                    tracing::warn!(%err, "accepting a local API connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    ReceiverStream::new(receiver)
}

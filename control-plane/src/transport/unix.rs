//! The local API socket: created mode 0600, and every connection's peer credentials checked,
//! so that only root (or the daemon's own user, for tests run unprivileged) can drive the
//! daemon — the socket is as powerful as root on every node of the swarm.

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::TransportError;

const ACCEPT_BACKLOG: usize = 64;

/// The bound local socket; removes its file when dropped.
#[derive(Debug)]
pub struct LocalSocket {
    pub listener: UnixListener,
    path: PathBuf,
}

impl LocalSocket {
    /// Binds `path` with mode 0600. A stale socket file (no daemon answering) is replaced; a
    /// live one is refused.
    pub fn bind(path: &Path) -> Result<Self, TransportError> {
        let err = |action| {
            let path = path.to_owned();
            move |source| TransportError::Socket {
                action,
                path,
                source,
            }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err("create the directory of"))?;
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
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
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

/// Whether a peer with `uid` may use the local API.
fn allowed(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
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
                    Ok(cred) if allowed(cred.uid()) => {
                        if sender.send(Ok(stream)).await.is_err() {
                            return;
                        }
                    }
                    Ok(cred) => tracing::warn!(
                        uid = cred.uid(),
                        "refused a local API connection: only root may use the hive socket"
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

//! The Docker Engine API (docs/engine-api.md): what the stock `docker` CLI, docker-py and
//! other Docker clients speak, served by `hive daemon` on a unix socket
//! (`/run/hive/docker.sock` by default, `--docker-api unix://PATH`).
//!
//! ```text
//! docker CLI ── HTTP/1 on docker.sock ──▶ server (version prefix, headers, time bounds)
//!             ──▶ routes (one module per object; filters; Json/Params extractors)
//!             ──▶ convert (Engine API models ⇄ store objects) ──▶ backend (hive's own
//!                 gRPC Swarm/Control API on the local hive socket) ──▶ leader
//! ```
//!
//! The models are `bollard-stubs`'; the cluster is reached only through [`backend::Backend`],
//! as dockerd's cluster package reaches SwarmKit only through its control API.

pub mod backend;
pub mod convert;
pub mod error;
pub mod events;
pub mod filters;
pub mod health;
pub mod registry_auth;
pub mod routes;
pub mod server;
pub mod version;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

use crate::transport::{LocalSocket, TransportError};

/// Where the Engine API listens by default, as dockerd's `/var/run/docker.sock`.
pub const DEFAULT_DOCKER_SOCKET: &str = "/run/hive/docker.sock";
/// The group given the socket when it exists, as dockerd.
pub const SOCKET_GROUP: &str = "docker";

/// A `--docker-api` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerApiAddr {
    Unix(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    #[error(
        "--docker-api {0}: a TCP Engine API needs mutual TLS (dockerd's --tlsverify), which hive does not serve yet; use unix:///path/to/docker.sock"
    )]
    TcpWithoutTls(String),
    #[error("--docker-api {0}: use unix:///absolute/path/to/docker.sock")]
    Invalid(String),
}

impl std::str::FromStr for DockerApiAddr {
    type Err = AddrError;

    fn from_str(value: &str) -> Result<Self, AddrError> {
        if value.starts_with("tcp://") {
            return Err(AddrError::TcpWithoutTls(value.to_owned()));
        }
        match value.strip_prefix("unix://") {
            Some(path) if Path::new(path).is_absolute() => Ok(Self::Unix(PathBuf::from(path))),
            _ => Err(AddrError::Invalid(value.to_owned())),
        }
    }
}

/// Binds every address (mode 0660, group `docker` if that group exists).
pub fn bind(addrs: &[DockerApiAddr]) -> Result<Vec<LocalSocket>, TransportError> {
    let group = nix::unistd::Group::from_name(SOCKET_GROUP).ok().flatten();
    addrs
        .iter()
        .map(|DockerApiAddr::Unix(path)| {
            let socket = LocalSocket::bind(path)?;
            if let Some(group) = &group
                && let Err(e) = nix::unistd::chown(path, None, Some(group.gid))
            {
                tracing::warn!(%e, socket = %path.display(), "cannot give the Engine API socket to the docker group");
            }
            Ok(socket)
        })
        .collect()
}

/// Serves the Engine API on `sockets` until `stopping`, reaching the cluster through the
/// daemon's own API socket `hive_socket`.
pub async fn serve(
    sockets: Vec<LocalSocket>,
    hive_socket: PathBuf,
    images: crate::image_store::ImageStore,
    stopping: watch::Receiver<bool>,
) {
    let backend = Arc::new(backend::Backend::new(hive_socket, images));
    tokio::spawn(events::follow(
        backend.clone(),
        backend.event_log(),
        stopping.clone(),
    ));
    let router = routes::router(backend);
    let servers = sockets
        .into_iter()
        .map(|socket| server::serve(socket, router.clone(), stopping.clone()));
    futures::future::join_all(servers).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unix_sockets_are_served() {
        assert_eq!(
            "unix:///run/hive/docker.sock"
                .parse::<DockerApiAddr>()
                .expect("unix"),
            DockerApiAddr::Unix("/run/hive/docker.sock".into())
        );
        let tcp = "tcp://0.0.0.0:2375".parse::<DockerApiAddr>().unwrap_err();
        assert!(tcp.to_string().contains("mutual TLS"), "{tcp}");
        assert!("unix://relative.sock".parse::<DockerApiAddr>().is_err());
        assert!("/run/x.sock".parse::<DockerApiAddr>().is_err());
    }
}

//! The CLI's side of the local API: which daemon to talk to (`-H`, `HIVE_HOST`, or inside
//! `hive lab exec` the lab node's socket), the connection, and how daemon errors read — as
//! docker's: `Error response from daemon: …`.

pub mod control;

use std::path::PathBuf;

use tonic::transport::Channel;

pub use control::{Control, ImageResolution, LogsRequest, ServiceWithStatus, TaskFilter, TaskList};

use crate::api::{is_plain, pb};
use crate::transport::DEFAULT_SOCKET;
use crate::transport::unix_channel;

/// Environment variable naming the daemon, as `DOCKER_HOST` does for docker.
pub const HOST_ENV: &str = "HIVE_HOST";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "invalid daemon address \"{0}\": hive daemons listen on unix sockets; use -H unix:///path/to/hive.sock"
    )]
    BadHost(String),
    #[error("Cannot connect to the hive daemon at unix://{}. Is the hive daemon running?", .0.display())]
    Connect(PathBuf),
    /// docker's words for the same case (`permission denied while trying to connect to the
    /// Docker daemon socket at …`): the daemon may well be running, this user may not use it.
    #[error(
        "permission denied while trying to connect to the hive daemon socket at unix://{}: dial unix {}: connect: permission denied",
        path.display(),
        path.display()
    )]
    PermissionDenied { path: PathBuf },
    #[error("{}", describe(.0))]
    Daemon(tonic::Status),
    /// An answer that does not convert to the store's types (a daemon of another version).
    #[error("cannot read the daemon's answer: {0}")]
    Wire(#[from] crate::api::convert::WireError),
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        Self::Daemon(status)
    }
}

impl ClientError {
    /// The daemon's refusal, if that is what this is.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Self::Daemon(status) => Some(status),
            _ => None,
        }
    }

    /// The daemon's gRPC code for a refusal (`None` for a local failure).
    pub fn code(&self) -> Option<tonic::Code> {
        self.status().map(tonic::Status::code)
    }

    /// The error as a gRPC status: the daemon's own, or `Internal` for an unreadable answer
    /// (for callers that pass statuses on).
    pub fn into_status(self) -> tonic::Status {
        match self {
            Self::Daemon(status) => status,
            other => tonic::Status::internal(other.to_string()),
        }
    }

    /// An update refused because the object changed since it was read: read it and retry.
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(tonic::Code::Aborted)
    }
}

/// How the CLI shows a daemon's error: the daemon's own refusals verbatim, the swarm API's as
/// gRPC errors, both after docker's `Error response from daemon: `.
pub fn describe(status: &tonic::Status) -> String {
    if is_plain(status) {
        format!("Error response from daemon: {}", status.message())
    } else {
        format!(
            "Error response from daemon: rpc error: code = {} desc = {}",
            code_name(status.code()),
            status.message()
        )
    }
}

/// gRPC code names as grpc-go prints them.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

/// The socket to use: `-H`, else `HIVE_HOST`, else the lab node's inside `hive lab exec`
/// (`HIVE_LAB` and `HIVE_NODE`), else `/run/hive/hive.sock`.
pub fn socket_path(host: Option<&str>) -> Result<PathBuf, ClientError> {
    let host = host
        .map(str::to_owned)
        .or_else(|| std::env::var(HOST_ENV).ok().filter(|h| !h.is_empty()));
    if let Some(host) = host {
        let path = host
            .strip_prefix("unix://")
            .ok_or_else(|| ClientError::BadHost(host.clone()))?;
        return Ok(PathBuf::from(path));
    }
    if let (Ok(lab), Ok(node)) = (std::env::var("HIVE_LAB"), std::env::var("HIVE_NODE"))
        && let Ok(member) = node.parse()
    {
        return Ok(hive_lab::naming::api_socket(&lab, member));
    }
    Ok(PathBuf::from(DEFAULT_SOCKET))
}

/// A connection to one daemon's local API.
#[derive(Debug, Clone)]
pub struct DaemonClient {
    pub swarm: pb::swarm_client::SwarmClient<Channel>,
    /// The cluster API, in the store's types.
    pub control: Control,
    /// This node's image store (`hive image ...`).
    pub images: pb::images_client::ImagesClient<Channel>,
    /// This node's volumes (`hive volume ...`).
    pub volumes: pb::volumes_client::VolumesClient<Channel>,
}

impl DaemonClient {
    pub async fn connect(host: Option<&str>) -> Result<Self, ClientError> {
        let path = socket_path(host)?;
        let channel = unix_channel(&path).await.map_err(|error| {
            if is_permission_denied(&error) {
                ClientError::PermissionDenied { path: path.clone() }
            } else {
                ClientError::Connect(path.clone())
            }
        })?;
        Ok(Self {
            swarm: pb::swarm_client::SwarmClient::new(channel.clone()),
            control: Control::new(channel.clone()),
            images: pb::images_client::ImagesClient::new(channel.clone()),
            volumes: pb::volumes_client::VolumesClient::new(channel),
        })
    }
}

/// Whether a failed connection was refused by the file system (`EACCES` on the socket or on
/// a directory on its way), somewhere down `error`'s chain of sources.
fn is_permission_denied(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::PermissionDenied
        {
            return true;
        }
        next = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_like_dockers() {
        let status = tonic::Status::unknown(crate::api::LOST_QUORUM);
        assert_eq!(
            describe(&status),
            "Error response from daemon: rpc error: code = Unknown desc = The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online."
        );
        let status: tonic::Status = crate::api::ApiError::NotInSwarm.into();
        assert_eq!(
            describe(&status),
            "Error response from daemon: This node is not part of a swarm"
        );
    }

    #[test]
    fn a_refused_socket_reads_as_permission_denied() {
        let denied = crate::transport::TransportError::Socket {
            action: "connect",
            path: "/run/hive/hive.sock".into(),
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        };
        assert!(is_permission_denied(&denied));
        let absent = crate::transport::TransportError::Socket {
            action: "connect",
            path: "/run/hive/hive.sock".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert!(!is_permission_denied(&absent));
        let err = ClientError::PermissionDenied {
            path: "/run/hive/hive.sock".into(),
        };
        assert_eq!(
            err.to_string(),
            "permission denied while trying to connect to the hive daemon socket at unix:///run/hive/hive.sock: dial unix /run/hive/hive.sock: connect: permission denied"
        );
    }

    #[test]
    fn hosts_must_be_unix_sockets() {
        assert_eq!(
            socket_path(Some("unix:///tmp/x.sock")).unwrap(),
            PathBuf::from("/tmp/x.sock")
        );
        assert!(socket_path(Some("tcp://1.2.3.4:2375")).is_err());
    }
}

//! How hive nodes and the CLI talk: gRPC over mutually authenticated TLS on TCP between
//! nodes (`tls`), over a root-only unix socket between the CLI and its daemon (`unix`), and the
//! client channels for both (`channel`). The services themselves live in `api`, `manager`
//! (with its `raft_net` and `dispatcher`) and `daemon`.

pub mod channel;
pub mod tls;
pub mod unix;

pub use channel::{join_channel, mtls_channel, unix_channel};
pub use tls::{PeerInfo, TlsSlot, tls_incoming};
pub use unix::{DEFAULT_SOCKET, LocalSocket, unix_incoming};

/// The swarm port (Docker's 2377): the managers' API and Raft, and every node's gRPC, when an
/// address is given without a port.
pub const SWARM_PORT: u16 = 2377;

use std::path::PathBuf;

/// Setting up a listener or a channel failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot {action} the API socket {}: {source}", path.display())]
    Socket {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another hive daemon is already listening on {}; stop it first, or give this one another --socket",
        path.display()
    )]
    SocketInUse { path: PathBuf },
    #[error("\"{addr}\" is not a valid address to connect to: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::pki::TlsError),
}

//! openraft over gRPC: the network factory the leader replicates through (`network`), the
//! peer Raft service that receives those calls (`service`), and the managers' view of each
//! other — channels and reachability from periodic probes (`peers`) — and the pre-vote that
//! decides when this manager may stand for election (`campaign`).
//!
//! openraft's RPC types are serde types; they travel as JSON inside `RaftPayload`, so the
//! proto does not mirror openraft's internals (the openraft examples do the same).

pub mod append;
pub mod campaign;
pub mod network;
pub mod peers;
pub mod service;

pub use campaign::Campaign;
pub use network::GrpcRaftNetwork;
pub use peers::{PROBE_INTERVAL, Peers, REACHABLE_WINDOW, probe_loop};
pub use service::RaftService;

/// Encoding or decoding a Raft payload failed.
#[derive(Debug, thiserror::Error)]
#[error("malformed Raft payload ({what}): {source}")]
pub struct PayloadError {
    what: &'static str,
    #[source]
    source: serde_json::Error,
}

pub(crate) fn encode<T: serde::Serialize>(
    what: &'static str,
    value: &T,
) -> Result<Vec<u8>, PayloadError> {
    serde_json::to_vec(value).map_err(|source| PayloadError { what, source })
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, PayloadError> {
    serde_json::from_slice(bytes).map_err(|source| PayloadError { what, source })
}

//! What the gossip component's calls can fail with.

use std::net::SocketAddr;

use super::config::ConfigError;
use super::keys::KeyError;

/// The error of `Gossip`'s calls.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "cannot start gossip on UDP {addr}: {reason}; is another hive daemon or gossip agent \
         using the port in this network namespace? Stop it or choose another listen address"
    )]
    Bind { addr: SocketAddr, reason: String },
    #[error("the gossip server stopped with an error ({reason}); restart the node's gossip")]
    Server { reason: String },
}

/// Why `MembershipWatch::recv` returned no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    #[error(
        "the membership watcher fell {missed} events behind and they were dropped; call \
         Gossip::members() to resynchronise, then keep receiving"
    )]
    Lagged { missed: u64 },
    #[error("gossip has been shut down; no more membership events will come")]
    Closed,
}

//! Gossip membership and liveness among all nodes (docs/gossip.md).
//!
//! Every node, manager or worker, runs one [`Gossip`] on UDP 7946 (Swarm's
//! NetworkDB port). It is chitchat underneath: scuttlebutt anti-entropy of a
//! small key/value state per node plus a phi-accrual failure detector. It
//! carries what must reach every node faster than the Raft store can while
//! managers elect: which nodes are alive, and each node's locally observed
//! endpoint health (`endpoints.<task>` = `healthy` | `unhealthy`). A node that
//! dies without a word is reported [`MembershipEvent::NodeDown`] by every
//! other node within about a second, so its backends leave every mesh.

mod auth;
mod config;
mod error;
mod handle;
mod keys;
mod membership;
mod observer;

pub use auth::{AuthTransport, GossipAuth, GossipKey, KEY_LEN, OLD_KEY_GRACE, generate_key};
pub use config::{
    ConfigError, DEFAULT_GOSSIP_INTERVAL, DEFAULT_GOSSIP_PORT, FailureDetection, GossipConfig,
    generation_now,
};
pub use error::{GossipError, WatchError};
pub use handle::{Gossip, MembershipWatch};
pub use keys::{KeyError, MAX_KEY_LEN, MAX_VALUE_LEN, RESERVED_PREFIX};
pub use membership::{DownReason, Member, MemberStatus, MembershipEvent};

#[cfg(test)]
mod tests;

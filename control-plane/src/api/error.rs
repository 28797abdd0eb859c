//! [`ApiError`]: what a handler can fail with, as a typed error, and its gRPC status.
//!
//! Docker shows two kinds of daemon errors, and users recognise both:
//! - the daemon's own refusals, printed as they are
//!   (`Error response from daemon: This node is not part of a swarm`);
//! - errors of the swarm's API, printed as gRPC errors
//!   (`Error response from daemon: rpc error: code = Unknown desc = The swarm does not have a
//!   leader. …`).
//!
//! The status carries the code and the description; a `x-hive-plain` metadata entry marks the
//! first kind, and the CLI formats accordingly. `x-hive-leader` carries the leader's address
//! when a non-leader refuses, so forwarding callers can retry there.

use tonic::{Code, Status};

use crate::pki::{AuthzError, TokenError};
use crate::store::{Conflict, LookupError, StoreError};

/// Metadata key marking a status whose message is shown verbatim (no `rpc error:` wrapping).
pub const PLAIN_KEY: &str = "x-hive-plain";
/// Metadata key carrying the leader's address on a "not the leader" refusal.
pub const LEADER_KEY: &str = "x-hive-leader";

/// SwarmKit's `lostQuorumMessage`, word for word: users search for it.
pub const LOST_QUORUM: &str = "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("This node is not part of a swarm")]
    NotInSwarm,
    #[error(
        "This node is already part of a swarm. Use \"hive swarm leave\" to leave this swarm and join another one."
    )]
    AlreadyInSwarm,
    /// A cluster command on a node that is in no swarm.
    #[error(
        "This node is not a swarm manager. Use \"hive swarm init\" or \"hive swarm join\" to connect this node to swarm and try again."
    )]
    NoSwarmForCluster,
    /// A cluster command on a worker.
    #[error(
        "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager."
    )]
    NotManager,
    #[error("{LOST_QUORUM}")]
    NoLeader,
    /// A manager of an autolocked swarm that was restarted and not unlocked yet.
    #[error("{}", crate::encryption::LOCKED)]
    Locked,
    #[error("this manager is not the leader; the leader is at {addr}")]
    NotLeader { addr: String },
    #[error("{kind} {query} not found")]
    NotFound { kind: &'static str, query: String },
    #[error("{kind} {query} is ambiguous ({matches} matches found)")]
    Ambiguous {
        kind: &'static str,
        query: String,
        matches: usize,
    },
    /// The daemon refuses (shown verbatim, as docker's own daemon errors).
    #[error("{0}")]
    Refused(String),
    /// The cluster API refuses because of the cluster's state.
    #[error("{0}")]
    Precondition(String),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// An object with this name exists already (SwarmKit answers `AlreadyExists`).
    #[error("{0}")]
    AlreadyExists(String),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Authz(#[from] AuthzError),
    #[error(transparent)]
    Store(StoreError),
    /// A manager could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// A write reached a leader that was replaced or cut off before it answered.
    #[error(
        "The leader changed before it answered: the write may or may not have been applied. Check the swarm's state before repeating it."
    )]
    UnknownFate,
    #[error("{what} failed: {reason}")]
    Internal { what: &'static str, reason: String },
    /// Another node's answer, passed on unchanged (code, text and markers).
    #[error("{}", .0.message())]
    Remote(Status),
}

impl ApiError {
    pub fn internal(what: &'static str, reason: impl std::fmt::Display) -> Self {
        Self::Internal {
            what,
            reason: reason.to_string(),
        }
    }

    /// Whether the call may succeed if repeated at the leader a little later: no leader yet,
    /// the leader moved, or a manager could not be reached.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NoLeader | Self::NotLeader { .. } | Self::Unavailable(_) => true,
            Self::Remote(status) => status.code() == Code::Unavailable,
            _ => false,
        }
    }

    fn code_and_plain(&self) -> (Code, bool) {
        match self {
            Self::NotInSwarm
            | Self::AlreadyInSwarm
            | Self::NoSwarmForCluster
            | Self::NotManager
            | Self::Locked => (Code::FailedPrecondition, true),
            Self::NoLeader => (Code::Unknown, false),
            Self::NotLeader { .. } => (Code::Unavailable, false),
            Self::NotFound { .. } => (Code::NotFound, true),
            Self::Ambiguous { .. } => (Code::InvalidArgument, true),
            Self::Refused(_) => (Code::FailedPrecondition, true),
            Self::Precondition(_) => (Code::FailedPrecondition, false),
            Self::Invalid(_) | Self::Token(_) => (Code::InvalidArgument, false),
            Self::AlreadyExists(_) => (Code::AlreadyExists, false),
            Self::Authz(e) if e.is_unauthenticated() => (Code::Unauthenticated, false),
            Self::Authz(_) => (Code::PermissionDenied, false),
            Self::Store(e) => (store_code(e), false),
            Self::Unavailable(_) => (Code::Unavailable, false),
            Self::UnknownFate => (Code::Unknown, false),
            Self::Internal { .. } => (Code::Internal, false),
            Self::Remote(status) => (status.code(), is_plain(status)),
        }
    }
}

fn store_code(error: &StoreError) -> Code {
    use crate::store::command::Rejection;
    match error {
        StoreError::Rejected(Rejection::NotFound { .. }) => Code::NotFound,
        StoreError::Rejected(Rejection::VersionConflict { .. }) => Code::Aborted,
        StoreError::Rejected(_) => Code::FailedPrecondition,
        StoreError::Lookup(_) => Code::NotFound,
        StoreError::Timeout { .. } => Code::DeadlineExceeded,
        StoreError::NotLeader { .. } => Code::Unavailable,
        _ => Code::Unknown,
    }
}

impl Conflict for ApiError {
    fn is_conflict(&self) -> bool {
        matches!(self, ApiError::Store(e) if e.is_version_conflict())
    }
}

impl From<crate::store::objects::IpamConfigError> for ApiError {
    fn from(error: crate::store::objects::IpamConfigError) -> Self {
        Self::Invalid(error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NoLeader => Self::NoLeader,
            StoreError::NotLeader { leader_addr, .. } => Self::NotLeader { addr: leader_addr },
            StoreError::Lookup(LookupError::NotFound { kind, query }) => Self::NotFound {
                kind: kind.as_str(),
                query,
            },
            StoreError::Lookup(LookupError::Ambiguous {
                kind,
                query,
                matches,
            }) => Self::Ambiguous {
                kind: kind.as_str(),
                query,
                matches,
            },
            other => Self::Store(other),
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        if let ApiError::Remote(status) = error {
            return status;
        }
        let (code, plain) = error.code_and_plain();
        let mut status = Status::new(code, error.to_string());
        if plain {
            status
                .metadata_mut()
                .insert(PLAIN_KEY, tonic::metadata::MetadataValue::from_static("1"));
        }
        if let ApiError::NotLeader { addr } = &error
            && let Ok(value) = addr.parse()
        {
            status.metadata_mut().insert(LEADER_KEY, value);
        }
        status
    }
}

/// Whether `status` is one of the daemon's own refusals, to be shown verbatim.
pub fn is_plain(status: &Status) -> bool {
    status.metadata().contains_key(PLAIN_KEY)
}

/// The leader address a "not the leader" refusal carries.
pub fn leader_hint(status: &Status) -> Option<String> {
    let value = status.metadata().get(LEADER_KEY)?;
    value.to_str().ok().map(str::to_owned)
}

/// Whether a call that failed with `status` may succeed if sent again, maybe elsewhere: the
/// node was unreachable, was not the leader (see [`leader_hint`]), or no leader was known yet.
pub fn is_retryable(status: &Status) -> bool {
    status.code() == Code::Unavailable
        || (status.code() == Code::Unknown && status.message() == LOST_QUORUM)
}

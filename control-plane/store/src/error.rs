//! The error of the store's public API (`Store`, `ReadTx`, `WriteTx`).

use std::path::PathBuf;
use std::time::Duration;

use super::command::Rejection;
use super::lookup::LookupError;
use super::tables::DbError;
use super::types::NodeId;

/// Everything `Store::open`, `view`, `update` and the transactions can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the cluster store in {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: Box<DbError>,
    },
    #[error("invalid Raft settings: {source}")]
    Config {
        #[source]
        source: Box<openraft::ConfigError>,
    },
    #[error(transparent)]
    Database(#[from] DbError),
    /// The change was refused, by the transaction's own checks or by the state machine.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error(
        "this manager is not the leader; send the request to the leader, manager {leader_id} at \
         {leader_addr}"
    )]
    NotLeader {
        leader_id: NodeId,
        leader_addr: String,
    },
    /// SwarmKit's `lostQuorumMessage`, word for word: users search for it.
    #[error(
        "The swarm does not have a leader. It's possible that too few managers are online. \
         Make sure more than half of the managers are online."
    )]
    NoLeader,
    #[error(
        "the change was not committed within {timeout:?}; the swarm may have lost quorum (more \
         than half of the managers must be online). It may still be committed later: re-read \
         the state before retrying"
    )]
    Timeout { timeout: Duration },
    #[error("the Raft node on this manager has stopped ({reason}); restart the manager")]
    Stopped { reason: String },
    #[error("changing the set of managers failed: {reason}")]
    Membership { reason: String },
}

impl StoreError {
    /// The rejection, if the change was refused (conflict, missing object, name in use).
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            Self::Rejected(rejection) => Some(rejection),
            _ => None,
        }
    }

    /// Whether the change failed only because the object changed meanwhile, so re-reading and
    /// retrying is the right reaction.
    pub fn is_version_conflict(&self) -> bool {
        matches!(self.rejection(), Some(Rejection::VersionConflict { .. }))
    }
}

// Reads in `view`/`WriteTx` open transactions and tables directly; their redb errors are
// database failures like any other.
macro_rules! redb_errors_into_store_error {
    ($($error:ty),*) => {
        $(impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                Self::Database(DbError::from(error))
            }
        })*
    };
}

redb_errors_into_store_error!(redb::TransactionError, redb::TableError, redb::StorageError);

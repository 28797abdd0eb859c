//! How the store turns values into bytes on disk: JSON, via serde.
//!
//! JSON costs some space and CPU next to a binary format, but it tolerates added fields
//! (`#[serde(default)]`), so a newer hive reads an older data directory and Raft log, and an
//! operator can read a record with standard tools. The store is not on a per-packet path.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A value that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode {what} as JSON: {source}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "stored {what} is not valid (it may have been written by a newer hive, or the data \
         directory is damaged): {source}; run the same or a newer hive, or restore the \
         manager's data directory from a backup"
    )]
    Decode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

pub(crate) fn encode<T: Serialize + ?Sized>(
    what: impl fmt::Display,
    value: &T,
) -> Result<Vec<u8>, CodecError> {
    serde_json::to_vec(value).map_err(|source| CodecError::Encode {
        what: what.to_string(),
        source,
    })
}

pub(crate) fn decode<T: DeserializeOwned>(
    what: impl fmt::Display,
    bytes: &[u8],
) -> Result<T, CodecError> {
    serde_json::from_slice(bytes).map_err(|source| CodecError::Decode {
        what: what.to_string(),
        source,
    })
}

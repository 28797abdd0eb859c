//! How the store turns values into bytes on disk: JSON, via serde, sealed with the manager's
//! data key (DEK) when one is installed (docs/encryption.md).
//!
//! A sealed value is `SEALED_MAGIC ‖ nonce ‖ ciphertext ‖ tag` (ChaCha20-Poly1305, see
//! [`hive_encryption::aead`]). JSON never starts with a NUL byte, so a value written before
//! encryption existed is told apart and still read; [`super::migrate`] seals such values.
//!
//! The data key is one per daemon process, as a daemon is one node with at most one store:
//! [`set_data_key`] installs it before the store opens.
//!
//! JSON costs some space and CPU next to a binary format, but it tolerates added fields
//! (`#[serde(default)]`), so a newer hive reads an older data directory and Raft log, and an
//! operator can read a record with standard tools. The store is not on a per-packet path.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, RwLock};

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
    #[error(
        "stored {what} is encrypted and this manager has no data key to read it (its \
         certificates/swarm-raft-keys.json is missing); restore that file, or leave the swarm \
         and join again"
    )]
    NoKey { what: String },
    #[error(
        "stored {what} cannot be decrypted with this manager's data key (damaged data, or a \
         data directory mixed from two managers); restore the manager's data directory from a \
         backup, or leave the swarm and join again"
    )]
    Open { what: String },
    #[error("cannot encrypt {what}: {source}")]
    Seal {
        what: String,
        #[source]
        source: hive_encryption::AeadError,
    },
}

/// The first bytes of a sealed value (version 1).
pub(crate) const SEALED_MAGIC: &[u8] = b"\0hv1";

/// The data keys: values are sealed with `current`; while a rotation re-seals the store
/// (docs/encryption.md, "Data key rotation"), values sealed with `previous` still open.
#[derive(Default)]
struct DataKeys {
    current: Option<Arc<hive_encryption::Key>>,
    previous: Option<Arc<hive_encryption::Key>>,
}

static DATA_KEYS: RwLock<DataKeys> = RwLock::new(DataKeys {
    current: None,
    previous: None,
});

fn keys() -> std::sync::RwLockReadGuard<'static, DataKeys> {
    DATA_KEYS.read().unwrap_or_else(|e| e.into_inner())
}

fn keys_mut() -> std::sync::RwLockWriteGuard<'static, DataKeys> {
    DATA_KEYS.write().unwrap_or_else(|e| e.into_inner())
}

/// Installs (or, with `None`, removes) the data key the store seals its values with, and
/// forgets any previous one.
pub fn set_data_key(key: Option<hive_encryption::Key>) {
    *keys_mut() = DataKeys {
        current: key.map(Arc::new),
        previous: None,
    };
}

/// Starts a rotation: `new` seals from now on; the key it replaces still opens what it
/// sealed until [`forget_previous_data_key`].
pub fn rotate_data_key(new: hive_encryption::Key) {
    let mut keys = keys_mut();
    keys.previous = keys.current.take();
    keys.current = Some(Arc::new(new));
}

/// Ends a rotation, once every value is sealed with the current key.
pub fn forget_previous_data_key() {
    keys_mut().previous = None;
}

fn data_key() -> Option<Arc<hive_encryption::Key>> {
    keys().current.clone()
}

/// Whether `bytes` is sealed with the current data key (nothing to re-seal).
pub(crate) fn is_current(bytes: &[u8]) -> bool {
    let Some(sealed) = bytes.strip_prefix(SEALED_MAGIC) else {
        return false;
    };
    keys()
        .current
        .as_ref()
        .is_some_and(|key| key.open(sealed).is_ok())
}

/// Whether `bytes` is a sealed value.
#[cfg(test)]
pub(crate) fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(SEALED_MAGIC)
}

/// `plain`, sealed with the data key if one is installed.
pub(crate) fn seal(what: impl fmt::Display, plain: Vec<u8>) -> Result<Vec<u8>, CodecError> {
    let Some(key) = data_key() else {
        return Ok(plain);
    };
    let sealed = key.seal(&plain).map_err(|source| CodecError::Seal {
        what: what.to_string(),
        source,
    })?;
    let mut out = Vec::with_capacity(SEALED_MAGIC.len() + sealed.len());
    out.extend_from_slice(SEALED_MAGIC);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The plaintext of a stored value: opened if sealed, as it is otherwise.
pub(crate) fn open(what: impl fmt::Display, bytes: &[u8]) -> Result<Cow<'_, [u8]>, CodecError> {
    let Some(sealed) = bytes.strip_prefix(SEALED_MAGIC) else {
        return Ok(Cow::Borrowed(bytes));
    };
    let (current, previous) = {
        let keys = keys();
        (keys.current.clone(), keys.previous.clone())
    };
    let current = current.ok_or_else(|| CodecError::NoKey {
        what: what.to_string(),
    })?;
    current
        .open(sealed)
        .or_else(|e| previous.map_or(Err(e), |previous| previous.open(sealed)))
        .map(Cow::Owned)
        .map_err(|_| CodecError::Open {
            what: what.to_string(),
        })
}

pub(crate) fn encode<T: Serialize + ?Sized>(
    what: impl fmt::Display,
    value: &T,
) -> Result<Vec<u8>, CodecError> {
    let plain = serde_json::to_vec(value).map_err(|source| CodecError::Encode {
        what: what.to_string(),
        source,
    })?;
    seal(what, plain)
}

pub(crate) fn decode<T: DeserializeOwned>(
    what: impl fmt::Display,
    bytes: &[u8],
) -> Result<T, CodecError> {
    let plain = open(&what, bytes)?;
    serde_json::from_slice(&plain).map_err(|source| CodecError::Decode {
        what: what.to_string(),
        source,
    })
}

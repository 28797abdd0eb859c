//! Encryption at rest of the managers' store, and autolock (docs/encryption.md).
//!
//! ```text
//! unlock key (SWMKEY-1-…, autolock only; replicated in the Raft store)
//!    └─ HKDF-SHA256 → wraps the KEK
//! KEK (certificates/swarm-raft-keys.json, beside the TLS key)
//!    ├─ wraps the DEK
//!    └─ HKDF-SHA256 → seals the TLS key (certificates/swarm-node.key) while autolock is on
//! DEK → seals every value of raft-log.redb and state.redb (store::codec)
//! ```
//!
//! All sealing is ring's ChaCha20-Poly1305 ([`aead`]); nothing here is home-made crypto.
//!
//! [`private_file`] is how the daemon replaces a private file of its data directory (the key
//! file here, the node file, the image index): it lives in this crate, the lowest that writes
//! one.

pub mod aead;
pub mod key_file;
pub mod node_key;
pub mod private_file;
pub mod unlock_key;

pub use aead::{AeadError, Key};
pub use key_file::{KeyFile, KeyFileError, StoreKeys};
pub use unlock_key::{BadUnlockKey, UnlockKey};

/// Docker's answer on a locked manager (moby `daemon/cluster/errors.go`, `errSwarmLocked`),
/// with hive's command name.
pub const LOCKED: &str = "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"hive swarm unlock\" to unlock it.";

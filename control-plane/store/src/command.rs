//! What travels through Raft: a [`Request`] (a batch of object changes proposed by
//! `Store::update`) and the [`Response`] the state machine gives for each applied entry.

use serde::{Deserialize, Serialize};

use super::objects::{Object, ObjectKind, Timestamp};

/// One atomic batch of changes: the state machine applies all of them or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// When the change was proposed; becomes `created_at`/`updated_at` of the objects it
    /// writes, so that every manager stamps the same time (the state machine never reads the
    /// clock).
    pub proposed_at: Timestamp,
    pub changes: Vec<Change>,
}

/// One change to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The object must carry its ID and not exist yet.
    Create(Object),
    /// `meta.version` of the object is the version the change was based on; it must still be
    /// the stored version.
    Update(Object),
    Delete {
        kind: ObjectKind,
        id: String,
    },
}

impl Change {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Self::Create(object) | Self::Update(object) => object.kind(),
            Self::Delete { kind, .. } => *kind,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Self::Create(object) | Self::Update(object) => object.id(),
            Self::Delete { id, .. } => id,
        }
    }
}

/// The state machine's answer to one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// An entry without a store command (Raft's blank and membership entries).
    Empty,
    /// The batch was applied; every object it wrote now has this version (the entry's index).
    Committed { version: u64 },
    /// The batch was refused as a whole and changed nothing.
    Rejected(Rejection),
}

/// Why the state machine refused a batch. These are outcomes of applying a committed entry,
/// so they are data (serialised in the response), and every manager reaches the same one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    #[error("cannot create a {kind} without an ID; let the store assign one")]
    MissingId { kind: ObjectKind },
    #[error("{kind} {id} already exists; update it instead, or create it under another ID")]
    AlreadyExists { kind: ObjectKind, id: String },
    #[error("{kind} {id} does not exist (it may have just been removed); re-read and retry")]
    NotFound { kind: ObjectKind, id: String },
    #[error(
        "{kind} {id} changed meanwhile: this update was based on version {expected} but the \
         store has version {current}; re-read the {kind} and apply the change again"
    )]
    VersionConflict {
        kind: ObjectKind,
        id: String,
        expected: u64,
        current: u64,
    },
    #[error("{kind} name \"{name}\" is already used by {kind} {existing_id}; choose another name")]
    NameConflict {
        kind: ObjectKind,
        name: String,
        existing_id: String,
    },
}

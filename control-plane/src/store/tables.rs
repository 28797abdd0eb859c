//! The tables of the state database (`state.redb`) and typed access to them.
//!
//! | table      | key                  | value                                        |
//! |------------|----------------------|----------------------------------------------|
//! | `nodes`, `services`, `tasks`, `networks`, `clusters` | object ID | the object, JSON |
//! | `names`    | (kind, name)         | ID of the object of that kind with that name |
//! | `sm_meta`  | `last_applied`, `membership`, `snapshot_meta`, `snapshot_data`, `snapshot_seq` | JSON (snapshot data: its own bytes) |
//!
//! `names` holds only kinds whose names are unique ([`ObjectKind::has_unique_names`]); it makes
//! the uniqueness check and lookups by name cheap, and is rebuilt from the objects when a
//! snapshot is installed.

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::{self, CodecError};
use super::objects::{Object, ObjectKind, StoreObject};

pub(crate) const SM_META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("sm_meta");
pub(crate) const NAMES: TableDefinition<'static, (&'static str, &'static str), &'static str> =
    TableDefinition::new("names");

const NODES: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("nodes");
const SERVICES: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("services");
const TASKS: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("tasks");
const NETWORKS: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("networks");
const CLUSTERS: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("clusters");

/// Keys of `sm_meta`.
pub(crate) mod meta_key {
    /// Log ID of the last entry applied to the objects.
    pub(crate) const LAST_APPLIED: &str = "last_applied";
    /// Last membership config applied (openraft `StoredMembership`).
    pub(crate) const MEMBERSHIP: &str = "membership";
    /// The current snapshot: its openraft `SnapshotMeta` and its bytes.
    pub(crate) const SNAPSHOT_META: &str = "snapshot_meta";
    pub(crate) const SNAPSHOT_DATA: &str = "snapshot_data";
    /// Counter that makes snapshot IDs unique.
    pub(crate) const SNAPSHOT_SEQ: &str = "snapshot_seq";
}

pub(crate) fn object_table(
    kind: ObjectKind,
) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match kind {
        ObjectKind::Node => NODES,
        ObjectKind::Service => SERVICES,
        ObjectKind::Task => TASKS,
        ObjectKind::Network => NETWORKS,
        ObjectKind::Cluster => CLUSTERS,
    }
}

/// A failure of the embedded database or of decoding what it holds.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "the store's database failed: {source}; check that no other hive daemon uses the \
         same data directory and that its disk is writable and not full"
    )]
    Redb {
        #[from]
        source: redb::Error,
    },
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(
        "snapshot format {found} is not supported (this hive reads format {supported}); upgrade hive on this manager"
    )]
    SnapshotFormat { found: u32, supported: u32 },
    #[error(
        "the store's database is inconsistent: {what}; restore the manager's data directory \
         from a backup, or remove it and re-join this manager to the swarm"
    )]
    Inconsistent { what: &'static str },
    #[error("a store worker thread failed: {source}")]
    Worker {
        #[source]
        source: tokio::task::JoinError,
    },
}

// redb has one error type per operation; all of them are database failures to us.
macro_rules! redb_errors_into_db_error {
    ($($error:ty),*) => {
        $(impl From<$error> for DbError {
            fn from(error: $error) -> Self {
                Self::Redb { source: error.into() }
            }
        })*
    };
}

redb_errors_into_db_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Runs blocking database work on tokio's blocking pool, so that fsyncs never stall the
/// runtime threads that drive Raft.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, DbError>
where
    F: FnOnce() -> Result<T, DbError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|source| DbError::Worker { source })?
}

/// Creates every table of the state database, so that read transactions can open them all.
pub(crate) fn create_state_tables(db: &Database) -> Result<(), DbError> {
    let txn = db.begin_write()?;
    txn.open_table(SM_META)?;
    txn.open_table(NAMES)?;
    for kind in ObjectKind::ALL {
        txn.open_table(object_table(kind))?;
    }
    txn.commit()?;
    Ok(())
}

pub(crate) fn read_meta<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, DbError> {
    match table.get(key)? {
        Some(bytes) => Ok(Some(codec::decode(key, bytes.value())?)),
        None => Ok(None),
    }
}

pub(crate) fn write_meta<T: Serialize>(
    txn: &WriteTransaction,
    key: &str,
    value: &T,
) -> Result<(), DbError> {
    let bytes = codec::encode(key, value)?;
    txn.open_table(SM_META)?.insert(key, bytes.as_slice())?;
    Ok(())
}

pub(crate) fn get_typed<T: StoreObject>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<T>, DbError> {
    match table.get(id)? {
        Some(bytes) => Ok(Some(codec::decode(
            format_args!("{} {id}", T::KIND),
            bytes.value(),
        )?)),
        None => Ok(None),
    }
}

pub(crate) fn list_typed<T: StoreObject>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<T>, DbError> {
    let mut objects = Vec::new();
    for row in table.iter()? {
        let (id, bytes) = row?;
        objects.push(codec::decode(
            format_args!("{} {}", T::KIND, id.value()),
            bytes.value(),
        )?);
    }
    Ok(objects)
}

pub(crate) fn get_object(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    kind: ObjectKind,
    id: &str,
) -> Result<Option<Object>, DbError> {
    match table.get(id)? {
        Some(bytes) => Ok(Some(decode_object(kind, id, bytes.value())?)),
        None => Ok(None),
    }
}

pub(crate) fn list_objects(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    kind: ObjectKind,
) -> Result<Vec<Object>, DbError> {
    let mut objects = Vec::new();
    for row in table.iter()? {
        let (id, bytes) = row?;
        objects.push(decode_object(kind, id.value(), bytes.value())?);
    }
    Ok(objects)
}

pub(crate) fn encode_object(object: &Object) -> Result<Vec<u8>, DbError> {
    object.encode_body().map_err(|source| {
        DbError::Codec(CodecError::Encode {
            what: format!("{} {}", object.kind(), object.id()),
            source,
        })
    })
}

fn decode_object(kind: ObjectKind, id: &str, bytes: &[u8]) -> Result<Object, DbError> {
    Object::decode_body(kind, bytes).map_err(|source| {
        DbError::Codec(CodecError::Decode {
            what: format!("{kind} {id}"),
            source,
        })
    })
}

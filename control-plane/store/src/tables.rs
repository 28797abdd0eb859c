//! The tables of the state database (`state.redb`) and typed access to them.
//!
//! | table      | key                  | value                                        |
//! |------------|----------------------|----------------------------------------------|
//! | `nodes`, `services`, `tasks`, `networks`, `clusters`, `secrets`, `configs` | object ID | the object, JSON |
//! | `names`    | (kind, name)         | ID of the object of that kind with that name |
//! | `tasks_by_service` | (service ID, task ID) | nothing: an index of `tasks`         |
//! | `services_by_port` | (protocol, published port, service ID) | nothing: an index of the ports `services` hold |
//! | `sm_meta`  | `last_applied`, `membership`, `snapshot_meta`, `snapshot_seq` | JSON |
//! | `snapshot` | `data` | the current snapshot's bytes, sealed |
//!
//! `names` holds only kinds whose names are unique ([`ObjectKind::has_unique_names`]); it makes
//! the uniqueness check and lookups by name cheap, and is rebuilt from the objects when a
//! snapshot is installed. `tasks_by_service` lets a loop read one service's tasks without
//! decoding every task (docs/store.md, "What a change costs"); it is kept by the same
//! transaction that writes the task, and rebuilt with `names` (and on opening a database that
//! predates it). `services_by_port` does the same for the published ports each service holds
//! (`Service::held_ports`), so the port conflict check of a create or an update reads only
//! the services that hold its ports.
//!
//! The snapshot's bytes (the whole store, megabytes at thousands of services) have a table of
//! their own: redb copies a changed leaf whole, and `sm_meta`'s `last_applied` changes with
//! every applied entry, so a snapshot kept in `sm_meta` was copied by every write.

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::{self, CodecError};
use std::collections::BTreeSet;

use super::objects::{Object, ObjectKind, Protocol, StoreObject};

pub(crate) const SM_META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("sm_meta");
pub(crate) const NAMES: TableDefinition<'static, (&'static str, &'static str), &'static str> =
    TableDefinition::new("names");

pub(crate) const TASKS_BY_SERVICE: TableDefinition<'static, (&'static str, &'static str), ()> =
    TableDefinition::new("tasks_by_service");

pub(crate) const SERVICES_BY_PORT: TableDefinition<'static, (&'static str, u16, &'static str), ()> =
    TableDefinition::new("services_by_port");

pub(crate) const SNAPSHOT: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("snapshot");
/// The key of the current snapshot's bytes in [`SNAPSHOT`].
pub(crate) const SNAPSHOT_DATA: &str = "data";

const NODES: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("nodes");
const SERVICES: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("services");
const TASKS: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("tasks");
const NETWORKS: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("networks");
const CLUSTERS: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("clusters");
const SECRETS: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("secrets");
const CONFIGS: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("configs");

/// Keys of `sm_meta`.
pub(crate) mod meta_key {
    /// Log ID of the last entry applied to the objects.
    pub(crate) const LAST_APPLIED: &str = "last_applied";
    /// Last membership config applied (openraft `StoredMembership`).
    pub(crate) const MEMBERSHIP: &str = "membership";
    /// The current snapshot: its openraft `SnapshotMeta` and its bytes.
    pub(crate) const SNAPSHOT_META: &str = "snapshot_meta";
    /// Where the snapshot's bytes were kept before they had a table of their own
    /// ([`super::SNAPSHOT`]); moved from here when a database is opened.
    pub(crate) const LEGACY_SNAPSHOT_DATA: &str = "snapshot_data";
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
        ObjectKind::Secret => SECRETS,
        ObjectKind::Config => CONFIGS,
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
    {
        let mut meta = txn.open_table(SM_META)?;
        let mut snapshot = txn.open_table(SNAPSHOT)?;
        // A database written when the snapshot was kept in `sm_meta`: move it out once.
        if let Some(data) = meta.remove(meta_key::LEGACY_SNAPSHOT_DATA)? {
            snapshot.insert(SNAPSHOT_DATA, data.value())?;
        }
    }
    txn.open_table(NAMES)?;
    for kind in ObjectKind::ALL {
        txn.open_table(object_table(kind))?;
    }
    // A database written before the index existed: build it once.
    let unindexed =
        txn.open_table(TASKS_BY_SERVICE)?.is_empty()? && !txn.open_table(TASKS)?.is_empty()?;
    if unindexed {
        rebuild_task_index(&txn)?;
    }
    let ports_unindexed =
        txn.open_table(SERVICES_BY_PORT)?.is_empty()? && !txn.open_table(SERVICES)?.is_empty()?;
    if ports_unindexed {
        rebuild_port_index(&txn)?;
    }
    txn.commit()?;
    Ok(())
}

/// Fills `tasks_by_service` from `tasks`, replacing what it held.
pub(crate) fn rebuild_task_index(txn: &WriteTransaction) -> Result<(), DbError> {
    let mut index = txn.open_table(TASKS_BY_SERVICE)?;
    index.retain(|_, ()| false)?;
    let tasks = txn.open_table(TASKS)?;
    for task in list_typed::<crate::objects::Task>(&tasks)? {
        index.insert((task.service_id.as_str(), task.id.as_str()), ())?;
    }
    Ok(())
}

/// Keeps `tasks_by_service` in step with one change to a task (`old` before, `new` after).
pub(crate) fn index_task(
    txn: &WriteTransaction,
    old: Option<&Object>,
    new: Option<&Object>,
) -> Result<(), DbError> {
    let key = |object: Option<&Object>| match object {
        Some(Object::Task(task)) => Some((task.service_id.clone(), task.id.clone())),
        _ => None,
    };
    let (old, new) = (key(old), key(new));
    if old == new {
        return Ok(());
    }
    let mut index = txn.open_table(TASKS_BY_SERVICE)?;
    if let Some((service, task)) = &old {
        index.remove((service.as_str(), task.as_str()))?;
    }
    if let Some((service, task)) = &new {
        index.insert((service.as_str(), task.as_str()), ())?;
    }
    Ok(())
}

/// The `services_by_port` keys of `object`, if it is a service.
fn port_keys(object: Option<&Object>) -> BTreeSet<(Protocol, u16, String)> {
    match object {
        Some(Object::Service(service)) => service
            .held_ports()
            .map(|p| (p.protocol, p.published_port, service.id.clone()))
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// Fills `services_by_port` from `services`, replacing what it held.
pub(crate) fn rebuild_port_index(txn: &WriteTransaction) -> Result<(), DbError> {
    let mut index = txn.open_table(SERVICES_BY_PORT)?;
    index.retain(|_, ()| false)?;
    let services = txn.open_table(SERVICES)?;
    for service in list_typed::<crate::objects::Service>(&services)? {
        for (protocol, port, id) in port_keys(Some(&Object::Service(Box::new(service)))) {
            index.insert((protocol.as_str(), port, id.as_str()), ())?;
        }
    }
    Ok(())
}

/// Keeps `services_by_port` in step with one change to a service (`old` before, `new` after).
pub(crate) fn index_service_ports(
    txn: &WriteTransaction,
    old: Option<&Object>,
    new: Option<&Object>,
) -> Result<(), DbError> {
    let (old, new) = (port_keys(old), port_keys(new));
    if old == new {
        return Ok(());
    }
    let mut index = txn.open_table(SERVICES_BY_PORT)?;
    for (protocol, port, id) in old.difference(&new) {
        index.remove((protocol.as_str(), *port, id.as_str()))?;
    }
    for (protocol, port, id) in new.difference(&old) {
        index.insert((protocol.as_str(), *port, id.as_str()), ())?;
    }
    Ok(())
}

/// IDs of the services holding the published port `port`/`protocol`, from `services_by_port`.
pub(crate) fn services_holding_port(
    index: &impl ReadableTable<(&'static str, u16, &'static str), ()>,
    protocol: Protocol,
    port: u16,
) -> Result<Vec<String>, DbError> {
    let mut ids = Vec::new();
    for row in index.range((protocol.as_str(), port, "")..)? {
        let (key, _) = row?;
        let (held_protocol, held_port, id) = key.value();
        if held_protocol != protocol.as_str() || held_port != port {
            break;
        }
        ids.push(id.to_owned());
    }
    Ok(ids)
}

/// IDs of the tasks of `service_id`, from `tasks_by_service`.
pub(crate) fn task_ids_of_service(
    index: &impl ReadableTable<(&'static str, &'static str), ()>,
    service_id: &str,
) -> Result<Vec<String>, DbError> {
    let mut ids = Vec::new();
    for row in index.range((service_id, "")..)? {
        let (key, _) = row?;
        let (service, task) = key.value();
        if service != service_id {
            break;
        }
        ids.push(task.to_owned());
    }
    Ok(ids)
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

thread_local! {
    /// Objects decoded on this thread (see [`objects_decoded`]).
    static DECODED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many objects reads on the calling thread have decoded so far: what a read costs grows
/// with this count, which the tests of the manager loops use to show that a pass after one
/// change reads the same whatever the size of the cluster.
pub fn objects_decoded() -> u64 {
    DECODED.with(std::cell::Cell::get)
}

fn count_decoded() {
    DECODED.with(|count| count.set(count.get() + 1));
}

pub(crate) fn get_typed<T: StoreObject>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<T>, DbError> {
    match table.get(id)? {
        Some(bytes) => Ok(Some(decode_typed(id, bytes.value())?)),
        None => Ok(None),
    }
}

pub(crate) fn list_typed<T: StoreObject>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<T>, DbError> {
    let mut objects = Vec::new();
    for row in table.iter()? {
        let (id, bytes) = row?;
        objects.push(decode_typed(id.value(), bytes.value())?);
    }
    Ok(objects)
}

/// The objects of `table` whose ID starts with `prefix`, ordered by ID: a range of the table's
/// keys, so only the matching objects are decoded.
pub(crate) fn list_typed_with_id_prefix<T: StoreObject>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
) -> Result<Vec<T>, DbError> {
    let mut objects = Vec::new();
    for row in table.range(prefix..)? {
        let (id, bytes) = row?;
        if !id.value().starts_with(prefix) {
            break;
        }
        objects.push(decode_typed(id.value(), bytes.value())?);
    }
    Ok(objects)
}

fn decode_typed<T: StoreObject>(id: &str, bytes: &[u8]) -> Result<T, DbError> {
    count_decoded();
    Ok(codec::decode(format_args!("{} {id}", T::KIND), bytes)?)
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
    let what = || format!("{} {}", object.kind(), object.id());
    let plain = object.encode_body().map_err(|source| {
        DbError::Codec(CodecError::Encode {
            what: what(),
            source,
        })
    })?;
    Ok(codec::seal(what(), plain)?)
}

fn decode_object(kind: ObjectKind, id: &str, bytes: &[u8]) -> Result<Object, DbError> {
    count_decoded();
    let bytes = codec::open(format_args!("{kind} {id}"), bytes)?;
    Object::decode_body(kind, &bytes).map_err(|source| {
        DbError::Codec(CodecError::Decode {
            what: format!("{kind} {id}"),
            source,
        })
    })
}

#[cfg(test)]
mod tests {
    use redb::ReadableDatabase;

    use super::*;

    #[test]
    fn a_snapshot_kept_in_sm_meta_moves_to_its_own_table_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("state.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(SM_META)
            .unwrap()
            .insert(meta_key::LEGACY_SNAPSHOT_DATA, b"snapshot bytes".as_slice())
            .unwrap();
        txn.commit().unwrap();

        create_state_tables(&db).unwrap();

        let read = db.begin_read().unwrap();
        let meta = read.open_table(SM_META).unwrap();
        assert!(meta.get(meta_key::LEGACY_SNAPSHOT_DATA).unwrap().is_none());
        let snapshots = read.open_table(SNAPSHOT).unwrap();
        let data = snapshots.get(SNAPSHOT_DATA).unwrap().unwrap();
        assert_eq!(data.value(), b"snapshot bytes");
    }
}

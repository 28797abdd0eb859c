//! Snapshots of the state machine: building one from the object tables, installing one received
//! from the leader, and keeping the current one in the state database.
//!
//! Format (JSON, [`SNAPSHOT_FORMAT`] = 1):
//! `{"format":1,"objects":[{"node":{…}},{"service":{…}},…]}` — every object of every table, as
//! of one read transaction. The last applied log ID and membership travel beside it in
//! openraft's `SnapshotMeta`, so a snapshot is self-contained: installing it replaces the whole
//! state.

use std::io::Cursor;
use std::sync::Arc;

use openraft::{AnyError, RaftSnapshotBuilder, StorageIOError};
use redb::{Database, ReadableDatabase};
use serde::{Deserialize, Serialize};

use super::codec;
use super::objects::{Object, ObjectKind};
use super::tables::{
    self, DbError, NAMES, SM_META, SNAPSHOT, SNAPSHOT_DATA, blocking, meta_key, object_table,
    read_meta, write_meta,
};
use super::types::{LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// The snapshot format this hive writes and reads.
pub const SNAPSHOT_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    format: u32,
    objects: Vec<Object>,
}

/// Builds snapshots for openraft; runs concurrently with `apply`, which redb's MVCC allows:
/// the snapshot reads one consistent read transaction.
#[derive(Debug, Clone)]
pub struct SnapshotBuilder {
    db: Arc<Database>,
}

impl SnapshotBuilder {
    pub(crate) fn new(db: Arc<Database>) -> Self {
        Self { db }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let db = Arc::clone(&self.db);
        let (meta, data) = blocking(move || build(&db)).await.map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(None, AnyError::new(&e)))
        })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

fn build(db: &Database) -> Result<(SnapshotMeta, Vec<u8>), DbError> {
    let read = db.begin_read()?;
    let meta_table = read.open_table(SM_META)?;
    let last_log_id = read_meta::<Option<LogId>>(&meta_table, meta_key::LAST_APPLIED)?.flatten();
    let last_membership: StoredMembership =
        read_meta(&meta_table, meta_key::MEMBERSHIP)?.unwrap_or_default();
    let mut objects = Vec::new();
    for kind in ObjectKind::ALL {
        objects.extend(tables::list_objects(
            &read.open_table(object_table(kind))?,
            kind,
        )?);
    }
    drop(meta_table);
    drop(read);
    let data = codec::encode(
        "snapshot",
        &SnapshotBody {
            format: SNAPSHOT_FORMAT,
            objects,
        },
    )?;

    let txn = db.begin_write()?;
    let seq = {
        let table = txn.open_table(SM_META)?;
        read_meta::<u64>(&table, meta_key::SNAPSHOT_SEQ)?.unwrap_or(0) + 1
    };
    let snapshot_id = match last_log_id {
        Some(log_id) => format!("{}-{}-{seq}", log_id.leader_id, log_id.index),
        None => format!("none-{seq}"),
    };
    let meta = SnapshotMeta {
        last_log_id,
        last_membership,
        snapshot_id,
    };
    write_meta(&txn, meta_key::SNAPSHOT_SEQ, &seq)?;
    // A snapshot installed from the leader while this one was being built may be newer; keep
    // the newest as the current one.
    let current: Option<SnapshotMeta> =
        read_meta(&txn.open_table(SM_META)?, meta_key::SNAPSHOT_META)?;
    if current.is_none_or(|current| current.last_log_id <= meta.last_log_id) {
        store_current(&txn, &meta, &data)?;
    }
    txn.commit()?;
    Ok((meta, data))
}

/// Replaces the whole state with a snapshot's, in one durable transaction.
pub(crate) fn install(db: &Database, meta: &SnapshotMeta, data: &[u8]) -> Result<(), DbError> {
    let body: SnapshotBody = codec::decode("snapshot received from the leader", data)?;
    if body.format != SNAPSHOT_FORMAT {
        return Err(DbError::SnapshotFormat {
            found: body.format,
            supported: SNAPSHOT_FORMAT,
        });
    }
    let txn = db.begin_write()?;
    {
        let mut names = txn.open_table(NAMES)?;
        names.retain(|_, _| false)?;
        for kind in ObjectKind::ALL {
            txn.open_table(object_table(kind))?.retain(|_, _| false)?;
        }
        for object in &body.objects {
            let (kind, id) = (object.kind(), object.id());
            txn.open_table(object_table(kind))?
                .insert(id, tables::encode_object(object)?.as_slice())?;
            if let Some(name) = object.unique_name() {
                names.insert((kind.as_str(), name), id)?;
            }
        }
    }
    tables::rebuild_task_index(&txn)?;
    tables::rebuild_port_index(&txn)?;
    write_meta(&txn, meta_key::LAST_APPLIED, &meta.last_log_id)?;
    write_meta(&txn, meta_key::MEMBERSHIP, &meta.last_membership)?;
    store_current(&txn, meta, data)?;
    txn.commit()?;
    Ok(())
}

/// The current snapshot, if one was built or installed.
pub(crate) fn current(db: &Database) -> Result<Option<(SnapshotMeta, Vec<u8>)>, DbError> {
    let read = db.begin_read()?;
    let table = read.open_table(SM_META)?;
    let Some(meta) = read_meta::<SnapshotMeta>(&table, meta_key::SNAPSHOT_META)? else {
        return Ok(None);
    };
    let snapshots = read.open_table(SNAPSHOT)?;
    let Some(data) = redb::ReadableTable::get(&snapshots, SNAPSHOT_DATA)? else {
        return Err(DbError::Inconsistent {
            what: "snapshot metadata is stored but its data is not",
        });
    };
    let data = codec::open("the current snapshot", data.value())?.into_owned();
    Ok(Some((meta, data)))
}

fn store_current(
    txn: &redb::WriteTransaction,
    meta: &SnapshotMeta,
    data: &[u8],
) -> Result<(), DbError> {
    write_meta(txn, meta_key::SNAPSHOT_META, meta)?;
    // Sent to other managers in the clear (over mutual TLS): each seals it with its own key.
    let sealed = codec::seal("the current snapshot", data.to_vec())?;
    txn.open_table(SNAPSHOT)?
        .insert(SNAPSHOT_DATA, sealed.as_slice())?;
    Ok(())
}

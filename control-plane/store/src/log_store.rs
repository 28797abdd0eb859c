//! The Raft log, vote and commit pointer, in their own redb database (`raft-log.redb`).
//!
//! | table      | key                                   | value          |
//! |------------|---------------------------------------|----------------|
//! | `log`      | log index (u64)                       | entry, JSON    |
//! | `log_meta` | `vote`, `committed`, `last_purged`    | JSON           |
//!
//! Durability: every write that Raft relies on for safety — the vote, appended entries,
//! truncation, purge — is one redb transaction committed with `Durability::Immediate`, which
//! returns only after redb's fsync; `append` reports the entries flushed only after that commit.
//! So whatever this store acknowledged survives a crash or power loss. The commit pointer is the
//! one exception (see [`LogStore::save_committed`]).
//!
//! The log lives apart from the state database so that appends (Raft core task) and applies
//! (state machine task) do not queue behind each other's write lock.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogId, RaftLogReader, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::codec;
use super::tables::{DbError, blocking};
use super::types::{Entry, LogId, LogState, StorageError, TypeConfig, Vote};

pub(super) const LOG: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("log");
pub(super) const LOG_META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("log_meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// File name of the log database inside the store's directory.
pub const LOG_FILE: &str = "raft-log.redb";

/// openraft's log storage on redb. Cheap to clone: clones share the database, which is how the
/// replication tasks get their log readers.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    /// Opens (or creates) the log database in `dir`. Blocking: call from a blocking context.
    pub(crate) fn open(dir: &Path) -> Result<Self, DbError> {
        let db = Database::create(dir.join(LOG_FILE))?;
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(LOG_META)?;
        txn.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    /// The log database, for re-sealing it after a data key rotation.
    pub(crate) fn database(&self) -> Arc<Database> {
        self.db.clone()
    }

    async fn read_meta<T>(&self, key: &'static str) -> Result<Option<T>, DbError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(LOG_META)?;
            match table.get(key)? {
                Some(bytes) => Ok(Some(codec::decode(key, bytes.value())?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn write_meta<T>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), DbError>
    where
        T: serde::Serialize,
    {
        let bytes = codec::encode(key, value)?;
        let db = Arc::clone(&self.db);
        blocking(move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability)?;
            txn.open_table(LOG_META)?.insert(key, bytes.as_slice())?;
            txn.commit()?;
            Ok(())
        })
        .await
    }
}

fn read_logs_error(error: DbError) -> StorageError {
    StorageIOError::read_logs(AnyError::new(&error)).into()
}

fn write_logs_error(error: DbError) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&error)).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds: (Bound<u64>, Bound<u64>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        let db = Arc::clone(&self.db);
        blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(LOG)?;
            let mut entries = Vec::new();
            for row in table.range::<u64>(bounds)? {
                let (index, bytes) = row?;
                let index = index.value();
                entries.push(codec::decode(
                    format_args!("log entry {index}"),
                    bytes.value(),
                )?);
            }
            Ok(entries)
        })
        .await
        .map_err(read_logs_error)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState, StorageError> {
        let last_purged: Option<LogId> =
            self.read_meta(LAST_PURGED).await.map_err(read_logs_error)?;
        let db = Arc::clone(&self.db);
        let last_entry: Option<Entry> = blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(LOG)?;
            match table.last()? {
                Some((index, bytes)) => {
                    let index = index.value();
                    Ok(Some(codec::decode(
                        format_args!("log entry {index}"),
                        bytes.value(),
                    )?))
                }
                None => Ok(None),
            }
        })
        .await
        .map_err(read_logs_error)?;
        let last_log_id = last_entry.map(|entry| *entry.get_log_id()).or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(VOTE, vote, Durability::Immediate)
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(VOTE)
            .await
            .map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    /// Saved without an fsync of its own: openraft treats the commit pointer as optional (a
    /// manager that lost it re-learns it from the leader), and the state machine persists what
    /// it applied. The next durable commit of this database (any append or vote) makes it
    /// durable too; a crash before that rolls back to an older pointer, never to a wrong one.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_meta(COMMITTED, &committed, Durability::None)
            .await
            .map_err(write_logs_error)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<Option<LogId>> =
            self.read_meta(COMMITTED).await.map_err(read_logs_error)?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let rows = entries
            .into_iter()
            .map(|entry| {
                let index = entry.get_log_id().index;
                codec::encode(format_args!("log entry {index}"), &entry).map(|bytes| (index, bytes))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| write_logs_error(e.into()))?;
        let db = Arc::clone(&self.db);
        let written = blocking(move || {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(LOG)?;
                for (index, bytes) in &rows {
                    table.insert(*index, bytes.as_slice())?;
                }
            }
            // Durability::Immediate is redb's default: commit returns after the fsync.
            txn.commit()?;
            Ok(())
        })
        .await;
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                callback.log_io_completed(Err(std::io::Error::other(error.to_string())));
                Err(write_logs_error(error))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = Arc::clone(&self.db);
        blocking(move || {
            let txn = db.begin_write()?;
            txn.open_table(LOG)?
                .retain_in(log_id.index.., |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(write_logs_error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = codec::encode(LAST_PURGED, &log_id).map_err(|e| write_logs_error(e.into()))?;
        let db = Arc::clone(&self.db);
        blocking(move || {
            // One transaction: the purged entries and the pointer past them move together.
            let txn = db.begin_write()?;
            txn.open_table(LOG_META)?
                .insert(LAST_PURGED, bytes.as_slice())?;
            txn.open_table(LOG)?
                .retain_in(..=log_id.index, |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(write_logs_error)
    }
}

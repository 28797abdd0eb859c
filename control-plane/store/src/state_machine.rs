//! The Raft state machine: the cluster's objects in redb (`state.redb`), with the last applied
//! log ID and membership beside them.
//!
//! Durability: each entry is applied in its own redb write transaction together with the new
//! `last_applied`, so the objects and the pointer to what they contain can never disagree on
//! disk. Within one `apply` call, all transactions but the last commit with
//! `Durability::None` and the last with `Durability::Immediate`; redb makes the earlier ones
//! durable with the last, so one call costs one fsync however many entries it applies, and
//! `apply` returns (and openraft answers the client) only after it. A crash before that rolls
//! the state back to the previous durable commit, and openraft re-applies the missing entries
//! from the log, which holds every committed entry.
//!
//! One transaction per entry is also what makes a rejected batch harmless: its transaction is
//! aborted, and only `last_applied` moves.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, OptionalSend, RaftLogId, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, WriteTransaction};

use super::apply::{Outcome, apply_request};
use super::command::Response;
use super::snapshot::{self, SnapshotBuilder};
use super::tables::{self, DbError, SM_META, blocking, meta_key, read_meta, write_meta};
use super::types::{
    Entry, EntryPayload, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use super::watch::{Notification, Notifier};

/// File name of the state database inside the store's directory.
pub const STATE_FILE: &str = "state.redb";

/// openraft's state machine on redb. `Store` keeps a second handle on the same database for
/// `view`, and subscribes to the notifier for `watch`.
#[derive(Debug)]
pub struct StateMachineStore {
    db: Arc<Database>,
    notifier: Notifier,
    /// Index of the last applied entry, published before the entry's notification is sent,
    /// so that a watch can tell which notifications precede it.
    applied_index: Arc<AtomicU64>,
}

impl StateMachineStore {
    /// Opens (or creates) the state database in `dir`. Blocking: call from a blocking context.
    pub(crate) fn open(dir: &Path, notifier: Notifier) -> Result<Self, DbError> {
        let db = Database::create(dir.join(STATE_FILE))?;
        tables::create_state_tables(&db)?;
        let last_applied = read_meta::<Option<LogId>>(
            &db.begin_read()?.open_table(SM_META)?,
            meta_key::LAST_APPLIED,
        )?
        .flatten();
        let applied_index = Arc::new(AtomicU64::new(last_applied.map_or(0, |l| l.index)));
        Ok(Self {
            db: Arc::new(db),
            notifier,
            applied_index,
        })
    }

    /// The index of the last applied entry, kept current by the state machine.
    pub(crate) fn applied_index(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.applied_index)
    }

    pub(crate) fn database(&self) -> Arc<Database> {
        Arc::clone(&self.db)
    }

    pub(crate) fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    fn notify(&self, notification: Notification) {
        // No receiver means nobody watches right now; the change is in the database anyway.
        let _ = self.notifier.send(Arc::new(notification));
    }
}

fn read_sm_error(error: DbError) -> StorageError {
    StorageIOError::read_state_machine(AnyError::new(&error)).into()
}

fn write_sm_error(error: DbError) -> StorageError {
    StorageIOError::write_state_machine(AnyError::new(&error)).into()
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let db = self.database();
        blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(SM_META)?;
            let last_applied =
                read_meta::<Option<LogId>>(&table, meta_key::LAST_APPLIED)?.flatten();
            let membership = read_meta(&table, meta_key::MEMBERSHIP)?.unwrap_or_default();
            Ok((last_applied, membership))
        })
        .await
        .map_err(read_sm_error)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let db = self.database();
        let (responses, notifications, last_index) = blocking(move || apply_entries(&db, entries))
            .await
            .map_err(write_sm_error)?;
        // Only now is everything durable; watchers may act on it.
        if let Some(index) = last_index {
            self.applied_index.store(index, Ordering::Release);
        }
        for notification in notifications {
            self.notify(notification);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder::new(self.database())
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let db = self.database();
        let owned_meta = meta.clone();
        let data = snapshot.into_inner();
        blocking(move || snapshot::install(&db, &owned_meta, &data))
            .await
            .map_err(|e| {
                StorageError::from(StorageIOError::write_snapshot(
                    Some(meta.signature()),
                    AnyError::new(&e),
                ))
            })?;
        let index = meta.last_log_id.map_or(0, |log_id| log_id.index);
        self.applied_index.store(index, Ordering::Release);
        self.notify(Notification::Replaced { index });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let db = self.database();
        let current = blocking(move || snapshot::current(&db))
            .await
            .map_err(|e| {
                StorageError::from(StorageIOError::read_snapshot(None, AnyError::new(&e)))
            })?;
        Ok(current.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// What applying a run of entries produced: one response per entry, the notifications to
/// send once everything is durable, and the index of the last entry applied.
type Applied = (Vec<Response>, Vec<Notification>, Option<u64>);

/// Applies `entries` in order, one transaction each (see the module docs).
fn apply_entries(db: &Database, entries: Vec<Entry>) -> Result<Applied, DbError> {
    let count = entries.len();
    let mut responses = Vec::with_capacity(count);
    let mut notifications = Vec::new();
    let mut last_index = None;
    for (position, entry) in entries.into_iter().enumerate() {
        let durability = if position + 1 == count {
            Durability::Immediate
        } else {
            Durability::None
        };
        let log_id = *entry.get_log_id();
        let mut txn = begin(db, durability)?;
        let response = match &entry.payload {
            EntryPayload::Blank => Response::Empty,
            EntryPayload::Membership(membership) => {
                let stored = StoredMembership::new(Some(log_id), membership.clone());
                write_meta(&txn, meta_key::MEMBERSHIP, &stored)?;
                Response::Empty
            }
            EntryPayload::Normal(request) => match apply_request(&txn, log_id.index, request)? {
                Outcome::Applied(events) => {
                    notifications.push(Notification::Committed {
                        index: log_id.index,
                        events,
                    });
                    Response::Committed {
                        version: log_id.index,
                    }
                }
                Outcome::Rejected(rejection) => {
                    txn.abort()?;
                    txn = begin(db, durability)?;
                    Response::Rejected(rejection)
                }
            },
        };
        write_meta(&txn, meta_key::LAST_APPLIED, &Some(log_id))?;
        txn.commit()?;
        responses.push(response);
        last_index = Some(log_id.index);
    }
    Ok((responses, notifications, last_index))
}

fn begin(db: &Database, durability: Durability) -> Result<WriteTransaction, DbError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(durability)?;
    Ok(txn)
}

//! Transactions of the store API: [`ReadTx`] for `Store::view` (a consistent snapshot of the
//! applied state) and [`WriteTx`] for `Store::update` (reads of that snapshot plus the caller's
//! own pending changes, collected into one Raft proposal).

use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadTransaction, ReadableDatabase};

use super::command::{Change, Rejection};
use super::error::StoreError;
use super::ids::new_id;
use super::lookup;
use super::objects::{Meta, Object, ObjectKind, Protocol, StoreObject, Task};
use super::tables::{
    self, NAMES, SERVICES_BY_PORT, SM_META, TASKS_BY_SERVICE, meta_key, object_table, read_meta,
};
use super::types::LogId;

/// Read access shared by [`ReadTx`] and [`WriteTx`].
pub trait ReadView {
    /// Log index of the last entry reflected in what this view reads (0 before any).
    fn applied_index(&self) -> u64;

    fn get<T: StoreObject>(&self, id: &str) -> Result<Option<T>, StoreError>;

    /// All objects of type `T`, ordered by ID.
    fn list<T: StoreObject>(&self) -> Result<Vec<T>, StoreError>;

    /// The tasks of the service `service_id` (also those of a removed service), ordered by ID:
    /// read through the `tasks_by_service` index, without decoding other tasks.
    fn tasks_of_service(&self, service_id: &str) -> Result<Vec<Task>, StoreError>;

    /// The ID of the object of `kind` named `name`, for kinds with unique names.
    fn id_by_name(&self, kind: ObjectKind, name: &str) -> Result<Option<String>, StoreError>;

    /// The IDs of the services holding the published port `port`/`protocol`
    /// (`Service::held_ports`), ordered by ID: read through the `services_by_port` index,
    /// without decoding any service.
    fn services_holding_port(
        &self,
        protocol: Protocol,
        port: u16,
    ) -> Result<Vec<String>, StoreError>;

    /// The objects of type `T` whose ID starts with `prefix`, ordered by ID, without decoding
    /// the others.
    fn with_id_prefix<T: StoreObject>(&self, prefix: &str) -> Result<Vec<T>, StoreError>;

    fn find<T: StoreObject>(&self, mut keep: impl FnMut(&T) -> bool) -> Result<Vec<T>, StoreError>
    where
        Self: Sized,
    {
        let mut objects = self.list::<T>()?;
        objects.retain(|object| keep(object));
        Ok(objects)
    }

    /// Objects a lookup by `name` matches (nodes: name or hostname; several nodes may share a
    /// hostname).
    fn find_by_name<T: StoreObject>(&self, name: &str) -> Result<Vec<T>, StoreError>
    where
        Self: Sized,
    {
        if T::KIND.has_unique_names() {
            let Some(id) = self.id_by_name(T::KIND, name)? else {
                return Ok(Vec::new());
            };
            return Ok(self.get::<T>(&id)?.into_iter().collect());
        }
        self.find::<T>(|object| object.matches_name(name))
    }

    /// Resolves what a user typed (full ID, name or hostname, ID prefix) to one object, or
    /// fails with `LookupError::NotFound` / `LookupError::Ambiguous`.
    fn lookup<T: StoreObject>(&self, query: &str) -> Result<T, StoreError>
    where
        Self: Sized,
    {
        lookup::lookup(self, query)
    }
}

/// A read-only, consistent snapshot of the applied state (a redb read transaction: later
/// applies do not show through it).
#[derive(Debug)]
pub struct ReadTx {
    txn: ReadTransaction,
    applied_index: u64,
}

impl ReadTx {
    pub(crate) fn begin(db: &redb::Database) -> Result<Self, StoreError> {
        let txn = db.begin_read()?;
        let last_applied =
            read_meta::<Option<LogId>>(&txn.open_table(SM_META)?, meta_key::LAST_APPLIED)?
                .flatten();
        Ok(Self {
            txn,
            applied_index: last_applied.map_or(0, |log_id| log_id.index),
        })
    }
}

impl ReadView for ReadTx {
    fn applied_index(&self) -> u64 {
        self.applied_index
    }

    fn get<T: StoreObject>(&self, id: &str) -> Result<Option<T>, StoreError> {
        let table = self.txn.open_table(object_table(T::KIND))?;
        Ok(tables::get_typed(&table, id)?)
    }

    fn list<T: StoreObject>(&self) -> Result<Vec<T>, StoreError> {
        let table = self.txn.open_table(object_table(T::KIND))?;
        Ok(tables::list_typed(&table)?)
    }

    fn services_holding_port(
        &self,
        protocol: Protocol,
        port: u16,
    ) -> Result<Vec<String>, StoreError> {
        let index = self.txn.open_table(SERVICES_BY_PORT)?;
        Ok(tables::services_holding_port(&index, protocol, port)?)
    }

    fn with_id_prefix<T: StoreObject>(&self, prefix: &str) -> Result<Vec<T>, StoreError> {
        let table = self.txn.open_table(object_table(T::KIND))?;
        Ok(tables::list_typed_with_id_prefix(&table, prefix)?)
    }

    fn tasks_of_service(&self, service_id: &str) -> Result<Vec<Task>, StoreError> {
        let index = self.txn.open_table(TASKS_BY_SERVICE)?;
        let tasks = self.txn.open_table(object_table(ObjectKind::Task))?;
        let mut out = Vec::new();
        for id in tables::task_ids_of_service(&index, service_id)? {
            // The index and the table are written in one transaction; a miss is a bug.
            if let Some(task) = tables::get_typed::<Task>(&tasks, &id)? {
                out.push(task);
            }
        }
        Ok(out)
    }

    fn id_by_name(&self, kind: ObjectKind, name: &str) -> Result<Option<String>, StoreError> {
        let table = self.txn.open_table(NAMES)?;
        Ok(
            redb::ReadableTable::get(&table, (kind.as_str(), name))?
                .map(|id| id.value().to_owned()),
        )
    }
}

/// A change recorded in a [`WriteTx`], not yet proposed.
#[derive(Debug)]
enum Pending {
    Create(Object),
    /// The object carries the version it was read at.
    Update(Object),
    Delete,
}

/// Collects changes for one atomic proposal. Reads see the snapshot the transaction started
/// from with the transaction's own changes on top. Checks here (existence, version, unique
/// names) fail early against that snapshot; the state machine checks again when the batch is
/// applied, against whatever was committed in between.
///
/// Several changes to one object within a transaction fold into one (create then update is a
/// create; create then delete is nothing), so that each object appears at most once per batch.
#[derive(Debug)]
pub struct WriteTx {
    base: ReadTx,
    pending: BTreeMap<(ObjectKind, String), Pending>,
    /// Keys in the order first touched, so the batch replays in the caller's order.
    order: Vec<(ObjectKind, String)>,
}

impl WriteTx {
    /// What a read of the committed store found (`committed`), with this transaction's
    /// pending writes of `T` laid over it: among the IDs `in_scope` keeps, a pending delete
    /// removes its object, and a pending create or update replaces (or adds) it when the new
    /// version still `matches` the read, and removes it when it no longer does.
    fn overlay<T: StoreObject>(
        &self,
        committed: Vec<T>,
        in_scope: impl Fn(&str) -> bool,
        matches: impl Fn(&T) -> bool,
    ) -> Vec<T> {
        let mut by_id: BTreeMap<String, T> = committed
            .into_iter()
            .map(|o| (o.id().to_owned(), o))
            .collect();
        for ((kind, id), pending) in &self.pending {
            if *kind != T::KIND || !in_scope(id) {
                continue;
            }
            by_id.remove(id);
            if let Pending::Create(object) | Pending::Update(object) = pending
                && let Some(object) = T::from_object(object.clone())
                && matches(&object)
            {
                by_id.insert(id.clone(), object);
            }
        }
        by_id.into_values().collect()
    }

    pub(crate) fn new(base: ReadTx) -> Self {
        Self {
            base,
            pending: BTreeMap::new(),
            order: Vec::new(),
        }
    }

    /// Adds a new object. An empty ID is replaced by a fresh one; returns the ID.
    pub fn create<T: StoreObject>(&mut self, mut object: T) -> Result<String, StoreError> {
        if object.id().is_empty() {
            object.set_id(new_id());
        }
        let id = object.id().to_owned();
        let current = self.visible(T::KIND, &id)?;
        if current.is_some() {
            return Err(Rejection::AlreadyExists { kind: T::KIND, id }.into());
        }
        self.check_name_free(T::KIND, &id, object.unique_name())?;
        *object.meta_mut() = Meta::default();
        let key = (T::KIND, id.clone());
        let change = match self.pending.get(&key) {
            // Deleted earlier in this transaction and now made again: to the store that is an
            // update of the committed object, at the version it had.
            Some(Pending::Delete) => {
                let committed = self.base_object(T::KIND, &id)?;
                object.meta_mut().version = committed.map_or(0, |o| o.meta().version);
                Pending::Update(object.into_object())
            }
            _ => Pending::Create(object.into_object()),
        };
        self.record(key, change);
        Ok(id)
    }

    /// Replaces an object. `object.meta.version` must be the version it was read at; if the
    /// object changed since, the update fails with `Rejection::VersionConflict`.
    pub fn update<T: StoreObject>(&mut self, object: T) -> Result<(), StoreError> {
        let id = object.id().to_owned();
        let Some(current) = self.visible(T::KIND, &id)? else {
            return Err(Rejection::NotFound { kind: T::KIND, id }.into());
        };
        let (expected, stored) = (object.meta().version, current.meta().version);
        if expected != stored {
            return Err(Rejection::VersionConflict {
                kind: T::KIND,
                id,
                expected,
                current: stored,
            }
            .into());
        }
        if object.unique_name() != current.unique_name() {
            self.check_name_free(T::KIND, &id, object.unique_name())?;
        }
        let key = (T::KIND, id);
        let change = match self.pending.get(&key) {
            Some(Pending::Create(_)) => Pending::Create(object.into_object()),
            _ => Pending::Update(object.into_object()),
        };
        self.record(key, change);
        Ok(())
    }

    /// Reads the object `id`, lets `change` modify it, and records the update.
    pub fn modify<T: StoreObject>(
        &mut self,
        id: &str,
        change: impl FnOnce(&mut T),
    ) -> Result<T, StoreError> {
        let Some(mut object) = self.get::<T>(id)? else {
            return Err(Rejection::NotFound {
                kind: T::KIND,
                id: id.to_owned(),
            }
            .into());
        };
        change(&mut object);
        self.update(object.clone())?;
        Ok(object)
    }

    pub fn delete<T: StoreObject>(&mut self, id: &str) -> Result<(), StoreError> {
        self.delete_kind(T::KIND, id)
    }

    pub fn delete_kind(&mut self, kind: ObjectKind, id: &str) -> Result<(), StoreError> {
        if self.visible(kind, id)?.is_none() {
            return Err(Rejection::NotFound {
                kind,
                id: id.to_owned(),
            }
            .into());
        }
        let key = (kind, id.to_owned());
        match self.pending.get(&key) {
            Some(Pending::Create(_)) => {
                self.pending.remove(&key);
            }
            _ => self.record(key, Pending::Delete),
        }
        Ok(())
    }

    /// Whether the transaction has changes to propose.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub(crate) fn into_changes(mut self) -> Vec<Change> {
        let mut changes = Vec::with_capacity(self.pending.len());
        for key in self.order {
            let Some(pending) = self.pending.remove(&key) else {
                continue;
            };
            let (kind, id) = key;
            changes.push(match pending {
                Pending::Create(object) => Change::Create(object),
                Pending::Update(object) => Change::Update(object),
                Pending::Delete => Change::Delete { kind, id },
            });
        }
        changes
    }

    fn record(&mut self, key: (ObjectKind, String), change: Pending) {
        if !self.pending.contains_key(&key) && !self.order.contains(&key) {
            self.order.push(key.clone());
        }
        self.pending.insert(key, change);
    }

    fn base_object(&self, kind: ObjectKind, id: &str) -> Result<Option<Object>, StoreError> {
        let table = self.base.txn.open_table(object_table(kind))?;
        Ok(tables::get_object(&table, kind, id)?)
    }

    /// The object as this transaction sees it.
    fn visible(&self, kind: ObjectKind, id: &str) -> Result<Option<Object>, StoreError> {
        match self.pending.get(&(kind, id.to_owned())) {
            Some(Pending::Create(object) | Pending::Update(object)) => Ok(Some(object.clone())),
            Some(Pending::Delete) => Ok(None),
            None => self.base_object(kind, id),
        }
    }

    fn check_name_free(
        &self,
        kind: ObjectKind,
        id: &str,
        name: Option<&str>,
    ) -> Result<(), StoreError> {
        let Some(name) = name else { return Ok(()) };
        match self.id_by_name(kind, name)? {
            Some(existing_id) if existing_id != id => Err(Rejection::NameConflict {
                kind,
                name: name.to_owned(),
                existing_id,
            }
            .into()),
            _ => Ok(()),
        }
    }
}

impl ReadView for WriteTx {
    fn applied_index(&self) -> u64 {
        self.base.applied_index
    }

    fn get<T: StoreObject>(&self, id: &str) -> Result<Option<T>, StoreError> {
        match self.pending.get(&(T::KIND, id.to_owned())) {
            Some(Pending::Create(object) | Pending::Update(object)) => {
                Ok(T::from_object(object.clone()))
            }
            Some(Pending::Delete) => Ok(None),
            None => self.base.get(id),
        }
    }

    fn list<T: StoreObject>(&self) -> Result<Vec<T>, StoreError> {
        Ok(self.overlay(self.base.list::<T>()?, |_| true, |_| true))
    }

    fn services_holding_port(
        &self,
        protocol: Protocol,
        port: u16,
    ) -> Result<Vec<String>, StoreError> {
        let mut ids: BTreeSet<String> = self
            .base
            .services_holding_port(protocol, port)?
            .into_iter()
            .collect();
        for ((kind, id), pending) in &self.pending {
            if *kind != ObjectKind::Service {
                continue;
            }
            ids.remove(id);
            if let Pending::Create(Object::Service(service))
            | Pending::Update(Object::Service(service)) = pending
                && service
                    .held_ports()
                    .any(|p| p.protocol == protocol && p.published_port == port)
            {
                ids.insert(id.clone());
            }
        }
        Ok(ids.into_iter().collect())
    }

    fn with_id_prefix<T: StoreObject>(&self, prefix: &str) -> Result<Vec<T>, StoreError> {
        let committed = self.base.with_id_prefix::<T>(prefix)?;
        Ok(self.overlay(committed, |id| id.starts_with(prefix), |_| true))
    }

    fn tasks_of_service(&self, service_id: &str) -> Result<Vec<Task>, StoreError> {
        let committed = self.base.tasks_of_service(service_id)?;
        Ok(self.overlay(
            committed,
            |_| true,
            |task: &Task| task.service_id == service_id,
        ))
    }

    fn id_by_name(&self, kind: ObjectKind, name: &str) -> Result<Option<String>, StoreError> {
        // Pending objects carrying the name win; a committed holder counts only if this
        // transaction did not delete or rename it.
        for ((pending_kind, id), pending) in &self.pending {
            if let Pending::Create(object) | Pending::Update(object) = pending
                && *pending_kind == kind
                && object.unique_name() == Some(name)
            {
                return Ok(Some(id.clone()));
            }
        }
        let Some(id) = self.base.id_by_name(kind, name)? else {
            return Ok(None);
        };
        match self.pending.get(&(kind, id.clone())) {
            None => Ok(Some(id)),
            Some(_) => Ok(None),
        }
    }
}

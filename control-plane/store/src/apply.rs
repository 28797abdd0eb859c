//! Applying one committed [`Request`] to the object tables, inside the caller's write
//! transaction.
//!
//! This is the authoritative check of every change (existence, version, unique names): the
//! checks `WriteTx` makes before proposing only fail early, while two managers' views may differ
//! until the log orders their proposals. Everything here is deterministic — it reads only the
//! request and the tables — so every manager reaches the same outcome for the same entry.

use redb::{ReadableTable, WriteTransaction};

use super::command::{Change, Rejection, Request};
use super::objects::{Object, ObjectKind, Timestamp};
use super::tables::{self, DbError, NAMES, object_table};
use super::watch::Event;

/// What became of one request.
pub(crate) enum Outcome {
    /// Every change was written; the events describe them, in order.
    Applied(Vec<Event>),
    /// The batch was refused; the caller must abort the transaction so nothing is written.
    Rejected(Rejection),
}

/// Applies `request`, the payload of the log entry at `index`, to the tables of `txn`.
pub(crate) fn apply_request(
    txn: &WriteTransaction,
    index: u64,
    request: &Request,
) -> Result<Outcome, DbError> {
    let mut events = Vec::with_capacity(request.changes.len());
    for change in &request.changes {
        match apply_change(txn, index, request.proposed_at, change)? {
            Ok(event) => events.push(event),
            Err(rejection) => return Ok(Outcome::Rejected(rejection)),
        }
    }
    Ok(Outcome::Applied(events))
}

fn apply_change(
    txn: &WriteTransaction,
    index: u64,
    at: Timestamp,
    change: &Change,
) -> Result<Result<Event, Rejection>, DbError> {
    let kind = change.kind();
    let id = change.id();
    let mut table = txn.open_table(object_table(kind))?;
    let mut names = txn.open_table(NAMES)?;
    let current = tables::get_object(&table, kind, id)?;

    match change {
        Change::Create(object) => {
            if id.is_empty() {
                return Ok(Err(Rejection::MissingId { kind }));
            }
            if current.is_some() {
                return Ok(Err(Rejection::AlreadyExists {
                    kind,
                    id: id.to_owned(),
                }));
            }
            if let Some(name) = object.unique_name() {
                if let Some(existing_id) = name_owner(&names, kind, name)? {
                    return Ok(Err(name_conflict(kind, name, existing_id)));
                }
                names.insert((kind.as_str(), name), id)?;
            }
            let mut object = object.clone();
            stamp(&mut object, index, at, None);
            table.insert(id, tables::encode_object(&object)?.as_slice())?;
            tables::index_task(txn, None, Some(&object))?;
            tables::index_service_ports(txn, None, Some(&object))?;
            Ok(Ok(Event::Created { index, object }))
        }
        Change::Update(object) => {
            let Some(old) = current else {
                return Ok(Err(Rejection::NotFound {
                    kind,
                    id: id.to_owned(),
                }));
            };
            let (expected, stored) = (object.meta().version, old.meta().version);
            if expected != stored {
                return Ok(Err(Rejection::VersionConflict {
                    kind,
                    id: id.to_owned(),
                    expected,
                    current: stored,
                }));
            }
            if object.unique_name() != old.unique_name() {
                if let Some(name) = object.unique_name() {
                    if let Some(existing_id) = name_owner(&names, kind, name)?
                        && existing_id != id
                    {
                        return Ok(Err(name_conflict(kind, name, existing_id)));
                    }
                    names.insert((kind.as_str(), name), id)?;
                }
                if let Some(old_name) = old.unique_name() {
                    names.remove((kind.as_str(), old_name))?;
                }
            }
            let mut object = object.clone();
            stamp(&mut object, index, at, Some(&old));
            table.insert(id, tables::encode_object(&object)?.as_slice())?;
            tables::index_task(txn, Some(&old), Some(&object))?;
            tables::index_service_ports(txn, Some(&old), Some(&object))?;
            Ok(Ok(Event::Updated { index, old, object }))
        }
        Change::Delete { .. } => {
            let Some(old) = current else {
                return Ok(Err(Rejection::NotFound {
                    kind,
                    id: id.to_owned(),
                }));
            };
            if let Some(name) = old.unique_name()
                && name_owner(&names, kind, name)?.as_deref() == Some(id)
            {
                names.remove((kind.as_str(), name))?;
            }
            table.remove(id)?;
            tables::index_task(txn, Some(&old), None)?;
            tables::index_service_ports(txn, Some(&old), None)?;
            Ok(Ok(Event::Deleted { index, object: old }))
        }
    }
}

fn name_owner(
    names: &impl ReadableTable<(&'static str, &'static str), &'static str>,
    kind: ObjectKind,
    name: &str,
) -> Result<Option<String>, DbError> {
    Ok(names
        .get((kind.as_str(), name))?
        .map(|id| id.value().to_owned()))
}

fn name_conflict(kind: ObjectKind, name: &str, existing_id: String) -> Rejection {
    Rejection::NameConflict {
        kind,
        name: name.to_owned(),
        existing_id,
    }
}

/// Sets the store-owned fields of an object being written by the entry at `index`.
fn stamp(object: &mut Object, index: u64, at: Timestamp, previous: Option<&Object>) {
    let meta = object.meta_mut();
    meta.version = index;
    meta.updated_at = at;
    meta.created_at = previous.map_or(at, |p| p.meta().created_at);

    if let Object::Service(service) = object {
        // spec_version moves only when the spec does; callers cannot set it.
        service.spec_version = match previous {
            Some(Object::Service(prev)) if prev.spec == service.spec => prev.spec_version,
            _ => index,
        };
    }
}

//! Store updates that retry when another change to the same objects committed first (the
//! store's optimistic concurrency): a node's session and an operator's `node update` touch
//! the same node object, and both must win eventually.

use crate::api::ApiError;
use crate::store::{Store, StoreError, WriteTx};

/// Attempts per update; conflicts between a handful of writers settle within a few.
const ATTEMPTS: usize = 8;

/// Errors that can say "the objects changed meanwhile".
pub trait Conflict {
    fn is_conflict(&self) -> bool;
}

impl Conflict for StoreError {
    fn is_conflict(&self) -> bool {
        self.is_version_conflict()
    }
}

impl Conflict for ApiError {
    fn is_conflict(&self) -> bool {
        matches!(self, ApiError::Store(e) if e.is_version_conflict())
    }
}

/// `store.update(change)`, re-run from a fresh snapshot on a version conflict.
pub async fn update<T, E>(
    store: &Store,
    change: impl FnMut(&mut WriteTx) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<StoreError> + Conflict,
{
    update_versioned(store, change)
        .await
        .map(|(value, _)| value)
}

/// `store.update_versioned(change)`, re-run from a fresh snapshot on a version conflict.
pub async fn update_versioned<T, E>(
    store: &Store,
    mut change: impl FnMut(&mut WriteTx) -> Result<T, E>,
) -> Result<(T, u64), E>
where
    E: From<StoreError> + Conflict,
{
    let mut attempt = 1;
    loop {
        match store.update_versioned(&mut change).await {
            Err(err) if err.is_conflict() && attempt < ATTEMPTS => attempt += 1,
            other => return other,
        }
    }
}

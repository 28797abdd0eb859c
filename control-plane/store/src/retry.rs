//! Store updates that retry when another change to the same objects committed first (the
//! store's optimistic concurrency): a node's session and an operator's `node update` touch
//! the same node object, and both must win eventually.

use super::{Store, StoreError, WriteTx};

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

impl Store {
    /// [`update`](Self::update), re-run from a fresh snapshot on a version conflict.
    pub async fn update_retrying<T, E>(
        &self,
        change: impl FnMut(&mut WriteTx) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError> + Conflict,
    {
        self.update_versioned_retrying(change)
            .await
            .map(|(value, _)| value)
    }

    /// [`update_versioned`](Self::update_versioned), re-run from a fresh snapshot on a
    /// version conflict.
    pub async fn update_versioned_retrying<T, E>(
        &self,
        mut change: impl FnMut(&mut WriteTx) -> Result<T, E>,
    ) -> Result<(T, u64), E>
    where
        E: From<StoreError> + Conflict,
    {
        let mut attempt = 1;
        loop {
            match self.update_versioned(&mut change).await {
                Err(err) if err.is_conflict() && attempt < ATTEMPTS => attempt += 1,
                other => return other,
            }
        }
    }
}

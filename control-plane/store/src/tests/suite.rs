//! openraft's own storage test suite, run against the redb log store and state machine.

use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

use crate::log_store::LogStore;
use crate::open_storage;
use crate::state_machine::StateMachineStore;
use crate::types::{StorageError, TypeConfig};

/// Each suite case gets a fresh directory; the `TempDir` guard removes it after the case.
struct TempDirStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempDirStores {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| {
            StorageError::from(openraft::StorageIOError::write(openraft::AnyError::new(&e)))
        })?;
        let (log_store, state_machine) = open_storage(dir.path()).await.map_err(|e| {
            StorageError::from(openraft::StorageIOError::write(openraft::AnyError::new(&e)))
        })?;
        Ok((dir, log_store, state_machine))
    }
}

/// Not `#[tokio::test]`: the suite makes its own runtime per case.
#[test]
fn openraft_storage_suite_passes_on_redb() {
    Suite::test_all(TempDirStores).unwrap();
}

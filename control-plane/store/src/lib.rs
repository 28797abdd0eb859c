//! The cluster store: the managers' replicated, durable state (nodes, services, tasks,
//! networks, cluster settings) with SwarmKit's `view` / `update` / `watch` contract.
//!
//! It is an [openraft] state machine. The Raft log ([`log_store`]) and the state machine
//! ([`state_machine`]) live in two embedded [redb] databases in the store's directory; both pass
//! openraft's own storage test suite. See `docs/store.md` for the design and the durability
//! argument.
//!
//! ```text
//! manager loop ── Store::update(|tx| …) ── Raft::client_write ── log (raft-log.redb)
//!                                                       │ committed
//!              ◀─ Watch ◀── broadcast ◀── apply ◀───────┘ (state.redb)
//!              ── Store::view(|tx| …) ── redb read transaction on state.redb
//! ```

mod apply;
mod codec;
mod error;
mod handle;
mod ids;
mod lookup;
pub mod migrate;
mod retry;
mod snapshot;
mod tables;
mod tx;
mod watch;

pub mod command;
pub mod local_network;
pub mod log_store;
pub mod objects;
pub mod state_machine;
pub mod types;

/// Stores for tests: `single_manager` (hive's tests use it through the `test-support` feature).
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
#[cfg(test)]
mod tests;

pub use codec::{CodecError, forget_previous_data_key, rotate_data_key, set_data_key};
pub use error::StoreError;
pub use handle::{Store, StoreConfig, open_storage};
pub use ids::{ID_LEN, is_valid_id, new_id};
pub use lookup::LookupError;
pub use retry::Conflict;
pub use snapshot::{SNAPSHOT_FORMAT, SnapshotBuilder};
pub use tables::{DbError, objects_decoded};
pub use tx::{ReadTx, ReadView, WriteTx};
pub use watch::{Action, Event, Filter, WATCH_BUFFER, Watch, WatchError};

//! [`Dataplane`]: the node's data plane as the agent drives it — the one boundary between the
//! agent's logic (which services, which backends, which tasks drain: [`super::mesh`] and
//! [`super::mesh_state`]) and the kernel. Two implementations:
//!
//! - the kernel's, [`hive_dataplane::Dataplane`] (the loaded programs and their pinned maps;
//!   needs root);
//! - [`memory::MemoryDataplane`]: the same reconciler over in-memory maps that log every
//!   operation, so the agent's logic is unit-tested without root and a test can count the
//!   map operations one change costs.

use std::path::Path;

use hive_dataplane::attach::task::TaskIfaces;
use hive_dataplane::mesh::{ApplyStats, MeshDelta};
use hive_dataplane::{DataplaneError, MeshState};

pub mod memory;

/// The node's data plane (see the module docs).
pub trait Dataplane: TaskIfaces + Send + Sync + std::fmt::Debug {
    /// Makes the data plane hold `state`, whole (a first apply, a restart, a recovery, a new
    /// stream: only what differs from what it holds is written).
    fn apply(&mut self, state: &MeshState) -> Result<ApplyStats, DataplaneError>;
    /// Makes the data plane hold the state it holds with `delta` on top: only what `delta`
    /// names is validated, compiled and written. Needs a whole state applied before.
    fn apply_delta(&mut self, delta: &MeshDelta) -> Result<ApplyStats, DataplaneError>;
    /// Tells the programs the local port of the resolver of the task in network namespace
    /// `netns_cookie`.
    fn set_resolver_port(&self, netns_cookie: u64, port: u16) -> Result<(), DataplaneError>;
    fn forget_resolver_port(&self, netns_cookie: u64) -> Result<(), DataplaneError>;
    /// Redirects 127.0.0.11:53 of every task below `cgroup` to its resolver's own port.
    fn redirect_resolvers(&self, cgroup: &Path) -> Result<(), DataplaneError>;
    /// Detaches the programs and removes the pins (the node leaves the swarm).
    fn destroy(self: Box<Self>) -> Result<(), DataplaneError>;
}

impl Dataplane for hive_dataplane::Dataplane {
    fn apply(&mut self, state: &MeshState) -> Result<ApplyStats, DataplaneError> {
        hive_dataplane::Dataplane::apply(self, state)
    }

    fn apply_delta(&mut self, delta: &MeshDelta) -> Result<ApplyStats, DataplaneError> {
        hive_dataplane::Dataplane::apply_delta(self, delta)
    }

    fn set_resolver_port(&self, netns_cookie: u64, port: u16) -> Result<(), DataplaneError> {
        hive_dataplane::Dataplane::set_resolver_port(self, netns_cookie, port)
    }

    fn forget_resolver_port(&self, netns_cookie: u64) -> Result<(), DataplaneError> {
        hive_dataplane::Dataplane::forget_resolver_port(self, netns_cookie)
    }

    fn redirect_resolvers(&self, cgroup: &Path) -> Result<(), DataplaneError> {
        hive_dataplane::Dataplane::redirect_resolvers(self, cgroup)
    }

    fn destroy(self: Box<Self>) -> Result<(), DataplaneError> {
        hive_dataplane::Dataplane::destroy(*self)
    }
}

//! The control API: the `Control` gRPC service every manager serves to the CLI, the Engine API
//! and stacks (SwarmKit's `manager/controlapi`). Each file answers one kind of object; a spec
//! is validated here, once, where it enters the cluster (`service_spec`, `spec_limits`,
//! `reserved_ports`), and written through the leader's store.

pub mod cluster;
pub mod control;
pub mod events;
pub mod logs;
pub mod networks;
pub mod nodes;
pub mod reserved_ports;
pub mod secrets;
pub mod service_spec;
pub mod services;
pub mod spec_limits;
pub mod tasks;
pub mod underlay_check;

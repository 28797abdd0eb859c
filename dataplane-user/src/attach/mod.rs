//! Plumbing that attaches workloads to the mesh: today, a task's veth on an
//! overlay network ([`task`]).

pub mod task;

pub use task::{AttachError, TaskLink, TaskNetwork};

//! Service discovery: the embedded resolver every task on a network asks (docs/services.md,
//! "Service discovery"). [`names`] is what it knows, cut from the mesh view; [`answer`] turns
//! one query into bytes or a forward; [`server`] serves each task's sockets.

pub mod answer;
pub mod names;
pub mod server;

pub use names::{Lookup, Names};
pub use server::{DnsError, NodeDns, Redirected};

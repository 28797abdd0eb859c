//! hive's data plane in user space: everything that touches the kernel.
//!
//! The control plane never reaches past this crate's public API. It owns the
//! eBPF programs and their pinned maps, netlink and network-namespace
//! plumbing, and the lab topology that runs many nodes on one machine.

pub mod lab;
pub mod loader;
pub mod maglev;
pub mod maps;
pub mod mesh;
pub mod netns;
pub mod programs;
pub mod resolver;
pub mod testing;

pub use loader::{Dataplane, DataplaneError, XdpAttachMode};
pub use mesh::MeshState;
pub mod attach;
pub mod ebpf_log;
pub mod ethtool;
pub mod metrics;
pub mod node_pins;
pub mod static_mesh;
pub mod stats;
pub mod trace;
pub mod veth_peer;

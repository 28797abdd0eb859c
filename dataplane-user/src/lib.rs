//! hive's data plane in user space: everything that touches the kernel.
//!
//! The control plane never reaches past this crate's public API. It owns the
//! eBPF programs and their pinned maps (and the rule of where they are
//! pinned, [`node_pins`]), netlink and network-namespace plumbing. Built on
//! it, in sibling crates: `hive-trace` (the trace reader, sessions, pcapng),
//! `hive-lab` (the lab topology and the static mesh), `hive-prog-run` (the
//! `BPF_PROG_RUN` harness) and `hive-test-support` (dev-dependency only).

pub mod loader;
pub mod maglev;
pub mod maps;
pub mod mesh;
pub mod netns;
pub mod programs;
pub mod resolver;

pub use loader::{Dataplane, DataplaneError, XdpAttachMode};
pub use mesh::MeshState;
pub mod attach;
pub mod ebpf_log;
pub mod node_pins;
pub mod stats;
pub mod trace_maps;

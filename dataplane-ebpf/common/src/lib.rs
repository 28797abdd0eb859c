//! Types shared between hive's eBPF programs and user space.
//!
//! This crate is the single source of truth for everything that crosses the
//! kernel/user boundary: map names, map keys and values, drop reasons, the
//! flow hash. Every struct is `#[repr(C)]` and padding-free (explicit `_pad`
//! fields), carries a `const` size assertion, and implements `aya::Pod`
//! behind the `user` feature. Fields in network byte order are named `*_be`.
#![no_std]

pub mod drop;
pub mod handoff;
pub mod hash;
pub mod maps;
pub mod trace;

pub use drop::DropReason;
pub use hash::flow_hash;

//! hive's control plane and command-line interface.

pub mod cli;
pub mod demo;
pub mod images;
pub mod pki;
pub mod store;
pub mod executor;

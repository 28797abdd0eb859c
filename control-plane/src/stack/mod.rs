//! Stacks: Compose files deployed, updated and removed as one application
//! (`hive stack`, docs/stacks.md).

pub mod compose;
pub mod convert;
pub mod files;

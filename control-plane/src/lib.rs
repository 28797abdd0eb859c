//! hive's control plane and command-line interface.
//!
//! The store, the PKI, the executor (with the node's volumes), the image store and encryption
//! at rest are crates of their own under `control-plane/` (docs/development.md, "The control
//! plane's crates"). They are re-exported under their module names, so `crate::store::...`
//! here and `hive::store::...` in the tests and benchmarks name the same items as before.

pub mod agent;
pub mod api;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod demo;
pub mod engine_api;
pub mod gossip;
pub mod images;
pub mod lab_swarm;
pub mod manager;
pub mod metrics;
pub mod replay;
pub mod stack;
pub mod transport;
pub mod underlay_probe;

pub use hive_encryption as encryption;
pub use hive_executor as executor;
pub use hive_executor::volume_store;
pub use hive_image_store as image_store;
pub use hive_pki as pki;
pub use hive_store as store;

//! hive's control plane and command-line interface.

pub mod agent;
pub mod api;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod demo;
pub mod encryption;
pub mod engine_api;
pub mod executor;
pub mod gossip;
pub mod image_store;
pub mod images;
pub mod lab_swarm;
pub mod manager;
pub mod metrics;
pub mod pki;
pub mod stack;
pub mod store;
pub mod transport;
pub mod underlay_probe;
pub mod volume_store;

//! hive's control plane and command-line interface.

pub mod agent;
pub mod allocator;
pub mod api;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod demo;
pub mod dispatcher;
pub mod encryption;
pub mod engine_api;
pub mod executor;
pub mod gossip;
pub mod image_store;
pub mod images;
pub mod lab_swarm;
pub mod leader_loop;
pub mod manager;
pub mod metrics;
pub mod orchestrator;
pub mod pki;
pub mod raft_net;
pub mod scheduler;
pub mod stack;
pub mod store;
pub mod transport;
pub mod underlay_probe;

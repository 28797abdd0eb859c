//! hive's control plane and command-line interface.

pub mod cli;
pub mod demo;
pub mod images;
pub mod pki;
pub mod store;
pub mod api;
pub mod executor;
pub mod agent;
pub mod daemon;
pub mod dispatcher;
pub mod manager;
pub mod raft_net;
pub mod transport;
pub mod client;
pub mod lab_swarm;
pub mod gossip;
pub mod metrics;

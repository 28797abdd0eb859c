//! hive's control plane and command-line interface.

pub mod agent;
pub mod api;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod demo;
pub mod dispatcher;
pub mod executor;
pub mod gossip;
pub mod images;
pub mod lab_swarm;
pub mod manager;
pub mod metrics;
pub mod pki;
pub mod raft_net;
pub mod store;
pub mod transport;

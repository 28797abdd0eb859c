//! hive's end-to-end tests as one test binary, so an edit to `hive` relinks one binary
//! instead of one per file (docs/development.md, "Tests"). Each module is one of the files
//! beside this one, which were test binaries of their own; run one file's tests with
//! `cargo test -p hive --test integration swarm::`.
//!
//! Cargo ran those binaries one after another; in one binary a test that makes a lab,
//! namespaces, daemons, BPF pins, containers or a registry enters its file's group first
//! (`support::file_group`, `support::serial` for the swarm tests), so the files still take
//! turns and only one file's privileged tests run at a time.
//!
//! `tests/runc.rs` stays a binary of its own: its executor makes the test process a child
//! subreaper, which would change where every later test's orphans go. `tests/dataplane.rs`
//! and `tests/prog_run*.rs` belong to the data plane's crates and do not link `hive`.

mod support;

mod agent;
mod autolock;
mod ca_rotation;
mod conntrack;
mod containers;
mod dataplane_status;
mod dsr;
mod dsr_probe;
mod engine_api;
mod engine_api_events;
mod engine_api_inspect;
mod engine_api_more;
mod executor;
mod gossip;
mod guards;
mod health;
mod images;
mod lab;
mod lifecycle;
mod liveness;
mod mesh;
mod prevote;
mod reads;
mod registry_auth;
mod secrets;
mod services;
mod stack_config;
mod stacks;
mod swarm;
mod trace;
mod tutorial_cli;
mod tutorial_mesh;

//! `hive demo`: see [`crate::demo`].

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::demo::{self, DemoConfig};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Leave the lab up afterwards, to explore it with `hive lab exec`.
    #[arg(long)]
    keep: bool,
    /// Name of the lab the demo builds.
    #[arg(long, default_value = "demo")]
    name: String,
    /// Replicas of the hive/whoami service.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    replicas: u32,
    /// Requests sent to each node's published port.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    requests: u32,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let hive_binary =
        std::env::current_exe().context("finding the hive binary the replicas run")?;
    demo::run(&DemoConfig {
        lab: args.name,
        replicas: args.replicas,
        published_port: 8080,
        requests_per_node: args.requests,
        keep: args.keep,
        hive_binary,
    })?;
    Ok(ExitCode::SUCCESS)
}

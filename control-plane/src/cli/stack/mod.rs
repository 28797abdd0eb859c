//! `hive stack`: Compose files deployed as one application (docker's `stack` commands).

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::stack::compose;

#[derive(Debug, Args)]
pub struct StackArgs {
    #[command(subcommand)]
    pub command: StackCommand,
}

#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Outputs the final config file, after doing merges and interpolations.
    Config(ConfigArgs),
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Path to a Compose file, or "-" to read from stdin.
    #[arg(
        short = 'c',
        long = "compose-file",
        value_delimiter = ',',
        required = true
    )]
    pub compose_files: Vec<String>,
    /// Skip interpolation and output only merged config.
    #[arg(long)]
    pub skip_interpolation: bool,
}

/// Reads, interpolates, checks and merges the `-c` files.
pub fn load(files: &[String], skip_interpolation: bool) -> anyhow::Result<compose::Loaded> {
    let (sources, working_dir) = compose::read_sources(files)?;
    let environment = compose::environment(&working_dir)?;
    let ctx = compose::Context {
        working_dir,
        environment,
        skip_interpolation,
    };
    let loaded = compose::load(&sources, &ctx)?;
    for warning in &loaded.warnings {
        eprintln!("WARNING: {warning}");
    }
    Ok(loaded)
}

pub fn run(_host: Option<&str>, args: StackArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        StackCommand::Config(args) => {
            let loaded = load(&args.compose_files, args.skip_interpolation)?;
            let text = compose::to_yaml(&loaded.config).map_err(anyhow::Error::msg)?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

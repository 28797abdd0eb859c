//! Developer automation for hive. `cargo xtask <command>`:
//!
//! - `setup`: install what building and testing need, idempotently.
//! - `test`:  setup, then format check, clippy, and every test.
//! - `demo`:  setup, build, and run `hive demo`.
//! - `lint`:  format check and clippy (host crates and the eBPF crate).
//!
//! Everything here is what the README's two commands and `.ci/run` run.

mod cmd;
mod setup;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "hive developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install the nightly's rust-src, bpf-linker and the Debian packages
    /// hive's tests and benchmarks use. A second run takes seconds.
    Setup,
    /// Set up, then check formatting, run clippy and run every test.
    Test {
        /// Extra arguments passed to `cargo test` (after `--` for the test binaries).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build and run `hive demo` (extra arguments go to `hive demo`).
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Format check and clippy on every crate, the eBPF programs included.
    Lint,
}

/// What a cold `cargo xtask test` writes under `target/` (lint and tests):
/// 3.8 GiB measured on a fresh clone under CI, rounded up.
const TEST_BUILD_BYTES: u64 = 4 << 30;

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.task {
        Task::Setup => setup::run(),
        Task::Test { args } => {
            setup::run()?;
            cmd::warn_if_disk_short(TEST_BUILD_BYTES);
            lint()?;
            test(&args)
        }
        Task::Demo { args } => {
            setup::run()?;
            demo(&args)
        }
        Task::Lint => lint(),
    }
}

fn lint() -> Result<()> {
    cmd::cargo(&["fmt", "--all", "--check"])
        .run("cargo fmt --check (run `cargo fmt --all` to fix)")?;
    cmd::cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])
        .run("cargo clippy (host crates)")?;
    cmd::cargo(&[
        "+nightly",
        "clippy",
        "--package",
        "hive-ebpf",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--release",
        "--",
        "-D",
        "warnings",
    ])
    .target_dir("target/ebpf-clippy")
    .run("cargo clippy (eBPF programs)")
}

fn test(args: &[String]) -> Result<()> {
    cmd::require_root_for_tests();
    let mut argv = vec!["test", "--workspace", "--exclude", "hive-ebpf"];
    argv.extend(args.iter().map(String::as_str));
    let mut step = cmd::cargo(&argv);
    if std::env::var_os("CI").is_some() {
        // A fresh clone is built once: incremental state would only double
        // what the build writes to a disk CI shares with others.
        step = step.env("CARGO_INCREMENTAL", "0");
    }
    step.run("cargo test")
}

fn demo(args: &[String]) -> Result<()> {
    cmd::cargo(&["build", "--release", "--package", "hive"]).run("building hive")?;
    let hive = cmd::workspace_root()?.join("target/release/hive");
    let mut argv = vec!["demo"];
    argv.extend(args.iter().map(String::as_str));
    cmd::as_root(&hive, &argv).run("hive demo")
}

//! `hive`: the one user-facing binary.
use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = hive::cli::Cli::parse();
    hive::cli::init_tracing(cli.log_level.as_deref());
    match hive::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("Error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

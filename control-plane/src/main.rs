//! `hive`: the one user-facing binary.

fn main() -> std::process::ExitCode {
    hive::cli::main_with(std::env::args())
}

//! `hive init-task`: the first program of every task the embedded executor
//! runs, PID 1 of the task's namespaces. Hidden: only the executor starts
//! it (`control-plane/executor/src/init.rs` has the logic).

use std::process::ExitCode;

pub use crate::executor::init::InitTaskArgs;

/// Set the task up from the inside and run its program. Returns only when
/// that failed, or (`--init`) when the program has exited.
pub fn run(args: &InitTaskArgs) -> anyhow::Result<ExitCode> {
    Ok(crate::executor::init::run(args))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn the_executor_s_arguments_parse_back_to_the_same_request() {
        let args = InitTaskArgs {
            hostname: "0123456789ab".to_owned(),
            workdir: PathBuf::from("/srv"),
            init: true,
            unmount: vec![
                PathBuf::from("/run/hive/n1/netns"),
                PathBuf::from("/run/netns"),
            ],
            resolv_conf: Some(PathBuf::from("/var/lib/hive/tasks/t1/resolv.conf")),
            sync_fd: Some(3),
            ready_fd: true,
            command: vec!["/bin/sh".into(), "-c".into(), "echo --hostname $$".into()],
        };
        let argv = std::iter::once("hive".into()).chain(args.to_args());
        let cli = Cli::try_parse_from(argv).expect("parses");
        match cli.command {
            Command::InitTask(parsed) => assert_eq!(parsed, args),
            other => panic!("parsed as {other:?}"),
        }
    }
}

//! Misuse of a command as docker reports it (docker/cli `cli/cobra.go`, `FlagErrorFunc`): an
//! unknown flag is named, the command's usage line follows, and the exit status is 125, before
//! anything is sent to a daemon.
//!
//! ```text
//! unknown flag: --nonexistent-flag
//!
//! Usage:  hive service create [OPTIONS] IMAGE [COMMAND] [ARG...]
//!
//! Run 'hive service create --help' for more information
//! ```
//!
//! Other parse errors keep clap's own report.

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// docker's exit status for a command it refused to run (`cli.StatusError{StatusCode: 125}`).
pub const MISUSE_STATUS: u8 = 125;

/// docker's report of `err` for the command line `args` (program name first), if `err` is an
/// unknown flag; `None` for anything else.
pub fn unknown_flag_report(
    root: &clap::Command,
    err: &clap::Error,
    args: &[String],
) -> Option<String> {
    if err.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(given)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let problem = flag_problem(given)?;
    let path = command_path(root, args);
    let mut command = root.clone();
    command.build();
    let mut current = &command;
    for name in &path[1..] {
        current = current.find_subcommand(name)?;
    }
    let usage = current.clone().render_usage().to_string();
    let usage = usage.strip_prefix("Usage: ").unwrap_or(&usage).trim_end();
    let path = path.join(" ");
    Some(format!(
        "{problem}\n\nUsage:  {usage}\n\nRun '{path} --help' for more information"
    ))
}

/// pflag's words for an unknown flag: `unknown flag: --name`, or for a short one
/// `unknown shorthand flag: 'z' in -z`. `None` if `given` is not a flag (an extra positional
/// argument, which clap reports the same way).
fn flag_problem(given: &str) -> Option<String> {
    if let Some(long) = given.strip_prefix("--") {
        let name = long.split_once('=').map_or(long, |(name, _)| name);
        return (!name.is_empty()).then(|| format!("unknown flag: --{name}"));
    }
    let short = given.strip_prefix('-')?;
    let letter = short.chars().next()?;
    Some(format!("unknown shorthand flag: '{letter}' in {given}"))
}

/// The names of the (sub)commands `args` selects, program name first (`hive service create`):
/// every argument naming a subcommand of the command reached so far descends into it.
fn command_path(root: &clap::Command, args: &[String]) -> Vec<String> {
    let mut path = vec![root.get_name().to_owned()];
    let mut current = root;
    for arg in args.iter().skip(1) {
        if arg == "--" {
            break;
        }
        if arg.starts_with('-') {
            continue;
        }
        match current.find_subcommand(arg) {
            Some(sub) => {
                path.push(sub.get_name().to_owned());
                current = sub;
            }
            None if current.has_subcommands() => continue,
            None => break,
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;
    use clap::Parser as _;

    use super::*;
    use crate::cli::Cli;

    fn report(line: &str) -> Option<String> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        let err = Cli::try_parse_from(&args).expect_err("a misuse");
        unknown_flag_report(&Cli::command(), &err, &args)
    }

    #[test]
    fn an_unknown_flag_before_the_image_is_named_with_the_usage() {
        assert_eq!(
            report("hive service create --name t2 --dns-search 2 hive/whoami").as_deref(),
            Some(
                "unknown flag: --dns-search\n\n\
                 Usage:  hive service create [OPTIONS] IMAGE [COMMAND] [ARG...]\n\n\
                 Run 'hive service create --help' for more information"
            )
        );
        assert_eq!(
            report("hive -H unix:///x service create --nonexistent-flag=true hive/whoami")
                .as_deref()
                .and_then(|r| r.lines().next()),
            Some("unknown flag: --nonexistent-flag")
        );
        let update = report("hive service update --nonexistent-flag web").unwrap_or_default();
        assert!(
            update.starts_with("unknown flag: --nonexistent-flag\n\nUsage:  hive service update"),
            "{update}"
        );
        assert!(
            update.ends_with("Run 'hive service update --help' for more information"),
            "{update}"
        );
        assert_eq!(
            report("hive service create -z hive/whoami")
                .as_deref()
                .and_then(|r| r.lines().next()),
            Some("unknown shorthand flag: 'z' in -z")
        );
    }

    #[test]
    fn arguments_after_the_image_belong_to_the_task() {
        let cli = Cli::try_parse_from([
            "hive",
            "service",
            "create",
            "--name",
            "a",
            "hive/echo",
            "--verbose",
            "-x",
        ])
        .expect("flags after the image are the task's");
        let crate::cli::Command::Service(service) = cli.command else {
            panic!("not a service command");
        };
        let crate::cli::service::args::ServiceCommand::Create {
            image_and_args,
            name,
            ..
        } = service.command
        else {
            panic!("not a create");
        };
        assert_eq!(name.as_deref(), Some("a"));
        assert_eq!(image_and_args, ["hive/echo", "--verbose", "-x"]);
    }

    #[test]
    fn other_misuse_keeps_claps_report() {
        assert_eq!(report("hive service create"), None, "a missing image");
        assert_eq!(report("hive service rm"), None);
    }
}

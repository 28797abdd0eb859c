//! `hive stack deploy|ls|ps|services|rm|config`: Compose files deployed as one application,
//! with docker's flags, texts and columns (docker/cli `cli/command/stack`). The Compose
//! model is `crate::stack::compose`, the conversion to specs `crate::stack::convert`, and
//! every call to the manager goes through [`api::StackApi`].

mod api;
mod deploy;

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use self::api::StackApi;
use super::format::{Cells, Format, Listing, parse_format};
use super::output::{CliFailure, out, run_client};
use super::service::args::TaskTableArgs;
use super::service::render::render_ls;
use crate::client::ServiceWithStatus;
use crate::stack::compose;
use crate::stack::convert::NAMESPACE_LABEL;

#[derive(Debug, Args)]
pub struct StackArgs {
    #[command(subcommand)]
    pub command: StackCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResolveImage {
    Always,
    Changed,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Deploy a new stack or update an existing stack.
    #[command(alias = "up")]
    Deploy(DeployArgs),
    /// List stacks.
    #[command(alias = "list")]
    Ls {
        /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or
        /// 'TEMPLATE' (a Go template over .Name .Services).
        #[arg(long)]
        format: Option<String>,
    },
    /// List the tasks in the stack.
    Ps {
        #[command(flatten)]
        table: TaskTableArgs,
        stack: String,
    },
    /// List the services in the stack.
    Services {
        /// Only display IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or
        /// 'TEMPLATE' (a Go template over .ID .Name .Mode .Replicas .Image .Ports).
        #[arg(long)]
        format: Option<String>,
        stack: String,
    },
    /// Remove one or more stacks.
    #[command(aliases = ["remove", "down"])]
    Rm {
        #[arg(required = true)]
        stacks: Vec<String>,
    },
    /// Outputs the final config file, after doing merges and interpolations.
    Config(ConfigArgs),
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Path to a Compose file, or "-" to read from stdin.
    #[arg(
        short = 'c',
        long = "compose-file",
        value_delimiter = ',',
        required = true
    )]
    pub compose_files: Vec<String>,
    /// Prune services that are no longer referenced.
    #[arg(long)]
    pub prune: bool,
    /// Query the registry to resolve image digest and supported platforms ("always",
    /// "changed", "never").
    #[arg(long, value_enum, default_value = "always")]
    pub resolve_image: ResolveImage,
    /// Send registry authentication details to Swarm agents.
    #[arg(long)]
    pub with_registry_auth: bool,
    /// Exit immediately instead of waiting for the stack services to converge.
    #[arg(short = 'd', long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub detach: Option<bool>,
    /// Suppress progress output.
    #[arg(short, long)]
    pub quiet: bool,
    pub stack: String,
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

/// Reads, interpolates, checks and merges the `-c` files; prints docker's load warnings.
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

/// The rows of one stack's services, by the namespace label.
fn stack_rows(rows: Vec<ServiceWithStatus>, stack: &str) -> Vec<ServiceWithStatus> {
    rows.into_iter()
        .filter(|r| {
            r.service
                .spec
                .annotations
                .labels
                .get(NAMESPACE_LABEL)
                .map(String::as_str)
                == Some(stack)
        })
        .collect()
}

fn nothing_found(stack: &str) -> CliFailure {
    CliFailure::Usage(format!("Nothing found in stack: {stack}"))
}

/// `stack ls`'s fields and headers.
pub const STACK_LISTING: Listing = Listing {
    headers: &[("Name", "NAME"), ("Services", "SERVICES")],
    default_table: "table {{.Name}}\t{{.Services}}",
};

/// `stack ls`: NAME SERVICES by name, or as `format` says.
pub fn render_stack_ls(
    rows: &[ServiceWithStatus],
    format: Option<&Format>,
) -> Result<String, String> {
    let mut stacks: BTreeMap<&str, usize> = BTreeMap::new();
    for row in rows {
        if let Some(stack) = row.service.spec.annotations.labels.get(NAMESPACE_LABEL) {
            *stacks.entry(stack.as_str()).or_default() += 1;
        }
    }
    let cells: Vec<Cells> = stacks
        .into_iter()
        .map(|(name, count)| {
            Cells::from([("Name", name.to_owned()), ("Services", count.to_string())])
        })
        .collect();
    STACK_LISTING.render(format, &cells)
}

pub fn run(host: Option<&str>, args: StackArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        StackCommand::Config(args) => {
            let loaded = load(&args.compose_files, args.skip_interpolation)?;
            let text = compose::to_yaml(&loaded.config).map_err(anyhow::Error::msg)?;
            out(&text);
            Ok(ExitCode::SUCCESS)
        }
        StackCommand::Deploy(args) => deploy::run(host, args),
        StackCommand::Ls { format } => run_client(async move {
            let format = parse_format(format.as_deref())?;
            let mut api = StackApi::connect(host).await?;
            let text = render_stack_ls(&api.services().await?, format.as_ref())
                .map_err(CliFailure::Usage)?;
            out(&text);
            Ok(())
        }),
        StackCommand::Services {
            quiet,
            format,
            stack,
        } => run_client(async move {
            let format = parse_format(format.as_deref())?;
            let mut api = StackApi::connect(host).await?;
            let rows = stack_rows(api.services().await?, &stack);
            if rows.is_empty() {
                return Err(nothing_found(&stack));
            }
            out(&render_ls(&rows, quiet, format.as_ref()).map_err(CliFailure::Usage)?);
            Ok(())
        }),
        StackCommand::Ps { table, stack } => run_client(async move {
            let mut api = StackApi::connect(host).await?;
            let rows = stack_rows(api.services().await?, &stack);
            if rows.is_empty() {
                return Err(nothing_found(&stack));
            }
            let ids: Vec<String> = rows.iter().map(|r| r.service.id.clone()).collect();
            api.print_tasks(&ids, &table).await
        }),
        StackCommand::Rm { stacks } => run_client(async move {
            let mut api = StackApi::connect(host).await?;
            let mut failed = false;
            for stack in &stacks {
                if !deploy::remove_stack(&mut api, stack).await? {
                    eprintln!("Nothing found in stack: {stack}");
                    failed = true;
                }
            }
            if failed {
                return Err(CliFailure::Usage(
                    "failed to remove some resources from stack".to_owned(),
                ));
            }
            Ok(())
        }),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::store::objects::Service;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: StackCommand,
    }

    fn deploy(args: &[&str]) -> DeployArgs {
        let parsed = TestCli::try_parse_from(std::iter::once("stack").chain(args.iter().copied()))
            .expect("parses");
        match parsed.command {
            StackCommand::Deploy(d) => d,
            other => panic!("not a deploy: {other:?}"),
        }
    }

    #[test]
    fn deploy_flags_as_docker_takes_them() {
        let d = deploy(&[
            "deploy", "-c", "a.yml", "-c", "b.yml", "--prune", "-d", "app",
        ]);
        assert_eq!(d.compose_files, ["a.yml", "b.yml"]);
        assert!(d.prune);
        assert_eq!(d.detach, Some(true));
        assert_eq!(d.stack, "app");
        assert_eq!(d.resolve_image, ResolveImage::Always);
        let d = deploy(&[
            "up",
            "--compose-file",
            "a.yml,b.yml",
            "--detach=false",
            "--resolve-image",
            "never",
            "app",
        ]);
        assert_eq!(d.compose_files, ["a.yml", "b.yml"]);
        assert_eq!(d.detach, Some(false));
        assert_eq!(d.resolve_image, ResolveImage::Never);
        assert_eq!(deploy(&["deploy", "-c", "a.yml", "app"]).detach, None);
        assert!(
            TestCli::try_parse_from(["stack", "deploy", "app"]).is_err(),
            "-c is required"
        );
    }

    fn row(name: &str, stack: Option<&str>) -> ServiceWithStatus {
        let mut service = Service::default();
        service.spec.annotations.name = name.to_owned();
        if let Some(stack) = stack {
            service
                .spec
                .annotations
                .labels
                .insert(NAMESPACE_LABEL.to_owned(), stack.to_owned());
        }
        ServiceWithStatus {
            service,
            running: 0,
            desired: 1,
        }
    }

    #[test]
    fn stack_ls_counts_services_by_namespace_label() {
        let rows = [
            row("web_a", Some("web")),
            row("app_x", Some("app")),
            row("app_y", Some("app")),
            row("loose", None),
        ];
        assert_eq!(
            render_stack_ls(&rows, None).unwrap(),
            "NAME      SERVICES\napp       2\nweb       1\n"
        );
        assert_eq!(stack_rows(rows.to_vec(), "app").len(), 2);
    }
}

//! The `hive` command tree. Only commands that work exist.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod builtin;
mod ca_progress;
pub mod daemon;
mod demo;
pub mod format;
mod gossip_agent;
pub mod image;
pub mod info;
mod init_task;
mod inspect;
pub mod lab;
pub mod mesh;
mod mesh_bench;
pub mod mesh_names;
pub mod network;
pub mod node;
pub mod node_ls;
pub mod output;
pub mod registry_auth;
pub mod secret;
pub mod service;
pub mod stack;
pub mod swarm;
mod unlock_prompt;
pub mod usage;
pub mod volume;

#[derive(Debug, Parser)]
#[command(
    name = "hive",
    version,
    about = "Docker Swarm mode with an eBPF routing mesh"
)]
pub struct Cli {
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `hive=debug`.
    #[arg(long, global = true, env = "HIVE_LOG")]
    pub log_level: Option<String>,
    /// Daemon socket to connect to (unix:///path); default: $HIVE_HOST, the lab node's socket
    /// inside `hive lab exec`, else /run/hive/hive.sock.
    #[arg(short = 'H', long = "host", global = true)]
    pub host: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print version information.
    Version,
    /// Run a built-in image in the foreground (used by the task executor).
    #[command(hide = true)]
    Builtin(builtin::BuiltinArgs),
    /// PID 1 of a task's namespaces (started by the task executor).
    #[command(hide = true)]
    InitTask(init_task::InitTaskArgs),
    /// One gossip member in the foreground, printing membership changes as JSON lines
    /// (lab tests and the gossip benchmark; the daemon embeds the same component).
    #[command(hide = true)]
    GossipAgent(gossip_agent::GossipAgentArgs),
    /// The main job in one command: a 3-node lab on this machine, a
    /// hive/whoami service published on 8080 through the eBPF mesh, and
    /// requests from an outside client to every node.
    Demo(demo::DemoArgs),
    /// A whole swarm on one machine: nodes in network namespaces on a virtual underlay.
    Lab(lab::LabArgs),
    /// Run the node daemon (manager and/or worker).
    Daemon(daemon::DaemonArgs),
    /// Manage the swarm.
    Swarm(swarm::SwarmArgs),
    /// Manage swarm nodes.
    Node(node::NodeArgs),
    /// Manage swarm services.
    Service(Box<service::args::ServiceArgs>),
    /// Manage networks.
    Network(network::NetworkArgs),
    /// Manage Swarm secrets.
    Secret(secret::SecretArgs),
    /// Manage Swarm configs.
    Config(secret::ConfigArgs),
    /// Manage this node's images.
    Image(image::ImageArgs),
    /// Manage Swarm stacks.
    Stack(stack::StackArgs),
    /// Manage this node's volumes.
    Volume(volume::VolumeArgs),
    /// Display system-wide information.
    Info,
    /// The routing mesh seen from the kernel: packet traces and counters.
    Mesh(mesh::MeshArgs),
}

/// Install a tracing subscriber writing to stderr.
pub fn init_tracing(filter: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter.unwrap_or("warn"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version => {
            println!("hive {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Builtin(args) => builtin::run(args),
        Command::InitTask(args) => init_task::run(&args),
        Command::GossipAgent(args) => gossip_agent::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Lab(args) => lab::run(args),
        Command::Daemon(args) => daemon::run(args),
        Command::Swarm(args) => swarm::run(cli.host.as_deref(), args),
        Command::Node(args) => node::run(cli.host.as_deref(), args),
        Command::Service(args) => service::run(cli.host.as_deref(), *args),
        Command::Network(args) => network::run(cli.host.as_deref(), args),
        Command::Secret(args) => secret::run_secret(cli.host.as_deref(), args),
        Command::Config(args) => secret::run_config(cli.host.as_deref(), args),
        Command::Image(args) => image::run(cli.host.as_deref(), args),
        Command::Stack(args) => stack::run(cli.host.as_deref(), args),
        Command::Volume(args) => volume::run(cli.host.as_deref(), args),
        Command::Info => info::run(cli.host.as_deref()),
        Command::Mesh(args) => mesh::run(args),
    }
}

/// `hive ARGS...` as the `hive` binary runs it: parse, set up logging, run, and turn an error
/// into docker's `Error: ...` line and a failing exit code.
pub fn main_with(args: impl IntoIterator<Item = String>) -> ExitCode {
    use clap::{CommandFactory as _, Parser as _};
    let args: Vec<String> = args.into_iter().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => match usage::unknown_flag_report(&Cli::command(), &err, &args) {
            Some(report) => {
                eprintln!("{report}");
                return ExitCode::from(usage::MISUSE_STATUS);
            }
            None => err.exit(),
        },
    };
    init_tracing(cli.log_level.as_deref());
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// For benchmark binaries that start copies of themselves as lab daemons or agents (so no
/// separately built `hive` has to be found): when the first argument is a hive subcommand
/// rather than a `--flag` of the benchmark harness, runs it as `hive` would.
pub fn run_as_hive_if_asked() -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_none_or(|a| a.starts_with("--")) {
        return None;
    }
    Some(main_with(
        std::iter::once("hive".to_owned()).chain(args.into_iter().skip(1)),
    ))
}

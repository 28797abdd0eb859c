//! `hive lab up|ls|exec|down`: a whole swarm on one machine, each node in
//! its own network namespace on a virtual underlay (docs/lab.md).

use std::{
    io::Write as _,
    os::unix::process::ExitStatusExt as _,
    process::{ExitCode, ExitStatus},
};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use hive_lab::{self as lab, DEFAULT_LAB, Lab, LabListing, LabSpec, naming};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Create a lab: a network namespace per node, a client, an underlay bridge.
    Up {
        /// Number of nodes (n1..nN), at most 99.
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// Lab name ([a-z0-9-], at most 11 characters).
        #[arg(long, default_value = DEFAULT_LAB)]
        name: String,
        /// Managers of the lab's swarm (1, 3 or 5; n1..nM); the other nodes join as workers.
        /// 0: only the network, no `hive daemon`.
        #[arg(long, default_value_t = 1)]
        managers: u32,
        /// Passed on to every node's `hive daemon` (also when a test restarts one): a registry
        /// the nodes pull from over plain HTTP (HOST:PORT; repeat for several).
        #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
        insecure_registry: Vec<String>,
    },
    /// List labs and their nodes.
    Ls {
        /// Only this lab.
        #[arg(long)]
        name: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Run a command inside a node's (or the client's) namespaces.
    Exec {
        /// Lab name.
        #[arg(long, default_value = DEFAULT_LAB)]
        name: String,
        /// n1..nN or client.
        node: String,
        /// The command and its arguments (after `--`).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_name = "CMD"
        )]
        command: Vec<String>,
    },
    /// Remove a lab and everything it made (processes, namespaces, links, pins, state).
    Down {
        /// Lab name.
        #[arg(long, default_value = DEFAULT_LAB)]
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

pub fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LabCommand::Up {
            nodes,
            name,
            managers,
            insecure_registry,
        } => up(&name, nodes, managers, &insecure_registry),
        LabCommand::Ls { name, format } => ls(name.as_deref(), format),
        LabCommand::Exec {
            name,
            node,
            command,
        } => exec(&name, &node, &command),
        LabCommand::Down { name } => down(&name),
    }
}

fn up(
    name: &str,
    nodes: u32,
    managers: u32,
    insecure_registries: &[String],
) -> anyhow::Result<ExitCode> {
    naming::validate_lab_name(name)?;
    naming::validate_node_count(nodes)?;
    naming::validate_manager_count(managers, nodes)?;
    for registry in insecure_registries {
        crate::daemon::config::check_insecure_registry(registry)?;
    }
    lab::host::require_root()?;
    eprintln!(
        "Creating lab {name:?}: {nodes} node(s) and a client on {}",
        naming::underlay_cidr()
    );
    let lab = Lab::up(&LabSpec::new(name, nodes))?;
    crate::lab_swarm::save_daemon_options(
        &lab,
        &crate::lab_swarm::LabDaemonOptions {
            insecure_registries: insecure_registries.to_vec(),
        },
    )?;
    print_table(&rows_of_state(lab.state(), "ready"))?;
    if managers > 0 {
        form_swarm(&lab, managers)?;
    }
    eprintln!();
    eprintln!("Run a command in a node: hive lab exec --name {name} n1 -- ip addr");
    eprintln!("Remove the lab:          hive lab down --name {name}");
    Ok(ExitCode::SUCCESS)
}

/// Starts `hive daemon` in every node and forms the swarm (docs/control-plane.md).
fn form_swarm(lab: &Lab, managers: u32) -> anyhow::Result<()> {
    let name = lab.name();
    eprintln!(
        "\nStarting hive daemon in every node; swarm of {managers} manager(s) and {} worker(s)",
        lab.nodes().count().saturating_sub(managers as usize)
    );
    let hive = std::env::current_exe().context("finding the hive binary to start daemons with")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime that forms the swarm")?;
    runtime
        .block_on(crate::lab_swarm::form(lab, managers, &hive))
        .with_context(|| format!("forming the swarm of lab {name:?}; remove the lab with `hive lab down --name {name}`"))?;
    let nodes = runtime.block_on(async {
        let socket = crate::lab_swarm::socket_path(lab, "n1")?;
        let mut client =
            crate::client::DaemonClient::connect(Some(&format!("unix://{}", socket.display())))
                .await
                .map_err(|source| crate::lab_swarm::LabSwarmError::Daemon {
                    node: "n1".to_owned(),
                    source,
                })?;
        let list = client.control.list_nodes().await.map_err(|source| {
            crate::lab_swarm::LabSwarmError::Daemon {
                node: "n1".to_owned(),
                source,
            }
        })?;
        Ok::<_, crate::lab_swarm::LabSwarmError>(list)
    })?;
    println!();
    print!("{}", super::node::render_ls(&nodes, false));
    eprintln!("\nUse the swarm from a node:  hive lab exec --name {name} n1 -- hive node ls");
    Ok(())
}

fn down(name: &str) -> anyhow::Result<ExitCode> {
    let report = Lab::down_by_name(name)?;
    if !report.found_anything() {
        println!("no lab named {name:?}; nothing to remove");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Removed lab {name:?}: stopped {} process(es), removed {} network namespace(s), {} other mount(s){}{}",
        report.killed.len(),
        report.namespaces.len(),
        report.mounts.len(),
        if report.pin_dir.is_some() {
            ", its BPF pins"
        } else {
            ""
        },
        if report.state_dir.is_some() {
            " and its state"
        } else {
            ""
        },
    );
    Ok(ExitCode::SUCCESS)
}

/// One row of `hive lab ls`; the JSON keys follow docker's `--format json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Row {
    lab: String,
    node: String,
    role: String,
    namespace: String,
    underlay_addr: String,
    mac: String,
    status: String,
    api_socket: Option<String>,
    data_dir: Option<String>,
    bpf_pin_dir: Option<String>,
}

fn rows_of_state(state: &lab::LabState, status: &str) -> Vec<Row> {
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    state
        .members
        .iter()
        .map(|m| Row {
            lab: state.name.clone(),
            node: m.name.clone(),
            role: format!("{:?}", m.role).to_lowercase(),
            namespace: m.netns.clone(),
            underlay_addr: m.underlay_addr.to_string(),
            mac: m.mac.clone(),
            status: status.to_owned(),
            api_socket: path(&m.api_socket),
            data_dir: path(&m.data_dir),
            bpf_pin_dir: path(&m.bpf_pin_dir),
        })
        .collect()
}

fn rows_of_listing(listing: &LabListing) -> Vec<Row> {
    let status = if listing.problem.is_some() {
        "incomplete"
    } else {
        "ready"
    };
    match &listing.state {
        Some(state) => rows_of_state(state, status),
        // No readable state: show what the namespaces tell.
        None => listing
            .netns
            .iter()
            .map(|ns| Row {
                lab: listing.name.clone(),
                node: ns
                    .rsplit_once('-')
                    .map_or_else(|| ns.clone(), |(_, member)| member.to_owned()),
                role: "-".to_owned(),
                namespace: ns.clone(),
                underlay_addr: "-".to_owned(),
                mac: "-".to_owned(),
                status: status.to_owned(),
                api_socket: None,
                data_dir: None,
                bpf_pin_dir: None,
            })
            .collect(),
    }
}

fn ls(name: Option<&str>, format: Format) -> anyhow::Result<ExitCode> {
    let listings = match name {
        Some(name) => {
            naming::validate_lab_name(name)?;
            let listing = lab::listing(name);
            if listing.state.is_none() && listing.netns.is_empty() {
                anyhow::bail!("no lab named {name:?}; create it with `hive lab up --name {name}`");
            }
            vec![listing]
        }
        None => lab::list()?,
    };
    for listing in &listings {
        if let Some(problem) = &listing.problem {
            eprintln!("warning: lab {:?}: {problem}", listing.name);
        }
    }
    let rows: Vec<Row> = listings.iter().flat_map(rows_of_listing).collect();
    match format {
        Format::Table => print_table(&rows)?,
        Format::Json => {
            let mut out = std::io::stdout().lock();
            for row in &rows {
                serde_json::to_writer(&mut out, row)?;
                writeln!(out)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A docker-style table: left-aligned columns, three spaces apart.
fn print_table(rows: &[Row]) -> anyhow::Result<()> {
    let header = ["LAB", "NODE", "NAMESPACE", "UNDERLAY ADDR", "MAC"];
    let cells: Vec<[&str; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.lab.as_str(),
                r.node.as_str(),
                r.namespace.as_str(),
                r.underlay_addr.as_str(),
                r.mac.as_str(),
            ]
        })
        .collect();
    let mut out = std::io::stdout().lock();
    let table = super::output::aligned(
        &std::iter::once(header).chain(cells).collect::<Vec<_>>(),
        0,
        3,
    );
    out.write_all(table.as_bytes())?;
    Ok(())
}

/// Run the command inside the member's namespaces and exit with its code.
/// hive stays the parent: it swallows Ctrl-C (the terminal delivers it to
/// the command too) and forwards SIGTERM and SIGHUP, then reports the
/// command's exit status (128+N if signal N killed it, like a shell).
fn exec(name: &str, node: &str, command: &[String]) -> anyhow::Result<ExitCode> {
    let (program, args) = command
        .split_first()
        .context("no command given; usage: hive lab exec NODE -- CMD [ARGS...]")?;
    lab::host::require_root()?;
    let lab = Lab::open(name)?;
    let mut cmd = lab.command(node, program)?;
    cmd.args(args);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime that waits for the command")?;
    let status = match runtime.block_on(spawn_and_wait(cmd)) {
        Ok(status) => status,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("hive lab exec: {program}: command not found");
            return Ok(ExitCode::from(127));
        }
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("hive lab exec: {program}: permission denied");
            return Ok(ExitCode::from(126));
        }
        Err(err) => {
            return Err(err)
                .with_context(|| format!("running {program:?} in lab {name:?} node {node}"));
        }
    };
    Ok(ExitCode::from(exit_code(status)))
}

async fn spawn_and_wait(cmd: std::process::Command) -> std::io::Result<ExitStatus> {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered before the spawn so no signal slips through; handlers (not
    // "ignore") are reset to default by exec, so the command gets them all.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut child = tokio::process::Command::from(cmd).spawn()?;
    let forward = |child: &tokio::process::Child, sig: nix::sys::signal::Signal| {
        if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    };
    loop {
        tokio::select! {
            status = child.wait() => return status,
            _ = interrupt.recv() => {}
            _ = quit.recv() => {}
            _ = terminate.recv() => forward(&child, nix::sys::signal::Signal::SIGTERM),
            _ = hangup.recv() => forward(&child, nix::sys::signal::Signal::SIGHUP),
        }
    }
}

fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(u8::MAX),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(u8::MAX),
        (None, None) => u8::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> LabCommand {
        let cli = crate::cli::Cli::try_parse_from(args).expect("parses");
        match cli.command {
            crate::cli::Command::Lab(lab) => lab.command,
            other => panic!("not a lab command: {other:?}"),
        }
    }

    #[test]
    fn exec_takes_everything_after_the_node() {
        match parse(&[
            "hive", "lab", "exec", "--name", "x", "n2", "--", "ping", "-c1", "a",
        ]) {
            LabCommand::Exec {
                name,
                node,
                command,
            } => {
                assert_eq!((name.as_str(), node.as_str()), ("x", "n2"));
                assert_eq!(command, ["ping", "-c1", "a"]);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["hive", "lab", "exec", "n1", "ip", "-br", "addr"]) {
            LabCommand::Exec { name, command, .. } => {
                assert_eq!(name, "default");
                assert_eq!(command, ["ip", "-br", "addr"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_follow_the_docs() {
        match parse(&["hive", "lab", "up"]) {
            LabCommand::Up {
                nodes,
                name,
                managers,
                insecure_registry,
            } => {
                assert_eq!((nodes, name.as_str(), managers), (3, "default", 1));
                assert!(insecure_registry.is_empty());
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "hive",
            "lab",
            "up",
            "--insecure-registry",
            "10.0.9.1:5000",
            "--insecure-registry=10.0.9.2:5000",
        ]) {
            LabCommand::Up {
                insecure_registry, ..
            } => assert_eq!(insecure_registry, ["10.0.9.1:5000", "10.0.9.2:5000"]),
            other => panic!("{other:?}"),
        }
        match parse(&["hive", "lab", "ls", "--format", "json"]) {
            LabCommand::Ls { name, format } => assert_eq!((name, format), (None, Format::Json)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exit_codes_are_shell_like() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143); // killed by SIGTERM
    }
}

//! `hive node ls|inspect|promote|demote|update|rm`, with docker's columns and texts
//! (docker/cli `cli/command/node/*`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::format::{Format, parse_format};
use super::node_ls::{self, NodeColumns, NodeFilter};
use super::output::{CliFailure, bytes_size, go_time, out, pretty, run_client, table};
use super::swarm::{Availability, RoleArg};
use crate::api::pb;
use crate::client::DaemonClient;
use crate::engine_api::convert;

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub command: NodeCommand,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes in the swarm.
    #[command(alias = "list")]
    Ls {
        /// Only display IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Filter output based on conditions provided (id, name, role, membership,
        /// node.label, label); repeat for more.
        #[arg(short, long)]
        filter: Vec<String>,
        /// Format output using docker's placeholders ({{.ID}}, {{.Hostname}}, ...), with a
        /// `table ` prefix for a header, or `json`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on one or more nodes.
    Inspect {
        /// Print the information in a human friendly format.
        #[arg(long)]
        pretty: bool,
        /// Format output using a custom template (over the Engine API's node object).
        #[arg(short, long)]
        format: Option<String>,
        /// Node IDs, hostnames or `self`.
        #[arg(default_value = "self")]
        nodes: Vec<String>,
    },
    /// Promote one or more nodes to manager in the swarm.
    Promote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Demote one or more nodes from manager in the swarm.
    Demote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// List tasks running on one or more nodes, defaults to current node.
    Ps {
        #[command(flatten)]
        table: super::service::args::TaskTableArgs,
        /// Node IDs, hostnames or `self`.
        #[arg(default_value = "self")]
        nodes: Vec<String>,
    },
    /// Update a node.
    Update {
        /// Availability of the node ("active", "pause", "drain").
        #[arg(long, value_enum)]
        availability: Option<Availability>,
        /// Add or update a node label (key=value).
        #[arg(long)]
        label_add: Vec<String>,
        /// Remove a node label if exists.
        #[arg(long)]
        label_rm: Vec<String>,
        /// Role of the node ("worker", "manager").
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        node: String,
    },
    /// Remove one or more nodes from the swarm.
    #[command(alias = "remove")]
    Rm {
        /// Force remove a node from the swarm.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        nodes: Vec<String>,
    },
}

pub fn run(host: Option<&str>, args: NodeArgs) -> anyhow::Result<ExitCode> {
    run_client(async move {
        let mut client = DaemonClient::connect(host).await?;
        match args.command {
            NodeCommand::Ls {
                quiet,
                filter,
                format,
            } => {
                let filter = NodeFilter::parse(&filter).map_err(CliFailure::Usage)?;
                let format = parse_format(format.as_deref())?;
                let mut list = client.control.list_nodes().await?;
                list.nodes.retain(|n| filter.keep(n));
                match format {
                    Some(format) if !quiet => print!(
                        "{}",
                        render_ls_as(&list, &format).map_err(CliFailure::Usage)?
                    ),
                    _ => print!("{}", render_ls(&list, quiet)),
                }
            }
            NodeCommand::Inspect {
                pretty,
                format,
                nodes,
            } => {
                let format = super::format::inspect_format(pretty, format.as_deref())?;
                let mut found = Vec::new();
                for node in &nodes {
                    found.push(client.control.inspect_node(node).await?);
                }
                if pretty {
                    let texts: Vec<String> = found.iter().map(render_pretty).collect();
                    print!("{}", texts.join("\n\n"));
                } else {
                    // The Engine API's object, from the same conversion (docker's shape).
                    let objects: Vec<_> = found.iter().map(convert::node_out).collect();
                    out(&super::format::inspect_output(&objects, format.as_ref())
                        .map_err(CliFailure::Usage)?);
                }
            }
            NodeCommand::Ps { table, nodes } => {
                let queries: Vec<(String, String)> =
                    nodes.into_iter().map(|n| (String::new(), n)).collect();
                super::service::print_tasks(&mut client, &queries, &table).await?;
            }
            NodeCommand::Promote { nodes } => {
                change_roles(&mut client, &nodes, pb::Role::Manager).await?;
            }
            NodeCommand::Demote { nodes } => {
                change_roles(&mut client, &nodes, pb::Role::Worker).await?;
            }
            NodeCommand::Update {
                availability,
                label_add,
                label_rm,
                role,
                node,
            } => {
                let mut labels = HashMap::new();
                for pair in label_add {
                    let (key, value) = pair.split_once('=').unwrap_or((pair.as_str(), ""));
                    labels.insert(key.to_owned(), value.to_owned());
                }
                client
                    .control
                    .update_node(pb::UpdateNodeRequest {
                        node: node.clone(),
                        availability: availability.map(|a| pb::Availability::from(a).into()),
                        label_add: labels,
                        label_rm,
                        role: role.map(|r| pb::Role::from(r).into()),
                    })
                    .await?;
                println!("{node}");
            }
            NodeCommand::Rm { force, nodes } => {
                let mut errors = Vec::new();
                for node in nodes {
                    match client.control.remove_node(&node, force).await {
                        Ok(_) => println!("{node}"),
                        Err(err) => errors.push(err.to_string()),
                    }
                }
                if !errors.is_empty() {
                    return Err(CliFailure::Usage(errors.join("\n")));
                }
            }
        }
        Ok::<(), CliFailure>(())
    })
}

async fn change_roles(
    client: &mut DaemonClient,
    nodes: &[String],
    role: pb::Role,
) -> Result<(), CliFailure> {
    for node in nodes {
        let current = client.control.inspect_node(node).await?;
        let desired = current
            .spec
            .as_ref()
            .map_or(pb::Role::Worker, |s| s.desired_role());
        match (role, desired == role) {
            (pb::Role::Manager, true) => println!("Node {node} is already a manager."),
            (pb::Role::Worker, true) => println!("Node {node} is already a worker."),
            _ => {
                client
                    .control
                    .update_node(pb::UpdateNodeRequest {
                        node: node.clone(),
                        role: Some(role.into()),
                        ..Default::default()
                    })
                    .await?;
                match role {
                    pb::Role::Manager => {
                        println!("Node {node} promoted to a manager in the swarm.")
                    }
                    pb::Role::Worker => println!("Manager {node} demoted in the swarm."),
                }
            }
        }
    }
    Ok(())
}

fn state_name(state: pb::NodeState) -> &'static str {
    match state {
        pb::NodeState::Unknown => "unknown",
        pb::NodeState::Down => "down",
        pb::NodeState::Ready => "ready",
        pb::NodeState::Disconnected => "disconnected",
    }
}

fn availability_name(a: pb::Availability) -> &'static str {
    match a {
        pb::Availability::Active => "active",
        pb::Availability::Pause => "pause",
        pb::Availability::Drain => "drain",
    }
}

fn reachability_name(r: pb::Reachability) -> &'static str {
    match r {
        pb::Reachability::Unknown => "unknown",
        pb::Reachability::Unreachable => "unreachable",
        pb::Reachability::Reachable => "reachable",
    }
}

fn hostname(node: &pb::Node) -> &str {
    node.description
        .as_ref()
        .map_or("", |d| d.hostname.as_str())
}

/// Natural order ("n2" before "n10"), as docker sorts `node ls` by hostname.
fn natural_key(text: &str) -> Vec<(String, u64)> {
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let word: String = std::iter::from_fn(|| chars.next_if(|c| !c.is_ascii_digit())).collect();
        let digits: String = std::iter::from_fn(|| chars.next_if(char::is_ascii_digit)).collect();
        parts.push((word, digits.parse().unwrap_or(0)));
    }
    parts
}

fn manager_status(node: &pb::Node) -> String {
    match &node.manager_status {
        Some(m) if m.leader => "Leader".to_owned(),
        Some(m) => pretty(reachability_name(m.reachability())),
        None => String::new(),
    }
}

/// `node ls`: docker's default table.
/// `node ls --format`.
pub fn render_ls_as(list: &pb::ListNodesResponse, format: &Format) -> Result<String, String> {
    let mut nodes: Vec<&pb::Node> = list.nodes.iter().collect();
    nodes.sort_by_key(|n| natural_key(hostname(n)));
    let rows: Vec<(&pb::Node, NodeColumns)> = nodes.into_iter().map(|n| (n, columns(n))).collect();
    node_ls::render(format, &rows, &list.self_node_id)
}

/// What the default table shows of `node`, besides its ID.
fn columns(node: &pb::Node) -> NodeColumns {
    let status = node
        .status
        .as_ref()
        .map_or(pb::NodeState::Unknown, |s| s.state());
    let availability = node
        .spec
        .as_ref()
        .map_or(pb::Availability::Active, |s| s.availability());
    NodeColumns {
        hostname: hostname(node).to_owned(),
        status: pretty(state_name(status)),
        availability: pretty(availability_name(availability)),
        manager_status: manager_status(node),
        engine_version: node
            .description
            .as_ref()
            .map_or(String::new(), |d| d.engine_version.clone()),
    }
}

pub fn render_ls(list: &pb::ListNodesResponse, quiet: bool) -> String {
    let mut nodes: Vec<&pb::Node> = list.nodes.iter().collect();
    nodes.sort_by_key(|n| natural_key(hostname(n)));
    if quiet {
        return nodes.iter().map(|n| format!("{}\n", n.id)).collect();
    }
    let mut rows = vec![
        [
            "ID",
            "HOSTNAME",
            "STATUS",
            "AVAILABILITY",
            "MANAGER STATUS",
            "ENGINE VERSION",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for node in nodes {
        let marker = if node.id == list.self_node_id {
            "*"
        } else {
            " "
        };
        let c = columns(node);
        rows.push(vec![
            format!("{} {marker}", node.id),
            c.hostname,
            c.status,
            c.availability,
            c.manager_status,
            c.engine_version,
        ]);
    }
    table(&rows)
}

/// `node inspect --pretty` (docker/cli `node-inspect-pretty` golden files).
pub fn render_pretty(node: &pb::Node) -> String {
    let spec = node.spec.clone().unwrap_or_default();
    let description = node.description.clone().unwrap_or_default();
    let status = node.status.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "ID:\t\t\t{}", node.id);
    if !spec.name.is_empty() {
        let _ = writeln!(out, "Name:\t\t\t{}", spec.name);
    }
    if !spec.labels.is_empty() {
        let _ = writeln!(out, "Labels:");
        let labels: std::collections::BTreeMap<_, _> = spec.labels.iter().collect();
        for (key, value) in labels {
            let _ = writeln!(out, " - {key}={value}");
        }
    }
    let _ = writeln!(out, "Hostname:              \t{}", description.hostname);
    let _ = writeln!(
        out,
        "Joined at:             \t{}",
        go_time(node.created_at.as_ref())
    );
    let _ = writeln!(out, "Status:");
    let _ = writeln!(out, " State:\t\t\t{}", pretty(state_name(status.state())));
    if !status.message.is_empty() {
        let _ = writeln!(out, " Message:              \t{}", status.message);
    }
    let _ = writeln!(
        out,
        " Availability:         \t{}",
        pretty(availability_name(spec.availability()))
    );
    let _ = writeln!(out, " Address:\t\t{}", status.addr);
    if let Some(m) = &node.manager_status {
        let _ = writeln!(out, "Manager Status:");
        let _ = writeln!(out, " Address:\t\t{}", m.addr);
        let _ = writeln!(
            out,
            " Raft Status:\t\t{}",
            pretty(reachability_name(m.reachability()))
        );
        let _ = writeln!(out, " Leader:\t\t{}", if m.leader { "Yes" } else { "No" });
    }
    let _ = writeln!(out, "Platform:");
    let _ = writeln!(out, " Operating System:\t{}", description.os);
    let _ = writeln!(out, " Architecture:\t\t{}", description.architecture);
    let _ = writeln!(out, "Resources:");
    let _ = writeln!(out, " CPUs:\t\t\t{}", description.nano_cpus / 1_000_000_000);
    let _ = writeln!(out, " Memory:\t\t{}", bytes_size(description.memory_bytes));
    let _ = writeln!(out, "Engine Version:\t\t{}", description.engine_version);
    if !description.dataplane_error.is_empty() {
        let _ = writeln!(out, "Data Plane Error:\t{}", description.dataplane_error);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, host: &str, leader: Option<bool>) -> pb::Node {
        pb::Node {
            id: id.into(),
            spec: Some(pb::NodeSpec::default()),
            description: Some(pb::NodeDescription {
                hostname: host.into(),
                engine_version: "0.1.0".into(),
                ..Default::default()
            }),
            status: Some(pb::NodeStatus {
                state: pb::NodeState::Ready.into(),
                ..Default::default()
            }),
            manager_status: leader.map(|leader| pb::ManagerStatus {
                leader,
                reachability: pb::Reachability::Reachable.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ls_marks_self_and_shows_manager_status_in_natural_order() {
        let list = pb::ListNodesResponse {
            nodes: vec![
                node("bbbbbbbbbbbbbbbbbbbbbbbbb", "n10", None),
                node("aaaaaaaaaaaaaaaaaaaaaaaaa", "n1", Some(true)),
                node("ccccccccccccccccccccccccc", "n2", Some(false)),
            ],
            self_node_id: "aaaaaaaaaaaaaaaaaaaaaaaaa".into(),
        };
        assert_eq!(
            render_ls(&list, false),
            "ID                            HOSTNAME   STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION\n\
             aaaaaaaaaaaaaaaaaaaaaaaaa *   n1         Ready     Active         Leader           0.1.0\n\
             ccccccccccccccccccccccccc     n2         Ready     Active         Reachable        0.1.0\n\
             bbbbbbbbbbbbbbbbbbbbbbbbb     n10        Ready     Active                          0.1.0\n"
        );
    }

    #[test]
    fn inspect_shows_a_data_plane_that_failed_to_load() {
        let mut failed = node("aaaaaaaaaaaaaaaaaaaaaaaaa", "n1", None);
        let cause = "the underlay interface eth0 has no MAC address";
        if let Some(d) = failed.description.as_mut() {
            d.dataplane_error = cause.into();
        }
        assert!(
            render_pretty(&failed).ends_with(&format!("Data Plane Error:\t{cause}\n")),
            "{}",
            render_pretty(&failed)
        );
        let json = serde_json::to_value(convert::node_out(&failed)).expect("node JSON");
        assert_eq!(json["Description"]["DataplaneError"], cause);

        // A node whose data plane loaded prints as docker's does: no such line or key.
        let healthy = node("aaaaaaaaaaaaaaaaaaaaaaaaa", "n1", None);
        assert!(!render_pretty(&healthy).contains("Data Plane"));
        let json = serde_json::to_value(convert::node_out(&healthy)).expect("node JSON");
        assert!(json["Description"].get("DataplaneError").is_none());
    }
}

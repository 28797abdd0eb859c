//! `hive swarm init|join|join-token|leave|update`, with docker's flags and texts.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use super::output::{CliFailure, parse_duration, run_client};
use crate::api::{convert, pb};
use crate::client::DaemonClient;

#[derive(Debug, Args)]
pub struct SwarmArgs {
    #[command(subcommand)]
    pub command: SwarmCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Availability {
    Active,
    Pause,
    Drain,
}

impl From<Availability> for pb::Availability {
    fn from(a: Availability) -> Self {
        match a {
            Availability::Active => pb::Availability::Active,
            Availability::Pause => pb::Availability::Pause,
            Availability::Drain => pb::Availability::Drain,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Worker,
    Manager,
}

impl From<RoleArg> for pb::Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Worker => pb::Role::Worker,
            RoleArg::Manager => pb::Role::Manager,
        }
    }
}

/// Cluster settings shared by `init` and `update`.
#[derive(Debug, Args, Default)]
pub struct SettingsArgs {
    /// Task history retention limit.
    #[arg(long)]
    pub task_history_limit: Option<i64>,
    /// Dispatcher heartbeat period (e.g. 5s).
    #[arg(long, value_parser = parse_duration)]
    pub dispatcher_heartbeat: Option<Duration>,
    /// Validity period for node certificates (e.g. 2160h0m0s).
    #[arg(long, value_parser = parse_duration)]
    pub cert_expiry: Option<Duration>,
    /// Number of log entries between Raft snapshots.
    #[arg(long)]
    pub snapshot_interval: Option<u64>,
    /// How replies of published ports reach clients: "snat" (through the ingress node),
    /// "dsr" (straight from the backend's node), "hybrid" (dsr for TCP, snat for UDP).
    #[arg(long, value_parser = ["snat", "dsr", "hybrid"])]
    pub mesh_mode: Option<String>,
    /// Change manager autolocking setting (true|false).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub autolock: Option<bool>,
}

impl SettingsArgs {
    fn to_pb(&self) -> pb::ClusterSettings {
        pb::ClusterSettings {
            task_history_limit: self.task_history_limit,
            dispatcher_heartbeat_ms: self.dispatcher_heartbeat.map(convert::duration_ms),
            cert_expiry_secs: self.cert_expiry.map(|d| d.as_secs()),
            snapshot_interval: self.snapshot_interval,
            mesh_mode: self.mesh_mode.clone(),
            autolock: self.autolock,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SwarmCommand {
    /// Initialize a swarm.
    Init {
        /// Advertised address (format: "<ip|interface>[:port]").
        #[arg(long)]
        advertise_addr: Option<String>,
        /// Listen address (format: "<ip|interface>[:port]").
        #[arg(long)]
        listen_addr: Option<String>,
        /// Port number to use for data path traffic (1024 - 49151).
        #[arg(long, default_value_t = 0)]
        data_path_port: u32,
        /// Default address pool in CIDR format.
        #[arg(long)]
        default_addr_pool: Vec<String>,
        /// Default address pool subnet mask length.
        #[arg(long, default_value_t = 24)]
        default_addr_pool_mask_length: u32,
        /// Force create a new cluster from current state.
        #[arg(long)]
        force_new_cluster: bool,
        /// Availability of the node ("active", "pause", "drain").
        #[arg(long, value_enum, default_value_t = Availability::Active)]
        availability: Availability,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Join a swarm as a node and/or manager.
    Join {
        /// Token for entry into the swarm.
        #[arg(long)]
        token: String,
        /// Advertised address (format: "<ip|interface>[:port]").
        #[arg(long)]
        advertise_addr: Option<String>,
        /// Listen address (format: "<ip|interface>[:port]").
        #[arg(long)]
        listen_addr: Option<String>,
        /// Availability of the node ("active", "pause", "drain").
        #[arg(long, value_enum, default_value_t = Availability::Active)]
        availability: Availability,
        /// HOST:PORT of a manager.
        remote: String,
    },
    /// Manage join tokens.
    JoinToken {
        /// Only display token.
        #[arg(short, long)]
        quiet: bool,
        /// Rotate join token.
        #[arg(long)]
        rotate: bool,
        /// worker or manager.
        #[arg(value_enum)]
        role: RoleArg,
    },
    /// Leave the swarm.
    Leave {
        /// Force this node to leave the swarm, ignoring warnings.
        #[arg(short, long)]
        force: bool,
    },
    /// Update the swarm.
    Update {
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Unlock swarm.
    Unlock,
    /// Manage the unlock key.
    UnlockKey {
        /// Only display token.
        #[arg(short, long)]
        quiet: bool,
        /// Rotate unlock key.
        #[arg(long)]
        rotate: bool,
    },
    /// Display and rotate the root CA.
    Ca(CaArgs),
}

/// Docker's text around an unlock key (docker CLI `printUnlockCommand`).
fn print_unlock_key(key: &str) {
    println!(
        "To unlock a swarm manager after it restarts, run the `hive swarm unlock`\ncommand and provide the following key:\n\n    {key}\n\nRemember to store this key in a password manager, since without it you\nwill not be able to restart the manager."
    );
}

/// `hive swarm ca`: Docker's flags. `--external-ca` is refused: hive signs with its own CA.
#[derive(Debug, Args)]
pub struct CaArgs {
    /// Path to the PEM-formatted root CA certificate to use for the new cluster.
    #[arg(long)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Path to the PEM-formatted root CA key to use for the new cluster.
    #[arg(long)]
    pub ca_key: Option<std::path::PathBuf>,
    /// Validity period for node certificates (ns|us|ms|s|m|h).
    #[arg(long, value_parser = parse_duration)]
    pub cert_expiry: Option<Duration>,
    /// Exit immediately instead of waiting for the root rotation to converge.
    #[arg(short, long)]
    pub detach: bool,
    /// Specifications of one or more certificate signing endpoints.
    #[arg(long)]
    pub external_ca: Vec<String>,
    /// Suppress progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Rotate the swarm CA - if no certificate or key are provided, new ones will be generated.
    #[arg(long)]
    pub rotate: bool,
}

impl CaArgs {
    /// Docker's check: the rotation flags need `--rotate`; then hive's: no external CA.
    fn refusal(&self) -> Option<String> {
        let rotation_flags = [
            ("ca-cert", self.ca_cert.is_some()),
            ("ca-key", self.ca_key.is_some()),
            ("cert-expiry", self.cert_expiry.is_some()),
            ("external-ca", !self.external_ca.is_empty()),
        ];
        if !self.rotate {
            return rotation_flags
                .iter()
                .find(|(_, set)| *set)
                .map(|(flag, _)| {
                    format!("`--{flag}` flag requires the `--rotate` flag to update the CA")
                });
        }
        if !self.external_ca.is_empty() {
            return Some(
                "hive has no external CA: rotate to a root of your own with --ca-cert and --ca-key, or to a new one without them".to_owned(),
            );
        }
        match (&self.ca_cert, &self.ca_key) {
            (Some(_), None) => Some("the CA key is required if the CA certificate is provided (hive has no external CA): give --ca-key as well".to_owned()),
            (None, Some(_)) => Some("the CA certificate is required if the CA key is provided: give --ca-cert as well".to_owned()),
            _ => None,
        }
    }

    /// The rotation request: the given root, read from its files, or a new one.
    fn rotation(&self) -> Result<pb::RootRotationRequest, CliFailure> {
        let read = |path: &Option<std::path::PathBuf>| {
            path.as_ref().map_or(Ok(String::new()), |path| {
                std::fs::read_to_string(path)
                    .map_err(|e| CliFailure::Usage(format!("cannot read {}: {e}", path.display())))
            })
        };
        Ok(pb::RootRotationRequest {
            rotate: true,
            ca_cert_pem: read(&self.ca_cert)?,
            ca_key_pem: read(&self.ca_key)?,
        })
    }
}

/// How often `swarm ca --rotate` reads the rotation's progress.
const ROTATION_POLL: Duration = Duration::from_millis(500);

pub fn run(host: Option<&str>, args: SwarmArgs) -> anyhow::Result<ExitCode> {
    run_client(async move {
        let mut client = DaemonClient::connect(host).await?;
        match args.command {
            SwarmCommand::Init {
                advertise_addr,
                listen_addr,
                data_path_port,
                default_addr_pool,
                default_addr_pool_mask_length,
                force_new_cluster,
                availability,
                settings,
            } => {
                let response = client
                    .swarm
                    .init(pb::InitRequest {
                        advertise_addr: advertise_addr.unwrap_or_default(),
                        listen_addr: listen_addr.unwrap_or_default(),
                        data_path_port,
                        default_addr_pool,
                        subnet_size: default_addr_pool_mask_length,
                        force_new_cluster,
                        availability: pb::Availability::from(availability).into(),
                        settings: Some(settings.to_pb()),
                    })
                    .await?
                    .into_inner();
                println!(
                    "Swarm initialized: current node ({}) is now a manager.\n",
                    response.node_id
                );
                println!("To add a worker to this swarm, run the following command:\n");
                println!(
                    "    hive swarm join --token {} {}\n",
                    response.worker_token, response.manager_addr
                );
                println!(
                    "To add a manager to this swarm, run 'hive swarm join-token manager' and follow the instructions.\n"
                );
                if settings.autolock == Some(true) {
                    print_unlock_key(&client.control.unlock_key(false).await?);
                }
            }
            SwarmCommand::Join {
                token,
                advertise_addr,
                listen_addr,
                availability,
                remote,
            } => {
                let response = client
                    .swarm
                    .join(pb::JoinRequest {
                        token,
                        remote_addr: remote,
                        advertise_addr: advertise_addr.unwrap_or_default(),
                        listen_addr: listen_addr.unwrap_or_default(),
                        availability: pb::Availability::from(availability).into(),
                    })
                    .await?
                    .into_inner();
                let role = match response.role() {
                    pb::Role::Manager => "manager",
                    pb::Role::Worker => "worker",
                };
                println!("This node joined a swarm as a {role}.");
            }
            SwarmCommand::JoinToken {
                quiet,
                rotate,
                role,
            } => {
                let name = match role {
                    RoleArg::Worker => "worker",
                    RoleArg::Manager => "manager",
                };
                let role = crate::api::convert::node_role(pb::Role::from(role));
                let response = client.control.join_token(role, rotate).await?;
                if rotate && !quiet {
                    println!("Successfully rotated {name} join token.\n");
                }
                if quiet {
                    println!("{}", response.token);
                } else {
                    println!("To add a {name} to this swarm, run the following command:\n");
                    println!(
                        "    hive swarm join --token {} {}\n",
                        response.token, response.manager_addr
                    );
                }
            }
            SwarmCommand::Leave { force } => {
                client.swarm.leave(pb::LeaveRequest { force }).await?;
                println!("Node left the swarm.");
            }
            SwarmCommand::Update { settings } => {
                client.control.update_swarm(settings.to_pb()).await?;
                println!("Swarm updated.");
                if settings.autolock == Some(true) {
                    let key = client.control.unlock_key(false).await?;
                    if !key.is_empty() {
                        print_unlock_key(&key);
                    }
                }
            }
            SwarmCommand::Unlock => {
                let key = super::unlock_prompt::read_unlock_key()
                    .map_err(|e| CliFailure::Usage(format!("cannot read the unlock key: {e}")))?;
                client.swarm.unlock(pb::UnlockRequest { key }).await?;
            }
            SwarmCommand::UnlockKey { quiet, rotate } => {
                let key = client.control.unlock_key(rotate).await?;
                if key.is_empty() {
                    return Err(CliFailure::Usage("no unlock key is set".to_owned()));
                }
                if quiet {
                    println!("{key}");
                } else {
                    if rotate {
                        println!("Successfully rotated manager unlock key.\n");
                    }
                    print_unlock_key(&key);
                }
            }
            SwarmCommand::Ca(ca) => {
                if let Some(refusal) = ca.refusal() {
                    return Err(CliFailure::Usage(refusal));
                }
                if !ca.rotate {
                    let swarm = client.control.inspect_swarm().await?;
                    print!("{}", swarm.root_ca_cert);
                    return Ok(());
                }
                let settings = pb::ClusterSettings {
                    cert_expiry_secs: ca.cert_expiry.map(|d| d.as_secs()),
                    ..pb::ClusterSettings::default()
                };
                let mut swarm = client
                    .control
                    .rotate_root_ca(settings, ca.rotation()?)
                    .await?;
                if !ca.detach {
                    let mut progress = super::ca_progress::RotationProgress::new();
                    loop {
                        let status = swarm.root_rotation.clone().unwrap_or_default();
                        if !ca.quiet {
                            progress.show(&status);
                        }
                        if !status.in_progress {
                            break;
                        }
                        tokio::time::sleep(ROTATION_POLL).await;
                        swarm = client.control.inspect_swarm().await?;
                    }
                }
                print!("{}", swarm.root_ca_cert);
            }
        }
        Ok::<(), CliFailure>(())
    })
}

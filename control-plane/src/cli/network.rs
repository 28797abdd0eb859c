//! `hive network create|ls|inspect|rm`, with docker's flags, columns and texts (docker/cli
//! `cli/command/network/*`), for swarm-scope overlay networks only. Networks go to the manager
//! through `client::Control`, in the store's types (docs/control-plane.md, "The wire").

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::inspect::Lookups;
use super::output::{CliFailure, out, run_client, table};
use super::service::opts::parse_labels;
use crate::client::DaemonClient;
use crate::engine_api::convert;
use crate::store::objects::{
    IpamConfig, Network, NetworkAttachmentConfig, NetworkSpec, parse_cidr,
};

#[derive(Debug, Args)]
pub struct NetworkArgs {
    #[command(subcommand)]
    pub command: NetworkCommand,
}

/// `network create`'s flags.
#[derive(Debug, Clone, Default, Args)]
pub struct CreateOpts {
    /// Driver to manage the Network (only "overlay").
    #[arg(short, long, default_value = "overlay")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment.
    #[arg(long)]
    pub subnet: Vec<String>,
    /// IPv4 Gateway for the master subnet.
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Allocate container ip from a sub-range.
    #[arg(long)]
    pub ip_range: Vec<String>,
    /// Enable manual container attachment.
    #[arg(long)]
    pub attachable: bool,
    /// Restrict external access to the network.
    #[arg(long)]
    pub internal: bool,
    /// Create swarm routing-mesh network (refused: hive has one, made at swarm init).
    #[arg(long)]
    pub ingress: bool,
    /// Set driver specific options.
    #[arg(short, long)]
    pub opt: Vec<String>,
    /// Set metadata on a network.
    #[arg(long)]
    pub label: Vec<String>,
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network.
    Create(CreateOpts),
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only display network IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Do not truncate the output.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Display detailed information on one or more networks.
    Inspect {
        /// Format output using a custom template (over the Engine API's network object).
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove one or more networks.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

/// The IPAM configs of `--subnet/--gateway/--ip-range`: each gateway and range goes to the
/// subnet that contains it (docker/cli `createIPAMConfig`).
pub fn ipam_configs(
    subnets: &[String],
    gateways: &[String],
    ranges: &[String],
) -> Result<Vec<IpamConfig>, String> {
    if subnets.is_empty() && !(gateways.is_empty() && ranges.is_empty()) {
        return Err("every ip-range or gateway must have a corresponding subnet".to_owned());
    }
    let cidr = |what: &str, text: &str| {
        parse_cidr(text).ok_or_else(|| {
            format!(
                "invalid {what}: \"{text}\" is not an IPv4 subnet in CIDR notation (like \
                 10.0.1.0/24)"
            )
        })
    };
    let mut configs: Vec<IpamConfig> = Vec::new();
    for text in subnets {
        let subnet = cidr("subnet", text)?;
        if configs.iter().any(|c| c.subnet.overlaps(subnet)) {
            return Err(format!(
                "multiple overlapping subnet configuration is not allowed ({text})"
            ));
        }
        configs.push(IpamConfig::of_subnet(subnet));
    }
    for range in ranges {
        let r = cidr("ip-range", range)?;
        let config = configs
            .iter_mut()
            .find(|c| c.subnet.contains(r.network()) && r.prefix() >= c.subnet.prefix())
            .ok_or_else(|| format!("no matching subnet for range {range}"))?;
        if let Some(other) = config.range {
            return Err(format!(
                "cannot configure multiple ranges ({range}, {other}) on the same subnet ({})",
                config.subnet
            ));
        }
        config.range = Some(r);
    }
    for gateway in gateways {
        let g: std::net::Ipv4Addr = gateway
            .trim()
            .parse()
            .map_err(|_| format!("invalid gateway address: {gateway}"))?;
        let config = configs
            .iter_mut()
            .find(|c| c.subnet.contains(g))
            .ok_or_else(|| format!("no matching subnet for gateway {gateway}"))?;
        if let Some(other) = config.gateway {
            return Err(format!(
                "cannot configure multiple gateways ({gateway}, {other}) for the same subnet ({})",
                config.subnet
            ));
        }
        config.gateway = Some(g);
    }
    Ok(configs)
}

/// The spec `network create` sends.
pub fn create_spec(opts: &CreateOpts) -> Result<NetworkSpec, CliFailure> {
    let mut spec = NetworkSpec::default();
    spec.annotations.name = opts.name.clone();
    spec.annotations.labels = parse_labels(&opts.label);
    spec.driver = opts.driver.clone();
    spec.driver_options = parse_labels(&opts.opt);
    spec.ipam.configs =
        ipam_configs(&opts.subnet, &opts.gateway, &opts.ip_range).map_err(CliFailure::Usage)?;
    spec.attachable = opts.attachable;
    spec.internal = opts.internal;
    spec.ingress = opts.ingress;
    Ok(spec)
}

/// `--network NAME` or docker's long form `--network name=NAME,alias=A,alias=B`.
pub fn parse_network(text: &str) -> Result<NetworkAttachmentConfig, String> {
    if !text.contains('=') {
        if text.trim().is_empty() {
            return Err("invalid network: an empty name".to_owned());
        }
        return Ok(NetworkAttachmentConfig {
            target: text.trim().to_owned(),
            aliases: Vec::new(),
        });
    }
    let mut attachment = NetworkAttachmentConfig::default();
    for field in text.split(',') {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"))?;
        match key.trim().to_ascii_lowercase().as_str() {
            "name" | "target" => attachment.target = value.trim().to_owned(),
            "alias" => attachment.aliases.push(value.trim().to_owned()),
            "driver-opt" => {
                return Err("driver-opt on a service's network is not supported".to_owned());
            }
            other => return Err(format!("invalid field key {other}")),
        }
    }
    if attachment.target.is_empty() {
        return Err(format!("network name/id is not specified in '{text}'"));
    }
    Ok(attachment)
}

/// The ID of the network `query` names (ID, prefix or name), with docker's answer for none.
pub async fn network_id(client: &mut DaemonClient, query: &str) -> Result<String, CliFailure> {
    Ok(inspect(client, query).await?.id)
}

/// Resolves each attachment's network name to its ID (the spec stores IDs).
pub async fn resolve(
    client: &mut DaemonClient,
    attachments: &mut [NetworkAttachmentConfig],
) -> Result<(), CliFailure> {
    for attachment in attachments {
        attachment.target = network_id(client, &attachment.target).await?;
    }
    Ok(())
}

async fn inspect(client: &mut DaemonClient, query: &str) -> Result<Network, CliFailure> {
    client.control.inspect_network(query).await.map_err(|err| {
        if err.code() == Some(tonic::Code::NotFound) {
            CliFailure::Usage(format!("network {query} not found"))
        } else {
            err.into()
        }
    })
}

/// docker's `network ls` table: sorted by name, scope `swarm` for every hive network.
pub fn render_ls(networks: &[Network], quiet: bool, no_trunc: bool) -> String {
    let mut networks: Vec<&Network> = networks.iter().collect();
    networks.sort_by(|a, b| a.spec.annotations.name.cmp(&b.spec.annotations.name));
    let id = |n: &Network| {
        if no_trunc {
            n.id.clone()
        } else {
            n.id.get(..12).unwrap_or(&n.id).to_owned()
        }
    };
    if quiet {
        return networks.iter().map(|n| format!("{}\n", id(n))).collect();
    }
    let mut rows = vec![
        ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for n in networks {
        rows.push(vec![
            id(n),
            n.spec.annotations.name.clone(),
            n.spec.driver.clone(),
            "swarm".to_owned(),
        ]);
    }
    table(&rows)
}

pub fn run(host: Option<&str>, args: NetworkArgs) -> anyhow::Result<ExitCode> {
    run_client(async move {
        let mut client = DaemonClient::connect(host).await?;
        match args.command {
            NetworkCommand::Create(opts) => {
                let spec = create_spec(&opts)?;
                let network = client.control.create_network(&spec).await?;
                println!("{}", network.id);
            }
            NetworkCommand::Ls { quiet, no_trunc } => {
                let networks = client.control.list_networks().await?;
                out(&render_ls(&networks, quiet, no_trunc));
            }
            NetworkCommand::Inspect { format, networks } => {
                let format = super::format::inspect_format(false, format.as_deref())?;
                // The Engine API's objects, from the same conversion (docker's shape).
                let show = |found: &[Network]| {
                    let objects: Vec<_> = found.iter().map(convert::network_out).collect();
                    super::format::inspect_output(&objects, format.as_ref())
                        .map_err(CliFailure::Usage)
                };
                let lookups = Lookups::of(&networks, async |query: &str| {
                    match client.control.inspect_network(query).await {
                        Ok(network) => Ok(Some(network)),
                        Err(err) if err.code() == Some(tonic::Code::NotFound) => Ok(None),
                        Err(err) => Err(err.into()),
                    }
                })
                .await?;
                out(&show(&lookups.found)?);
                lookups.finish("network")?;
            }
            NetworkCommand::Rm { networks } => {
                let mut errors = Vec::new();
                for network in networks {
                    match client.control.remove_network(&network).await {
                        Ok(_) => println!("{network}"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: NetworkCommand,
    }

    fn parse(args: &[&str]) -> Result<NetworkCommand, clap::Error> {
        let mut all = vec!["network"];
        all.extend_from_slice(args);
        TestCli::try_parse_from(all).map(|c| c.command)
    }

    fn create(args: &[&str]) -> Result<NetworkSpec, CliFailure> {
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        match parse(&all).unwrap() {
            NetworkCommand::Create(opts) => create_spec(&opts),
            other => panic!("{other:?}"),
        }
    }

    fn usage(result: Result<NetworkSpec, CliFailure>) -> String {
        match result {
            Err(CliFailure::Usage(message)) => message,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_flags_build_the_spec() {
        let spec = create(&[
            "-d",
            "overlay",
            "--subnet",
            "10.5.0.0/16",
            "--gateway",
            "10.5.0.254",
            "--ip-range",
            "10.5.1.0/24",
            "--attachable",
            "--internal",
            "-o",
            "com.docker.network.driver.mtu=1400",
            "--label",
            "tier=db",
            "backend",
        ])
        .unwrap();
        assert_eq!(spec.annotations.name, "backend");
        assert_eq!(spec.annotations.labels["tier"], "db");
        assert_eq!(spec.driver, "overlay");
        assert_eq!(spec.driver_options["com.docker.network.driver.mtu"], "1400");
        assert!(spec.attachable && spec.internal && !spec.ingress);
        assert_eq!(
            spec.ipam.configs,
            vec![IpamConfig::parse("10.5.0.0/16", "10.5.1.0/24", "10.5.0.254").unwrap()]
        );
        crate::manager::controlapi::networks::validate(&spec).unwrap();

        let plain = create(&["backend"]).unwrap();
        assert_eq!(plain.driver, "overlay");
        assert!(plain.ipam.configs.is_empty());
        assert!(parse(&["create"]).is_err(), "a name is required");
    }

    #[test]
    fn create_pairs_gateways_and_ranges_with_their_subnets() {
        let spec = create(&[
            "--subnet=10.1.0.0/24",
            "--subnet=10.2.0.0/24",
            "--gateway=10.2.0.9",
            "--ip-range=10.1.0.128/25",
            "n",
        ])
        .unwrap();
        assert_eq!(
            spec.ipam.configs[0].range,
            Some("10.1.0.128/25".parse().unwrap())
        );
        assert_eq!(spec.ipam.configs[0].gateway, None);
        assert_eq!(
            spec.ipam.configs[1].gateway,
            Some("10.2.0.9".parse().unwrap())
        );

        assert_eq!(
            usage(create(&["--gateway=10.1.0.1", "n"])),
            "every ip-range or gateway must have a corresponding subnet"
        );
        assert_eq!(
            usage(create(&["--subnet=10.1.0.0/24", "--gateway=10.3.0.1", "n"])),
            "no matching subnet for gateway 10.3.0.1"
        );
        assert_eq!(
            usage(create(&[
                "--subnet=10.1.0.0/24",
                "--ip-range=10.3.0.0/25",
                "n"
            ])),
            "no matching subnet for range 10.3.0.0/25"
        );
        assert!(usage(create(&["--subnet=10.1.0/24", "n"])).starts_with("invalid subnet"));
        assert!(
            usage(create(&[
                "--subnet=10.1.0.0/16",
                "--subnet=10.1.2.0/24",
                "n"
            ]))
            .contains("overlapping")
        );
    }

    #[test]
    fn network_attachments_short_and_long_forms() {
        let short = parse_network("backend").unwrap();
        assert_eq!(short.target, "backend");
        assert!(short.aliases.is_empty());
        let long = parse_network("name=backend,alias=db,alias=database").unwrap();
        assert_eq!(long.target, "backend");
        assert_eq!(long.aliases, ["db", "database"]);
        assert!(parse_network("alias=db").is_err());
        assert!(parse_network("name=b,bogus=1").is_err());
        assert!(parse_network("").is_err());
    }

    #[test]
    fn ls_has_dockers_columns() {
        let mut a = Network {
            id: "zzzzzzzzzzzzzzzzzzzzzzzzz".into(),
            ..Network::default()
        };
        a.spec.annotations.name = "ingress".into();
        let mut b = Network {
            id: "aaaaaaaaaaaaaaaaaaaaaaaaa".into(),
            ..Network::default()
        };
        b.spec.annotations.name = "backend".into();
        let text = render_ls(&[a, b], false, false);
        assert_eq!(
            text,
            "NETWORK ID     NAME      DRIVER    SCOPE\n\
             aaaaaaaaaaaa   backend   overlay   swarm\n\
             zzzzzzzzzzzz   ingress   overlay   swarm\n"
        );
        let quiet = render_ls(&[], true, false);
        assert_eq!(quiet, "");
    }
}

//! `hive volume create|ls|inspect|rm|prune`, with docker's flags, columns and texts (docker/cli
//! `cli/command/volume/*`). Volumes are per node: each command talks to the local daemon's
//! `Volumes` service (control-plane/executor/src/volume_store.rs).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::format::{Cells, Format, Listing, parse_format};
use super::image::human_size;
use super::inspect::Lookups;
use super::output::{CliFailure, indent_json, out, run_client};
use super::service::opts::parse_labels;
use crate::api::pb;
use crate::client::DaemonClient;

#[derive(Debug, Args)]
pub struct VolumeArgs {
    #[command(subcommand)]
    pub command: VolumeCommand,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume.
    Create {
        /// Specify volume driver name.
        #[arg(short, long, default_value = "local")]
        driver: String,
        /// Set metadata for a volume.
        #[arg(long)]
        label: Vec<String>,
        /// Set driver specific options.
        #[arg(short, long)]
        opt: Vec<String>,
        /// The volume's name; a random one when left out.
        name: Option<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Only display volume names.
        #[arg(short, long)]
        quiet: bool,
        /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or
        /// 'TEMPLATE' with {{.Driver}} {{.Name}} {{.Mountpoint}} {{.Labels}} {{.Scope}}.
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on one or more volumes.
    Inspect {
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove one or more volumes. You cannot remove a volume that is in use by a container.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove unused local volumes.
    Prune {
        /// Remove all unused volumes, not just anonymous ones.
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation.
        #[arg(short, long)]
        force: bool,
    },
}

pub fn run(host: Option<&str>, args: VolumeArgs) -> anyhow::Result<ExitCode> {
    run_client(async move {
        let mut volumes = DaemonClient::connect(host).await?.volumes;
        match args.command {
            VolumeCommand::Create {
                driver,
                label,
                opt,
                name,
            } => {
                let options = parse_labels(&opt);
                crate::volume_store::validate_options(&options).map_err(|e| {
                    CliFailure::Usage(format!("invalid argument for \"-o, --opt\" flag: {e}"))
                })?;
                let made = volumes
                    .create_volume(pb::CreateVolumeRequest {
                        name: name.unwrap_or_default(),
                        driver,
                        labels: parse_labels(&label).into_iter().collect(),
                        options: options.into_iter().collect(),
                    })
                    .await?
                    .into_inner();
                out(&format!("{}\n", made.name));
                Ok(())
            }
            VolumeCommand::Ls { quiet, format } => {
                let list = volumes
                    .list_volumes(pb::ListVolumesRequest {})
                    .await?
                    .into_inner();
                let format = parse_format(format.as_deref())?;
                let text =
                    render_ls(&list.volumes, quiet, format.as_ref()).map_err(CliFailure::Usage)?;
                out(&text);
                Ok(())
            }
            VolumeCommand::Inspect { volumes: names } => {
                let lookups = Lookups::of(&names, async |name: &str| {
                    let request = pb::InspectVolumeRequest {
                        name: name.to_owned(),
                    };
                    match volumes.inspect_volume(request).await {
                        Ok(info) => Ok(Some(inspect_json(&info.into_inner()))),
                        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
                        Err(status) => Err(status.into()),
                    }
                })
                .await?;
                out(&format!("{}\n", indent_json(&lookups.found)));
                lookups.finish("volume")
            }
            VolumeCommand::Rm { volumes: names } => {
                let mut errors = Vec::new();
                for name in names {
                    match volumes
                        .remove_volume(pb::RemoveVolumeRequest { name: name.clone() })
                        .await
                    {
                        Ok(_) => {
                            out(&format!("{name}\n"));
                        }
                        Err(status) => errors.push(crate::client::describe(&status)),
                    }
                }
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(CliFailure::Usage(errors.join("\n")))
                }
            }
            VolumeCommand::Prune { all, force } => {
                if !force && !confirm(all)? {
                    return Ok(());
                }
                let reply = volumes
                    .prune_volumes(pb::PruneVolumesRequest { all })
                    .await?
                    .into_inner();
                out(&prune_text(&reply));
                Ok(())
            }
        }
    })
}

fn confirm(all: bool) -> Result<bool, CliFailure> {
    let warning = if all {
        "WARNING! This will remove all local volumes not used by at least one container."
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    };
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| CliFailure::Usage(format!("reading the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// docker's `volume prune` output.
pub fn prune_text(reply: &pb::PruneVolumesResponse) -> String {
    let mut text = String::new();
    if !reply.deleted.is_empty() {
        text.push_str("Deleted Volumes:\n");
        for name in &reply.deleted {
            text.push_str(name);
            text.push('\n');
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(reply.space_reclaimed)
    ));
    text
}

const VOLUME_LISTING: Listing = Listing {
    headers: &[
        ("Driver", "DRIVER"),
        ("Name", "VOLUME NAME"),
        ("Mountpoint", "MOUNTPOINT"),
        ("Labels", "LABELS"),
        ("Scope", "SCOPE"),
    ],
    default_table: "table {{.Driver}}\t{{.Name}}",
};

fn cells(volume: &pb::VolumeInfo) -> Cells {
    let mut labels: Vec<String> = volume
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    Cells::from([
        ("Driver", volume.driver.clone()),
        ("Name", volume.name.clone()),
        ("Mountpoint", volume.mountpoint.clone()),
        ("Labels", labels.join(",")),
        ("Scope", "local".to_owned()),
    ])
}

pub fn render_ls(
    volumes: &[pb::VolumeInfo],
    quiet: bool,
    format: Option<&Format>,
) -> Result<String, String> {
    if quiet {
        return Ok(volumes.iter().map(|v| format!("{}\n", v.name)).collect());
    }
    let rows: Vec<Cells> = volumes.iter().map(cells).collect();
    VOLUME_LISTING.render(format, &rows)
}

/// docker's `volume inspect` object for one volume.
pub fn inspect_json(volume: &pb::VolumeInfo) -> serde_json::Value {
    let sorted = |m: &std::collections::HashMap<String, String>| {
        m.iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
    };
    json!({
        "CreatedAt": volume.created_at,
        "Driver": volume.driver,
        "Labels": sorted(&volume.labels),
        "Mountpoint": volume.mountpoint,
        "Name": volume.name,
        "Options": sorted(&volume.options),
        "Scope": "local",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(name: &str) -> pb::VolumeInfo {
        pb::VolumeInfo {
            name: name.to_owned(),
            driver: "local".to_owned(),
            mountpoint: format!("/var/lib/hive/volumes/{name}/_data"),
            created_at: "2026-12-05T23:00:00Z".to_owned(),
            labels: [("team".to_owned(), "web".to_owned())].into(),
            options: Default::default(),
            used_by: Vec::new(),
        }
    }

    #[test]
    fn ls_has_dockers_columns() {
        let text = render_ls(&[volume("db"), volume("web-data")], false, None).expect("ls");
        assert_eq!(
            text,
            "DRIVER    VOLUME NAME\nlocal     db\nlocal     web-data\n"
        );
        assert_eq!(render_ls(&[volume("db")], true, None).expect("-q"), "db\n");
    }

    #[test]
    fn inspect_and_prune_read_like_dockers() {
        let value = inspect_json(&volume("db"));
        assert_eq!(value["Driver"], "local");
        assert_eq!(value["Scope"], "local");
        assert_eq!(value["Labels"]["team"], "web");
        assert_eq!(value["Options"], json!({}));
        assert_eq!(value["Mountpoint"], "/var/lib/hive/volumes/db/_data");
        let reply = pb::PruneVolumesResponse {
            deleted: vec!["db".to_owned()],
            space_reclaimed: 2048,
        };
        assert_eq!(
            prune_text(&reply),
            "Deleted Volumes:\ndb\n\nTotal reclaimed space: 2.05kB\n"
        );
        assert_eq!(
            prune_text(&pb::PruneVolumesResponse::default()),
            "Total reclaimed space: 0B\n"
        );
    }
}

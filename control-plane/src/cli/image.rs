//! `hive image pull|load|ls|inspect|rm|prune`, with docker's flags, columns and texts (docker/cli
//! `cli/command/image/*`). Images are per node: each command talks to the local daemon's
//! `Images` service (docs/images.md).

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::format::{Cells, Format, Listing, parse_format};
use super::inspect::Lookups;
use super::output::{CliFailure, human_duration, indent_json, out, run_client};
use crate::api::pb;
use crate::client::DaemonClient;
use crate::image_store::auth::{credentials_for, docker_config_path};
use crate::image_store::{ImageReference, familiar};

/// Upload chunk of `image load` (the gRPC message limit is 4 MiB).
const LOAD_CHUNK: usize = 1024 * 1024;

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Download an image from a registry.
    Pull {
        /// Suppress verbose output.
        #[arg(short, long)]
        quiet: bool,
        /// NAME[:TAG|@DIGEST]
        name: String,
    },
    /// Load an image from a tar archive (`docker save` or an OCI layout) or STDIN.
    Load {
        /// Read from tar archive file, instead of STDIN.
        #[arg(short, long)]
        input: Option<PathBuf>,
        /// Suppress the load output.
        #[arg(short, long)]
        quiet: bool,
    },
    /// List images.
    #[command(alias = "list")]
    Ls {
        /// Only show image IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Show digests.
        #[arg(long)]
        digests: bool,
        /// Don't truncate output.
        #[arg(long)]
        no_trunc: bool,
        /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or
        /// 'TEMPLATE' with {{.Repository}} {{.Tag}} {{.ID}} {{.Digest}} {{.CreatedSince}}
        /// {{.CreatedAt}} {{.Size}}.
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on one or more images.
    Inspect {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove one or more images.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove unused images.
    Prune {
        /// Remove all unused images, not just dangling ones.
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation.
        #[arg(short, long)]
        force: bool,
    },
}

pub fn run(host: Option<&str>, args: ImageArgs) -> anyhow::Result<ExitCode> {
    run_client(async move {
        let mut images = DaemonClient::connect(host).await?.images;
        match args.command {
            ImageCommand::Pull { quiet, name } => pull(&mut images, &name, quiet).await,
            ImageCommand::Load { input, quiet } => load(&mut images, input, quiet).await,
            ImageCommand::Ls {
                quiet,
                digests,
                no_trunc,
                format,
            } => {
                let list = images
                    .list_images(pb::ListImagesRequest {})
                    .await?
                    .into_inner();
                let format = parse_format(format.as_deref())?;
                let rows = rows(&list.images, now());
                let text = render_ls(&rows, quiet, digests, no_trunc, format.as_ref())
                    .map_err(CliFailure::Usage)?;
                out(&text);
                Ok(())
            }
            ImageCommand::Inspect { images: queries } => {
                let lookups = Lookups::of(&queries, async |query: &str| {
                    let request = pb::InspectImageRequest {
                        image: query.to_owned(),
                    };
                    match images.inspect_image(request).await {
                        Ok(details) => Ok(Some(inspect_json(&details.into_inner()))),
                        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
                        Err(status) => Err(status.into()),
                    }
                })
                .await?;
                out(&format!("{}\n", indent_json(&lookups.found)));
                lookups.finish("image")
            }
            ImageCommand::Rm { images: queries } => {
                let mut errors = Vec::new();
                for query in queries {
                    match images
                        .remove_image(pb::RemoveImageRequest { image: query })
                        .await
                    {
                        Ok(reply) => out(&removed_lines(&reply.into_inner().removed, false)),
                        Err(status) => {
                            errors.push(crate::client::describe(&status));
                            true
                        }
                    };
                }
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(CliFailure::Usage(errors.join("\n")))
                }
            }
            ImageCommand::Prune { all, force } => {
                if !force && !confirm(all)? {
                    return Ok(());
                }
                let reply = images
                    .prune_images(pb::PruneImagesRequest { all })
                    .await?
                    .into_inner();
                let mut text = String::new();
                if !reply.removed.is_empty() {
                    text.push_str("Deleted Images:\n");
                    text.push_str(&removed_lines(&reply.removed, true));
                    text.push('\n');
                }
                text.push_str(&format!(
                    "Total reclaimed space: {}\n",
                    human_size(reply.space_reclaimed)
                ));
                out(&text);
                Ok(())
            }
        }
    })
}

async fn pull(
    images: &mut pb::images_client::ImagesClient<tonic::transport::Channel>,
    name: &str,
    quiet: bool,
) -> Result<(), CliFailure> {
    if crate::image_store::reference::is_builtin(name) {
        return Err(CliFailure::Usage(format!(
            "{name} is one of hive's built-in images; it needs no pull"
        )));
    }
    let reference: ImageReference = name
        .parse()
        .map_err(|e| CliFailure::Usage(format!("{e}")))?;
    let auth = match docker_config_path() {
        Some(path) => {
            credentials_for(&path, &reference).map_err(|e| CliFailure::Usage(e.to_string()))?
        }
        None => None,
    };
    let implied_tag =
        !name.contains('@') && reference.tag() == Some("latest") && !name.ends_with(":latest");
    if !quiet {
        if implied_tag {
            println!("Using default tag: latest");
        }
        let what = reference
            .tag()
            .map(str::to_owned)
            .or_else(|| reference.digest().map(|d| d.to_string()))
            .unwrap_or_default();
        println!("{what}: Pulling from {}", reference.path());
    }
    let reply = images
        .pull_image(pb::PullImageRequest {
            reference: name.to_owned(),
            auth: auth.map(|a| pb::RegistryCredentials {
                username: a.username,
                password: a.password,
            }),
        })
        .await?
        .into_inner();
    if !quiet {
        let digest = reply
            .image
            .as_ref()
            .and_then(|i| {
                i.repo_digests
                    .iter()
                    .find(|d| d.starts_with(&format!("{}@", reference.repository())))
            })
            .and_then(|d| d.split_once('@').map(|(_, d)| d.to_owned()))
            .unwrap_or_default();
        println!("Digest: {digest}");
        println!(
            "Status: Downloaded newer image for {}",
            familiar(&reference.to_string())
        );
    }
    println!("{}", reply.reference);
    Ok(())
}

async fn load(
    images: &mut pb::images_client::ImagesClient<tonic::transport::Channel>,
    input: Option<PathBuf>,
    quiet: bool,
) -> Result<(), CliFailure> {
    use std::io::IsTerminal as _;
    let mut reader: Box<dyn std::io::Read + Send> = match &input {
        Some(path) if path.as_os_str() != "-" => Box::new(
            std::fs::File::open(path)
                .map_err(|e| CliFailure::Usage(format!("open {}: {e}", path.display())))?,
        ),
        _ => {
            if std::io::stdin().is_terminal() {
                return Err(CliFailure::Usage(
                    "requested load from stdin, but stdin is empty".to_owned(),
                ));
            }
            Box::new(std::io::stdin())
        }
    };
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let reading = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        loop {
            let mut chunk = vec![0u8; LOAD_CHUNK];
            let n = reader.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            chunk.truncate(n);
            if sender
                .blocking_send(pb::LoadImagesChunk { data: chunk })
                .is_err()
            {
                return Ok(());
            }
        }
    });
    let reply = images
        .load_images(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await;
    let read = reading
        .await
        .map_err(|e| CliFailure::Usage(format!("reading the archive: {e}")))?;
    let reply = reply?.into_inner();
    read.map_err(|e| CliFailure::Usage(format!("reading the archive: {e}")))?;
    if !quiet {
        let mut text = String::new();
        for image in &reply.images {
            if image.repo_tags.is_empty() {
                text.push_str(&format!("Loaded image ID: {}\n", image.id));
            }
            for tag in &image.repo_tags {
                text.push_str(&format!("Loaded image: {}\n", familiar(tag)));
            }
        }
        out(&text);
    }
    Ok(())
}

fn confirm(all: bool) -> Result<bool, CliFailure> {
    let warning = if all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| CliFailure::Usage(format!("reading the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

fn removed_lines(removed: &[pb::RemovedImage], lowercase: bool) -> String {
    use pb::removed_image::Action;
    let (untagged, deleted) = if lowercase {
        ("untagged", "deleted")
    } else {
        ("Untagged", "Deleted")
    };
    removed
        .iter()
        .filter_map(|r| match &r.action {
            Some(Action::Untagged(name)) => Some(format!("{untagged}: {name}\n")),
            Some(Action::Deleted(id)) => Some(format!("{deleted}: {id}\n")),
            None => None,
        })
        .collect()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// One row of `image ls`: an image under one of its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub id: String,
    pub created_since: String,
    pub created_at: String,
    pub size: String,
}

/// docker's rows: one per tag, `<none>` for what an image lacks.
pub fn rows(images: &[pb::ImageSummary], now: i64) -> Vec<Row> {
    let mut rows = Vec::new();
    for image in images {
        let created = time::OffsetDateTime::parse(
            &image.created,
            &time::format_description::well_known::Rfc3339,
        )
        .ok();
        let created_since = created.map_or_else(
            || "N/A".to_owned(),
            |t| {
                let age = (now - t.unix_timestamp()).max(0) as u64;
                format!(
                    "{} ago",
                    human_duration(std::time::Duration::from_secs(age))
                )
            },
        );
        let created_at = created.map_or_else(String::new, |t| {
            let (date, clock) = (t.date(), t.time());
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000 UTC",
                date.year(),
                u8::from(date.month()),
                date.day(),
                clock.hour(),
                clock.minute(),
                clock.second()
            )
        });
        let digest_of = |repository: &str| {
            image
                .repo_digests
                .iter()
                .filter_map(|d| d.split_once('@'))
                .find(|(r, _)| familiar(r) == repository)
                .map_or_else(|| "<none>".to_owned(), |(_, d)| d.to_owned())
        };
        let base = Row {
            repository: "<none>".to_owned(),
            tag: "<none>".to_owned(),
            digest: "<none>".to_owned(),
            id: image.id.clone(),
            created_since,
            created_at,
            size: human_size(image.size),
        };
        let mut named = false;
        for tag in &image.repo_tags {
            let short = familiar(tag);
            if let Some((repository, tag)) = short.rsplit_once(':')
                && !tag.contains('/')
            {
                rows.push(Row {
                    repository: repository.to_owned(),
                    tag: tag.to_owned(),
                    digest: digest_of(repository),
                    ..base.clone()
                });
                named = true;
            }
        }
        if !named {
            // Pulled by digest only: the repository is known, the tag is not.
            let repository = image
                .repo_digests
                .first()
                .and_then(|d| d.split_once('@'))
                .map(|(r, _)| familiar(r));
            rows.push(Row {
                digest: repository
                    .as_deref()
                    .map_or_else(|| "<none>".to_owned(), digest_of),
                repository: repository.unwrap_or_else(|| "<none>".to_owned()),
                ..base
            });
        }
    }
    rows
}

/// docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units, 3 significant digits.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let integer_digits = if value < 1.0 {
        1
    } else {
        value.log10().floor() as usize + 1
    };
    let decimals = 3usize.saturating_sub(integer_digits);
    let mut text = format!("{value:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{text}{}", UNITS[unit])
}

/// `image ls`'s fields and headers; the default table, and the one with `--digests`.
const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
];

pub const IMAGE_LISTING: Listing = Listing {
    headers: IMAGE_HEADERS,
    default_table: "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}",
};

pub const IMAGE_DIGEST_LISTING: Listing = Listing {
    headers: IMAGE_HEADERS,
    default_table: "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}",
};

fn cells(row: &Row, no_trunc: bool) -> Cells {
    Cells::from([
        ("Repository", row.repository.clone()),
        ("Tag", row.tag.clone()),
        (
            "ID",
            if no_trunc {
                row.id.clone()
            } else {
                short_id(&row.id)
            },
        ),
        ("Digest", row.digest.clone()),
        ("CreatedSince", row.created_since.clone()),
        ("CreatedAt", row.created_at.clone()),
        ("Size", row.size.clone()),
    ])
}

fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.get(..12).unwrap_or(hex).to_owned()
}

/// docker's `image ls` output.
pub fn render_ls(
    rows: &[Row],
    quiet: bool,
    digests: bool,
    no_trunc: bool,
    format: Option<&Format>,
) -> Result<String, String> {
    if quiet {
        let mut seen = Vec::new();
        for row in rows {
            let id = cells(row, no_trunc).remove("ID").unwrap_or_default();
            if !seen.contains(&id) {
                seen.push(id);
            }
        }
        return Ok(seen.into_iter().map(|id| format!("{id}\n")).collect());
    }
    let listing = if digests {
        IMAGE_DIGEST_LISTING
    } else {
        IMAGE_LISTING
    };
    let rows: Vec<Cells> = rows.iter().map(|row| cells(row, no_trunc)).collect();
    listing.render(format, &rows)
}

/// docker's `image inspect` object for one image.
pub fn inspect_json(details: &pb::ImageDetails) -> serde_json::Value {
    let summary = details.summary.clone().unwrap_or_default();
    let config = details.config.clone().unwrap_or_default();
    let list = |v: &Vec<String>| {
        if v.is_empty() {
            serde_json::Value::Null
        } else {
            json!(v)
        }
    };
    let set = |v: &Vec<String>| {
        if v.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::Object(v.iter().map(|k| (k.clone(), json!({}))).collect())
        }
    };
    json!({
        "Id": summary.id,
        "RepoTags": summary.repo_tags.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
        "RepoDigests": summary.repo_digests.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
        "Created": summary.created,
        "Author": details.author,
        "Config": {
            "User": config.user,
            "ExposedPorts": set(&config.exposed_ports),
            "Env": list(&config.env),
            "Cmd": list(&config.cmd),
            "Volumes": set(&config.volumes),
            "WorkingDir": config.working_dir,
            "Entrypoint": list(&config.entrypoint),
            "Labels": if config.labels.is_empty() { serde_json::Value::Null } else { json!(config.labels) },
            "StopSignal": config.stop_signal,
        },
        "Architecture": details.architecture,
        "Os": details.os,
        "Size": summary.size,
        "RootFS": {
            "Type": "layers",
            "Layers": details.layers,
        },
        "Metadata": {
            "ManifestDigest": summary.manifest_digest,
            "InUse": summary.in_use,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(tags: &[&str], digests: &[&str], created: &str, size: u64) -> pb::ImageSummary {
        pb::ImageSummary {
            id: format!("sha256:{}", "ab12".repeat(16)),
            manifest_digest: String::new(),
            repo_tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            repo_digests: digests.iter().map(|t| (*t).to_owned()).collect(),
            created: created.to_owned(),
            size,
            in_use: false,
        }
    }

    #[test]
    fn sizes_read_like_dockers() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_234), "4.26MB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(human_size(187_654_321), "188MB");
        assert_eq!(human_size(12_345), "12.3kB");
    }

    #[test]
    fn ls_has_dockers_columns() {
        let now = 1_700_000_000;
        let images = [
            image(
                &["docker.io/library/nginx:1.27", "127.0.0.1:5000/team/app:2"],
                &["127.0.0.1:5000/team/app@sha256:feed"],
                "2023-11-14T20:13:20Z",
                4_261_234,
            ),
            image(&[], &[], "", 10),
        ];
        let rows = rows(&images, now + 3 * 86_400);
        assert_eq!(
            render_ls(&rows, false, false, false, None).unwrap(),
            "REPOSITORY                TAG       IMAGE ID       CREATED      SIZE\n\
             nginx                     1.27      ab12ab12ab12   3 days ago   4.26MB\n\
             127.0.0.1:5000/team/app   2         ab12ab12ab12   3 days ago   4.26MB\n\
             <none>                    <none>    ab12ab12ab12   N/A          10B\n"
        );
        assert_eq!(
            render_ls(&rows, true, false, false, None).unwrap(),
            "ab12ab12ab12\n",
            "-q lists each ID once"
        );
        let digests = render_ls(&rows, false, true, false, None).unwrap();
        assert!(
            digests.starts_with("REPOSITORY                TAG       DIGEST"),
            "{digests}"
        );
        assert!(digests.contains("sha256:feed"));
        let format = Format::parse("{{.Repository}}:{{.Tag}}").unwrap();
        assert_eq!(
            render_ls(&rows, false, false, false, Some(&format)).unwrap(),
            "nginx:1.27\n127.0.0.1:5000/team/app:2\n<none>:<none>\n"
        );
        let table_format = Format::parse("table {{.Repository}}\\t{{.Size}}").unwrap();
        assert_eq!(
            render_ls(&rows[..1], false, false, false, Some(&table_format)).unwrap(),
            "REPOSITORY   SIZE\nnginx        4.26MB\n"
        );
        let nope = Format::parse("{{.Nope}}").unwrap();
        assert!(
            render_ls(&rows, false, false, false, Some(&nope))
                .unwrap_err()
                .contains("can't evaluate field Nope")
        );
        let json = Format::parse("json").unwrap();
        let json = render_ls(&rows[..1], false, false, false, Some(&json)).unwrap();
        assert!(json.contains("\"Repository\":\"nginx\""), "{json}");
    }
}

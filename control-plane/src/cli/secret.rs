//! `hive secret create|ls|inspect|rm` and `hive config create|ls|inspect|rm`, with docker's
//! flags, columns and texts (docker/cli `cli/command/secret`, `cli/command/config`), and the
//! `--secret`/`--config` reference syntax of `service create|update` (docs/secrets.md).

use std::io::Read as _;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::inspect::Lookups;
use super::output::{CliFailure, human_duration, out, run_client, table};
use super::service::opts::parse_labels;
use crate::client::DaemonClient;
use crate::engine_api::convert;
use crate::store::objects::{
    Annotations, Config, ConfigSpec, FileReference, FileTarget, Secret, SecretSpec, Timestamp,
};

#[derive(Debug, Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    pub command: FileCommand,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: FileCommand,
}

#[derive(Debug, Subcommand)]
pub enum FileCommand {
    /// Create from a file or STDIN ("-") as content.
    Create {
        /// Labels.
        #[arg(short, long)]
        label: Vec<String>,
        /// Secret driver (secrets only; refused: hive keeps secrets in its own store).
        #[arg(short, long)]
        driver: Option<String>,
        /// Template driver (configs only; refused: hive does not template configs).
        #[arg(long)]
        template_driver: Option<String>,
        name: String,
        file: String,
    },
    /// List them.
    #[command(alias = "list")]
    Ls {
        /// Only display IDs.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Display detailed information on one or more.
    Inspect {
        /// Print the information in a human friendly format.
        #[arg(long)]
        pretty: bool,
        /// Format output using a custom template (over the Engine API's object).
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Secret,
    Config,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Config => "config",
        }
    }
}

/// One secret or config as the CLI shows it.
struct Shown {
    id: String,
    created: Timestamp,
    updated: Timestamp,
    annotations: Annotations,
    /// Configs only.
    data: Option<Vec<u8>>,
    /// What `inspect` prints: the Engine API's object, from the same conversion.
    object: Value,
}

impl From<Secret> for Shown {
    fn from(s: Secret) -> Self {
        let object = serde_json::to_value(convert::secret_out(&s)).unwrap_or_default();
        Self {
            object,
            id: s.id,
            created: s.meta.created_at,
            updated: s.meta.updated_at,
            annotations: s.spec.annotations,
            data: None,
        }
    }
}

impl From<Config> for Shown {
    fn from(c: Config) -> Self {
        let object = serde_json::to_value(convert::config_out(&c)).unwrap_or_default();
        Self {
            object,
            id: c.id,
            created: c.meta.created_at,
            updated: c.meta.updated_at,
            annotations: c.spec.annotations,
            data: Some(c.spec.data),
        }
    }
}

fn ago(t: Timestamp) -> String {
    let since = SystemTime::now()
        .duration_since(t.to_system_time())
        .unwrap_or_default();
    format!("{} ago", human_duration(since))
}

/// docker's inspect JSON: `Spec.Data` (base64) for a config, never for a secret.
fn inspect_json(shown: &Shown) -> Value {
    shown.object.clone()
}

/// docker's `--pretty` form.
fn pretty(kind: Kind, shown: &Shown) -> String {
    let pad = |label: &str| format!("{label:<20}");
    let mut text = format!("{}{}\n", pad("ID:"), shown.id);
    text += &format!("{}{}\n", pad("Name:"), shown.annotations.name);
    if !shown.annotations.labels.is_empty() {
        text += "Labels:\n";
        for (key, value) in &shown.annotations.labels {
            if value.is_empty() {
                text += &format!(" - {key}\n");
            } else {
                text += &format!(" - {key}={value}\n");
            }
        }
    }
    if kind == Kind::Secret {
        text += &format!("{}\n", pad("Driver:"));
    }
    text += &format!("{}{}\n", pad("Created at:"), go_time(shown.created));
    text += &format!("{}{}\n", pad("Updated at:"), go_time(shown.updated));
    if let Some(data) = &shown.data {
        text += "Data:\n";
        text += &String::from_utf8_lossy(data);
        if !data.ends_with(b"\n") {
            text += "\n";
        }
    }
    text
}

fn go_time(t: Timestamp) -> String {
    super::output::go_time(Some(&crate::api::convert::timestamp(t)))
}

/// docker's `secret ls` / `config ls` table, sorted by name.
fn render_ls(kind: Kind, mut shown: Vec<Shown>, quiet: bool) -> String {
    shown.sort_by(|a, b| a.annotations.name.cmp(&b.annotations.name));
    if quiet {
        return shown.iter().map(|s| format!("{}\n", s.id)).collect();
    }
    let mut header = vec!["ID", "NAME"];
    if kind == Kind::Secret {
        header.push("DRIVER");
    }
    header.extend(["CREATED", "UPDATED"]);
    let mut rows = vec![header.into_iter().map(str::to_owned).collect::<Vec<_>>()];
    for s in &shown {
        let mut row = vec![s.id.clone(), s.annotations.name.clone()];
        if kind == Kind::Secret {
            row.push(String::new());
        }
        row.extend([ago(s.created), ago(s.updated)]);
        rows.push(row);
    }
    table(&rows)
}

/// The content of `FILE`, or of standard input for `-`.
fn read_content(file: &str) -> Result<Vec<u8>, CliFailure> {
    let mut data = Vec::new();
    let read = if file == "-" {
        std::io::stdin().read_to_end(&mut data).map(|_| ())
    } else {
        std::fs::read(file).map(|d| data = d)
    };
    read.map_err(|err| CliFailure::Usage(format!("error reading content from \"{file}\": {err}")))?;
    Ok(data)
}

pub fn run_secret(host: Option<&str>, args: SecretArgs) -> anyhow::Result<ExitCode> {
    run(host, Kind::Secret, args.command)
}

pub fn run_config(host: Option<&str>, args: ConfigArgs) -> anyhow::Result<ExitCode> {
    run(host, Kind::Config, args.command)
}

fn run(host: Option<&str>, kind: Kind, command: FileCommand) -> anyhow::Result<ExitCode> {
    run_client(async move {
        let mut client = DaemonClient::connect(host).await?;
        match command {
            FileCommand::Create {
                label,
                driver,
                template_driver,
                name,
                file,
            } => {
                let wrong = match kind {
                    Kind::Secret => template_driver.as_ref().map(|_| "--template-driver"),
                    Kind::Config => driver.as_ref().map(|_| "--driver"),
                };
                if let Some(flag) = wrong {
                    return Err(CliFailure::Usage(format!(
                        "unknown flag: {flag} (not a flag of `{} create`)",
                        kind.word()
                    )));
                }
                let annotations = Annotations {
                    name,
                    labels: parse_labels(&label),
                };
                let data = read_content(&file)?;
                let id = match kind {
                    Kind::Secret => {
                        let spec = SecretSpec { annotations, data };
                        let driver = driver.unwrap_or_default();
                        client.control.create_secret(&spec, &driver).await?.id
                    }
                    Kind::Config => {
                        let spec = ConfigSpec { annotations, data };
                        let templating = template_driver.unwrap_or_default();
                        client.control.create_config(&spec, &templating).await?.id
                    }
                };
                println!("{id}");
            }
            FileCommand::Ls { quiet } => {
                let shown: Vec<Shown> = match kind {
                    Kind::Secret => client
                        .control
                        .list_secrets()
                        .await?
                        .into_iter()
                        .map(Shown::from)
                        .collect(),
                    Kind::Config => client
                        .control
                        .list_configs()
                        .await?
                        .into_iter()
                        .map(Shown::from)
                        .collect(),
                };
                out(&render_ls(kind, shown, quiet));
            }
            FileCommand::Inspect {
                pretty: as_text,
                format,
                names,
            } => {
                let format = super::format::inspect_format(as_text, format.as_deref())?;
                let show = |found: &[Shown]| {
                    let json: Vec<Value> = found.iter().map(inspect_json).collect();
                    super::format::inspect_output(&json, format.as_ref()).map_err(CliFailure::Usage)
                };
                let lookups = Lookups::of(&names, async |query: &str| {
                    let result = match kind {
                        Kind::Secret => client.control.inspect_secret(query).await.map(Shown::from),
                        Kind::Config => client.control.inspect_config(query).await.map(Shown::from),
                    };
                    match result {
                        Ok(shown) => Ok(Some(shown)),
                        Err(err) if err.code() == Some(tonic::Code::NotFound) => Ok(None),
                        Err(err) => Err(err.into()),
                    }
                })
                .await?;
                if as_text {
                    let texts: Vec<String> =
                        lookups.found.iter().map(|s| pretty(kind, s)).collect();
                    out(&texts.join("\n\n"));
                } else {
                    out(&show(&lookups.found)?);
                }
                lookups.finish(kind.word())?;
            }
            FileCommand::Rm { names } => {
                let mut errors = Vec::new();
                for name in names {
                    let removed = match kind {
                        Kind::Secret => client.control.remove_secret(&name).await,
                        Kind::Config => client.control.remove_config(&name).await,
                    };
                    match removed {
                        Ok(_) => println!("{name}"),
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

/// Go's `strconv.ParseUint(text, 0, 32)`: `0o`/leading `0` octal, `0x` hex, else decimal.
fn parse_mode(text: &str) -> Result<u32, String> {
    let bad = |_| format!("invalid mode {text:?}: use an octal number such as 0400");
    if let Some(hex) = text.strip_prefix("0x") {
        u32::from_str_radix(hex, 16).map_err(bad)
    } else if let Some(octal) = text.strip_prefix("0o") {
        u32::from_str_radix(octal, 8).map_err(bad)
    } else if text.len() > 1 && text.starts_with('0') {
        u32::from_str_radix(&text[1..], 8).map_err(bad)
    } else {
        text.parse::<u32>().map_err(bad)
    }
}

/// `--secret` / `--config`: `SOURCE`, or `source=,target=,uid=,gid=,mode=` (docker/cli
/// `opts/secret.go`, `opts/config.go`). The manager resolves the source to an ID and fills
/// the defaults (target the name, root, 0444).
pub fn parse_file_reference(text: &str) -> Result<FileReference, String> {
    let mut reference = FileReference {
        target: FileTarget {
            name: String::new(),
            uid: String::new(),
            gid: String::new(),
            mode: 0,
        },
        ..FileReference::default()
    };
    if !text.contains('=') {
        reference.name = text.trim().to_owned();
    } else {
        for field in text.split(',') {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"))?;
            let value = value.trim();
            match key.trim().to_ascii_lowercase().as_str() {
                "source" | "src" => reference.name = value.to_owned(),
                "target" => reference.target.name = value.to_owned(),
                "uid" => reference.target.uid = value.to_owned(),
                "gid" => reference.target.gid = value.to_owned(),
                "mode" => reference.target.mode = parse_mode(value)?,
                other => return Err(format!("invalid field key {other}")),
            }
        }
    }
    if reference.name.is_empty() {
        return Err("source is required".to_owned());
    }
    Ok(reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_short_and_long_forms() {
        let short = parse_file_reference("db_pw").unwrap();
        assert_eq!(short.name, "db_pw");
        assert_eq!(short.target.name, "");
        let long =
            parse_file_reference("source=db_pw,target=pw.txt,uid=1000,gid=1001,mode=0400").unwrap();
        assert_eq!(long.name, "db_pw");
        assert_eq!(long.target.name, "pw.txt");
        assert_eq!(
            (long.target.uid.as_str(), long.target.gid.as_str()),
            ("1000", "1001")
        );
        assert_eq!(long.target.mode, 0o400);
        assert_eq!(parse_mode("0o600").unwrap(), 0o600);
        assert_eq!(parse_mode("292").unwrap(), 0o444);
        assert_eq!(
            parse_file_reference("target=x").unwrap_err(),
            "source is required"
        );
        assert_eq!(
            parse_file_reference("source=a,bogus=1").unwrap_err(),
            "invalid field key bogus"
        );
        assert!(parse_file_reference("source=a,mode=rw").is_err());
    }

    #[test]
    fn inspect_shows_config_data_and_never_secret_data() {
        let mut config = Config::default();
        config.spec.annotations.name = "nginx.conf".into();
        config.spec.data = b"worker_processes 1;\n".to_vec();
        let json = inspect_json(&Shown::from(config.clone()));
        assert_eq!(json["Spec"]["Data"], "d29ya2VyX3Byb2Nlc3NlcyAxOwo=");
        assert!(
            pretty(Kind::Config, &Shown::from(config)).ends_with("Data:\nworker_processes 1;\n")
        );
        let mut secret = Secret::default();
        secret.spec.annotations.name = "pw".into();
        secret.spec.data = b"hunter2".to_vec();
        let json = inspect_json(&Shown::from(secret.clone()));
        assert!(json["Spec"].get("Data").is_none());
        assert!(!pretty(Kind::Secret, &Shown::from(secret)).contains("hunter2"));
    }

    #[test]
    fn ls_has_dockers_columns() {
        let text = render_ls(Kind::Secret, Vec::new(), false);
        assert_eq!(
            text.split_whitespace().collect::<Vec<_>>(),
            ["ID", "NAME", "DRIVER", "CREATED", "UPDATED"]
        );
        let text = render_ls(Kind::Config, Vec::new(), false);
        assert_eq!(
            text.split_whitespace().collect::<Vec<_>>(),
            ["ID", "NAME", "CREATED", "UPDATED"]
        );
    }
}

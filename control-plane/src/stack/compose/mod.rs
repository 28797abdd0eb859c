//! Compose files as `docker stack deploy` reads them: parsing (serde-saphyr), variable
//! interpolation, typed decoding with located errors, normalisation of the short syntaxes
//! and the merge of several `-c` files. `hive stack config` prints the result; the deploy
//! code reads it. Design notes: docs/stacks.md.

mod decode;
pub mod error;
pub mod interpolate;
mod merge;
pub mod node;
mod print;
pub mod scalars;
pub mod types;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::{ComposeError, Position};
pub use interpolate::Environment;
pub use print::to_yaml;
pub use types::Config;

use decode::{decode, join};
use node::{Node, Value};
use types::{ServiceConfig, TopLevel};

/// One Compose file as given on the command line (`-` is standard input).
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// Where relative paths start and which variables interpolation sees.
#[derive(Debug, Clone)]
pub struct Context {
    pub working_dir: PathBuf,
    pub environment: Environment,
    pub skip_interpolation: bool,
}

/// The file loaded, with docker's warnings about keys swarm mode does not use.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Service keys swarm ignores, sorted (`Ignoring unsupported options: build, links`).
    pub unsupported: Vec<String>,
    /// Deprecated service keys with docker's explanation.
    pub deprecated: BTreeMap<String, String>,
    /// Other warnings docker prints while loading (deprecated `external.name`).
    pub warnings: Vec<String>,
}

/// The Compose versions `docker stack` reads; a file without `version` is 3.13.
const DEFAULT_VERSION: &str = "3.13";
const VERSIONS: &[&str] = &[
    "3.0", "3.1", "3.2", "3.3", "3.4", "3.5", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12",
    "3.13",
];

/// docker/cli `types.UnsupportedProperties`: service keys swarm mode ignores.
const UNSUPPORTED: &[&str] = &[
    "build",
    "cgroupns_mode",
    "cgroup_parent",
    "devices",
    "domainname",
    "external_links",
    "ipc",
    "links",
    "mac_address",
    "network_mode",
    "pid",
    "privileged",
    "restart",
    "security_opt",
    "shm_size",
    "userns_mode",
];

const DEPRECATED: &[(&str, &str)] = &[
    (
        "container_name",
        "Setting the container name is not supported.",
    ),
    (
        "expose",
        "Exposing ports is unnecessary - services on the same network can access each other's containers on any port.",
    ),
];

/// docker/cli `types.ForbiddenProperties`: service keys refused outright.
const FORBIDDEN: &[(&str, &str)] = &[
    ("extends", "Support for `extends` is not implemented yet."),
    (
        "volume_driver",
        "Instead of setting the volume driver on the service, define a volume using the top-level `volumes` option and specify the driver there.",
    ),
    (
        "volumes_from",
        "To share a volume between services, define it using the top-level `volumes` option and reference it from each service that shares it using the service-level `volumes` option.",
    ),
    ("cpu_quota", "Set resource limits using deploy.resources"),
    ("cpu_shares", "Set resource limits using deploy.resources"),
    ("cpuset", "Set resource limits using deploy.resources"),
    ("mem_limit", "Set resource limits using deploy.resources"),
    (
        "memswap_limit",
        "Set resource limits using deploy.resources",
    ),
];

/// Reads the `-c` files: the working directory is the first file's directory (or the
/// current one for standard input alone).
pub fn read_sources(files: &[String]) -> Result<(Vec<Source>, PathBuf), ComposeError> {
    let first = files.first().ok_or(ComposeError::NoFile)?;
    let cwd = std::env::current_dir().map_err(|source| ComposeError::Read {
        file: ".".to_owned(),
        source,
    })?;
    let working_dir = if first == "-" && files.len() == 1 {
        cwd
    } else {
        let absolute = cwd.join(first);
        absolute.parent().map(Path::to_path_buf).unwrap_or(cwd)
    };
    let mut sources = Vec::with_capacity(files.len());
    for name in files {
        let text = if name == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(name)
        }
        .map_err(|source| ComposeError::Read {
            file: name.clone(),
            source,
        })?;
        sources.push(Source {
            name: name.clone(),
            text,
        });
    }
    Ok((sources, working_dir))
}

/// The process environment, completed by `.env` in the working directory (the process
/// environment wins, as in Compose).
pub fn environment(working_dir: &Path) -> Result<Environment, ComposeError> {
    let mut env: Environment = std::env::vars().collect();
    let dotenv = working_dir.join(".env");
    match std::fs::read_to_string(&dotenv) {
        Ok(text) => {
            for line in parse_env_lines(&text, &|_| None) {
                if let Some((k, v)) = line.split_once('=') {
                    env.entry(k.to_owned()).or_insert_with(|| v.to_owned());
                }
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ComposeError::Read {
                file: dotenv.display().to_string(),
                source,
            });
        }
    }
    Ok(env)
}

/// docker's env-file lines (`pkg/kvfile`): `KEY=VALUE` as written, `#` comments, a bare
/// `KEY` takes its value from `lookup` or is left out.
fn parse_env_lines(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut lines = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some(_) => lines.push(line.to_owned()),
            None => {
                let name = line.trim_end();
                if let Some(value) = lookup(name) {
                    lines.push(format!("{name}={value}"));
                }
            }
        }
    }
    lines
}

/// Loads and merges `sources` into one normalised Compose file.
pub fn load(sources: &[Source], ctx: &Context) -> Result<Loaded, ComposeError> {
    if sources.is_empty() {
        return Err(ComposeError::NoFile);
    }
    let mut version: Option<(String, String)> = None;
    let mut merged: Option<Config> = None;
    let mut unsupported = std::collections::BTreeSet::new();
    let mut deprecated = BTreeMap::new();
    let mut trees = Vec::with_capacity(sources.len());
    let mut warnings = Vec::new();
    for source in sources {
        let mut tree = node::parse(&source.name, &source.text)?;
        let file_version = file_version(&source.name, &tree)?;
        match &version {
            None => version = Some((file_version.clone(), source.name.clone())),
            Some((first, first_file)) if *first != file_version => {
                return Err(ComposeError::VersionMismatch {
                    first: first.clone(),
                    first_file: first_file.clone(),
                    second: file_version,
                    second_file: source.name.clone(),
                });
            }
            Some(_) => {}
        }
        check_forbidden(&source.name, &tree)?;
        if !ctx.skip_interpolation {
            interpolate::interpolate(&mut tree, &ctx.environment)
                .map_err(|e| e.in_file(&source.name))?;
        }
        check_flattened(&source.name, &tree)?;
        for (key, service) in services_of(&tree) {
            let _ = key;
            for name in UNSUPPORTED {
                if service.get(name).is_some() {
                    unsupported.insert((*name).to_owned());
                }
            }
            for (name, why) in DEPRECATED {
                if service.get(name).is_some() {
                    deprecated.insert((*name).to_owned(), (*why).to_owned());
                }
            }
        }
        let config = load_file(&source.name, &tree, &file_version, ctx, &mut warnings)?;
        match merged.as_mut() {
            None => merged = Some(config),
            Some(base) => merge::merge(base, config),
        }
        trees.push((source.name.clone(), tree));
    }
    let config = merged.ok_or(ComposeError::NoFile)?;
    check_references(&config, &trees)?;
    Ok(Loaded {
        config,
        unsupported: unsupported.into_iter().collect(),
        deprecated,
        warnings,
    })
}

fn services_of(tree: &Node) -> Vec<(&str, &Node)> {
    match tree.get("services").map(|s| &s.value) {
        Some(Value::Map(entries)) => entries.iter().map(|(k, v)| (k.name.as_str(), v)).collect(),
        _ => Vec::new(),
    }
}

fn file_version(file: &str, tree: &Node) -> Result<String, ComposeError> {
    let Some(node) = tree.get("version") else {
        return Ok(DEFAULT_VERSION.to_owned());
    };
    let Value::Str(text) = &node.value else {
        return Err(ComposeError::Invalid {
            file: file.to_owned(),
            at: node.at,
            path: "version".to_owned(),
            message: format!(
                "version must be a string, found {} (write version: \"3.8\")",
                node.value.kind()
            ),
        });
    };
    let version = if text.is_empty() || text == "3" {
        DEFAULT_VERSION.to_owned()
    } else {
        text.clone()
    };
    if !VERSIONS.contains(&version.as_str()) {
        return Err(ComposeError::Invalid {
            file: file.to_owned(),
            at: node.at,
            path: "version".to_owned(),
            message: format!(
                "unsupported Compose file version: {version}: docker stack and hive read versions 3.0 to 3.13 (or no version)"
            ),
        });
    }
    Ok(version)
}

fn check_forbidden(file: &str, tree: &Node) -> Result<(), ComposeError> {
    for (service, node) in services_of(tree) {
        for (name, why) in FORBIDDEN {
            if let Some(value) = node.get(name) {
                return Err(ComposeError::Invalid {
                    file: file.to_owned(),
                    at: value.at,
                    path: format!("services.{service}.{name}"),
                    message: format!("compose file contains an unsupported option: {name}: {why}"),
                });
            }
        }
    }
    Ok(())
}

/// Keys of a top-level network, volume, secret or config: one of them at the level of the
/// names means the mapping was flattened (`driver: overlay` beside `front:`).
const OBJECT_KEYS: &[(&str, &[&str])] = &[
    (
        "networks",
        &[
            "driver",
            "driver_opts",
            "ipam",
            "external",
            "internal",
            "attachable",
            "labels",
            "name",
        ],
    ),
    (
        "volumes",
        &["driver", "driver_opts", "external", "labels", "name"],
    ),
    (
        "secrets",
        &[
            "file",
            "external",
            "labels",
            "name",
            "driver",
            "template_driver",
        ],
    ),
    (
        "configs",
        &["file", "external", "labels", "name", "template_driver"],
    ),
];

/// The common mistake of item 6: a mapping's content written one level too high, so that
/// a property reads as the name of an object. YAML accepts it; the message says what
/// happened and how to indent it.
fn check_flattened(file: &str, tree: &Node) -> Result<(), ComposeError> {
    for (section, properties) in OBJECT_KEYS {
        let Some(Node {
            value: Value::Map(entries),
            ..
        }) = tree.get(section)
        else {
            continue;
        };
        for (key, value) in entries {
            let scalar = !matches!(value.value, Value::Map(_) | Value::Null);
            if properties.contains(&key.name.as_str()) && scalar {
                let singular = section.trim_end_matches('s');
                let owner = entries
                    .iter()
                    .find(|(k, v)| k.name != key.name && matches!(v.value, Value::Null))
                    .map(|(k, _)| k.name.clone());
                let hint = match &owner {
                    Some(owner) => format!(
                        "; \"{owner}\" above it has no settings, so it was probably meant as:\n  {section}:\n    {owner}:\n      {}: ...",
                        key.name
                    ),
                    None => format!("; indent it under the {singular} it belongs to"),
                };
                return Err(ComposeError::Invalid {
                    file: file.to_owned(),
                    at: key.at,
                    path: join(section, &key.name),
                    message: format!(
                        "\"{}\" is written beside the {singular} names, so it reads as a {singular} called \"{}\" whose settings are not a mapping{hint}",
                        key.name, key.name
                    ),
                });
            }
        }
    }
    for (name, service) in services_of(tree) {
        if !matches!(service.value, Value::Map(_)) {
            let looks_like_key = [
                "image",
                "command",
                "ports",
                "deploy",
                "environment",
                "networks",
            ]
            .contains(&name);
            let message = if looks_like_key {
                format!(
                    "\"{name}\" is written beside the service names, so it reads as a service called \"{name}\"; indent it under the service it belongs to"
                )
            } else {
                format!(
                    "a service must be a mapping (image:, deploy:, ...), found {}",
                    service.value.kind()
                )
            };
            return Err(ComposeError::Invalid {
                file: file.to_owned(),
                at: service.at,
                path: join("services", name),
                message,
            });
        }
    }
    Ok(())
}

fn extras_of(node: Option<&Node>) -> types::Extras {
    match node.map(|n| &n.value) {
        Some(Value::Map(entries)) => entries
            .iter()
            .filter(|(k, _)| k.name.starts_with("x-"))
            .map(|(k, v)| (k.name.clone(), v.clone()))
            .collect(),
        _ => types::Extras::new(),
    }
}

fn absolute(working_dir: &Path, path: &str) -> String {
    if Path::new(path).is_absolute() {
        path.to_owned()
    } else {
        clean(&working_dir.join(path))
    }
}

/// Go's `filepath.Join` cleans `.` and `..`; so does this.
fn clean(path: &Path) -> String {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(p) => parts.push(p),
            std::path::Component::RootDir | std::path::Component::Prefix(_) => {}
        }
    }
    let joined: Vec<String> = parts
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    format!("/{}", joined.join("/"))
}

fn load_file(
    file: &str,
    tree: &Node,
    version: &str,
    ctx: &Context,
    warnings: &mut Vec<String>,
) -> Result<Config, ComposeError> {
    // docker warns from 3.5 on for networks, secrets and configs, from 3.4 on for volumes.
    let minor: u32 = version
        .strip_prefix("3.")
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let top: TopLevel = decode(tree, "").map_err(|e| e.in_file(file))?;
    let mut config = Config {
        version: version.to_owned(),
        extras: extras_of(Some(tree)),
        ..Config::default()
    };
    let services_node = tree.get("services");
    for (name, mut service) in top.services.unwrap_or_default() {
        let node = services_node.and_then(|s| s.get(&name));
        service.extras = extras_of(node);
        resolve_environment(file, &name, &mut service, ctx)?;
        for volume in &mut service.volumes {
            let v = &mut volume.0;
            if v.kind == "bind" {
                let source = match v.source.strip_prefix('~') {
                    Some(rest) => match ctx.environment.get("HOME") {
                        Some(home) => format!("{home}{rest}"),
                        None => v.source.clone(),
                    },
                    None => v.source.clone(),
                };
                v.source = absolute(&ctx.working_dir, &source);
            }
        }
        config.services.insert(name, service);
    }
    let section = |name: &str| tree.get(name);
    for (name, network) in top.networks.unwrap_or_default() {
        let mut network = network.unwrap_or_default();
        if network.external.external {
            let deprecated_name = !network.external.name.is_empty();
            network.name =
                external_name(file, "network", &name, &network.name, &mut network.external)?;
            if deprecated_name && minor >= 5 {
                warnings.push(format!(
                    "network {name}: network.external.name is deprecated in favor of network.name"
                ));
            }
            network.extras = extras_of(section("networks").and_then(|n| n.get(&name)));
        }
        config.networks.insert(name, network);
    }
    for (name, volume) in top.volumes.unwrap_or_default() {
        let mut volume = volume.unwrap_or_default();
        if volume.external.external {
            for (set, key) in [
                (!volume.driver.is_empty(), "driver"),
                (!volume.driver_opts.is_empty(), "driver_opts"),
                (!volume.labels.is_empty(), "labels"),
            ] {
                if set {
                    let at = section("volumes")
                        .and_then(|v| v.get(&name))
                        .map(|n| n.at)
                        .unwrap_or_default();
                    return Err(ComposeError::Invalid {
                        file: file.to_owned(),
                        at,
                        path: join("volumes", &name),
                        message: format!(
                            "conflicting parameters \"external\" and \"{key}\" specified for volume \"{name}\""
                        ),
                    });
                }
            }
            let deprecated_name = !volume.external.name.is_empty();
            volume.name = external_name(file, "volume", &name, &volume.name, &mut volume.external)?;
            if deprecated_name && minor >= 4 {
                warnings.push(format!(
                    "volume {name}: volume.external.name is deprecated in favor of volume.name"
                ));
            }
            volume.extras = extras_of(section("volumes").and_then(|n| n.get(&name)));
        }
        config.volumes.insert(name, volume);
    }
    for (kind, objects, target) in [
        ("secret", top.secrets, &mut config.secrets),
        ("config", top.configs, &mut config.configs),
    ] {
        let plural = format!("{kind}s");
        for (name, mut object) in objects.unwrap_or_default() {
            if object.external.external {
                let deprecated_name = !object.external.name.is_empty();
                object.name = external_name(file, kind, &name, &object.name, &mut object.external)?;
                if deprecated_name && minor >= 5 {
                    warnings.push(format!(
                        "{kind} {name}: {kind}.external.name is deprecated in favor of {kind}.name"
                    ));
                }
            } else if !object.driver.is_empty() {
                if !object.file.is_empty() {
                    return Err(ComposeError::Invalid {
                        file: file.to_owned(),
                        at: section(&plural)
                            .and_then(|s| s.get(&name))
                            .map(|n| n.at)
                            .unwrap_or_default(),
                        path: join(&plural, &name),
                        message: format!(
                            "{kind} {name}: {kind}.driver and {kind}.file conflict; only use {kind}.driver"
                        ),
                    });
                }
            } else {
                object.file = absolute(&ctx.working_dir, &object.file);
            }
            object.extras = extras_of(section(&plural).and_then(|n| n.get(&name)));
            target.insert(name, object);
        }
    }
    Ok(config)
}

fn external_name(
    file: &str,
    kind: &str,
    key: &str,
    name: &str,
    external: &mut types::External,
) -> Result<String, ComposeError> {
    if !external.name.is_empty() {
        if !name.is_empty() {
            return Err(ComposeError::Invalid {
                file: file.to_owned(),
                at: Position::default(),
                path: format!("{kind}s.{key}"),
                message: format!(
                    "{kind} {key}: {kind}.external.name and {kind}.name conflict; only use {kind}.name"
                ),
            });
        }
        return Ok(std::mem::take(&mut external.name));
    }
    Ok(if name.is_empty() {
        key.to_owned()
    } else {
        name.to_owned()
    })
}

/// `env_file` then `environment`; a variable without a value takes the environment's.
fn resolve_environment(
    file: &str,
    service_name: &str,
    service: &mut ServiceConfig,
    ctx: &Context,
) -> Result<(), ComposeError> {
    let lookup = |k: &str| ctx.environment.get(k).cloned();
    let mut env: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut update = |vars: Vec<(String, Option<String>)>| {
        for (k, v) in vars {
            let value = match (&v, lookup(&k)) {
                (None, Some(found)) => Some(found),
                (Some(s), Some(found)) if s.is_empty() => Some(found),
                _ => v,
            };
            env.insert(k, value);
        }
    };
    if !service.env_file.is_empty() {
        let mut vars = Vec::new();
        for path in &service.env_file.0 {
            let full = absolute(&ctx.working_dir, path);
            let text = std::fs::read_to_string(&full).map_err(|source| ComposeError::EnvFile {
                file: format!("{file}: services.{service_name}.env_file"),
                path: full.clone(),
                source,
            })?;
            for line in parse_env_lines(&text, &|k| std::env::var(k).ok()) {
                match line.split_once('=') {
                    Some((k, v)) => vars.push((k.to_owned(), Some(v.to_owned()))),
                    None => vars.push((line, None)),
                }
            }
        }
        update(vars);
    }
    update(
        std::mem::take(&mut service.environment.0)
            .into_iter()
            .collect(),
    );
    service.environment.0 = env;
    Ok(())
}

/// A service that names a network, secret, config or volume the files do not declare.
fn check_references(config: &Config, trees: &[(String, Node)]) -> Result<(), ComposeError> {
    let locate = |service: &str, key: &str, name: &str| -> (String, Position) {
        for (file, tree) in trees.iter().rev() {
            if let Some(list) = tree
                .get("services")
                .and_then(|s| s.get(service))
                .and_then(|s| s.get(key))
            {
                let at = match &list.value {
                    Value::Map(entries) => entries
                        .iter()
                        .find(|(k, _)| k.name == name)
                        .map(|(k, _)| k.at),
                    Value::Seq(items) => items
                        .iter()
                        .find(|i| match &i.value {
                            Value::Str(s) => s == name || s.starts_with(&format!("{name}:")),
                            Value::Map(_) => i
                                .get("source")
                                .is_some_and(|s| s.value == Value::Str(name.to_owned())),
                            _ => false,
                        })
                        .map(|i| i.at),
                    _ => None,
                };
                return (file.clone(), at.unwrap_or(list.at));
            }
        }
        (
            trees.first().map(|(f, _)| f.clone()).unwrap_or_default(),
            Position::default(),
        )
    };
    let fail = |service: &str, key: &str, name: &str, kind: &str, section: &str| {
        let (file, at) = locate(service, key, name);
        ComposeError::Undeclared {
            file,
            at,
            path: format!("services.{service}.{key}"),
            message: format!(
                "undefined {kind} \"{name}\": declare it under the top-level {section}: key"
            ),
        }
    };
    for (name, service) in &config.services {
        for network in service.networks.0.keys() {
            if network != "default" && !config.networks.contains_key(network) {
                return Err(fail(name, "networks", network, "network", "networks"));
            }
        }
        for secret in &service.secrets {
            if !config.secrets.contains_key(&secret.source) {
                return Err(fail(name, "secrets", &secret.source, "secret", "secrets"));
            }
        }
        for c in &service.configs {
            if !config.configs.contains_key(&c.source) {
                return Err(fail(name, "configs", &c.source, "config", "configs"));
            }
        }
        for volume in &service.volumes {
            let v = &volume.0;
            if v.kind == "volume" && !v.source.is_empty() && !config.volumes.contains_key(&v.source)
            {
                return Err(fail(name, "volumes", &v.source, "volume", "volumes"));
            }
        }
    }
    Ok(())
}

//! `stack deploy` and `stack rm` (docker/cli `stack/deploy_composefile.go`, `remove.go`):
//! prune what the file dropped, create the networks that are missing, create new services
//! and update the ones whose spec changed.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::api::StackApi;
use super::{DeployArgs, ResolveImage, load, stack_rows};
use crate::cli::output::{CliFailure, run_client};
use crate::client::ImageResolution;
use crate::stack::convert::{self, NAMESPACE_LABEL};
use crate::stack::files::{FileKind, FileObject};
use crate::store::objects::Network;

/// How long `stack rm` retries a network whose tasks are still going away.
const NETWORK_REMOVE_PATIENCE: Duration = Duration::from_secs(30);

pub fn run(host: Option<&str>, args: DeployArgs) -> anyhow::Result<ExitCode> {
    let loaded = load(&args.compose_files, false)?;
    if !loaded.unsupported.is_empty() {
        eprintln!(
            "Ignoring unsupported options: {}\n",
            loaded.unsupported.join(", ")
        );
    }
    if !loaded.deprecated.is_empty() {
        let lines: Vec<String> = loaded
            .deprecated
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        eprintln!("Ignoring deprecated options:\n\n{}\n", lines.join("\n\n"));
    }
    let plan = convert::plan(&args.stack, &loaded.config)?;
    if !plan.ignored.is_empty() {
        eprintln!(
            "Ignoring options hive does not run yet: {}\n",
            plan.ignored.join(", ")
        );
    }
    let detach = match args.detach {
        Some(d) => d,
        None => {
            eprintln!(
                "Since --detach=false was not specified, tasks will be created in the background.\nIn a future release, --detach=false will become the default."
            );
            true
        }
    };
    // Every secret and config file is read before anything is created.
    let files: Vec<(FileObject, Vec<u8>)> = plan
        .secrets
        .values()
        .chain(plan.configs.values())
        .map(|object| object.read().map(|data| (object.clone(), data)))
        .collect::<Result<_, _>>()?;
    let stack = args.stack.clone();
    let (prune, quiet, resolve_image) = (args.prune, args.quiet, args.resolve_image);
    // `--with-registry-auth`: every service's credentials are read before anything is sent.
    let mut plan = plan;
    if args.with_registry_auth {
        for spec in plan.services.values_mut() {
            crate::cli::registry_auth::attach(spec)?;
        }
    }
    run_client(async move {
        let mut api = StackApi::connect(host).await?;
        let existing: BTreeMap<String, _> = stack_rows(api.services().await?, &stack)
            .into_iter()
            .map(|r| (r.service.spec.annotations.name.clone(), r.service))
            .collect();
        if prune {
            for (name, service) in &existing {
                if !plan.services.contains_key(name) {
                    println!("Removing service {name}");
                    api.remove_service(&service.id).await?;
                }
            }
        }

        // One listing per kind: which of the stack's secrets and configs exist already.
        let mut stored = BTreeMap::new();
        for kind in [FileKind::Secret, FileKind::Config] {
            for (id, version, annotations) in api.files(kind).await? {
                stored.insert((kind, annotations.name), (id, version));
            }
        }
        for (object, data) in files {
            let name = object.annotations.name.clone();
            let existing = stored.get(&(object.kind, name.clone()));
            if api.upsert_file(&object, data, existing).await? {
                println!("Creating {} {name}", object.kind.as_str());
            }
        }

        let mut networks: BTreeMap<String, Network> = api
            .networks()
            .await?
            .into_iter()
            .map(|n| (n.spec.annotations.name.clone(), n))
            .collect();
        for name in &plan.external_networks {
            if !networks.contains_key(name) {
                return Err(CliFailure::Usage(format!(
                    "network \"{name}\" is declared as external, but could not be found. You need to create a swarm-scoped network before the stack is deployed"
                )));
            }
        }
        for (name, spec) in &plan.networks {
            if networks.contains_key(name) {
                continue;
            }
            println!("Creating network {name}");
            let network = api.create_network(spec).await?;
            networks.insert(name.clone(), network);
        }

        // IDs of secrets and configs by name, so that an unchanged service compares equal to
        // the stored spec (the manager resolves names to IDs, as docker's CLI does).
        let mut file_ids = BTreeMap::new();
        for kind in [FileKind::Secret, FileKind::Config] {
            for (id, _, annotations) in api.files(kind).await? {
                file_ids.insert((kind, annotations.name), id);
            }
        }

        let mut to_wait = Vec::new();
        for (name, spec) in &plan.services {
            let mut spec = spec.clone();
            let container = &mut spec.task_template.container;
            for (kind, refs) in [
                (FileKind::Secret, &mut container.secrets),
                (FileKind::Config, &mut container.configs),
            ] {
                for reference in refs.iter_mut() {
                    if let Some(id) = file_ids.get(&(kind, reference.name.clone())) {
                        reference.id.clone_from(id);
                    }
                }
            }
            for attachment in &mut spec.task_template.networks {
                attachment.target = networks
                    .get(&attachment.target)
                    .map(|n| n.id.clone())
                    .ok_or_else(|| {
                        CliFailure::Usage(format!("network {} not found", attachment.target))
                    })?;
            }
            let written = spec.task_template.container.image.clone();
            match existing.get(name) {
                Some(current) => {
                    // docker's `--resolve-image`: `always` pins again; `changed` pins only an
                    // image that differs from the deployed one's `com.docker.stack.image`,
                    // and otherwise keeps the deployed (pinned) reference so that nothing is
                    // updated for it; `never` stores the image as written.
                    let deployed = current
                        .spec
                        .annotations
                        .labels
                        .get(crate::stack::convert::IMAGE_LABEL);
                    let resolution = match resolve_image {
                        ResolveImage::Always => ImageResolution::Resolve,
                        ResolveImage::Never => ImageResolution::AsWritten,
                        ResolveImage::Changed if deployed == Some(&written) => {
                            spec.task_template
                                .container
                                .image
                                .clone_from(&current.spec.task_template.container.image);
                            ImageResolution::AsWritten
                        }
                        ResolveImage::Changed => ImageResolution::Resolve,
                    };
                    println!("Updating service {name} (id: {})", current.id);
                    // An unchanged spec is not sent: its tasks keep running untouched. The
                    // stored spec's credentials are never read back, so credentials are
                    // compared by the manager: it keeps the tasks that already pulled
                    // (`orchestrator::update::is_outdated`), as SwarmKit does.
                    let mut compared = spec.clone();
                    compared.task_template.container.registry_auth = None;
                    if current.spec != compared
                        || spec.task_template.container.registry_auth.is_some()
                    {
                        api.update_service(current, &spec, resolution).await?;
                        to_wait.push(current.id.clone());
                    }
                }
                None => {
                    println!("Creating service {name}");
                    let resolution = match resolve_image {
                        ResolveImage::Never => ImageResolution::AsWritten,
                        ResolveImage::Always | ResolveImage::Changed => ImageResolution::Resolve,
                    };
                    let created = api.create_service(&spec, resolution).await?;
                    to_wait.push(created.id);
                }
            }
        }
        if !detach {
            for id in &to_wait {
                if !quiet {
                    println!("{id}");
                }
                api.wait_converged(id).await?;
            }
        }
        Ok(())
    })
}

/// Removes a stack's services, secrets, configs, then networks (docker's order); false when
/// nothing carried its label.
pub async fn remove_stack(api: &mut StackApi, stack: &str) -> Result<bool, CliFailure> {
    let mut services: Vec<_> = stack_rows(api.services().await?, stack)
        .into_iter()
        .map(|r| r.service)
        .collect();
    services.sort_by(|a, b| a.spec.annotations.name.cmp(&b.spec.annotations.name));
    let mut networks: Vec<Network> = api
        .networks()
        .await?
        .into_iter()
        .filter(|n| {
            n.spec
                .annotations
                .labels
                .get(NAMESPACE_LABEL)
                .map(String::as_str)
                == Some(stack)
        })
        .collect();
    networks.sort_by(|a, b| a.spec.annotations.name.cmp(&b.spec.annotations.name));
    let mut files = Vec::new();
    for kind in [FileKind::Secret, FileKind::Config] {
        let mut of_kind: Vec<(String, String)> = api
            .files(kind)
            .await?
            .into_iter()
            .filter(|(_, _, a)| a.labels.get(NAMESPACE_LABEL).map(String::as_str) == Some(stack))
            .map(|(id, _, a)| (a.name, id))
            .collect();
        of_kind.sort();
        files.extend(of_kind.into_iter().map(|(name, id)| (kind, name, id)));
    }
    if services.is_empty() && networks.is_empty() && files.is_empty() {
        return Ok(false);
    }
    for service in &services {
        println!("Removing service {}", service.spec.annotations.name);
        api.remove_service(&service.id).await?;
    }
    for (kind, name, id) in &files {
        println!("Removing {} {name}", kind.as_str());
        api.remove_file(*kind, id).await?;
    }
    for network in &networks {
        println!("Removing network {}", network.spec.annotations.name);
        // The manager refuses a network that tasks still use; they are going away.
        let deadline = Instant::now() + NETWORK_REMOVE_PATIENCE;
        loop {
            match api.remove_network(&network.id).await {
                Ok(()) => break,
                Err(err) if Instant::now() < deadline => {
                    tracing::debug!(network = %network.id, "network not removed yet: {err:?}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }
    Ok(true)
}

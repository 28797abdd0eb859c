//! `hive service create|ls|ps|inspect|logs|scale|update|rm`, with docker's flags, columns and
//! texts (docker/cli `cli/command/service/*`). The flags are parsed into the store's
//! `ServiceSpec`, which goes to the manager through `client::Control`; the manager checks it
//! (docs/control-plane.md, "The wire").
//!
//! `args` holds the flags, `spec` turns them into a spec, this file runs the commands.

pub mod args;
pub mod health;
pub mod opts;
pub mod progress;
pub mod render;
pub mod spec;
pub mod update_flags;

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::time::SystemTime;

use futures::StreamExt;

use self::render::{log_context, render_tasks};
use super::format::{inspect_format, inspect_output, parse_format};
use super::network::{network_id, resolve};
use super::output::{CliFailure, out, run_client};
use crate::api::pb;
use crate::client::{DaemonClient, ImageResolution, LogsRequest, TaskList};
use crate::store::objects::{Service, ServiceMode, ServiceSpec};

use self::args::{ServiceArgs, ServiceCommand, TaskTableArgs, parse_scale};
use self::spec::{apply_update, create_spec, set_replicas};

async fn inspect(client: &mut DaemonClient, service: &str) -> Result<Service, CliFailure> {
    Ok(client.control.inspect_service(service).await?)
}

/// Read-modify-write of a service's spec, read again and retried when another change
/// committed in between (the manager answers `Aborted`).
pub async fn modify_service(
    client: &mut DaemonClient,
    service: &str,
    change: impl FnMut(&Service, &mut ServiceSpec) -> Result<(), CliFailure>,
) -> Result<Service, CliFailure> {
    modify_service_with(
        client,
        service,
        pb::RegistryAuthFrom::Spec,
        ImageResolution::Resolve,
        change,
    )
    .await
}

/// [`modify_service`], the registry credentials kept from `auth_from` when the changed spec
/// carries none (docker's `registryAuthFrom`: a rollback takes the previous spec's).
pub async fn modify_service_with(
    client: &mut DaemonClient,
    service: &str,
    auth_from: pb::RegistryAuthFrom,
    resolution: ImageResolution,
    mut change: impl FnMut(&Service, &mut ServiceSpec) -> Result<(), CliFailure>,
) -> Result<Service, CliFailure> {
    const ATTEMPTS: usize = 5;
    let mut attempt = 1;
    loop {
        let current = inspect(client, service).await?;
        let mut spec = current.spec.clone();
        change(&current, &mut spec)?;
        let result = client
            .control
            .update_service_with(
                &current.id,
                current.meta.version,
                &spec,
                auth_from,
                resolution,
            )
            .await;
        match result {
            Ok(service) => return Ok(service),
            Err(err) if err.is_conflict() && attempt < ATTEMPTS => attempt += 1,
            Err(err) => return Err(err.into()),
        }
    }
}

/// `service rollback`: the previous spec becomes the spec (and, as in Swarm, the current one
/// the previous, so a second rollback undoes the first).
pub async fn rollback(client: &mut DaemonClient, service: &str) -> Result<Service, CliFailure> {
    modify_service_with(
        client,
        service,
        pb::RegistryAuthFrom::PreviousSpec,
        ImageResolution::Resolve,
        |current, spec| {
            *spec = current.previous_spec.clone().ok_or_else(|| {
                CliFailure::Usage(format!("service {service} does not have a previous spec"))
            })?;
            Ok(())
        },
    )
    .await
}

async fn list_tasks(
    client: &mut DaemonClient,
    service: &str,
    node: &str,
) -> Result<TaskList, CliFailure> {
    let filter = crate::client::TaskFilter {
        service: Some(service).filter(|s| !s.is_empty()),
        node: Some(node).filter(|n| !n.is_empty()),
    };
    client.control.list_tasks(filter).await.map_err(|err| {
        // docker's CLI resolves the service first and says so in its own words.
        if err.code() == Some(tonic::Code::NotFound) && !service.is_empty() {
            CliFailure::Usage(format!("no such service: {service}"))
        } else {
            err.into()
        }
    })
}

/// The task table for `service` and/or `node` (`service ps`, `node ps`).
pub async fn print_tasks(
    client: &mut DaemonClient,
    queries: &[(String, String)],
    table: &TaskTableArgs,
) -> Result<(), CliFailure> {
    let filter = table.task_filter()?;
    let format = table.format()?;
    let mut all = Vec::new();
    let mut seen = HashSet::new();
    // Every query's names: `stack ps` asks once per service.
    let mut names: (HashMap<String, String>, HashMap<String, String>) = Default::default();
    for (service, node) in queries {
        let list = list_tasks(client, service, node).await?;
        all.extend(list.tasks.into_iter().filter(|t| seen.insert(t.id.clone())));
        names.0.extend(list.node_names);
        names.1.extend(list.service_names);
    }
    all.retain(|t| filter.keep(t, &names.0, &names.1));
    let text = render_tasks(
        &all,
        &names.0,
        &names.1,
        table.options(),
        format.as_ref(),
        SystemTime::now(),
    )
    .map_err(CliFailure::Usage)?;
    out(&text);
    Ok(())
}

/// Prints one log line as docker does (`[TIMESTAMP ]CONTEXT    | TEXT`); false once stdout is
/// closed.
fn print_log_line(
    line: &pb::LogLine,
    timestamps: bool,
    no_trunc: bool,
    slot_digits: usize,
) -> bool {
    let text = String::from_utf8_lossy(&line.line);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    if line.task_id.is_empty() {
        eprintln!("{text}");
        return true;
    }
    let context = log_context(
        &line.service_name,
        line.slot,
        &line.task_id,
        &line.node_name,
        no_trunc,
        slot_digits,
    );
    let stamp = if let Some(ts) = line.timestamp.as_ref().filter(|_| timestamps) {
        format!("{} ", crate::cli::output::rfc3339(Some(ts)))
    } else {
        String::new()
    };
    let formatted = format!("{stamp}{context}    | {text}");
    if line.stderr {
        eprintln!("{formatted}");
        true
    } else {
        out(&format!("{formatted}\n"))
    }
}

pub fn run(host: Option<&str>, args: ServiceArgs) -> anyhow::Result<ExitCode> {
    run_client(async move {
        let mut client = DaemonClient::connect(host).await?;
        match args.command {
            ServiceCommand::Create {
                name,
                mode,
                publish,
                env,
                constraint,
                placement_pref,
                label,
                mut network,
                common,
                container,
                image_and_args,
            } => {
                let mut spec = create_spec(
                    name,
                    mode,
                    publish,
                    env,
                    constraint,
                    &label,
                    &common,
                    &image_and_args,
                )?;
                container.apply(&mut spec);
                spec.task_template.placement.preferences = placement_pref;
                if common.with_registry_auth {
                    crate::cli::registry_auth::attach(&mut spec)?;
                }
                resolve(&mut client, &mut network).await?;
                spec.task_template.networks = network;
                let service = client
                    .control
                    .create_service_with(&spec, common.image_resolution())
                    .await?;
                println!("{}", service.id);
                if !common.detach {
                    progress::wait_converged(&mut client, &service.id, false).await?;
                }
            }
            ServiceCommand::Ls { quiet, format } => {
                let format = parse_format(format.as_deref())?;
                let rows = client.control.list_services().await?;
                out(&render::render_ls(&rows, quiet, format.as_ref()).map_err(CliFailure::Usage)?);
            }
            ServiceCommand::Ps { table, services } => {
                let queries: Vec<(String, String)> =
                    services.into_iter().map(|s| (s, String::new())).collect();
                print_tasks(&mut client, &queries, &table).await?;
            }
            ServiceCommand::Inspect {
                pretty,
                format,
                services,
            } => {
                let format = inspect_format(pretty, format.as_deref())?;
                let mut found = Vec::new();
                for service in &services {
                    found.push(inspect(&mut client, service).await?);
                }
                if pretty {
                    let texts: Vec<String> = found.iter().map(render::render_pretty).collect();
                    out(&texts.join("\n\n"));
                } else {
                    // The Engine API's object, from the same conversion (docker's shape).
                    let objects: Vec<_> = found
                        .iter()
                        .map(|s| crate::engine_api::convert::service_out(s, None))
                        .collect();
                    out(&inspect_output(&objects, format.as_ref()).map_err(CliFailure::Usage)?);
                }
            }
            ServiceCommand::Logs {
                follow,
                tail,
                timestamps,
                no_trunc,
                target,
            } => {
                let tail = if tail == "all" {
                    0
                } else {
                    tail.parse().map_err(|_| {
                        CliFailure::Usage(format!(
                            "invalid --tail \"{tail}\": use a number of lines or \"all\""
                        ))
                    })?
                };
                // docker pads slots to the replica count's digits; a task target gets none.
                let slot_digits = match inspect(&mut client, &target).await {
                    Ok(Service {
                        spec:
                            ServiceSpec {
                                mode: ServiceMode::Replicated { replicas },
                                ..
                            },
                        ..
                    }) => replicas.to_string().len(),
                    _ => 0,
                };
                let mut stream = client
                    .control
                    .service_logs(LogsRequest {
                        target,
                        follow,
                        tail,
                        timestamps,
                    })
                    .await?;
                while let Some(line) = stream.next().await {
                    if !print_log_line(&line?, timestamps, no_trunc, slot_digits) {
                        break;
                    }
                }
            }
            ServiceCommand::Scale { detach, scales } => {
                let scales = scales
                    .iter()
                    .map(|s| parse_scale(s))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut errors = Vec::new();
                let mut scaled = Vec::new();
                for (service, replicas) in scales {
                    let result = modify_service(&mut client, &service, |_, spec| {
                        set_replicas(&service, spec, replicas)
                    })
                    .await;
                    match result {
                        Ok(_) => {
                            println!("{service} scaled to {replicas}");
                            scaled.push(service);
                        }
                        Err(CliFailure::Client(err)) => errors.push(err.to_string()),
                        Err(CliFailure::Usage(message)) => errors.push(message),
                    }
                }
                if !detach {
                    for service in &scaled {
                        progress::wait_converged(&mut client, service, false).await?;
                    }
                }
                if !errors.is_empty() {
                    return Err(CliFailure::Usage(errors.join("\n")));
                }
            }
            ServiceCommand::Update {
                mut update,
                service,
            } => {
                resolve(&mut client, &mut update.network_add).await?;
                for name in &mut update.network_rm {
                    *name = network_id(&mut client, name).await?;
                }
                if update.rollback {
                    rollback(&mut client, &service).await?;
                } else {
                    let resolution = update.common.image_resolution();
                    modify_service_with(
                        &mut client,
                        &service,
                        pb::RegistryAuthFrom::Spec,
                        resolution,
                        |_, spec| {
                            apply_update(spec, &update)?;
                            if update.common.with_registry_auth {
                                crate::cli::registry_auth::attach(spec)?;
                            }
                            Ok(())
                        },
                    )
                    .await?;
                }
                println!("{service}");
                if !update.common.detach {
                    progress::wait_converged(&mut client, &service, update.rollback).await?;
                }
            }
            ServiceCommand::Rollback { detach, service } => {
                rollback(&mut client, &service).await?;
                println!("{service}");
                if !detach {
                    progress::wait_converged(&mut client, &service, true).await?;
                }
            }
            ServiceCommand::Rm { services } => {
                let mut errors = Vec::new();
                for service in services {
                    match client.control.remove_service(&service).await {
                        Ok(_) => println!("{service}"),
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
    use std::time::Duration;

    use super::args::UpdateOpts;
    use super::opts::parse_publish;
    use super::*;
    use crate::store::objects::{EndpointMode, RestartCondition, TaskState};
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: ServiceCommand,
    }

    fn parse(args: &[&str]) -> ServiceCommand {
        let mut all = vec!["service"];
        all.extend_from_slice(args);
        TestCli::try_parse_from(all).unwrap().command
    }

    fn spec_of(command: ServiceCommand) -> Result<ServiceSpec, CliFailure> {
        let ServiceCommand::Create {
            name,
            mode,
            publish,
            env,
            constraint,
            label,
            common,
            container,
            image_and_args,
            ..
        } = command
        else {
            panic!("not a create");
        };
        let mut spec = create_spec(
            name,
            mode,
            publish,
            env,
            constraint,
            &label,
            &common,
            &image_and_args,
        )?;
        container.apply(&mut spec);
        Ok(spec)
    }

    #[test]
    fn container_flags_on_create_and_update() {
        let mut spec = spec_of(parse(&[
            "create",
            "--mount",
            "type=volume,source=db,target=/var/lib/db",
            "--mount",
            "type=tmpfs,target=/cache,tmpfs-size=1m",
            "--user",
            "app:staff",
            "--read-only",
            "--cap-add",
            "NET_ADMIN",
            "--ulimit",
            "nofile=100:200",
            "--sysctl",
            "net.core.somaxconn=1024",
            "--stop-signal",
            "SIGQUIT",
            "--init",
            "registry.example/app:1",
        ]))
        .unwrap();
        let c = &spec.task_template.container;
        assert_eq!(c.mounts.len(), 2);
        assert_eq!(c.mounts[1].tmpfs_size_bytes, Some(1 << 20));
        assert_eq!(c.user, "app:staff");
        assert!(c.read_only);
        assert_eq!(c.init, Some(true));
        assert_eq!(c.cap_add, ["NET_ADMIN"]);
        assert_eq!(c.ulimits[0].hard, 200);
        assert_eq!(c.sysctls["net.core.somaxconn"], "1024");
        assert_eq!(c.stop_signal, "SIGQUIT");

        let ServiceCommand::Update { update, .. } = parse(&[
            "update",
            "--mount-rm",
            "/cache",
            "--mount-add",
            "type=bind,source=/srv,target=/var/lib/db,readonly",
            "--cap-drop",
            "NET_ADMIN",
            "--read-only=false",
            "--ulimit-rm",
            "nofile",
            "--sysctl-rm",
            "net.core.somaxconn",
            "app",
        ]) else {
            panic!("not an update");
        };
        apply_update(&mut spec, &update).unwrap();
        let c = &spec.task_template.container;
        assert_eq!(c.mounts.len(), 1, "{:?}", c.mounts);
        assert_eq!(c.mounts[0].source, "/srv");
        assert!(c.mounts[0].readonly);
        assert!(c.cap_add.is_empty());
        assert_eq!(c.cap_drop, ["NET_ADMIN"]);
        assert!(!c.read_only);
        assert!(c.ulimits.is_empty() && c.sysctls.is_empty());
        assert_eq!(c.user, "app:staff", "flags not given stay");
    }

    #[test]
    fn create_flags_build_the_spec() {
        let spec = spec_of(parse(&[
            "create",
            "--name",
            "web",
            "--replicas",
            "3",
            "-p",
            "8080:80",
            "--publish",
            "published=53,target=53,protocol=udp,mode=host",
            "-e",
            "A=1",
            "--constraint",
            "node.role==manager",
            "--limit-memory",
            "512M",
            "--reserve-cpu",
            "0.5",
            "--restart-condition",
            "on-failure",
            "--restart-delay",
            "2s",
            "--endpoint-mode",
            "dnsrr",
            "-l",
            "tier=front",
            "--entrypoint",
            "/bin/sh -c",
            "--stop-grace-period",
            "1m",
            "-d",
            "hive/whoami",
            "--port",
            "80",
        ]))
        .unwrap();
        assert_eq!(spec.annotations.name, "web");
        assert_eq!(spec.annotations.labels["tier"], "front");
        assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 3 });
        let c = &spec.task_template.container;
        assert_eq!(c.image, "hive/whoami");
        assert_eq!(c.args, ["--port", "80"]);
        assert_eq!(c.command, ["/bin/sh", "-c"]);
        assert_eq!(c.env, ["A=1"]);
        assert_eq!(c.stop_grace_period, Duration::from_secs(60));
        assert_eq!(spec.endpoint_spec.ports.len(), 2);
        assert_eq!(spec.endpoint_spec.mode, EndpointMode::Dnsrr);
        assert_eq!(spec.task_template.resources.limits.memory_bytes, 512 << 20);
        assert_eq!(
            spec.task_template.resources.reservations.nano_cpus,
            500_000_000
        );
        assert_eq!(
            spec.task_template.restart_policy.condition,
            RestartCondition::OnFailure
        );
        assert_eq!(
            spec.task_template.restart_policy.delay,
            Duration::from_secs(2)
        );
        assert_eq!(
            spec.task_template.placement.constraints,
            ["node.role==manager"]
        );
    }

    #[test]
    fn create_defaults_and_refusals() {
        let spec = spec_of(parse(&["create", "hive/echo"])).unwrap();
        assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 1 });
        assert!(!spec.annotations.name.is_empty());
        let err = spec_of(parse(&[
            "create",
            "--mode",
            "global",
            "--replicas",
            "2",
            "x",
        ]));
        let Err(CliFailure::Usage(message)) = err else {
            panic!("global with --replicas was accepted");
        };
        assert_eq!(
            message,
            "replicas can only be used with replicated or replicated-job mode"
        );
        let bad = TestCli::try_parse_from(["service", "create", "-p", "8080:80/sctp", "x"]);
        assert!(bad.is_err());
        let bad = TestCli::try_parse_from(["service", "create", "--limit-memory", "lots", "x"]);
        assert!(bad.is_err());
    }

    #[test]
    fn network_flags_on_create_and_update() {
        let ServiceCommand::Create { network, .. } = parse(&[
            "create",
            "--network",
            "backend",
            "--network",
            "name=front,alias=web",
            "hive/whoami",
        ]) else {
            panic!("not a create");
        };
        let targets: Vec<&str> = network.iter().map(|n| n.target.as_str()).collect();
        assert_eq!(targets, ["backend", "front"]);
        assert_eq!(network[1].aliases, ["web"]);
        assert!(
            TestCli::try_parse_from(["service", "create", "--network", "alias=x", "x"]).is_err()
        );

        // `run` resolves names to IDs before applying; here the "IDs" are as given.
        let mut spec = ServiceSpec::default();
        spec.task_template.networks = network;
        let ServiceCommand::Update { update, .. } = parse(&[
            "update",
            "--network-rm",
            "backend",
            "--network-add",
            "name=db,alias=database",
            "web",
        ]) else {
            panic!("not an update");
        };
        apply_update(&mut spec, &update).unwrap();
        let targets: Vec<&str> = spec
            .task_template
            .networks
            .iter()
            .map(|n| n.target.as_str())
            .collect();
        assert_eq!(targets, ["front", "db"]);
        let ServiceCommand::Update { update, .. } =
            parse(&["update", "--network-add", "front", "web"])
        else {
            panic!("not an update");
        };
        let Err(CliFailure::Usage(message)) = apply_update(&mut spec, &update) else {
            panic!("a second attachment was accepted");
        };
        assert_eq!(message, "service is already attached to network front");
    }

    #[test]
    fn update_flags_modify_the_spec() {
        let mut spec = spec_of(parse(&[
            "create",
            "--name",
            "web",
            "-e",
            "A=1",
            "-e",
            "B=2",
            "-p",
            "8080:80",
            "--constraint",
            "node.role==worker",
            "-l",
            "old=1",
            "hive/whoami",
        ]))
        .unwrap();
        let ServiceCommand::Update { update, service } = parse(&[
            "update",
            "--image",
            "hive/echo",
            "--env-add",
            "A=3",
            "--env-rm",
            "B",
            "--publish-rm",
            "80",
            "--publish-add",
            "9090:90/udp",
            "--constraint-rm",
            "node.role==worker",
            "--constraint-add",
            "node.labels.zone==a",
            "--label-rm",
            "old",
            "--label-add",
            "new=2",
            "--force",
            "--replicas",
            "4",
            "-d",
            "web",
        ]) else {
            panic!("not an update");
        };
        assert_eq!(service, "web");
        apply_update(&mut spec, &update).unwrap();
        assert_eq!(spec.task_template.container.image, "hive/echo");
        assert_eq!(spec.task_template.container.env, ["A=3"]);
        assert_eq!(
            spec.endpoint_spec.ports,
            [parse_publish("9090:90/udp").unwrap()]
        );
        assert_eq!(
            spec.task_template.placement.constraints,
            ["node.labels.zone==a"]
        );
        assert_eq!(spec.annotations.labels.len(), 1);
        assert_eq!(spec.annotations.labels["new"], "2");
        assert_eq!(spec.task_template.force_update, 1);
        assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 4 });
        assert!(update.common.detach);

        // Flags not given leave the spec alone.
        let before = spec.clone();
        apply_update(&mut spec, &UpdateOpts::default()).unwrap();
        assert_eq!(spec, before);
    }

    #[test]
    fn scale_specifiers_and_filters() {
        assert_eq!(parse_scale("web=5").unwrap(), ("web".to_owned(), 5));
        let Err(CliFailure::Usage(message)) = parse_scale("web") else {
            panic!("a bad scale specifier was accepted");
        };
        assert!(message.starts_with("invalid scale specifier 'web'."));
        let mut global = ServiceSpec {
            mode: ServiceMode::Global,
            ..ServiceSpec::default()
        };
        let Err(CliFailure::Usage(message)) = set_replicas("agent", &mut global, 2) else {
            panic!("a global service was scaled");
        };
        assert_eq!(
            message,
            "agent: scale can only be used with replicated or replicated-job mode"
        );
        assert!(parse_scale("=3").is_err());
        let ServiceCommand::Ps { table, .. } =
            parse(&["ps", "--filter", "desired-state=running", "web"])
        else {
            panic!("not ps");
        };
        assert_eq!(table.task_filter().unwrap().desired, [TaskState::Running]);
        let ServiceCommand::Ps { table, .. } = parse(&["ps", "-f", "label=x", "web"]) else {
            panic!("not ps");
        };
        assert!(table.task_filter().is_err());
    }

    #[test]
    fn placement_preferences_and_the_per_node_limit() {
        let ServiceCommand::Create {
            placement_pref,
            common,
            ..
        } = parse(&[
            "create",
            "--placement-pref",
            "spread=node.labels.zone",
            "--replicas-max-per-node",
            "2",
            "hive/whoami",
        ])
        else {
            panic!("not a create");
        };
        assert_eq!(placement_pref[0].spread, "node.labels.zone");
        assert_eq!(common.replicas_max_per_node, Some(2));
        for bad in ["pack=node.labels.zone", "spread", "spread=node.id"] {
            assert!(
                TestCli::try_parse_from(["service", "create", "--placement-pref", bad, "x"])
                    .is_err(),
                "{bad}"
            );
        }
        let mut spec = ServiceSpec::default();
        spec.task_template.placement.preferences = placement_pref;
        let ServiceCommand::Update { update: opts, .. } = parse(&[
            "update",
            "--placement-pref-rm",
            "spread=node.labels.zone",
            "--placement-pref-add",
            "spread=node.labels.rack",
            "--replicas-max-per-node",
            "0",
            "web",
        ]) else {
            panic!("not an update");
        };
        apply_update(&mut spec, &opts).expect("update applies");
        let placement = &spec.task_template.placement;
        assert_eq!(placement.preferences.len(), 1);
        assert_eq!(placement.preferences[0].spread, "node.labels.rack");
        assert_eq!(placement.max_replicas, 0);
    }
}

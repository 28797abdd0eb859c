//! Spec building: the flags of `service create|update|scale` turned into the store's
//! `ServiceSpec`, which the manager checks (docs/control-plane.md, "The wire").

use super::args::{CommonOpts, EndpointModeArg, ModeArg, UpdateOpts};

use super::opts::{env_add, env_rm, parse_labels, publish_add, publish_rm, random_name};
use crate::cli::output::CliFailure;
use crate::store::objects::{EndpointMode, PortConfig, ServiceMode, ServiceSpec};

/// Applies `service update`'s flags to `spec` (removals before additions, as docker).
pub fn apply_update(spec: &mut ServiceSpec, opts: &UpdateOpts) -> Result<(), CliFailure> {
    if let Some(image) = &opts.image {
        spec.task_template.container.image = image.clone();
    }
    let env = &mut spec.task_template.container.env;
    for key in &opts.env_rm {
        env_rm(env, key);
    }
    for entry in &opts.env_add {
        env_add(env, entry);
    }
    let container = &mut spec.task_template.container;
    // As docker: a mount is identified by its target, a ulimit by its name.
    container
        .mounts
        .retain(|m| !opts.mount_rm.contains(&m.target));
    for mount in &opts.mount_add {
        container.mounts.retain(|m| m.target != mount.target);
        container.mounts.push(mount.clone());
    }
    // As docker: a secret or config is removed by its name (or ID); one added again replaces
    // the earlier reference to the same source.
    for (references, remove, add) in [
        (&mut container.secrets, &opts.secret_rm, &opts.secret_add),
        (&mut container.configs, &opts.config_rm, &opts.config_add),
    ] {
        references.retain(|r| !remove.contains(&r.name) && !remove.contains(&r.id));
        for reference in add {
            references.retain(|r| r.name != reference.name);
            references.push(reference.clone());
        }
    }
    container
        .ulimits
        .retain(|u| !opts.ulimit_rm.contains(&u.name));
    for ulimit in &opts.ulimit_add {
        container.ulimits.retain(|u| u.name != ulimit.name);
        container.ulimits.push(ulimit.clone());
    }
    for key in &opts.sysctl_rm {
        container.sysctls.remove(key);
    }
    container.sysctls.extend(opts.sysctl_add.iter().cloned());
    let ports = &mut spec.endpoint_spec.ports;
    for text in &opts.publish_rm {
        publish_rm(ports, text).map_err(CliFailure::Usage)?;
    }
    for port in &opts.publish_add {
        publish_add(ports, port.clone());
    }
    let constraints = &mut spec.task_template.placement.constraints;
    constraints.retain(|c| !opts.constraint_rm.iter().any(|r| r.trim() == c));
    for c in &opts.constraint_add {
        if !constraints.contains(c) {
            constraints.push(c.clone());
        }
    }
    let preferences = &mut spec.task_template.placement.preferences;
    preferences.retain(|p| !opts.placement_pref_rm.contains(p));
    preferences.extend(opts.placement_pref_add.iter().cloned());
    let labels = &mut spec.annotations.labels;
    for key in &opts.label_rm {
        labels.remove(key);
    }
    labels.extend(parse_labels(&opts.label_add));
    // Network flags hold IDs here: `run` resolved the names (`network::resolve`).
    let networks = &mut spec.task_template.networks;
    networks.retain(|n| !opts.network_rm.contains(&n.target));
    for attachment in &opts.network_add {
        if networks.iter().any(|n| n.target == attachment.target) {
            return Err(CliFailure::Usage(format!(
                "service is already attached to network {}",
                attachment.target
            )));
        }
        networks.push(attachment.clone());
    }
    if opts.force {
        spec.task_template.force_update += 1;
    }
    apply_common(spec, &opts.common)
}

/// Applies the shared flags that were given to `spec`.
pub fn apply_common(spec: &mut ServiceSpec, common: &CommonOpts) -> Result<(), CliFailure> {
    common
        .update_config
        .apply(&mut spec.update_config, &mut spec.rollback_config);
    let template = &mut spec.task_template;
    if let Some(replicas) = common.replicas {
        match &mut spec.mode {
            ServiceMode::Replicated { replicas: r } => *r = replicas,
            ServiceMode::Global => {
                return Err(CliFailure::Usage(
                    "replicas can only be used with replicated or replicated-job mode".to_owned(),
                ));
            }
        }
    }
    let resources = &mut template.resources;
    if let Some(v) = common.reserve_cpu {
        resources.reservations.nano_cpus = v;
    }
    if let Some(v) = common.reserve_memory {
        resources.reservations.memory_bytes = v;
    }
    if let Some(v) = common.limit_cpu {
        resources.limits.nano_cpus = v;
    }
    if let Some(v) = common.limit_memory {
        resources.limits.memory_bytes = v;
    }
    let restart = &mut template.restart_policy;
    if let Some(c) = common.restart_condition {
        restart.condition = c.into();
    }
    if let Some(d) = common.restart_delay {
        restart.delay = d;
    }
    if let Some(n) = common.restart_max_attempts {
        restart.max_attempts = n;
    }
    if let Some(w) = common.restart_window {
        restart.window = w;
    }
    if let Some(max) = common.replicas_max_per_node {
        template.placement.max_replicas = max;
    }
    if let Some(mode) = common.endpoint_mode {
        spec.endpoint_spec.mode = match mode {
            EndpointModeArg::Vip => EndpointMode::Vip,
            EndpointModeArg::Dnsrr => EndpointMode::Dnsrr,
        };
    }
    let container = &mut template.container;
    common.health.apply(container)?;
    if let Some(h) = &common.hostname {
        container.hostname = h.clone();
    }
    if let Some(w) = &common.workdir {
        container.workdir = w.clone();
    }
    if let Some(e) = &common.entrypoint {
        container.command = e.split_whitespace().map(str::to_owned).collect();
    }
    if let Some(g) = common.stop_grace_period {
        container.stop_grace_period = g;
    }
    if let Some(signal) = &common.stop_signal {
        container.stop_signal = signal.clone();
    }
    if let Some(user) = &common.user {
        container.user = user.clone();
    }
    if common.init.is_some() {
        container.init = common.init;
    }
    if let Some(read_only) = common.read_only {
        container.read_only = read_only;
    }
    // As docker's update: a capability added is no longer dropped, and the other way round.
    for cap in &common.cap_add {
        container.cap_drop.retain(|c| !c.eq_ignore_ascii_case(cap));
        if !container
            .cap_add
            .iter()
            .any(|c| c.eq_ignore_ascii_case(cap))
        {
            container.cap_add.push(cap.clone());
        }
    }
    for cap in &common.cap_drop {
        container.cap_add.retain(|c| !c.eq_ignore_ascii_case(cap));
        if !container
            .cap_drop
            .iter()
            .any(|c| c.eq_ignore_ascii_case(cap))
        {
            container.cap_drop.push(cap.clone());
        }
    }
    Ok(())
}

/// The spec `service create` sends.
#[allow(clippy::too_many_arguments)]
pub fn create_spec(
    name: Option<String>,
    mode: ModeArg,
    publish: Vec<PortConfig>,
    env: Vec<String>,
    constraint: Vec<String>,
    label: &[String],
    common: &CommonOpts,
    image_and_args: &[String],
) -> Result<ServiceSpec, CliFailure> {
    let mut spec = ServiceSpec::default();
    spec.annotations.name = name.unwrap_or_else(random_name);
    spec.annotations.labels = parse_labels(label);
    spec.mode = match mode {
        ModeArg::Replicated => ServiceMode::Replicated { replicas: 1 },
        ModeArg::Global => ServiceMode::Global,
    };
    let (image, args) = image_and_args.split_first().ok_or_else(|| {
        CliFailure::Usage("\"hive service create\" requires at least 1 argument.".to_owned())
    })?;
    let container = &mut spec.task_template.container;
    container.image = image.clone();
    container.args = args.to_vec();
    container.env = env;
    spec.task_template.placement.constraints = constraint;
    spec.endpoint_spec.ports = publish;
    apply_common(&mut spec, common)?;
    Ok(spec)
}

/// `service scale`'s change; docker's refusal for global services.
pub fn set_replicas(
    service: &str,
    spec: &mut ServiceSpec,
    replicas: u64,
) -> Result<(), CliFailure> {
    match &mut spec.mode {
        ServiceMode::Replicated { replicas: r } => {
            *r = replicas;
            Ok(())
        }
        ServiceMode::Global => Err(CliFailure::Usage(format!(
            "{service}: scale can only be used with replicated or replicated-job mode"
        ))),
    }
}

//! Several `-c` files merged as docker/cli merges them (`loader/merge.go`, mergo with
//! override and appended lists): a later file's value replaces an earlier one when it is
//! set; lists are appended, except ports (keyed by published port), secrets and configs
//! (keyed by source) and volumes (keyed by target), which are merged by key and sorted;
//! `command`/`entrypoint` are replaced; mappings are merged key by key; services, networks,
//! volumes, secrets and configs are merged by name.

use std::collections::BTreeMap;

use super::types::{
    Config, DeployConfig, FileReference, HealthCheckConfig, Placement, PortConfig, Resources,
    RestartPolicy, ServiceConfig, ServiceNetworks, UpdateConfig, VolumeMountEntry,
};

/// Merges `over` into `base`.
pub fn merge(base: &mut Config, over: Config) {
    for (name, service) in over.services {
        match base.services.get_mut(&name) {
            Some(existing) => merge_service(existing, service),
            None => {
                base.services.insert(name, service);
            }
        }
    }
    base.networks.extend(over.networks);
    base.volumes.extend(over.volumes);
    base.secrets.extend(over.secrets);
    base.configs.extend(over.configs);
}

/// A later value replaces an earlier one when it is set (mergo's "not empty").
fn set<T: Default + PartialEq>(dst: &mut T, src: T) {
    if src != T::default() {
        *dst = src;
    }
}

fn append<T>(dst: &mut Vec<T>, src: Vec<T>) {
    dst.extend(src);
}

fn merge_map<V>(dst: &mut BTreeMap<String, V>, src: BTreeMap<String, V>) {
    dst.extend(src);
}

/// Optional structs merge field by field when both are set.
fn merge_opt<T>(dst: &mut Option<T>, src: Option<T>, fields: fn(&mut T, T)) {
    match (dst.as_mut(), src) {
        (_, None) => {}
        (None, Some(s)) => *dst = Some(s),
        (Some(d), Some(s)) => fields(d, s),
    }
}

fn by_key<T, K: Ord>(dst: &mut Vec<T>, src: Vec<T>, key: fn(&T) -> K) {
    let mut map: BTreeMap<K, T> = BTreeMap::new();
    for item in std::mem::take(dst).into_iter().chain(src) {
        map.insert(key(&item), item);
    }
    *dst = map.into_values().collect();
}

fn merge_service(d: &mut ServiceConfig, s: ServiceConfig) {
    set(&mut d.build, s.build);
    append(&mut d.cap_add, s.cap_add);
    append(&mut d.cap_drop, s.cap_drop);
    set(&mut d.cgroupns_mode, s.cgroupns_mode);
    set(&mut d.cgroup_parent, s.cgroup_parent);
    set(&mut d.command, s.command);
    by_key(&mut d.configs, s.configs, |c: &FileReference| {
        c.source.clone()
    });
    set(&mut d.container_name, s.container_name);
    set(&mut d.credential_spec, s.credential_spec);
    append(&mut d.depends_on, s.depends_on);
    merge_deploy(&mut d.deploy, s.deploy);
    append(&mut d.devices, s.devices);
    append(&mut d.dns.0, s.dns.0);
    append(&mut d.dns_search.0, s.dns_search.0);
    set(&mut d.domainname, s.domainname);
    set(&mut d.entrypoint, s.entrypoint);
    merge_map(&mut d.environment.0, s.environment.0);
    append(&mut d.env_file.0, s.env_file.0);
    append(&mut d.expose.0, s.expose.0);
    append(&mut d.external_links, s.external_links);
    append(&mut d.extra_hosts.0, s.extra_hosts.0);
    set(&mut d.hostname, s.hostname);
    merge_opt(&mut d.healthcheck, s.healthcheck, merge_healthcheck);
    set(&mut d.image, s.image);
    if s.init.is_some() {
        d.init = s.init;
    }
    set(&mut d.ipc, s.ipc);
    set(&mut d.isolation, s.isolation);
    merge_map(&mut d.labels.0, s.labels.0);
    append(&mut d.links, s.links);
    merge_opt(&mut d.logging, s.logging, |d, s| {
        if d.driver == s.driver || d.driver.is_empty() || s.driver.is_empty() {
            set(&mut d.driver, s.driver);
            merge_map(&mut d.options, s.options);
        } else {
            *d = s;
        }
    });
    set(&mut d.mac_address, s.mac_address);
    set(&mut d.network_mode, s.network_mode);
    merge_networks(&mut d.networks, s.networks);
    set(&mut d.pid, s.pid);
    by_key(&mut d.ports.0, s.ports.0, |p: &PortConfig| p.published);
    set(&mut d.privileged, s.privileged);
    set(&mut d.read_only, s.read_only);
    set(&mut d.restart, s.restart);
    by_key(&mut d.secrets, s.secrets, |c: &FileReference| {
        c.source.clone()
    });
    append(&mut d.security_opt, s.security_opt);
    set(&mut d.shm_size, s.shm_size);
    set(&mut d.stdin_open, s.stdin_open);
    set(&mut d.stop_grace_period, s.stop_grace_period);
    set(&mut d.stop_signal, s.stop_signal);
    merge_map(&mut d.sysctls.0, s.sysctls.0);
    append(&mut d.tmpfs.0, s.tmpfs.0);
    set(&mut d.tty, s.tty);
    for (name, limit) in s.ulimits {
        if limit != Default::default() {
            d.ulimits.insert(name, limit);
        }
    }
    set(&mut d.user, s.user);
    set(&mut d.oom_score_adj, s.oom_score_adj);
    set(&mut d.userns_mode, s.userns_mode);
    by_key(&mut d.volumes, s.volumes, |v: &VolumeMountEntry| {
        v.0.target.clone()
    });
    set(&mut d.working_dir, s.working_dir);
    merge_map(&mut d.extras, s.extras);
}

fn merge_networks(d: &mut ServiceNetworks, s: ServiceNetworks) {
    for (name, config) in s.0 {
        match (d.0.get_mut(&name), config) {
            (Some(Some(existing)), Some(new)) if new != Default::default() => {
                existing.aliases = new.aliases;
                set(&mut existing.ipv4_address, new.ipv4_address);
                set(&mut existing.ipv6_address, new.ipv6_address);
            }
            (Some(_), None) => {}
            (Some(slot @ None), Some(new)) => *slot = Some(new),
            (Some(Some(_)), Some(_)) => {}
            (None, config) => {
                d.0.insert(name, config);
            }
        }
    }
}

fn merge_healthcheck(d: &mut HealthCheckConfig, s: HealthCheckConfig) {
    append(&mut d.test.0, s.test.0);
    set(&mut d.timeout, s.timeout);
    set(&mut d.interval, s.interval);
    set(&mut d.retries, s.retries);
    set(&mut d.start_period, s.start_period);
    set(&mut d.start_interval, s.start_interval);
    set(&mut d.disable, s.disable);
}

fn merge_deploy(d: &mut DeployConfig, s: DeployConfig) {
    set(&mut d.mode, s.mode);
    if s.replicas.is_some() {
        d.replicas = s.replicas;
    }
    merge_map(&mut d.labels.0, s.labels.0);
    merge_opt(&mut d.update_config, s.update_config, merge_update);
    merge_opt(&mut d.rollback_config, s.rollback_config, merge_update);
    merge_resources(&mut d.resources, s.resources);
    merge_opt(&mut d.restart_policy, s.restart_policy, merge_restart);
    merge_placement(&mut d.placement, s.placement);
    set(&mut d.endpoint_mode, s.endpoint_mode);
}

fn merge_update(d: &mut UpdateConfig, s: UpdateConfig) {
    if s.parallelism.is_some() {
        d.parallelism = s.parallelism;
    }
    set(&mut d.delay, s.delay);
    set(&mut d.failure_action, s.failure_action);
    set(&mut d.monitor, s.monitor);
    set(&mut d.max_failure_ratio, s.max_failure_ratio);
    set(&mut d.order, s.order);
}

fn merge_resources(d: &mut Resources, s: Resources) {
    merge_opt(&mut d.limits, s.limits, |d, s| {
        set(&mut d.cpus, s.cpus);
        set(&mut d.memory, s.memory);
        set(&mut d.pids, s.pids);
    });
    merge_opt(&mut d.reservations, s.reservations, |d, s| {
        set(&mut d.cpus, s.cpus);
        set(&mut d.memory, s.memory);
        append(&mut d.generic_resources, s.generic_resources);
    });
}

fn merge_restart(d: &mut RestartPolicy, s: RestartPolicy) {
    set(&mut d.condition, s.condition);
    set(&mut d.delay, s.delay);
    if s.max_attempts.is_some() {
        d.max_attempts = s.max_attempts;
    }
    set(&mut d.window, s.window);
}

fn merge_placement(d: &mut Placement, s: Placement) {
    append(&mut d.constraints, s.constraints);
    append(&mut d.preferences, s.preferences);
    set(&mut d.max_replicas_per_node, s.max_replicas_per_node);
}

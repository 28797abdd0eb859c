//! The OCI runtime configuration (`config.json`) of a task's container,
//! built with `oci-spec`'s runtime types: Docker's defaults (namespaces,
//! capabilities, masked paths, device rules), the task's network namespace
//! joined by path, its cgroup by absolute path, its limits and mounts.

use std::{collections::HashMap, path::PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount,
    PosixRlimit, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder, get_default_maskedpaths, get_default_mounts,
    get_default_readonly_paths,
};

use super::{
    ContainerError,
    process::{ProcessPlan, ResolvedUser, Ulimit},
};
use crate::{cgroup::cpu_quota_us, spec::ResourceLimits};

/// The cgroup v1 CFS period hive uses (100 ms, as Docker).
const CPU_PERIOD_US: u64 = 100_000;

/// Everything the runtime configuration is made of.
#[derive(Debug)]
pub struct BundleConfig<'a> {
    pub process: &'a ProcessPlan,
    pub user: &'a ResolvedUser,
    pub capabilities: &'a [String],
    pub ulimits: &'a [Ulimit],
    pub hostname: &'a str,
    pub rootfs: PathBuf,
    pub read_only: bool,
    pub netns: PathBuf,
    /// Absolute (`/hive/<scope>/<task-id>`): the same directories in every
    /// hierarchy as hive's own cgroups, whatever runc's own cgroup is.
    pub cgroups_path: PathBuf,
    pub limits: ResourceLimits,
    pub sysctls: HashMap<String, String>,
    /// After Docker's defaults: `/etc/{resolv.conf,hosts,hostname}`, then
    /// the task's `--mount`s.
    pub mounts: Vec<Mount>,
}

fn build_error(what: &str, err: impl std::fmt::Display) -> ContainerError {
    ContainerError::Config {
        reason: format!("{what}: {err}"),
    }
}

/// The runtime `Spec` for `config`.
pub fn runtime_spec(config: &BundleConfig<'_>) -> Result<Spec, ContainerError> {
    let caps = config
        .capabilities
        .iter()
        .map(|name| {
            serde_json::from_value::<Capability>(serde_json::Value::String(name.clone()))
                .map_err(|_| ContainerError::Capability { name: name.clone() })
        })
        .collect::<Result<std::collections::HashSet<_>, _>>()?;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()
        .map_err(|e| build_error("capabilities", e))?;
    let rlimits = config
        .ulimits
        .iter()
        .map(rlimit)
        .collect::<Result<Vec<_>, _>>()?;
    let user = UserBuilder::default()
        .uid(config.user.uid)
        .gid(config.user.gid)
        .additional_gids(config.user.additional_gids.clone())
        .build()
        .map_err(|e| build_error("user", e))?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(config.process.args.clone())
        .env(config.process.env.clone())
        .cwd(config.process.cwd.clone())
        .capabilities(capabilities)
        .rlimits(rlimits)
        .no_new_privileges(false)
        .build()
        .map_err(|e| build_error("process", e))?;
    let root = RootBuilder::default()
        .path(config.rootfs.clone())
        .readonly(config.read_only)
        .build()
        .map_err(|e| build_error("root", e))?;

    let namespace = |typ: LinuxNamespaceType, path: Option<PathBuf>| {
        let builder = LinuxNamespaceBuilder::default().typ(typ);
        match path {
            Some(path) => builder.path(path),
            None => builder,
        }
        .build()
        .map_err(|e| build_error("namespace", e))
    };
    let namespaces = vec![
        namespace(LinuxNamespaceType::Pid, None)?,
        namespace(LinuxNamespaceType::Ipc, None)?,
        namespace(LinuxNamespaceType::Uts, None)?,
        namespace(LinuxNamespaceType::Mount, None)?,
        namespace(LinuxNamespaceType::Network, Some(config.netns.clone()))?,
    ];
    // Docker's device rule: deny everything; runc adds its allow-list of
    // the standard devices (/dev/null, /dev/zero, ...).
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .map_err(|e| build_error("devices", e))?;
    let mut resources = LinuxResourcesBuilder::default().devices(vec![deny_all]);
    if config.limits.memory_bytes != 0 {
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(config.limits.memory_bytes)
                .build()
                .map_err(|e| build_error("memory", e))?,
        );
    }
    if config.limits.nano_cpus != 0 {
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(cpu_quota_us(config.limits.nano_cpus))
                .period(CPU_PERIOD_US)
                .build()
                .map_err(|e| build_error("cpu", e))?,
        );
    }
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(config.cgroups_path.clone())
        .resources(resources.build().map_err(|e| build_error("resources", e))?)
        .sysctl(config.sysctls.clone())
        .masked_paths(get_default_maskedpaths())
        .readonly_paths(get_default_readonly_paths())
        .build()
        .map_err(|e| build_error("linux", e))?;

    let mut mounts = get_default_mounts();
    mounts.extend(config.mounts.iter().cloned());
    SpecBuilder::default()
        .version("1.0.2")
        .root(root)
        .process(process)
        .hostname(config.hostname.to_owned())
        .mounts(mounts)
        .linux(linux)
        .build()
        .map_err(|e| build_error("spec", e))
}

fn rlimit(ulimit: &Ulimit) -> Result<PosixRlimit, ContainerError> {
    let invalid = || ContainerError::Ulimit {
        name: ulimit.name.clone(),
    };
    let name = format!("RLIMIT_{}", ulimit.name.to_ascii_uppercase());
    let typ: PosixRlimitType =
        serde_json::from_value(serde_json::Value::String(name)).map_err(|_| invalid())?;
    PosixRlimitBuilder::default()
        .typ(typ)
        .soft(ulimit.soft)
        .hard(ulimit.hard)
        .build()
        .map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;

    use super::*;

    #[test]
    fn the_spec_joins_the_tasks_netns_and_cgroup() {
        let process = ProcessPlan {
            args: vec!["/bin/sh".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: String::new(),
            stop_signal: Signal::SIGTERM,
        };
        let user = ResolvedUser {
            uid: 1,
            gid: 2,
            additional_gids: vec![],
        };
        let caps = vec!["CAP_CHOWN".to_owned()];
        let ulimits = vec![Ulimit {
            name: "nofile".into(),
            soft: 100,
            hard: 200,
        }];
        let config = BundleConfig {
            process: &process,
            user: &user,
            capabilities: &caps,
            ulimits: &ulimits,
            hostname: "web",
            rootfs: "/state/rootfs".into(),
            read_only: true,
            netns: "/run/hive/n/netns/t".into(),
            cgroups_path: "/hive/n/t".into(),
            limits: ResourceLimits {
                nano_cpus: 500_000_000,
                memory_bytes: 64 << 20,
            },
            sysctls: HashMap::new(),
            mounts: vec![],
        };
        let spec = runtime_spec(&config).expect("spec");
        let json = serde_json::to_value(&spec).expect("json");
        assert_eq!(json["process"]["terminal"], false);
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["linux"]["cgroupsPath"], "/hive/n/t");
        assert_eq!(json["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(json["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
        let netns = json["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .find(|ns| ns["type"] == "network")
            .expect("network namespace");
        assert_eq!(netns["path"], "/run/hive/n/netns/t");
        let bad = vec![Ulimit {
            name: "fly".into(),
            soft: 1,
            hard: 1,
        }];
        assert!(
            runtime_spec(&BundleConfig {
                ulimits: &bad,
                ..config
            })
            .is_err()
        );
    }
}

//! The container's process as Docker derives it from the image and the
//! task: command line (Entrypoint/Cmd and `--entrypoint`/arguments),
//! environment, working directory, user, stop signal, capabilities and
//! ulimits. Pure functions of their inputs, so each rule is unit-tested.

use std::{collections::BTreeSet, path::Path, str::FromStr as _};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::{ContainerError, image::ContainerImage};
use crate::{image::DEFAULT_PATH, spec::TaskSpec};

/// Docker's default capabilities (`oci/caps/defaults.go`).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability of Linux 5.9+ (`capability.h`), for `--cap-add ALL`.
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// One `--ulimit NAME=SOFT[:HARD]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// Without `RLIMIT_`, lower case: `nofile`, `nproc`, `core`, ...
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// The container's process, as Docker would run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    /// `KEY=value`: `PATH` and `HOSTNAME` first, then the image's and the
    /// task's entries (the task's win), as Docker.
    pub env: Vec<String>,
    pub cwd: String,
    /// `--user` or the image's `User`; empty means root.
    pub user: String,
    pub stop_signal: Signal,
}

/// Docker's merge of image and task (`daemon.mergeAndVerifyConfig`,
/// `container.CreateDaemonEnvironment`).
pub fn plan(
    image: &ContainerImage,
    spec: &TaskSpec,
    hostname: &str,
) -> Result<ProcessPlan, ContainerError> {
    let config = image.runtime_config();
    let get = |f: fn(&oci_spec::image::Config) -> Option<Vec<String>>| {
        config.and_then(f).unwrap_or_default()
    };
    let image_entrypoint = get(|c| c.entrypoint().clone());
    let image_cmd = get(|c| c.cmd().clone());
    let image_env = get(|c| c.env().clone());

    // `--entrypoint` replaces the image's and drops its Cmd; arguments
    // replace the Cmd.
    let (entrypoint, cmd) = if spec.command.is_empty() {
        let cmd = if spec.args.is_empty() {
            image_cmd
        } else {
            spec.args.clone()
        };
        (image_entrypoint, cmd)
    } else {
        (spec.command.clone(), spec.args.clone())
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(ContainerError::NoCommand);
    }

    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    for entry in image_env.iter().chain(&spec.env) {
        replace_or_append(&mut env, entry);
    }

    let cwd = match (&spec.workdir, config.and_then(|c| c.working_dir().clone())) {
        (Some(dir), _) => dir.to_string_lossy().into_owned(),
        (None, Some(dir)) if !dir.is_empty() => clean_workdir(&dir),
        _ => "/".to_owned(),
    };
    let user = spec
        .user
        .clone()
        .or_else(|| config.and_then(|c| c.user().clone()))
        .unwrap_or_default();
    let stop_signal = match spec
        .stop_signal
        .clone()
        .or_else(|| config.and_then(|c| c.stop_signal().clone()))
    {
        Some(name) if !name.is_empty() => parse_signal(&name)?,
        _ => Signal::SIGTERM,
    };
    Ok(ProcessPlan {
        args,
        env,
        cwd,
        user,
        stop_signal,
    })
}

/// An image's `WorkingDir` may be relative (Docker makes it absolute).
fn clean_workdir(dir: &str) -> String {
    if dir.starts_with('/') {
        dir.to_owned()
    } else {
        format!("/{dir}")
    }
}

fn replace_or_append(env: &mut Vec<String>, entry: &str) {
    let key = entry.split_once('=').map_or(entry, |(k, _)| k);
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(existing) => *existing = entry.to_owned(),
        None => env.push(entry.to_owned()),
    }
}

/// `SIGTERM`, `TERM`, `sigterm` or `15` (Docker's `signal.ParseSignal`).
pub fn parse_signal(text: &str) -> Result<Signal, ContainerError> {
    let invalid = || ContainerError::Signal {
        signal: text.to_owned(),
    };
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| invalid());
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| invalid())
}

/// The capability set of Docker's `--cap-add`/`--cap-drop` on top of the
/// defaults (`oci/caps.TweakCapabilities`): names with or without `CAP_`,
/// any case, `ALL`.
pub fn capabilities(add: &[String], drop: &[String]) -> Result<Vec<String>, ContainerError> {
    let normalize = |name: &String| -> Result<String, ContainerError> {
        let upper = name.to_ascii_uppercase();
        if upper == "ALL" {
            return Ok(upper);
        }
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        if ALL_CAPABILITIES.contains(&full.as_str()) {
            Ok(full)
        } else {
            Err(ContainerError::Capability { name: name.clone() })
        }
    };
    let add = add.iter().map(normalize).collect::<Result<Vec<_>, _>>()?;
    let drop = drop.iter().map(normalize).collect::<Result<Vec<_>, _>>()?;
    let mut caps: BTreeSet<&str> = if add.iter().any(|c| c == "ALL") {
        ALL_CAPABILITIES.into_iter().collect()
    } else if drop.iter().any(|c| c == "ALL") {
        BTreeSet::new()
    } else {
        DEFAULT_CAPABILITIES.into_iter().collect()
    };
    if !add.iter().any(|c| c == "ALL") {
        for cap in drop.iter().filter(|c| *c != "ALL") {
            caps.remove(cap.as_str());
        }
    }
    for cap in add.iter().filter(|c| *c != "ALL") {
        caps.insert(cap.as_str());
    }
    Ok(caps.into_iter().map(str::to_owned).collect())
}

/// A resolved user: IDs and supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Resolve `user` (`name|uid[:group|gid]`) against the image's
/// `/etc/passwd` and `/etc/group`, as Docker (runc's `user.GetExecUser`)
/// does.
pub fn resolve_user(image: &ContainerImage, user: &str) -> Result<ResolvedUser, ContainerError> {
    let read = |path: &str| {
        image
            .file(Path::new(path))
            .and_then(|file| std::fs::read_to_string(file).ok())
            .unwrap_or_default()
    };
    resolve_user_in(user, &read("etc/passwd"), &read("etc/group"))
}

fn resolve_user_in(user: &str, passwd: &str, group: &str) -> Result<ResolvedUser, ContainerError> {
    let failed = |reason: String| ContainerError::User {
        user: user.to_owned(),
        reason,
    };
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    // name:x:uid:gid:...
    let entries = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| l.split(':').map(str::to_owned).collect())
            .collect()
    };
    let passwd = entries(passwd);
    let groups = entries(group);
    let found = passwd.iter().find(|e| {
        e.len() >= 4 && (e[0] == user_part || user_part.parse::<u32>().ok() == e[2].parse().ok())
    });
    let (uid, mut gid, name) = match (found, user_part.parse::<u32>()) {
        (Some(e), _) => (
            e[2].parse()
                .map_err(|_| failed(format!("bad uid in passwd entry {:?}", e[0])))?,
            e[3].parse()
                .map_err(|_| failed(format!("bad gid in passwd entry {:?}", e[0])))?,
            Some(e[0].clone()),
        ),
        (None, Ok(uid)) => (uid, 0, None),
        (None, Err(_)) => {
            return Err(failed(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            )));
        }
    };
    if let Some(group_part) = group_part {
        gid = match groups
            .iter()
            .find(|e| e.len() >= 3 && e[0] == group_part)
            .map(|e| e[2].parse::<u32>())
        {
            Some(Ok(gid)) => gid,
            Some(Err(_)) => return Err(failed(format!("bad gid for group {group_part}"))),
            None => group_part.parse().map_err(|_| {
                failed(format!(
                    "unable to find group {group_part}: no matching entries in group file"
                ))
            })?,
        };
    }
    let additional_gids = match (&name, group_part) {
        (Some(name), None) => groups
            .iter()
            .filter(|e| e.len() >= 4 && e[3].split(',').any(|m| m == name))
            .filter_map(|e| e[2].parse().ok())
            .filter(|g| *g != gid)
            .collect(),
        _ => Vec::new(),
    };
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};

    use super::*;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ContainerImage {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let config = ConfigBuilder::default()
            .entrypoint(owned(entrypoint))
            .cmd(owned(cmd))
            .env(owned(&["PATH=/image/bin", "A=image", "B=image"]))
            .working_dir("/srv")
            .stop_signal("SIGQUIT")
            .build()
            .expect("config");
        ContainerImage {
            layers: Vec::new(),
            config: ImageConfigurationBuilder::default()
                .config(config)
                .build()
                .expect("image config"),
            health_check: None,
        }
    }

    #[test]
    fn entrypoint_and_cmd_combine_and_are_overridden_as_in_docker() {
        let image = image(&["/bin/app"], &["--serve"]);
        let mut spec = TaskSpec::new("t", "app");
        assert_eq!(
            plan(&image, &spec, "h").expect("plan").args,
            ["/bin/app", "--serve"]
        );
        spec.args = vec!["--other".into()];
        assert_eq!(
            plan(&image, &spec, "h").expect("plan").args,
            ["/bin/app", "--other"]
        );
        spec.command = vec!["sh".into(), "-c".into()];
        spec.args = vec![];
        assert_eq!(plan(&image, &spec, "h").expect("plan").args, ["sh", "-c"]);
        let empty = super::super::image::ContainerImage {
            layers: Vec::new(),
            config: Default::default(),
            health_check: None,
        };
        assert!(matches!(
            plan(&empty, &TaskSpec::new("t", "x"), "h"),
            Err(ContainerError::NoCommand)
        ));
    }

    #[test]
    fn env_workdir_and_stop_signal_come_from_the_image_unless_the_task_says() {
        let image = image(&["/bin/app"], &[]);
        let mut spec = TaskSpec::new("t", "app");
        spec.env = vec!["B=task".into(), "C=task".into()];
        let plan1 = plan(&image, &spec, "web").expect("plan");
        assert_eq!(
            plan1.env,
            [
                "PATH=/image/bin",
                "HOSTNAME=web",
                "A=image",
                "B=task",
                "C=task"
            ]
        );
        assert_eq!(plan1.cwd, "/srv");
        assert_eq!(plan1.stop_signal, Signal::SIGQUIT);
        spec.workdir = Some("/tmp".into());
        spec.stop_signal = Some("9".into());
        let plan2 = plan(&image, &spec, "web").expect("plan");
        assert_eq!(plan2.cwd, "/tmp");
        assert_eq!(plan2.stop_signal, Signal::SIGKILL);
        spec.stop_signal = Some("SIGNOPE".into());
        assert!(
            plan(&image, &spec, "web")
                .expect_err("bad signal")
                .to_string()
                .contains("Invalid signal: SIGNOPE")
        );
    }

    #[test]
    fn signals_parse_like_docker() {
        assert_eq!(parse_signal("TERM").expect("TERM"), Signal::SIGTERM);
        assert_eq!(parse_signal("sigusr1").expect("usr1"), Signal::SIGUSR1);
        assert_eq!(parse_signal("2").expect("2"), Signal::SIGINT);
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn capabilities_tweak_dockers_defaults() {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let caps = capabilities(&s(&["net_admin"]), &s(&["CAP_CHOWN", "kill"])).expect("caps");
        assert!(caps.contains(&"CAP_NET_ADMIN".to_owned()));
        assert!(!caps.contains(&"CAP_CHOWN".to_owned()));
        assert!(!caps.contains(&"CAP_KILL".to_owned()));
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len() - 1);
        let only = capabilities(&s(&["NET_RAW"]), &s(&["ALL"])).expect("drop all");
        assert_eq!(only, ["CAP_NET_RAW"]);
        assert_eq!(
            capabilities(&s(&["ALL"]), &[]).expect("all").len(),
            ALL_CAPABILITIES.len()
        );
        assert!(capabilities(&s(&["CAP_FLY"]), &[]).is_err());
    }

    #[test]
    fn users_resolve_against_the_images_files() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/home/web:/bin/sh\n";
        let group = "root:x:0:\nweb:x:1000:\nstaff:x:50:web,other\n";
        let r = |u: &str| resolve_user_in(u, passwd, group);
        assert_eq!(
            r("web").expect("web"),
            ResolvedUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![50]
            }
        );
        assert_eq!(r("").expect("root").uid, 0);
        assert_eq!(r("1000:staff").expect("uid:group").gid, 50);
        assert_eq!(r("4242:4343").expect("numeric").uid, 4242);
        assert_eq!(r("4242").expect("numeric").gid, 0);
        let err = r("nobody").expect_err("unknown");
        assert!(
            err.to_string().contains("unable to find user nobody"),
            "{err}"
        );
    }
}

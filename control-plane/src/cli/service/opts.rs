//! Parsers for `service create/update` flags, with docker's syntax and units
//! (docker/cli `opts/port.go`, `opts/opts.go`, go-units `RAMInBytes`).

use std::collections::BTreeMap;

use crate::store::objects::{
    Mount, MountType, PlacementPreference, PortConfig, Protocol, PublishMode, Ulimit,
    parse_protocol as parse_protocol_of,
};

/// `-p/--publish`: short `8080:80`, `8080:80/udp`, `80` (published port chosen by the
/// allocator), or long `published=8080,target=80,protocol=udp,mode=host`.
pub fn parse_publish(text: &str) -> Result<PortConfig, String> {
    if text.contains('=') {
        return parse_publish_long(text);
    }
    let (ports, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    let (published, target) = match ports.split_once(':') {
        Some((published, target)) => (parse_port(published, text)?, parse_port(target, text)?),
        None => (0, parse_port(ports, text)?),
    };
    if target == 0 {
        return Err(format!(
            "invalid target port in \"{text}\": use a port from 1 to 65535"
        ));
    }
    Ok(PortConfig {
        protocol: parse_protocol(protocol, target)?,
        target_port: target,
        published_port: published,
        ..PortConfig::default()
    })
}

fn parse_publish_long(text: &str) -> Result<PortConfig, String> {
    let mut port = PortConfig::default();
    let mut protocol = None;
    for field in text.split(',') {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"))?;
        match key.trim().to_ascii_lowercase().as_str() {
            "published" => port.published_port = parse_port(value, text)?,
            "target" => port.target_port = parse_port(value, text)?,
            "protocol" => protocol = Some(value),
            "mode" => {
                port.publish_mode = match value.to_ascii_lowercase().as_str() {
                    "ingress" => PublishMode::Ingress,
                    "host" => PublishMode::Host,
                    _ => {
                        return Err(format!(
                            "invalid publish mode value ({value}): must be either 'ingress' or 'host'"
                        ));
                    }
                }
            }
            other => {
                return Err(format!(
                    "invalid field key '{other}': use published, target, protocol or mode"
                ));
            }
        }
    }
    if port.target_port == 0 {
        return Err(format!("missing mandatory field 'target' in \"{text}\""));
    }
    if let Some(protocol) = protocol {
        port.protocol = parse_protocol(protocol, port.target_port)?;
    }
    Ok(port)
}

fn parse_port(value: &str, whole: &str) -> Result<u16, String> {
    value.trim().parse::<u16>().map_err(|_| {
        format!("invalid port \"{value}\" in \"{whole}\": use a number from 1 to 65535")
    })
}

/// The protocol of the target port `target`, by the cluster's own rule and words.
fn parse_protocol(value: &str, target: u16) -> Result<Protocol, String> {
    parse_protocol_of(value.trim(), target).map_err(|e| e.to_string())
}

/// docker's `--limit-memory`/`--reserve-memory` units (go-units `RAMInBytes`): a number with
/// an optional binary suffix, `b`, `k`, `m`, `g`, `t`, `p` (`512M`, `1g`, `1.5GiB`, `1024`).
pub fn parse_memory(text: &str) -> Result<i64, String> {
    let bad = || format!("invalid size: '{text}'");
    let lower = text.trim().to_ascii_lowercase();
    let number_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(number_end);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let unit = unit.trim_start();
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let multiplier: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    let bytes = value * multiplier;
    if bytes > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

/// docker's `--limit-cpu`/`--reserve-cpu`: a decimal number of CPUs, kept as nano CPUs.
pub fn parse_cpus(text: &str) -> Result<i64, String> {
    let bad = || format!("invalid CPU value \"{text}\": use a decimal number of CPUs, e.g. 0.5");
    let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if (whole.is_empty() && fraction.is_empty())
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    if fraction.len() > 9 {
        return Err("value is too precise".to_owned());
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let fraction: i64 = format!("{fraction:0<9}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(fraction))
        .ok_or_else(bad)
}

/// `-e/--env KEY=value`. docker also takes a bare `KEY` and copies it from the client's
/// environment; so does hive.
pub fn parse_env(text: &str) -> Result<String, String> {
    match text.split_once('=') {
        Some(("", _)) => Err(format!("invalid environment variable: {text}")),
        Some(_) => Ok(text.to_owned()),
        None if text.is_empty() => Err("invalid environment variable: empty".to_owned()),
        None => Ok(format!(
            "{text}={}",
            std::env::var(text).unwrap_or_default()
        )),
    }
}

/// `-l/--label key[=value]`.
pub fn parse_labels(pairs: &[String]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair.as_str(), ""));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// `--constraint`: passed through as typed; the manager checks the syntax and the scheduler
/// evaluates it. Only surrounding spaces are dropped.
pub fn parse_constraint(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty constraint".to_owned());
    }
    Ok(trimmed.to_owned())
}

/// `KEY=value` environment entries with `KEY` replaced or added (`--env-add`).
pub fn env_add(env: &mut Vec<String>, entry: &str) {
    let key = entry.split_once('=').map_or(entry, |(k, _)| k);
    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
    env.push(entry.to_owned());
}

/// Drops the entries for `key` (`--env-rm KEY`; `KEY=value` drops that key too).
pub fn env_rm(env: &mut Vec<String>, key: &str) {
    let key = key.split_once('=').map_or(key, |(k, _)| k);
    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
}

/// `--publish-rm`: by target port (`80`, `80/udp`), as docker documents, or a whole publish
/// spec (`8080:80`), which removes the ports with that published and target port.
pub fn publish_rm(ports: &mut Vec<PortConfig>, text: &str) -> Result<(), String> {
    let spec = parse_publish(text)?;
    let bare_target = !text.contains(':') && !text.contains('=');
    ports.retain(|p| {
        let same = if bare_target {
            p.target_port == spec.target_port
        } else {
            p.target_port == spec.target_port
                && (spec.published_port == 0 || p.published_port == spec.published_port)
        };
        !(same
            && (!text.contains('/') && !text.contains("protocol") || p.protocol == spec.protocol))
    });
    Ok(())
}

/// `--publish-add`: replaces a port with the same published port and protocol.
pub fn publish_add(ports: &mut Vec<PortConfig>, port: PortConfig) {
    ports.retain(|p| {
        !(p.protocol == port.protocol
            && ((port.published_port != 0 && p.published_port == port.published_port)
                || (port.published_port == 0 && p.target_port == port.target_port)))
    });
    ports.push(port);
}

/// `--mount type=volume|bind|tmpfs,source=...,target=...,readonly,volume-opt=K=V,tmpfs-size=SIZE`
/// (docker/cli `opts/mount.go`: `src`, `dst`/`destination`, `ro` are accepted too; `type`
/// defaults to `volume`).
pub fn parse_mount(text: &str) -> Result<Mount, String> {
    let mut mount = Mount::default();
    let mut tmpfs_option = false;
    let mut volume_option = false;
    for field in text.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((key, value)) => (key.trim().to_ascii_lowercase(), Some(value)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let value_of =
            || value.ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"));
        match key.as_str() {
            "type" => {
                mount.mount_type = match value_of()?.to_ascii_lowercase().as_str() {
                    "volume" => MountType::Volume,
                    "bind" => MountType::Bind,
                    "tmpfs" => MountType::Tmpfs,
                    other => {
                        return Err(format!(
                            "invalid mount type '{other}': hive mounts volume, bind or tmpfs"
                        ));
                    }
                }
            }
            "source" | "src" => mount.source = value_of()?.to_owned(),
            "target" | "dst" | "destination" => mount.target = value_of()?.to_owned(),
            "readonly" | "ro" => {
                mount.readonly = match value.map(str::to_ascii_lowercase).as_deref() {
                    None | Some("1" | "true") => true,
                    Some("0" | "false") => false,
                    Some(other) => {
                        return Err(format!(
                            "invalid value for {key}: {other} (use true or false)"
                        ));
                    }
                }
            }
            "volume-driver" => {
                volume_option = true;
                let driver = value_of()?;
                if driver != "local" {
                    return Err(format!(
                        "volume driver '{driver}' is not available: hive has the local driver"
                    ));
                }
            }
            "volume-opt" => {
                volume_option = true;
                let (k, v) = value_of()?.split_once('=').ok_or_else(|| {
                    format!("invalid volume-opt '{field}': use volume-opt=KEY=VALUE")
                })?;
                mount.volume_options.insert(k.to_owned(), v.to_owned());
            }
            "tmpfs-size" => {
                tmpfs_option = true;
                let bytes = parse_memory(value_of()?)?;
                mount.tmpfs_size_bytes = Some(
                    u64::try_from(bytes).map_err(|_| format!("invalid tmpfs-size in '{text}'"))?,
                );
            }
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
    }
    if mount.target.is_empty() {
        return Err(format!("target is required in '{text}'"));
    }
    if !mount.target.starts_with('/') {
        return Err(format!(
            "invalid mount target '{}': use an absolute path inside the container",
            mount.target
        ));
    }
    let type_name = match mount.mount_type {
        MountType::Volume => "volume",
        MountType::Bind => "bind",
        MountType::Tmpfs => "tmpfs",
    };
    if tmpfs_option && mount.mount_type != MountType::Tmpfs {
        return Err(format!(
            "cannot mix 'tmpfs-*' options with mount type '{type_name}'"
        ));
    }
    if volume_option && mount.mount_type != MountType::Volume {
        return Err(format!(
            "cannot mix 'volume-*' options with mount type '{type_name}'"
        ));
    }
    crate::volume_store::validate_options(&mount.volume_options)
        .map_err(|e| format!("invalid volume-opt in '{text}': {e}"))?;
    match mount.mount_type {
        MountType::Bind if !mount.source.starts_with('/') => Err(format!(
            "invalid mount config for type \"bind\": invalid mount path: '{}' mount path must be absolute",
            mount.source
        )),
        MountType::Tmpfs if !mount.source.is_empty() => {
            Err("invalid mount config for type \"tmpfs\": source must not be specified".to_owned())
        }
        _ => Ok(mount),
    }
}

/// `--ulimit NAME=SOFT[:HARD]` (`nofile=1024:2048`; a single value is both).
pub fn parse_ulimit(text: &str) -> Result<Ulimit, String> {
    let bad =
        || format!("invalid ulimit argument: {text} (use NAME=SOFT[:HARD], e.g. nofile=1024:2048)");
    let (name, values) = text.split_once('=').ok_or_else(bad)?;
    let (soft, hard) = values.split_once(':').unwrap_or((values, values));
    let soft: u64 = soft.trim().parse().map_err(|_| bad())?;
    let hard: u64 = hard.trim().parse().map_err(|_| bad())?;
    if name.is_empty() || soft > hard {
        return Err(format!(
            "ulimit {text}: the soft limit must not exceed the hard limit"
        ));
    }
    Ok(Ulimit {
        name: name.trim().to_ascii_lowercase(),
        soft,
        hard,
    })
}

/// `--sysctl KEY=VALUE`.
pub fn parse_sysctl(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("invalid sysctl '{text}': use KEY=VALUE")),
    }
}

/// docker's names for services created without `--name` (its `namesgenerator`, shortened).
pub fn random_name() -> String {
    const LEFT: [&str; 16] = [
        "admiring", "bold", "brave", "clever", "eager", "focused", "gifted", "happy", "jolly",
        "keen", "loving", "nifty", "quirky", "serene", "vibrant", "zealous",
    ];
    const RIGHT: [&str; 16] = [
        "archimedes",
        "babbage",
        "curie",
        "darwin",
        "euclid",
        "fermi",
        "galileo",
        "hopper",
        "kepler",
        "lovelace",
        "newton",
        "noether",
        "pascal",
        "ritchie",
        "turing",
        "wozniak",
    ];
    use rand::seq::SliceRandom;
    let mut rng = rand::thread_rng();
    format!(
        "{}_{}",
        LEFT.choose(&mut rng).copied().unwrap_or("bold"),
        RIGHT.choose(&mut rng).copied().unwrap_or("turing")
    )
}

/// `--placement-pref spread=node.labels.zone` (docker/cli `opts.placementPrefOpts`).
pub fn parse_placement_pref(text: &str) -> Result<PlacementPreference, String> {
    let Some((strategy, descriptor)) = text.split_once('=') else {
        return Err("placement preference must be of the format \"<strategy>=<arg>\"".to_owned());
    };
    if strategy != "spread" {
        return Err(format!(
            "unsupported placement preference {strategy} (only spread is supported)"
        ));
    }
    if !crate::manager::scheduler::spread::valid_descriptor(descriptor) {
        return Err(format!(
            "invalid spread descriptor \"{descriptor}\": use node.labels.NAME or engine.labels.NAME"
        ));
    }
    Ok(PlacementPreference {
        spread: descriptor.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(published: u16, target: u16, protocol: Protocol, mode: PublishMode) -> PortConfig {
        PortConfig {
            name: String::new(),
            protocol,
            target_port: target,
            published_port: published,
            publish_mode: mode,
        }
    }

    #[test]
    fn publish_short_syntax() {
        use PublishMode::Ingress;
        assert_eq!(
            parse_publish("8080:80"),
            Ok(port(8080, 80, Protocol::Tcp, Ingress))
        );
        assert_eq!(
            parse_publish("8080:80/udp"),
            Ok(port(8080, 80, Protocol::Udp, Ingress))
        );
        assert_eq!(parse_publish("80"), Ok(port(0, 80, Protocol::Tcp, Ingress)));
        assert_eq!(
            parse_publish("53/UDP"),
            Ok(port(0, 53, Protocol::Udp, Ingress))
        );
        assert!(parse_publish("8080:0").is_err());
        assert!(parse_publish("70000:80").is_err());
        assert!(parse_publish("8080:80/sctp").is_err());
        assert!(parse_publish("web:80").is_err());
    }

    #[test]
    fn sctp_is_refused_with_the_clusters_words() {
        let refusal = "hive does not support SCTP ports yet (port 80/sctp): publish tcp or udp";
        assert_eq!(parse_publish("8080:80/sctp"), Err(refusal.to_owned()));
        assert_eq!(
            parse_publish("protocol=SCTP,published=8080,target=80"),
            Err(refusal.to_owned())
        );
        assert_eq!(
            parse_publish("80/icmp"),
            Err("invalid protocol \"icmp\" (port 80): publish tcp or udp".to_owned())
        );
    }

    #[test]
    fn publish_long_syntax() {
        assert_eq!(
            parse_publish("published=8080,target=80,protocol=udp,mode=host"),
            Ok(port(8080, 80, Protocol::Udp, PublishMode::Host))
        );
        assert_eq!(
            parse_publish("target=80"),
            Ok(port(0, 80, Protocol::Tcp, PublishMode::Ingress))
        );
        assert_eq!(
            parse_publish("published=8080"),
            Err("missing mandatory field 'target' in \"published=8080\"".to_owned())
        );
        assert!(parse_publish("target=80,mode=bridge").is_err());
        assert!(parse_publish("target=80,color=red").is_err());
    }

    #[test]
    fn memory_units_are_binary_like_dockers() {
        assert_eq!(parse_memory("512M"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_memory("1G"), Ok(1 << 30));
        assert_eq!(parse_memory("1g"), Ok(1 << 30));
        assert_eq!(parse_memory("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_memory("100k"), Ok(102_400));
        assert_eq!(parse_memory("1024"), Ok(1024));
        assert_eq!(parse_memory("64mb"), Ok(64 << 20));
        assert_eq!(parse_memory("abc"), Err("invalid size: 'abc'".to_owned()));
        assert!(parse_memory("5x").is_err());
    }

    #[test]
    fn cpus_are_nano_cpus() {
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_cpus(".25"), Ok(250_000_000));
        assert_eq!(parse_cpus("1.000000001"), Ok(1_000_000_001));
        assert_eq!(
            parse_cpus("0.0000000001"),
            Err("value is too precise".to_owned())
        );
        assert!(parse_cpus("-1").is_err());
        assert!(parse_cpus("half").is_err());
        assert!(parse_cpus("").is_err());
    }

    #[test]
    fn env_entries() {
        assert_eq!(parse_env("A=1"), Ok("A=1".to_owned()));
        assert_eq!(parse_env("A="), Ok("A=".to_owned()));
        assert_eq!(parse_env("A=b=c"), Ok("A=b=c".to_owned()));
        assert!(parse_env("=1").is_err());
        assert_eq!(
            parse_env("HIVE_TEST_SURELY_UNSET_VAR"),
            Ok("HIVE_TEST_SURELY_UNSET_VAR=".to_owned())
        );

        let mut env = vec!["A=1".to_owned(), "B=2".to_owned()];
        env_add(&mut env, "A=3");
        env_add(&mut env, "C=4");
        assert_eq!(env, ["B=2", "A=3", "C=4"]);
        env_rm(&mut env, "B");
        env_rm(&mut env, "C=4");
        assert_eq!(env, ["A=3"]);
    }

    #[test]
    fn constraints_pass_through_and_labels_split() {
        assert_eq!(
            parse_constraint(" node.labels.zone != b "),
            Ok("node.labels.zone != b".to_owned())
        );
        assert_eq!(
            parse_constraint("node.role==manager").unwrap(),
            "node.role==manager"
        );
        assert!(parse_constraint("  ").is_err());
        let labels = parse_labels(&["a=1".to_owned(), "b".to_owned()]);
        assert_eq!(labels["a"], "1");
        assert_eq!(labels["b"], "");
    }

    #[test]
    fn publish_add_and_rm() {
        let mut ports = vec![
            parse_publish("8080:80").unwrap(),
            parse_publish("53:53/udp").unwrap(),
        ];
        publish_add(&mut ports, parse_publish("8080:81").unwrap());
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[1].target_port, 81);
        publish_rm(&mut ports, "81").unwrap();
        assert_eq!(ports.len(), 1);
        publish_rm(&mut ports, "53:53/tcp").unwrap();
        assert_eq!(ports.len(), 1);
        publish_rm(&mut ports, "53:53/udp").unwrap();
        assert!(ports.is_empty());
    }

    #[test]
    fn mounts_parse_like_docker() {
        let m = parse_mount("type=bind,src=/srv/data,dst=/data,ro").expect("bind");
        assert_eq!(m.mount_type, MountType::Bind);
        assert_eq!(
            (m.source.as_str(), m.target.as_str()),
            ("/srv/data", "/data")
        );
        assert!(m.readonly);
        let v = parse_mount("source=db,target=/var/lib/db").expect("volume");
        assert_eq!(v.mount_type, MountType::Volume);
        assert!(!v.readonly);
        let t = parse_mount("type=tmpfs,target=/cache,tmpfs-size=64m").expect("tmpfs");
        assert_eq!(t.tmpfs_size_bytes, Some(64 << 20));
        assert_eq!(
            parse_mount("type=volume,source=x"),
            Err("target is required in 'type=volume,source=x'".to_owned())
        );
        assert!(parse_mount("type=bind,source=rel,target=/x").is_err());
        assert!(parse_mount("type=volume,target=/x,tmpfs-size=1m").is_err());
        assert!(parse_mount("type=nfs,target=/x").is_err());
        let tmpfs = parse_mount(
            "source=scratch,target=/s,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=size=1m",
        )
        .expect("local driver options");
        assert_eq!(tmpfs.volume_options["o"], "size=1m");
        assert_eq!(
            parse_mount("source=v,target=/s,volume-opt=uid=1"),
            Err("invalid volume-opt in 'source=v,target=/s,volume-opt=uid=1': invalid option: \"uid\"".to_owned())
        );
        assert!(parse_mount("target=/x,color=red").is_err());
    }

    #[test]
    fn ulimits_and_sysctls() {
        let u = parse_ulimit("nofile=1024:2048").expect("ulimit");
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 1024, 2048));
        assert_eq!(parse_ulimit("nproc=10").expect("single").hard, 10);
        assert!(parse_ulimit("nofile=2:1").is_err());
        assert!(parse_ulimit("nofile").is_err());
        assert_eq!(
            parse_sysctl("net.core.somaxconn=1024"),
            Ok(("net.core.somaxconn".to_owned(), "1024".to_owned()))
        );
        assert!(parse_sysctl("=1").is_err());
    }

    #[test]
    fn random_names_are_valid_service_names() {
        let name = random_name();
        assert!(name.contains('_'));
        let mut spec = crate::store::objects::ServiceSpec::default();
        spec.annotations.name = name;
        spec.task_template.container.image = "x".into();
        assert_eq!(
            crate::manager::controlapi::service_spec::validate(&spec),
            Ok(())
        );
    }
}

//! `hive daemon`'s configuration, checked before anything is bound, and the address rules
//! shared with `swarm init/join` (`--advertise-addr`, `--data-path-port`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/hive";
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:2377";
/// How long in-flight requests may take to finish on SIGTERM/SIGINT.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub data_dir: PathBuf,
    /// Where the node port listens (`--listen-addr`).
    pub listen_addr: SocketAddr,
    /// `--advertise-addr`: `IP`, `IP:port` or an interface name; `None` to detect.
    pub advertise_addr: Option<String>,
    pub socket: PathBuf,
    /// `--data-path-port`: the VXLAN port a `swarm init` on this node uses unless told
    /// otherwise (kept for the data plane).
    pub data_path_port: Option<u16>,
    pub shutdown_grace: Duration,
    /// `--no-dataplane`: run tasks without networks and program no mesh (nodes without
    /// root or BPF, control-plane tests).
    pub no_dataplane: bool,
    /// `--bpf-pin-dir`: where this node's BPF programs and maps are pinned; by default
    /// `/sys/fs/bpf/hive/<node-id>`.
    pub bpf_pin_dir: Option<PathBuf>,
    /// `--task-run-dir`: where task network namespaces are mounted; by default
    /// `/run/hive/<node-id>` (a lab puts it in the node's directory so `lab down` finds it).
    pub task_run_dir: Option<PathBuf>,
    /// `--cgroup-parent`: the cgroup (relative to each hierarchy's root) of this node's
    /// tasks; by default `hive/<node-id>`.
    pub cgroup_parent: Option<PathBuf>,
    /// `--metrics-addr`: where the Prometheus endpoint listens (`GET /metrics`); off when
    /// `None`, as docker's `metrics-addr`.
    pub metrics_addr: Option<SocketAddr>,
    /// `--dns-upstream`: the name servers the tasks' embedded resolver forwards other names
    /// to; `None` for the node's `/etc/resolv.conf`, empty for none at all.
    pub dns_upstreams: Option<Vec<SocketAddr>>,
    /// `--insecure-registry HOST[:PORT]`: registries this node pulls from over plain HTTP,
    /// as dockerd's flag (every other registry is HTTPS only).
    pub insecure_registries: Vec<String>,
    /// `--docker-api`: where the Docker Engine API is served (docs/engine-api.md).
    pub docker_api: Vec<crate::engine_api::DockerApiAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--data-dir {0} must be an absolute path")]
    RelativeDataDir(PathBuf),
    #[error("--socket {0} must be an absolute path")]
    RelativeSocket(PathBuf),
    #[error("invalid --listen-addr \"{value}\": {reason}; use IP:PORT, e.g. 0.0.0.0:2377")]
    ListenAddr { value: String, reason: String },
    #[error(
        "invalid advertise address \"{value}\": it must be an IP address, IP:PORT, or the name of an interface with an IPv4 address"
    )]
    AdvertiseAddr { value: String },
    #[error(
        "could not choose an IP address to advertise since this system has {found}; specify one with --advertise-addr"
    )]
    NoAdvertiseAddr { found: String },
    #[error("--data-path-port {0} is out of range; use a UDP port from 1024 to 49151")]
    DataPathPort(u32),
    #[error(
        "invalid --insecure-registry \"{value}\": use HOST or HOST:PORT as the image references name the registry, e.g. 10.0.0.5:5000"
    )]
    InsecureRegistry { value: String },
    #[error(
        "invalid --dns-upstream \"{value}\": use IP or IP:PORT (repeat the flag for several), or `none` alone to forward nothing"
    )]
    DnsUpstream { value: String },
}

impl DaemonConfig {
    /// Checks everything that can be checked before binding.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.data_dir.is_absolute() {
            return Err(ConfigError::RelativeDataDir(self.data_dir.clone()));
        }
        if !self.socket.is_absolute() {
            return Err(ConfigError::RelativeSocket(self.socket.clone()));
        }
        if let Some(addr) = &self.advertise_addr {
            resolve_advertise(addr, self.listen_addr.port())?;
        }
        if let Some(port) = self.data_path_port {
            check_data_path_port(u32::from(port))?;
        }
        for registry in &self.insecure_registries {
            check_insecure_registry(registry)?;
        }
        Ok(())
    }
}

pub fn parse_listen_addr(value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse()
        .map_err(|e: std::net::AddrParseError| ConfigError::ListenAddr {
            value: value.to_owned(),
            reason: e.to_string(),
        })
}

/// An `--insecure-registry` entry must be a registry as a reference names it (`host`,
/// `host:port`, `[v6]:port`): that is the name the pull compares it with.
pub fn check_insecure_registry(value: &str) -> Result<(), ConfigError> {
    let probe = format!("{value}/probe");
    let valid = !value.is_empty()
        && !value.contains("://")
        && !value.contains('/')
        && probe
            .parse::<crate::image_store::ImageReference>()
            .is_ok_and(|r| r.domain() == value);
    if valid {
        Ok(())
    } else {
        Err(ConfigError::InsecureRegistry {
            value: value.to_owned(),
        })
    }
}

/// `--dns-upstream` values: nothing given is `None` (the node's resolv.conf), `none` alone
/// is no upstream, else each is `IP` (port 53) or `IP:PORT`.
pub fn parse_dns_upstreams(values: &[String]) -> Result<Option<Vec<SocketAddr>>, ConfigError> {
    match values {
        [] => Ok(None),
        [only] if only == "none" => Ok(Some(Vec::new())),
        values => values
            .iter()
            .map(|value| {
                value
                    .parse::<SocketAddr>()
                    .or_else(|_| value.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| ConfigError::DnsUpstream {
                        value: value.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
    }
}

/// `0` means Swarm's default (4789).
pub fn check_data_path_port(port: u32) -> Result<u32, ConfigError> {
    match port {
        0 => Ok(crate::manager::controlapi::cluster::DEFAULT_DATA_PATH_PORT),
        1024..=49151 => Ok(port),
        other => Err(ConfigError::DataPathPort(other)),
    }
}

/// `IP`, `IP:port` or an interface name to `IP:port` (`default_port` if none is given).
pub fn resolve_advertise(value: &str, default_port: u16) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let (name, port) = match value.rsplit_once(':') {
        Some((name, port)) => (
            name,
            port.parse().map_err(|_| ConfigError::AdvertiseAddr {
                value: value.to_owned(),
            })?,
        ),
        None => (value, default_port),
    };
    interface_ipv4s()
        .into_iter()
        .find(|(interface, _)| interface == name)
        .map(|(_, ip)| SocketAddr::new(IpAddr::V4(ip), port))
        .ok_or_else(|| ConfigError::AdvertiseAddr {
            value: value.to_owned(),
        })
}

/// The one non-loopback IPv4 address of this host, as docker picks it when no address is
/// given; several or none is an error that says to choose.
pub fn detect_advertise_ip() -> Result<IpAddr, ConfigError> {
    let mut found: Vec<(String, std::net::Ipv4Addr)> = interface_ipv4s()
        .into_iter()
        .filter(|(_, ip)| !ip.is_loopback())
        .collect();
    found.sort();
    found.dedup_by(|a, b| a.1 == b.1);
    match found.as_slice() {
        [(_, ip)] => Ok(IpAddr::V4(*ip)),
        [] => Err(ConfigError::NoAdvertiseAddr {
            found: "no IPv4 address outside loopback".to_owned(),
        }),
        many => Err(ConfigError::NoAdvertiseAddr {
            found: format!(
                "multiple addresses ({})",
                many.iter()
                    .map(|(i, ip)| format!("{ip} on {i}"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        }),
    }
}

fn interface_ipv4s() -> Vec<(String, std::net::Ipv4Addr)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|ifaddr| {
            let ip = ifaddr.address?.as_sockaddr_in()?.ip();
            Some((ifaddr.interface_name, ip))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_registries_are_registries_as_references_name_them() {
        for ok in [
            "10.0.0.5:5000",
            "registry.example",
            "localhost:5000",
            "[::1]:5000",
        ] {
            check_insecure_registry(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "http://10.0.0.5:5000",
            "10.0.0.5:5000/path",
            "host:port",
            "a b",
        ] {
            assert!(check_insecure_registry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_upstreams_default_to_resolv_conf_and_none_means_none() {
        assert_eq!(parse_dns_upstreams(&[]).unwrap(), None);
        assert_eq!(
            parse_dns_upstreams(&["none".to_owned()]).unwrap(),
            Some(Vec::new())
        );
        assert_eq!(
            parse_dns_upstreams(&["10.0.0.2".to_owned(), "[::1]:5353".to_owned()]).unwrap(),
            Some(vec![
                "10.0.0.2:53".parse().unwrap(),
                "[::1]:5353".parse().unwrap()
            ])
        );
        let err = parse_dns_upstreams(&["none".to_owned(), "10.0.0.2".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("\"none\""), "{err}");
        let err = parse_dns_upstreams(&["dns.example".to_owned()]).unwrap_err();
        assert!(
            err.to_string()
                .contains("invalid --dns-upstream \"dns.example\": use IP or IP:PORT"),
            "{err}"
        );
    }

    #[test]
    fn advertise_addresses_take_the_swarm_port_by_default() {
        assert_eq!(
            resolve_advertise("192.168.77.1", 2377).unwrap(),
            "192.168.77.1:2377".parse().unwrap()
        );
        assert_eq!(
            resolve_advertise("10.0.0.1:4000", 2377).unwrap(),
            "10.0.0.1:4000".parse().unwrap()
        );
        assert_eq!(
            resolve_advertise("lo", 2377).unwrap(),
            "127.0.0.1:2377".parse().unwrap()
        );
        assert!(resolve_advertise("no-such-interface0", 2377).is_err());
    }

    #[test]
    fn data_path_port_follows_swarm_range() {
        assert_eq!(check_data_path_port(0).unwrap(), 4789);
        assert_eq!(check_data_path_port(4790).unwrap(), 4790);
        assert!(check_data_path_port(80).is_err());
        assert!(check_data_path_port(50000).is_err());
    }
}

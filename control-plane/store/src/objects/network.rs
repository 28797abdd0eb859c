//! An overlay network (Swarm's `Network`).

use std::collections::BTreeMap;

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use super::addr::empty_as_none;
use super::common::{Annotations, Meta};

/// A network. `spec` is the user's (`hive network create`); `vni` and `ipam` are what the
/// allocator assigned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Network {
    pub id: String,
    pub meta: Meta,
    pub spec: NetworkSpec,
    /// VXLAN network identifier, from 4096 … 2²⁴−1 (Swarm's range); `None` until allocated.
    pub vni: Option<u32>,
    /// Subnets actually in use: the spec's, or ones the allocator took from the default pool.
    pub ipam: Vec<IpamConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkSpec {
    /// The network name, unique among networks (the store enforces it).
    pub annotations: Annotations,
    /// `overlay` for swarm networks.
    pub driver: String,
    pub driver_options: BTreeMap<String, String>,
    pub ipam: IpamOptions,
    /// The routing-mesh network made at `swarm init`.
    pub ingress: bool,
    /// Standalone tasks may attach (`--attachable`).
    pub attachable: bool,
    /// No route outside the overlay (`--internal`).
    pub internal: bool,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        Self {
            annotations: Annotations::default(),
            driver: "overlay".to_owned(),
            driver_options: BTreeMap::new(),
            ipam: IpamOptions::default(),
            ingress: false,
            attachable: false,
            internal: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IpamOptions {
    pub driver: String,
    /// `--subnet/--ip-range/--gateway`; empty asks for a /24 from the default pool.
    pub configs: Vec<IpamConfig>,
}

impl Default for IpamOptions {
    fn default() -> Self {
        Self {
            driver: "default".to_owned(),
            configs: Vec::new(),
        }
    }
}

/// One subnet of a network, as the user asked for it (`--subnet/--ip-range/--gateway`,
/// checked where the spec enters the cluster) or as the allocator assigned it. Stored as the
/// strings `"10.0.1.0/24"`, `""`/`"10.0.1.128/25"`, `""`/`"10.0.1.1"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamConfig {
    /// e.g. `10.0.1.0/24`.
    pub subnet: Ipv4Network,
    /// Sub-range tasks get addresses from; `None` means the whole subnet.
    #[serde(default, with = "empty_as_none")]
    pub range: Option<Ipv4Network>,
    /// `None` in a spec leaves it to the allocator (the subnet's first host).
    #[serde(default, with = "empty_as_none")]
    pub gateway: Option<Ipv4Addr>,
}

/// IPAM options as a user wrote them that are not addresses (`--subnet/--ip-range/--gateway`
/// on the CLI, `IPAM.Config` in the Engine API, `ipam.config` in a compose file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamConfigError {
    #[error("every ip-range or gateway must have a corresponding subnet")]
    NoSubnet,
    #[error("invalid subnet {0}")]
    Subnet(String),
    #[error("invalid ip-range {0}")]
    Range(String),
    #[error("invalid gateway address {0}")]
    Gateway(String),
}

/// A subnet as a user writes it: `10.0.1.0/24`, an IPv4 address and a prefix length of at
/// most 32 (surrounding blanks ignored). The host bits are kept, so that the network's check
/// can name the subnet it should have been. Stricter than `Ipv4Network`'s own parse, which
/// also takes a bare address (as a /32) and a netmask.
pub fn parse_cidr(text: &str) -> Option<Ipv4Network> {
    let (addr, prefix) = text.trim().split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    Ipv4Network::new(addr, prefix).ok()
}

impl IpamConfig {
    /// The config of a subnet, range and gateway as a user wrote them, each empty if not
    /// given: the one parse of these values where they enter the cluster.
    pub fn parse(subnet: &str, range: &str, gateway: &str) -> Result<Self, IpamConfigError> {
        if subnet.trim().is_empty() {
            return Err(IpamConfigError::NoSubnet);
        }
        let subnet =
            parse_cidr(subnet).ok_or_else(|| IpamConfigError::Subnet(subnet.to_owned()))?;
        let range = if range.trim().is_empty() {
            None
        } else {
            Some(parse_cidr(range).ok_or_else(|| IpamConfigError::Range(range.to_owned()))?)
        };
        let gateway = if gateway.trim().is_empty() {
            None
        } else {
            Some(
                gateway
                    .trim()
                    .parse()
                    .map_err(|_| IpamConfigError::Gateway(gateway.to_owned()))?,
            )
        };
        Ok(Self {
            subnet,
            range,
            gateway,
        })
    }

    /// `subnet` with neither a range nor a gateway.
    pub fn of_subnet(subnet: Ipv4Network) -> Self {
        Self {
            subnet,
            range: None,
            gateway: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipam_options_parse_once_with_one_message_per_field() {
        let config = IpamConfig::parse("10.5.0.0/16", " 10.5.1.0/24", "10.5.0.254").unwrap();
        assert_eq!(config.subnet, "10.5.0.0/16".parse().unwrap());
        assert_eq!(config.range, Some("10.5.1.0/24".parse().unwrap()));
        assert_eq!(config.gateway, Some(Ipv4Addr::new(10, 5, 0, 254)));
        let host_bits = IpamConfig::parse("10.5.0.7/24", "", "").unwrap();
        assert_eq!(
            host_bits.subnet.to_string(),
            "10.5.0.7/24",
            "kept for the check"
        );
        for (subnet, range, gateway, message) in [
            (
                "",
                "",
                "10.0.0.1",
                "every ip-range or gateway must have a corresponding subnet",
            ),
            ("10.5.0.0", "", "", "invalid subnet 10.5.0.0"),
            ("10.5.0.0/33", "", "", "invalid subnet 10.5.0.0/33"),
            (
                "10.5.0.0/255.255.0.0",
                "",
                "",
                "invalid subnet 10.5.0.0/255.255.0.0",
            ),
            ("10.5.0.0/16", "10.5.1.0", "", "invalid ip-range 10.5.1.0"),
            ("10.5.0.0/16", "", "nope", "invalid gateway address nope"),
        ] {
            assert_eq!(
                IpamConfig::parse(subnet, range, gateway)
                    .unwrap_err()
                    .to_string(),
                message
            );
        }
    }
}

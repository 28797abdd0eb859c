//! An overlay network (Swarm's `Network`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IpamConfig {
    /// CIDR, e.g. `10.0.1.0/24`.
    pub subnet: String,
    /// Sub-range tasks get addresses from; empty means the whole subnet.
    pub range: String,
    pub gateway: String,
}

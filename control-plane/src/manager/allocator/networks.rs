//! Network-level allocation: the `ingress` network made at leader start, subnets from the
//! default address pool and VNIs for networks created without them.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use super::ipam::{IpamError, carve, first_host};
use crate::store::objects::{
    Annotations, Cluster, IpamConfig, IpamOptions, Network, NetworkSpec, ObjectKind,
};
use crate::store::{ReadView, StoreError, WriteTx};

pub const INGRESS_NAME: &str = "ingress";
pub const INGRESS_SUBNET: Ipv4Network =
    match Ipv4Network::new_checked(Ipv4Addr::new(10, 0, 0, 0), 24) {
        Some(subnet) => subnet,
        None => panic!("a prefix of 24 fits an IPv4 address"),
    };
pub const INGRESS_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// Swarm's first VNI; the ingress network takes it.
pub const INGRESS_VNI: u32 = 4096;
/// Other networks get VNIs from here up.
pub const FIRST_VNI: u32 = 4097;
/// The VXLAN VNI field is 24 bits.
pub const LAST_VNI: u32 = (1 << 24) - 1;

/// Reserved cluster labels holding `swarm init --default-addr-pool[-mask-length]` until the
/// cluster object has fields for them (docs/control-plane.md).
pub const POOL_LABEL: &str = "hive.default-addr-pool";
pub const POOL_MASK_LABEL: &str = "hive.default-addr-pool-mask-length";
pub const DEFAULT_POOL: Ipv4Network = match Ipv4Network::new_checked(Ipv4Addr::new(10, 0, 0, 0), 8)
{
    Some(pool) => pool,
    None => panic!("a prefix of 8 fits an IPv4 address"),
};
pub const DEFAULT_POOL_MASK: u8 = 24;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network \"{network}\": {source}")]
    Ipam {
        network: String,
        #[source]
        source: IpamError,
    },
    #[error("network \"{network}\": no free VXLAN ID left (4097-16777215)")]
    NoVni { network: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Makes the routing-mesh network if there is none (SwarmKit makes it when the first leader
/// starts). Returns whether it wrote, and why it could not.
pub fn ensure_ingress(tx: &mut WriteTx) -> Result<(bool, Option<String>), StoreError> {
    if tx.list::<Network>()?.iter().any(|n| n.spec.ingress) {
        return Ok((false, None));
    }
    if tx.id_by_name(ObjectKind::Network, INGRESS_NAME)?.is_some() {
        let problem = "a network named \"ingress\" exists but is not the routing-mesh network, \
                       so none is made and services get no ingress VIP; remove or rename it";
        return Ok((false, Some(problem.to_owned())));
    }
    let config = IpamConfig {
        gateway: Some(INGRESS_GATEWAY),
        ..IpamConfig::of_subnet(INGRESS_SUBNET)
    };
    let network = Network {
        spec: NetworkSpec {
            annotations: Annotations::named(INGRESS_NAME),
            ingress: true,
            ipam: IpamOptions {
                configs: vec![config.clone()],
                ..IpamOptions::default()
            },
            ..NetworkSpec::default()
        },
        vni: Some(INGRESS_VNI),
        ipam: vec![config],
        ..Network::default()
    };
    tx.create(network)?;
    Ok((true, None))
}

/// Gives every network without a VNI or subnet one. Failures are per network and returned,
/// so one bad network does not hold up the others.
pub fn allocate_networks(tx: &mut WriteTx) -> Result<(bool, Vec<NetworkError>), StoreError> {
    let networks = tx.list::<Network>()?;
    let (pools, mask) = default_pools(tx)?;
    let mut used_subnets: Vec<Ipv4Network> = networks
        .iter()
        .flat_map(|n| n.ipam.iter().chain(n.spec.ipam.configs.iter()))
        .map(|c| c.subnet)
        .collect();
    let mut used_vnis: BTreeSet<u32> = networks.iter().filter_map(|n| n.vni).collect();
    let mut wrote = false;
    let mut errors = Vec::new();
    for mut network in networks {
        if network.vni.is_some() && !network.ipam.is_empty() {
            continue;
        }
        let name = network.spec.annotations.name.clone();
        if network.ipam.is_empty() {
            match ipam_for(&network, &pools, mask, &used_subnets) {
                Ok(configs) => {
                    used_subnets.extend(configs.iter().map(|c| c.subnet));
                    network.ipam = configs;
                }
                Err(source) => {
                    errors.push(NetworkError::Ipam {
                        network: name,
                        source,
                    });
                    continue;
                }
            }
        }
        if network.vni.is_none() {
            let first = if network.spec.ingress {
                INGRESS_VNI
            } else {
                FIRST_VNI
            };
            let Some(vni) = (first..=LAST_VNI).find(|v| !used_vnis.contains(v)) else {
                errors.push(NetworkError::NoVni { network: name });
                continue;
            };
            used_vnis.insert(vni);
            network.vni = Some(vni);
        }
        tx.update(network)?;
        wrote = true;
    }
    Ok((wrote, errors))
}

/// The spec's subnets (with Docker's default gateway, the first host), or a subnet carved from
/// the default pools.
fn ipam_for(
    network: &Network,
    pools: &[Ipv4Network],
    mask: u8,
    used: &[Ipv4Network],
) -> Result<Vec<IpamConfig>, IpamError> {
    if !network.spec.ipam.configs.is_empty() {
        return Ok(network
            .spec
            .ipam
            .configs
            .iter()
            .map(|config| IpamConfig {
                gateway: Some(config.gateway.unwrap_or_else(|| first_host(config.subnet))),
                ..config.clone()
            })
            .collect());
    }
    let mut last_err = IpamError::NoPool;
    for pool in pools {
        match carve(*pool, mask, used) {
            Ok(subnet) => {
                return Ok(vec![IpamConfig {
                    gateway: Some(first_host(subnet)),
                    ..IpamConfig::of_subnet(subnet)
                }]);
            }
            Err(err) => last_err = err,
        }
    }
    Err(last_err)
}

/// The default address pools and mask length from the cluster's reserved labels.
fn default_pools(tx: &WriteTx) -> Result<(Vec<Ipv4Network>, u8), StoreError> {
    let cluster = tx.list::<Cluster>()?.into_iter().next();
    let labels = cluster
        .map(|c| c.spec.annotations.labels)
        .unwrap_or_default();
    let mut pools: Vec<Ipv4Network> = labels
        .get(POOL_LABEL)
        .map(|v| {
            v.split(',')
                .filter_map(|p| match p.trim().parse::<Ipv4Network>() {
                    Ok(subnet) => Some(super::ipam::canonical(subnet)),
                    Err(err) => {
                        tracing::warn!(%err, "ignoring a bad default address pool");
                        None
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if pools.is_empty() {
        pools.push(DEFAULT_POOL);
    }
    let mask = labels
        .get(POOL_MASK_LABEL)
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(DEFAULT_POOL_MASK);
    Ok((pools, mask))
}

//! Networks and their specs, store ↔ wire.

use super::wire::{annotations, annotations_of, map, meta_of, timestamp};
use crate::api::pb;
use crate::store::objects::{IpamConfig, IpamOptions, Network, NetworkSpec};

fn ipam_config(c: &IpamConfig) -> pb::IpamConfig {
    pb::IpamConfig {
        subnet: c.subnet.clone(),
        range: c.range.clone(),
        gateway: c.gateway.clone(),
    }
}

fn ipam_config_of(c: pb::IpamConfig) -> IpamConfig {
    IpamConfig {
        subnet: c.subnet,
        range: c.range,
        gateway: c.gateway,
    }
}

impl From<&NetworkSpec> for pb::NetworkSpec {
    fn from(s: &NetworkSpec) -> Self {
        Self {
            annotations: Some(annotations(&s.annotations)),
            driver: s.driver.clone(),
            driver_options: map(&s.driver_options),
            ipam: Some(pb::IpamOptions {
                driver: s.ipam.driver.clone(),
                configs: s.ipam.configs.iter().map(ipam_config).collect(),
            }),
            ingress: s.ingress,
            attachable: s.attachable,
            internal: s.internal,
        }
    }
}

/// Every message converts: a network spec has no enumerations or bounded numbers.
impl From<pb::NetworkSpec> for NetworkSpec {
    fn from(s: pb::NetworkSpec) -> Self {
        Self {
            annotations: annotations_of(s.annotations),
            driver: s.driver,
            driver_options: s.driver_options.into_iter().collect(),
            ipam: s.ipam.map_or_else(IpamOptions::default, |i| IpamOptions {
                driver: i.driver,
                configs: i.configs.into_iter().map(ipam_config_of).collect(),
            }),
            ingress: s.ingress,
            attachable: s.attachable,
            internal: s.internal,
        }
    }
}

impl From<&Network> for pb::Network {
    fn from(n: &Network) -> Self {
        Self {
            id: n.id.clone(),
            version: n.meta.version,
            created_at: Some(timestamp(n.meta.created_at)),
            updated_at: Some(timestamp(n.meta.updated_at)),
            spec: Some((&n.spec).into()),
            vni: n.vni,
            ipam: n.ipam.iter().map(ipam_config).collect(),
        }
    }
}

impl From<pb::Network> for Network {
    fn from(n: pb::Network) -> Self {
        Self {
            meta: meta_of(n.version, n.created_at.as_ref(), n.updated_at.as_ref()),
            id: n.id,
            spec: n.spec.map(NetworkSpec::from).unwrap_or_default(),
            vni: n.vni,
            ipam: n.ipam.into_iter().map(ipam_config_of).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::objects::Annotations;

    #[test]
    fn a_network_survives_the_wire() {
        let mut network = Network {
            id: "n".into(),
            spec: NetworkSpec {
                annotations: Annotations::named("back"),
                attachable: true,
                internal: true,
                ..NetworkSpec::default()
            },
            vni: Some(4097),
            ipam: vec![IpamConfig {
                subnet: "10.0.9.0/24".into(),
                range: "10.0.9.0/25".into(),
                gateway: "10.0.9.1".into(),
            }],
            ..Network::default()
        };
        network
            .spec
            .driver_options
            .insert("com.docker.network.driver.mtu".into(), "1400".into());
        network.spec.ipam.configs = network.ipam.clone();
        assert_eq!(Network::from(pb::Network::from(&network)), network);
        let plain = Network::default();
        assert_eq!(Network::from(pb::Network::from(&plain)), plain);
    }
}

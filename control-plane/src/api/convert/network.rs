//! Networks and their specs, store ↔ wire.

use super::wire::{WireError, annotations, annotations_of, map, meta_of, or_empty, timestamp};
use crate::api::pb;
use crate::store::objects::{IpamConfig, IpamOptions, Network, NetworkSpec};

fn ipam_config(c: &IpamConfig) -> pb::IpamConfig {
    pb::IpamConfig {
        subnet: c.subnet.to_string(),
        range: or_empty(c.range),
        gateway: or_empty(c.gateway),
    }
}

/// The one parse of a network's subnet, range and gateway where they enter the cluster,
/// with the message `network create` has always given.
fn ipam_config_of(c: pb::IpamConfig) -> Result<IpamConfig, WireError> {
    Ok(IpamConfig::parse(&c.subnet, &c.range, &c.gateway)?)
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

/// A network spec converts unless an IPAM config's subnet, range or gateway does not parse.
impl TryFrom<pb::NetworkSpec> for NetworkSpec {
    type Error = WireError;

    fn try_from(s: pb::NetworkSpec) -> Result<Self, WireError> {
        let ipam = match s.ipam {
            None => IpamOptions::default(),
            Some(i) => IpamOptions {
                driver: i.driver,
                configs: i
                    .configs
                    .into_iter()
                    .map(ipam_config_of)
                    .collect::<Result<_, _>>()?,
            },
        };
        Ok(Self {
            annotations: annotations_of(s.annotations),
            driver: s.driver,
            driver_options: s.driver_options.into_iter().collect(),
            ipam,
            ingress: s.ingress,
            attachable: s.attachable,
            internal: s.internal,
        })
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

impl TryFrom<pb::Network> for Network {
    type Error = WireError;

    fn try_from(n: pb::Network) -> Result<Self, WireError> {
        Ok(Self {
            meta: meta_of(n.version, n.created_at.as_ref(), n.updated_at.as_ref()),
            id: n.id,
            spec: n
                .spec
                .map(NetworkSpec::try_from)
                .transpose()?
                .unwrap_or_default(),
            vni: n.vni,
            ipam: n
                .ipam
                .into_iter()
                .map(ipam_config_of)
                .collect::<Result<_, _>>()?,
        })
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
            ipam: vec![IpamConfig::parse("10.0.9.0/24", "10.0.9.0/25", "10.0.9.1").unwrap()],
            ..Network::default()
        };
        network
            .spec
            .driver_options
            .insert("com.docker.network.driver.mtu".into(), "1400".into());
        network.spec.ipam.configs = network.ipam.clone();
        assert_eq!(
            Network::try_from(pb::Network::from(&network)).unwrap(),
            network
        );
        let plain = Network::default();
        assert_eq!(Network::try_from(pb::Network::from(&plain)).unwrap(), plain);
    }
}

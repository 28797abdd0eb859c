//! The ports the swarm itself uses on every node, which no service may publish (issue 14).
//!
//! A published port is answered by every node's `xdp_from_underlay` before the kernel sees the
//! packet: publishing 2377 took the managers' Raft traffic away and left the swarm without a
//! leader (so the service could not even be removed), 7946/udp made gossip declare every node
//! down, 9323 took the metrics endpoint. The manager refuses such a spec at the door, naming
//! the port and its owner; each node's data plane also leaves its own control-plane ports to
//! the kernel whatever its maps hold (`NodeConfig::control_ports`), so a map entry that gets
//! there anyway cannot cut a node off.
//!
//! Where the ports come from: each node reports those of its daemon's configuration
//! (`--listen-addr`, its advertise port, `--metrics-addr`, gossip's port) in its description
//! ([`node_control_ports`]); the cluster adds the data path port (`--data-path-port`) and the
//! well-known defaults, so that a swarm whose nodes have not registered yet is covered too.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::api::ApiError;
use crate::gossip::DEFAULT_GOSSIP_PORT;
use crate::manager::controlapi::cluster::network_settings;
use crate::store::ReadView;
use crate::store::objects::{
    Cluster, ControlPort, Node, PortOwner, Protocol, PublishMode, ServiceSpec,
};
use crate::transport::SWARM_PORT;

/// A published port the swarm itself uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("published port {port}/{protocol} is reserved: {}", owner_text(*owner))]
pub struct ReservedPortError {
    pub port: u16,
    pub protocol: &'static str,
    pub owner: PortOwner,
}

impl From<ReservedPortError> for ApiError {
    fn from(error: ReservedPortError) -> Self {
        ApiError::Invalid(error.to_string())
    }
}

/// Who uses a reserved port, for the refusal.
fn owner_text(owner: PortOwner) -> &'static str {
    match owner {
        PortOwner::ClusterApi => "the swarm's managers use it for the cluster API and Raft",
        PortOwner::Gossip => {
            "the swarm's nodes use it for gossip (membership and failure detection)"
        }
        PortOwner::DataPath => "the swarm's overlay networks use it for VXLAN (the data path port)",
        PortOwner::Metrics => "hive daemons serve their metrics on it (--metrics-addr)",
    }
}

fn port(port: u16, protocol: Protocol, owner: PortOwner) -> ControlPort {
    ControlPort {
        port,
        protocol,
        owner,
    }
}

/// The ports a node's daemon uses on its address, from its configuration: the node port it
/// listens on and the one it advertises (they differ behind a port mapping), gossip on TCP and
/// UDP (hive gossips on UDP only; Swarm's TCP side stays reserved so that firewall rules
/// written for Swarm keep meaning the same), and the metrics endpoint if it is on. Port 0 (a
/// test binding an ephemeral port) is left out.
pub fn node_control_ports(
    listen_port: u16,
    advertise_addr: &str,
    metrics_port: Option<u16>,
) -> Vec<ControlPort> {
    let advertise_port = advertise_addr
        .parse::<SocketAddr>()
        .map_or(listen_port, |a| a.port());
    let ports: BTreeSet<ControlPort> = [
        port(listen_port, Protocol::Tcp, PortOwner::ClusterApi),
        port(advertise_port, Protocol::Tcp, PortOwner::ClusterApi),
        port(DEFAULT_GOSSIP_PORT, Protocol::Udp, PortOwner::Gossip),
        port(DEFAULT_GOSSIP_PORT, Protocol::Tcp, PortOwner::Gossip),
    ]
    .into_iter()
    .chain(metrics_port.map(|p| port(p, Protocol::Tcp, PortOwner::Metrics)))
    .filter(|p| p.port != 0)
    .collect();
    ports.into_iter().collect()
}

/// Every port the swarm uses on its nodes, as the store knows it.
fn reserved(view: &impl ReadView) -> Result<Vec<ControlPort>, ApiError> {
    let mut ports = vec![
        port(SWARM_PORT, Protocol::Tcp, PortOwner::ClusterApi),
        port(DEFAULT_GOSSIP_PORT, Protocol::Udp, PortOwner::Gossip),
        port(DEFAULT_GOSSIP_PORT, Protocol::Tcp, PortOwner::Gossip),
    ];
    for cluster in view.list::<Cluster>()? {
        let (_, _, data_path_port) = network_settings(&cluster);
        if let Ok(data_path_port) = u16::try_from(data_path_port) {
            ports.push(port(data_path_port, Protocol::Udp, PortOwner::DataPath));
        }
    }
    for node in view.list::<Node>()? {
        if let Some(description) = &node.description {
            ports.extend(description.control_ports.iter().copied());
        }
        let addrs = node
            .status
            .agent_addr
            .iter()
            .chain(node.manager_status.as_ref().map(|m| &m.addr));
        for addr in addrs {
            ports.push(port(addr.port(), Protocol::Tcp, PortOwner::ClusterApi));
        }
    }
    Ok(ports)
}

/// Refuses a spec that publishes (in ingress or host mode: both take the port on nodes) a
/// port the swarm uses.
pub fn check_reserved_ports(view: &impl ReadView, spec: &ServiceSpec) -> Result<(), ApiError> {
    let published = spec
        .endpoint_spec
        .ports
        .iter()
        .filter(|p| p.published_port != 0)
        .filter(|p| matches!(p.publish_mode, PublishMode::Ingress | PublishMode::Host));
    let reserved = reserved(view)?;
    for wanted in published {
        if let Some(taken) = reserved
            .iter()
            .find(|r| r.port == wanted.published_port && r.protocol == wanted.protocol)
        {
            return Err(ReservedPortError {
                port: taken.port,
                protocol: taken.protocol.as_str(),
                owner: taken.owner,
            }
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::controlapi::service_spec::tests::spec;
    use crate::manager::controlapi::services::create_in;
    use crate::store::objects::{NodeDescription, PortConfig};
    use crate::store::test_support::single_manager;

    fn publish(published: u16, protocol: Protocol) -> ServiceSpec {
        let mut s = spec("web", "x");
        s.endpoint_spec.ports.push(PortConfig {
            published_port: published,
            target_port: 80,
            protocol,
            ..PortConfig::default()
        });
        s
    }

    #[test]
    fn a_node_reports_its_configured_ports() {
        let ports = node_control_ports(2377, "192.168.77.1:4000", Some(9323));
        let has = |p, protocol, owner| ports.contains(&port(p, protocol, owner));
        assert!(has(2377, Protocol::Tcp, PortOwner::ClusterApi));
        assert!(has(4000, Protocol::Tcp, PortOwner::ClusterApi));
        assert!(has(7946, Protocol::Udp, PortOwner::Gossip));
        assert!(has(9323, Protocol::Tcp, PortOwner::Metrics));
        assert_eq!(node_control_ports(0, "", None).len(), 2, "gossip only");
    }

    #[tokio::test]
    async fn the_swarms_own_ports_cannot_be_published() {
        let dir = tempfile::tempdir().unwrap();
        let store = single_manager(dir.path()).await;
        let refuse = async |s: ServiceSpec| {
            store
                .update(|tx| create_in(tx, &s))
                .await
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refuse(publish(2377, Protocol::Tcp)).await,
            "published port 2377/tcp is reserved: the swarm's managers use it for the cluster API and Raft"
        );
        assert!(
            refuse(publish(7946, Protocol::Udp))
                .await
                .contains("7946/udp is reserved: the swarm's nodes use it for gossip")
        );
        let mut host = publish(7946, Protocol::Tcp);
        host.endpoint_spec.ports[0].publish_mode = PublishMode::Host;
        assert!(refuse(host).await.contains("7946/tcp"));

        // What a node reports (its metrics port) is reserved once it is stored.
        store
            .update(|tx| {
                tx.create(Node {
                    description: Some(NodeDescription {
                        control_ports: node_control_ports(2377, "10.0.0.1:2377", Some(9323)),
                        ..NodeDescription::default()
                    }),
                    ..Node::default()
                })
            })
            .await
            .unwrap();
        assert!(
            refuse(publish(9323, Protocol::Tcp))
                .await
                .contains("9323/tcp is reserved: hive daemons serve their metrics on it")
        );
        // Another protocol on the same number is free.
        store
            .update(|tx| create_in(tx, &publish(2377, Protocol::Udp)))
            .await
            .unwrap();
    }
}

//! Ingress-mode published ports: one owner per (protocol, port) across the swarm, dynamic ports
//! from Swarm's range. Host-mode ports are per node and checked by the scheduler instead.
//!
//! Whether a port asked for by number is free is the Control API's check
//! (`check_port_conflicts`, inside the write that stores the spec). The table refuses one
//! again only for the race that check cannot see (a spec asking for a port this table had
//! just given another service dynamically), with the same rule and the same error
//! ([`PortInUse`]).

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use crate::manager::controlapi::service_spec::{PortInUse, port_conflicts};
use crate::store::objects::{PortConfig, Protocol, PublishMode};

/// Where ports asked for without a number come from (SwarmKit `portallocator.go`).
pub const DYNAMIC_PORTS: RangeInclusive<u16> = 30000..=32767;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error(transparent)]
    InUse(#[from] PortInUse),
    #[error(
        "service \"{service}\": no free published port left in 30000-32767 for {protocol}; \
         remove services that publish ports or publish explicit ports"
    )]
    Exhausted {
        service: String,
        protocol: &'static str,
    },
}

/// Published ports in use: (protocol, port) → (service ID, service name).
#[derive(Debug, Clone, Default)]
pub struct PortTable {
    owners: BTreeMap<(Protocol, u16), (String, String)>,
}

impl PortTable {
    /// Records a service's existing allocation.
    pub fn reserve(&mut self, service_id: &str, service_name: &str, ports: &[PortConfig]) {
        for port in ingress_ports(ports) {
            if port.published_port != 0 {
                self.owners
                    .entry((port.protocol, port.published_port))
                    .or_insert_with(|| (service_id.to_owned(), service_name.to_owned()));
            }
        }
    }

    /// Frees every port `service_id` holds (before re-allocating it).
    pub fn release(&mut self, service_id: &str) {
        self.owners.retain(|_, (owner, _)| owner != service_id);
    }

    /// Fills in `published_port` of `wanted` for `service_id`: explicit ports must be free or
    /// already this service's; ports asked as 0 keep what `previous` gave them when it still
    /// holds, else take the lowest free port from [`DYNAMIC_PORTS`]. On error nothing is taken.
    pub fn allocate(
        &mut self,
        service_id: &str,
        service_name: &str,
        wanted: &[PortConfig],
        previous: &[PortConfig],
    ) -> Result<Vec<PortConfig>, PortError> {
        let mut trial = self.clone();
        trial.release(service_id);
        let mut out = Vec::with_capacity(wanted.len());
        // Explicit ports first, so a dynamic choice never takes one this service asks for.
        for port in wanted {
            if port.publish_mode == PublishMode::Host || port.published_port == 0 {
                continue;
            }
            trial.take(service_id, service_name, port)?;
        }
        for port in wanted {
            let mut port = port.clone();
            if port.publish_mode == PublishMode::Ingress && port.published_port == 0 {
                let kept = previous
                    .iter()
                    .find(|p| {
                        p.publish_mode == PublishMode::Ingress
                            && p.protocol == port.protocol
                            && p.target_port == port.target_port
                            && p.name == port.name
                            && p.published_port != 0
                    })
                    .map(|p| p.published_port)
                    .filter(|p| trial.is_free(port.protocol, *p));
                let chosen = match kept {
                    Some(p) => p,
                    None => DYNAMIC_PORTS
                        .clone()
                        .find(|p| trial.is_free(port.protocol, *p))
                        .ok_or_else(|| PortError::Exhausted {
                            service: service_name.to_owned(),
                            protocol: port.protocol.as_str(),
                        })?,
                };
                port.published_port = chosen;
                trial.take(service_id, service_name, &port)?;
            }
            out.push(port);
        }
        *self = trial;
        Ok(out)
    }

    fn is_free(&self, protocol: Protocol, port: u16) -> bool {
        !self.owners.contains_key(&(protocol, port))
    }

    /// Takes `wanted` (an ingress port with its number) for `service_id`, unless another
    /// service holds it.
    fn take(
        &mut self,
        service_id: &str,
        service_name: &str,
        wanted: &PortConfig,
    ) -> Result<(), PortError> {
        let key = (wanted.protocol, wanted.published_port);
        if let Some((owner, owner_name)) = self.owners.get(&key) {
            let held = PortConfig {
                protocol: wanted.protocol,
                published_port: wanted.published_port,
                publish_mode: PublishMode::Ingress,
                ..PortConfig::default()
            };
            if owner != service_id && port_conflicts(wanted, &held) {
                return Err(PortInUse {
                    port: wanted.published_port,
                    owner_name: owner_name.clone(),
                    owner_id: owner.clone(),
                    held_as: held.publish_mode,
                }
                .into());
            }
        }
        self.owners
            .insert(key, (service_id.to_owned(), service_name.to_owned()));
        Ok(())
    }
}

/// Whether tasks with these ports need the ingress network: an ingress-mode port, or a
/// host-mode port with a published number (hive delivers host-mode ports over the task's
/// ingress veth, on its own node only).
pub fn publishes(ports: &[PortConfig]) -> bool {
    ports.iter().any(|p| {
        p.publish_mode == PublishMode::Ingress
            || (p.publish_mode == PublishMode::Host && p.published_port != 0)
    })
}

pub fn ingress_ports(ports: &[PortConfig]) -> impl Iterator<Item = &PortConfig> {
    ports
        .iter()
        .filter(|p| p.publish_mode == PublishMode::Ingress)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(target: u16, published: u16) -> PortConfig {
        PortConfig {
            target_port: target,
            published_port: published,
            ..PortConfig::default()
        }
    }

    #[test]
    fn dynamic_ports_start_at_30000_and_skip_taken_ones() {
        let mut table = PortTable::default();
        table.reserve("a", "a", &[port(80, 30000)]);
        let got = table
            .allocate("b", "b", &[port(80, 0), port(81, 30001)], &[])
            .unwrap();
        assert_eq!(got[0].published_port, 30002);
        assert_eq!(got[1].published_port, 30001);
    }

    #[test]
    fn a_taken_explicit_port_is_refused_and_nothing_is_taken() {
        let mut table = PortTable::default();
        table.reserve("a", "api", &[port(80, 8080)]);
        let err = table
            .allocate("b", "web", &[port(80, 0), port(80, 8080)], &[])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "port '8080' is already in use by service 'api' (a) as an ingress port"
        );
        let got = table.allocate("c", "c", &[port(80, 0)], &[]).unwrap();
        assert_eq!(got[0].published_port, 30000);
        // Another protocol is another port.
        let udp = PortConfig {
            protocol: Protocol::Udp,
            ..port(53, 8080)
        };
        assert!(table.allocate("d", "dns", &[udp], &[]).is_ok());
    }
}

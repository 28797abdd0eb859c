//! Indexes over the last applied [`MeshState`], kept up to date change by
//! change, so that a changed service or endpoint can be checked against
//! the global rules (unique IDs, VIPs, published ports and addresses; no
//! peer removed while something still runs on it) without looking at the
//! rest of the state.

use std::net::Ipv4Addr;

use super::{
    fast::{FastMap, FastSet},
    state::{MeshState, Protocol, Service, TaskEndpoint},
    validate::Claims,
};

#[derive(Debug, Default)]
pub(super) struct Index {
    pub service_ids: FastSet<String>,
    /// VIP → ID of the service that has it.
    vips: FastMap<Ipv4Addr, String>,
    /// Published port → ID of the service that publishes it.
    published: FastMap<(u16, Protocol), String>,
    pub endpoint_addrs: FastSet<Ipv4Addr>,
    /// How many backends and endpoints run on each node: a peer may leave
    /// only when none does.
    node_refs: FastMap<Ipv4Addr, u32>,
    /// Endpoints on this node: address → (task ID, VNI). Few (this node's
    /// tasks), so the local-veth rules are rechecked over all of them.
    pub here: FastMap<Ipv4Addr, (String, u32)>,
    pub peers: FastSet<Ipv4Addr>,
}

impl Index {
    /// The index of a state that passed validation.
    pub fn build(state: &MeshState) -> Self {
        let mut index = Self {
            peers: state.peers.iter().map(|p| p.underlay_addr).collect(),
            ..Self::default()
        };
        for service in &state.services {
            index.add_service(service);
        }
        let here = state.node.underlay_addr;
        for ep in &state.endpoints {
            index.add_endpoint(ep, here);
        }
        index
    }

    pub fn add_service(&mut self, service: &Service) {
        self.service_ids.insert(service.id.clone());
        for vip in &service.vips {
            self.vips.insert(vip.addr, service.id.clone());
        }
        for port in &service.ports {
            if let Some(p) = port.published_port {
                self.published
                    .insert((p, port.protocol), service.id.clone());
            }
        }
        for be in &service.backends {
            *self.node_refs.entry(be.node).or_default() += 1;
        }
    }

    /// Forget `service`. Call for every old version before adding any new
    /// one: a VIP or port that moves between services in one apply is then
    /// released before it is claimed again.
    pub fn remove_service(&mut self, service: &Service) {
        self.service_ids.remove(&service.id);
        for vip in &service.vips {
            self.vips.remove(&vip.addr);
        }
        for port in &service.ports {
            if let Some(p) = port.published_port {
                self.published.remove(&(p, port.protocol));
            }
        }
        for be in &service.backends {
            self.unref(be.node);
        }
    }

    pub fn add_endpoint(&mut self, ep: &TaskEndpoint, here: Ipv4Addr) {
        self.endpoint_addrs.insert(ep.addr);
        *self.node_refs.entry(ep.node).or_default() += 1;
        if ep.node == here {
            self.here.insert(ep.addr, (ep.task_id.clone(), ep.vni));
        }
    }

    pub fn remove_endpoint(&mut self, ep: &TaskEndpoint, here: Ipv4Addr) {
        self.endpoint_addrs.remove(&ep.addr);
        self.unref(ep.node);
        if ep.node == here {
            self.here.remove(&ep.addr);
        }
    }

    /// References to `node` in the applied state.
    pub fn node_refs(&self, node: Ipv4Addr) -> u32 {
        self.node_refs.get(&node).copied().unwrap_or(0)
    }

    fn unref(&mut self, node: Ipv4Addr) {
        if let Some(count) = self.node_refs.get_mut(&node) {
            *count -= 1;
            if *count == 0 {
                self.node_refs.remove(&node);
            }
        }
    }
}

/// The claims of the changed services, checked against each other and
/// against the services that stay as they are.
#[derive(Debug)]
pub(super) struct DeltaClaims<'i, 'o, 'n> {
    index: &'i Index,
    /// Services whose old version goes away (removed or changed): what
    /// they held is free for the new versions.
    releasing: FastSet<&'o str>,
    vips: FastMap<Ipv4Addr, &'n str>,
    published: FastMap<(u16, Protocol), &'n str>,
}

impl<'i, 'o, 'n> DeltaClaims<'i, 'o, 'n> {
    pub fn new(index: &'i Index, releasing: impl Iterator<Item = &'o str>) -> Self {
        Self {
            index,
            releasing: releasing.collect(),
            vips: FastMap::default(),
            published: FastMap::default(),
        }
    }

    /// Held in the applied state by a service that keeps it.
    fn held<K: std::hash::Hash + Eq>(&self, map: &FastMap<K, String>, key: &K) -> Option<String> {
        map.get(key)
            .filter(|owner| !self.releasing.contains(owner.as_str()))
            .cloned()
    }
}

impl<'n> Claims<'n> for DeltaClaims<'_, '_, 'n> {
    fn claim_vip(&mut self, vip: Ipv4Addr, service: &'n Service) -> Result<(), String> {
        if let Some(other) = self.vips.insert(vip, &service.id) {
            return Err(other.to_owned());
        }
        match self.held(&self.index.vips, &vip) {
            Some(owner) => Err(owner),
            None => Ok(()),
        }
    }

    fn claim_published(
        &mut self,
        port: (u16, Protocol),
        service: &'n Service,
    ) -> Result<(), String> {
        if let Some(other) = self.published.insert(port, &service.id) {
            return Err(other.to_owned());
        }
        match self.held(&self.index.published, &port) {
            Some(owner) => Err(owner),
            None => Ok(()),
        }
    }
}

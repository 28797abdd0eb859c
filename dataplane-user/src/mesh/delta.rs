//! The diff restricted to what changed: [`Reconciler::apply_delta`] does
//! what [`Reconciler::apply`] does, in the same order, but only for the
//! balancers, endpoints and peers a [`Delta`] names, so its cost is
//! proportional to the change rather than to the state.
//!
//! Balancers are synced and removed in key order, as the full diff does, so
//! both allocate the same ids and segments: applying a delta leaves exactly
//! the maps a full apply of the same state would (`tests.rs` checks this on
//! random sequences of states).

use std::collections::BTreeMap;

use hive_common::maps::{Endpoint, NodeConfig, Peer, ServiceKey};

use super::{
    apply::{ApplyError, ApplyStats, Reconciler},
    desired::{BalancerKey, DesiredBalancer},
    fast::FastSet,
    ops::MeshMapOps,
};

/// What changed since the last apply, compiled: `None` = no longer wanted.
#[derive(Debug, Default)]
pub struct Delta {
    pub node: NodeConfig,
    pub peers: Vec<(u32, Option<Peer>)>,
    pub endpoints: Vec<(u32, Option<Endpoint>)>,
    pub balancers: BTreeMap<BalancerKey, Option<DesiredBalancer>>,
    /// Every front end the balancers named above had before; those no new
    /// version wants are removed.
    pub old_frontends: Vec<ServiceKey>,
}

impl Reconciler {
    /// Bring the maps from the applied state to the applied state plus
    /// `delta`. The caller guarantees the delta is complete: every entry
    /// that differs between the two states is named in it.
    pub fn apply_delta(
        &mut self,
        delta: &Delta,
        maps: &mut impl MeshMapOps,
    ) -> Result<ApplyStats, ApplyError> {
        let mut stats = ApplyStats::default();
        if self.node != Some(delta.node) {
            maps.set_node(&delta.node)?;
            self.node = Some(delta.node);
            stats.node_written = true;
        }
        for (addr, peer) in &delta.peers {
            if let Some(peer) = peer
                && self.peers.get(addr) != Some(peer)
            {
                maps.put_peer(*addr, peer)?;
                self.peers.insert(*addr, *peer);
                stats.peers_written += 1;
            }
        }
        for (addr, endpoint) in &delta.endpoints {
            if let Some(endpoint) = endpoint
                && self.endpoints.get(addr) != Some(endpoint)
            {
                maps.put_endpoint(*addr, endpoint)?;
                self.endpoints.insert(*addr, *endpoint);
                stats.endpoints_written += 1;
            }
        }

        // Front ends no new version wants: out first. A key another
        // changed balancer takes over is overwritten in place below.
        let wanted: FastSet<&ServiceKey> = delta
            .balancers
            .values()
            .flatten()
            .flat_map(|b| b.frontends.keys())
            .collect();
        for key in &delta.old_frontends {
            if !wanted.contains(key) && self.frontends.contains_key(key) {
                maps.remove_frontend(key)?;
                self.frontends.remove(key);
                stats.frontends_removed += 1;
            }
        }

        let seed = delta.node.hash_seed;
        for (key, want) in &delta.balancers {
            if let Some(want) = want {
                self.sync_balancer(key, want, seed, maps, &mut stats)?;
            }
        }
        for (key, want) in &delta.balancers {
            let Some(want) = want else { continue };
            let Some(id) = self.balancers.get(key).map(|b| b.id) else {
                continue; // synced above: cannot happen
            };
            for (fe_key, spec) in &want.frontends {
                let frontend = spec.with_service(id);
                if self.frontends.get(fe_key) != Some(&frontend) {
                    maps.put_frontend(fe_key, &frontend)?;
                    self.frontends.insert(*fe_key, frontend);
                    stats.frontends_written += 1;
                }
            }
        }
        for (key, want) in &delta.balancers {
            if want.is_none() {
                self.remove_balancer(key, maps, &mut stats)?;
            }
        }
        self.remove_orphan_backends(maps)?;

        let mut drained = Vec::new();
        for (addr, endpoint) in &delta.endpoints {
            if endpoint.is_none() && self.endpoints.contains_key(addr) {
                maps.remove_endpoint(*addr)?;
                self.endpoints.remove(addr);
                stats.endpoints_removed += 1;
                drained.push(*addr);
            }
        }
        super::apply::forget_drained(&mut drained, maps)?;
        for (addr, peer) in &delta.peers {
            if peer.is_none() && self.peers.contains_key(addr) {
                maps.remove_peer(*addr)?;
                self.peers.remove(addr);
                stats.peers_removed += 1;
            }
        }
        Ok(stats)
    }
}

//! The diff: bring the maps from the applied state to a [`Desired`] one with
//! as few map operations as the change needs, in an order that never lets a
//! packet see a half-updated service.
//!
//! Order (see `docs/dataplane.md`, "Applying a MeshState"):
//!
//! 1. node config, then peers and endpoints that are new or changed;
//! 2. front ends wanted by no service any more are removed (a packet can no
//!    longer enter a service that is about to change or go);
//! 3. per service: new backends are written, then a new Maglev segment, then
//!    the ring flips to it; only then are replaced or removed backends and
//!    the old segment retired;
//! 4. front ends that are new or changed are written (the service behind
//!    them is complete by now);
//! 5. services no longer wanted are emptied and their ids retired;
//! 6. endpoints and peers no longer wanted are removed.
//!
//! The in-memory model is updated right after each map operation succeeds,
//! so a failed apply leaves a model that matches the maps and the next
//! apply finishes the job.

use std::collections::BTreeMap;

use hive_common::maps::{
    Backend, Endpoint, Frontend, MAGLEV_SLOTS, MAX_BACKENDS, MAX_SERVICES, NodeConfig, Peer, Ring,
    ServiceKey,
};

use super::{
    alloc::{IdAllocator, SegmentAllocator},
    desired::{BalancerKey, Desired},
    fast::FastMap,
    ops::MeshMapOps,
    validate::MeshStateError,
};
use crate::maps::{BalancerRecord, MapsError, records::id_from_field};

/// Why an apply did not complete. The maps are consistent either way (every
/// service is either as before or as desired); applying again retries.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("invalid mesh state: {0}")]
    Invalid(#[from] MeshStateError),
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error("all {max} service slots are in use (one per service and network); remove services")]
    ServiceSlotsFull { max: u32 },
    #[error(
        "all {max} backend slots are in use (one per task and network); remove services or scale them down"
    )]
    BackendSlotsFull { max: u32 },
    #[error(
        "service {service:?}: no room for a Maglev table of {slots} slots (largest free extent {largest_free} of {capacity}); remove services or backends"
    )]
    MaglevFull {
        service: String,
        slots: u32,
        largest_free: u32,
        capacity: u32,
    },
    #[error("service {service:?}: {backends} backends do not fit in one Maglev table")]
    TableTooLarge { service: String, backends: usize },
    #[error(
        "the pinned maps are inconsistent ({detail}); destroy this node's data plane and load it again"
    )]
    Corrupt { detail: String },
    #[error("no mesh state is applied yet for a change to apply to; apply a whole state first")]
    NothingApplied,
}

/// What one apply changed, counted in map operations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub node_written: bool,
    pub peers_written: usize,
    pub peers_removed: usize,
    pub endpoints_written: usize,
    pub endpoints_removed: usize,
    pub frontends_written: usize,
    pub frontends_removed: usize,
    pub services_added: usize,
    pub services_removed: usize,
    pub backends_written: usize,
    pub backends_removed: usize,
    pub rings_rebuilt: usize,
    pub maglev_slots_written: u64,
    /// RCU grace periods waited for to reuse retired ids or segments.
    pub grace_periods: usize,
}

impl ApplyStats {
    /// Did the apply change anything at all?
    pub fn is_noop(&self) -> bool {
        *self == Self::default()
    }
}

/// A backend as applied: its dense id and the value written there.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) struct AppliedBackend {
    pub id: u32,
    pub value: Backend,
}

/// One service on one network, as applied.
#[derive(Clone, Debug)]
pub(super) struct AppliedBalancer {
    pub id: u32,
    /// By task ID.
    pub backends: BTreeMap<String, AppliedBackend>,
    /// Backend ids the ring may still use; retired after the next flip.
    pub pending_retire: Vec<u32>,
    pub ring: Ring,
    /// Slots reserved at `ring.offset`.
    pub seg_capacity: u32,
    /// [`table_digest`] of what the live segment was built from; 0 =
    /// unknown.
    pub digest: u64,
}

/// The applied state and the allocators; drives [`MeshMapOps`].
#[derive(Debug)]
pub struct Reconciler {
    pub(super) node: Option<NodeConfig>,
    pub(super) peers: FastMap<u32, Peer>,
    pub(super) endpoints: FastMap<u32, Endpoint>,
    /// Every front end in the map, with the service id it leads to.
    pub(super) frontends: FastMap<ServiceKey, Frontend>,
    pub(super) balancers: FastMap<BalancerKey, AppliedBalancer>,
    /// Backend records that belong to no known service (restart recovery).
    pub(super) orphan_backends: Vec<u32>,
    pub(super) service_ids: IdAllocator,
    pub(super) backend_ids: IdAllocator,
    pub(super) segments: SegmentAllocator,
}

impl Default for Reconciler {
    fn default() -> Self {
        Self::new()
    }
}

/// Digest of a Maglev table's inputs: the seed and the (task ID, backend
/// id) list in task order. Never 0 (which means "unknown").
pub(super) fn table_digest<'a>(seed: u32, backends: impl Iterator<Item = (&'a str, u32)>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(&seed.to_le_bytes());
    for (task, id) in backends {
        eat(task.as_bytes());
        eat(&[0xff]);
        eat(&id.to_le_bytes());
    }
    h.max(1)
}

impl Reconciler {
    /// Nothing applied yet, every id and slot free.
    pub fn new() -> Self {
        Self {
            node: None,
            peers: FastMap::default(),
            endpoints: FastMap::default(),
            frontends: FastMap::default(),
            balancers: FastMap::default(),
            orphan_backends: Vec::new(),
            service_ids: IdAllocator::new(MAX_SERVICES),
            backend_ids: IdAllocator::new(MAX_BACKENDS),
            segments: SegmentAllocator::new(MAGLEV_SLOTS),
        }
    }

    /// The dense service id of `service_id` on network `vni`, if applied.
    pub fn service_slot(&self, service_id: &str, vni: u32) -> Option<u32> {
        self.balancers
            .get(&BalancerKey {
                service_id: service_id.to_owned(),
                vni,
            })
            .map(|b| b.id)
    }

    /// The dense backend id of task `task_id` in that service, if applied.
    pub fn backend_slot(&self, service_id: &str, vni: u32, task_id: &str) -> Option<u32> {
        self.balancers
            .get(&BalancerKey {
                service_id: service_id.to_owned(),
                vni,
            })
            .and_then(|b| b.backends.get(task_id))
            .map(|b| b.id)
    }

    /// Make the maps hold `desired`.
    pub fn apply(
        &mut self,
        desired: &Desired,
        maps: &mut impl MeshMapOps,
    ) -> Result<ApplyStats, ApplyError> {
        let mut stats = ApplyStats::default();
        if self.node != Some(desired.node) {
            maps.set_node(&desired.node)?;
            self.node = Some(desired.node);
            stats.node_written = true;
        }
        for (&addr, peer) in &desired.peers {
            if self.peers.get(&addr) != Some(peer) {
                maps.put_peer(addr, peer)?;
                self.peers.insert(addr, *peer);
                stats.peers_written += 1;
            }
        }
        for (&addr, endpoint) in &desired.endpoints {
            if self.endpoints.get(&addr) != Some(endpoint) {
                maps.put_endpoint(addr, endpoint)?;
                self.endpoints.insert(addr, *endpoint);
                stats.endpoints_written += 1;
            }
        }

        // Usually every front end is already as wanted: tell so with one
        // lookup each, without building a map of every wanted key.
        let wanted_count: usize = desired.balancers.values().map(|b| b.frontends.len()).sum();
        let frontends_in_sync = wanted_count == self.frontends.len()
            && desired.balancers.iter().all(|(key, b)| {
                let id = self.balancers.get(key).map(|a| a.id);
                b.frontends.iter().all(|(k, spec)| {
                    id.is_some_and(|id| self.frontends.get(k) == Some(&spec.with_service(id)))
                })
            });

        // Front ends wanted by no service: out first.
        if !frontends_in_sync {
            let wanted: FastMap<&ServiceKey, &BalancerKey> = desired
                .balancers
                .iter()
                .flat_map(|(key, b)| b.frontends.keys().map(move |fe| (fe, key)))
                .collect();
            let stale: Vec<ServiceKey> = self
                .frontends
                .keys()
                .filter(|k| !wanted.contains_key(k))
                .copied()
                .collect();
            for key in stale {
                maps.remove_frontend(&key)?;
                self.frontends.remove(&key);
                stats.frontends_removed += 1;
            }
        }

        let seed = desired.node.hash_seed;
        for (key, want) in &desired.balancers {
            self.sync_balancer(key, want, seed, maps, &mut stats)?;
        }

        for (key, want) in desired.balancers.iter().filter(|_| !frontends_in_sync) {
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

        // Everything desired is applied by now, so equal sizes mean equal
        // sets and there is nothing to remove: skip the scans.
        let mut gone: Vec<BalancerKey> = if self.balancers.len() == desired.balancers.len() {
            Vec::new()
        } else {
            self.balancers
                .keys()
                .filter(|k| !desired.balancers.contains_key(k))
                .cloned()
                .collect()
        };
        // In key order, as `apply_delta` does: the order ids and segments
        // are retired in decides which are reused first.
        gone.sort_unstable();
        for key in gone {
            self.remove_balancer(&key, maps, &mut stats)?;
        }
        self.remove_orphan_backends(maps)?;

        let gone: Vec<u32> = if self.endpoints.len() == desired.endpoints.len() {
            Vec::new()
        } else {
            self.endpoints
                .keys()
                .filter(|a| !desired.endpoints.contains_key(a))
                .copied()
                .collect()
        };
        let mut drained = Vec::with_capacity(gone.len());
        for addr in gone {
            maps.remove_endpoint(addr)?;
            self.endpoints.remove(&addr);
            stats.endpoints_removed += 1;
            drained.push(addr);
        }
        forget_drained(&mut drained, maps)?;
        let gone: Vec<u32> = if self.peers.len() == desired.peers.len() {
            Vec::new()
        } else {
            self.peers
                .keys()
                .filter(|a| !desired.peers.contains_key(a))
                .copied()
                .collect()
        };
        for addr in gone {
            maps.remove_peer(addr)?;
            self.peers.remove(&addr);
            stats.peers_removed += 1;
        }
        Ok(stats)
    }

    /// Backend records no service claims (found by `recover`): out.
    pub(super) fn remove_orphan_backends(
        &mut self,
        maps: &mut impl MeshMapOps,
    ) -> Result<(), MapsError> {
        while let Some(&id) = self.orphan_backends.last() {
            self.retire_backend(id, maps)?;
            self.orphan_backends.pop();
        }
        Ok(())
    }

    /// Take backend `id`, which no ring names any more, out of service:
    /// mark its entry draining, drop its record, retire the id. Its
    /// established flows go on (their conntrack entries hold the address,
    /// not the id), but a new connection whose `Forward` entry still names
    /// it is balanced afresh ([`Backend::FLAG_DRAINING`]): otherwise every
    /// retried SYN of a client port that last reached a replaced task would
    /// follow the entry into the task that is gone.
    pub(super) fn retire_backend(
        &mut self,
        id: u32,
        maps: &mut impl MeshMapOps,
    ) -> Result<(), MapsError> {
        let mut value = maps.read_backend(id)?;
        if value.addr_be != 0 && value.flags & Backend::FLAG_DRAINING == 0 {
            value.flags |= Backend::FLAG_DRAINING;
            maps.set_backend(id, &value)?;
        }
        maps.remove_backend_record(id)?;
        self.backend_ids.retire(id);
        Ok(())
    }

    /// Wait for a grace period and make everything retired reusable.
    pub(super) fn reclaim(
        &mut self,
        maps: &mut impl MeshMapOps,
        stats: &mut ApplyStats,
    ) -> Result<bool, MapsError> {
        if !(self.service_ids.has_retired()
            || self.backend_ids.has_retired()
            || self.segments.has_retired())
        {
            return Ok(false);
        }
        maps.grace_period()?;
        stats.grace_periods += 1;
        self.service_ids.release_retired();
        self.backend_ids.release_retired();
        self.segments.release_retired();
        Ok(true)
    }

    pub(super) fn new_service_id(
        &mut self,
        maps: &mut impl MeshMapOps,
        stats: &mut ApplyStats,
    ) -> Result<u32, ApplyError> {
        loop {
            if let Some(id) = self.service_ids.allocate() {
                return Ok(id);
            }
            if !self.reclaim(maps, stats)? {
                return Err(ApplyError::ServiceSlotsFull {
                    max: MAX_SERVICES - 1,
                });
            }
        }
    }

    pub(super) fn new_backend_id(
        &mut self,
        maps: &mut impl MeshMapOps,
        stats: &mut ApplyStats,
    ) -> Result<u32, ApplyError> {
        loop {
            if let Some(id) = self.backend_ids.allocate() {
                return Ok(id);
            }
            if !self.reclaim(maps, stats)? {
                return Err(ApplyError::BackendSlotsFull {
                    max: MAX_BACKENDS - 1,
                });
            }
        }
    }

    pub(super) fn new_segment(
        &mut self,
        slots: u32,
        service: &str,
        maps: &mut impl MeshMapOps,
        stats: &mut ApplyStats,
    ) -> Result<u32, ApplyError> {
        loop {
            if let Some(offset) = self.segments.allocate(slots) {
                return Ok(offset);
            }
            if !self.reclaim(maps, stats)? {
                return Err(ApplyError::MaglevFull {
                    service: service.to_owned(),
                    slots,
                    largest_free: self.segments.largest_free(),
                    capacity: self.segments.capacity(),
                });
            }
        }
    }
}

/// The service ID in a record, or a name no desired state can contain (so
/// the next apply removes it) if the record is unreadable.
/// The tasks at `drained` left the mesh: the control plane keeps a task
/// that is being shut down as an endpoint (no longer a backend) until it
/// stops running, so its drain is over. Their flows' conntrack entries
/// go, rather than live on for hours (an established TCP entry's timeout
/// is 6 h) and be found by a later flow of the same client port.
pub(super) fn forget_drained(
    drained: &mut [u32],
    maps: &mut impl MeshMapOps,
) -> Result<(), MapsError> {
    if drained.is_empty() {
        return Ok(());
    }
    drained.sort_unstable();
    maps.forget_flows(drained)?;
    Ok(())
}

pub(super) fn record_key(id: u32, record: &BalancerRecord) -> BalancerKey {
    BalancerKey {
        service_id: id_from_field(&record.service_id)
            .unwrap_or_else(|| format!("\0unreadable-{id}")),
        vni: record.vni,
    }
}

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

use std::collections::{BTreeMap, HashMap};

use hive_common::maps::{
    Backend, Endpoint, Frontend, MAGLEV_SLOTS, MAX_BACKENDS, MAX_SERVICES, NodeConfig, Peer, Ring,
    ServiceKey,
};

use super::{
    alloc::{IdAllocator, SegmentAllocator},
    desired::{BalancerKey, Desired, DesiredBalancer},
    ops::MeshMapOps,
    validate::MeshStateError,
};
use crate::{
    maglev::MaglevTable,
    maps::{
        BackendRecord, BalancerRecord, MapsError,
        records::{id_field, id_from_field},
    },
};

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
    pub(super) peers: HashMap<u32, Peer>,
    pub(super) endpoints: HashMap<u32, Endpoint>,
    /// Every front end in the map, with the service id it leads to.
    pub(super) frontends: HashMap<ServiceKey, Frontend>,
    pub(super) balancers: HashMap<BalancerKey, AppliedBalancer>,
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
            peers: HashMap::new(),
            endpoints: HashMap::new(),
            frontends: HashMap::new(),
            balancers: HashMap::new(),
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

        // Front ends wanted by no service: out first.
        let wanted: HashMap<&ServiceKey, &BalancerKey> = desired
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

        let seed = desired.node.hash_seed;
        for (key, want) in &desired.balancers {
            self.sync_balancer(key, want, seed, maps, &mut stats)?;
        }

        for (key, want) in &desired.balancers {
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

        let gone: Vec<BalancerKey> = self
            .balancers
            .keys()
            .filter(|k| !desired.balancers.contains_key(k))
            .cloned()
            .collect();
        for key in gone {
            self.remove_balancer(&key, maps, &mut stats)?;
        }
        while let Some(&id) = self.orphan_backends.last() {
            maps.remove_backend_record(id)?;
            self.backend_ids.retire(id);
            self.orphan_backends.pop();
        }

        let gone: Vec<u32> = self
            .endpoints
            .keys()
            .filter(|a| !desired.endpoints.contains_key(a))
            .copied()
            .collect();
        for addr in gone {
            maps.remove_endpoint(addr)?;
            self.endpoints.remove(&addr);
            stats.endpoints_removed += 1;
        }
        let gone: Vec<u32> = self
            .peers
            .keys()
            .filter(|a| !desired.peers.contains_key(a))
            .copied()
            .collect();
        for addr in gone {
            maps.remove_peer(addr)?;
            self.peers.remove(&addr);
            stats.peers_removed += 1;
        }
        Ok(stats)
    }

    /// Wait for a grace period and make everything retired reusable.
    fn reclaim(
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

    fn new_service_id(
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

    fn new_backend_id(
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

    fn new_segment(
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

    fn sync_balancer(
        &mut self,
        key: &BalancerKey,
        want: &DesiredBalancer,
        seed: u32,
        maps: &mut impl MeshMapOps,
        stats: &mut ApplyStats,
    ) -> Result<(), ApplyError> {
        let mut balancer = match self.balancers.remove(key) {
            Some(b) => b,
            None => {
                let id = self.new_service_id(maps, stats)?;
                let fresh = AppliedBalancer {
                    id,
                    backends: BTreeMap::new(),
                    pending_retire: Vec::new(),
                    ring: Ring::default(),
                    seg_capacity: 0,
                    digest: 0,
                };
                // A reused id may carry a stale ring and old counters.
                let init = maps
                    .put_balancer_record(id, &record(key, &fresh))
                    .and_then(|()| maps.set_ring(id, &Ring::default()))
                    .and_then(|()| maps.reset_service_counters(id));
                if let Err(e) = init {
                    // The record may or may not exist; a restart reads it
                    // back as a service to remove. Only the id is lost here.
                    self.service_ids.retire(id);
                    return Err(e.into());
                }
                stats.services_added += 1;
                fresh
            }
        };
        // Whatever happens below, the balancer goes back into the model in
        // the state the maps are in.
        let result = self.sync_backends_and_ring(key, &mut balancer, want, seed, maps, stats);
        self.balancers.insert(key.clone(), balancer);
        result
    }

    fn sync_backends_and_ring(
        &mut self,
        key: &BalancerKey,
        balancer: &mut AppliedBalancer,
        want: &DesiredBalancer,
        seed: u32,
        maps: &mut impl MeshMapOps,
        stats: &mut ApplyStats,
    ) -> Result<(), ApplyError> {
        // Backends first: a ring may only name ids that hold a backend.
        for (task, value) in &want.backends {
            if balancer
                .backends
                .get(task)
                .is_some_and(|b| b.value == *value)
            {
                continue;
            }
            // New task, or its address/node changed: a fresh id, so the old
            // value stays intact for packets still using the old ring.
            let id = self.new_backend_id(maps, stats)?;
            let written = maps
                .reset_backend_counters(id)
                .and_then(|()| maps.set_backend(id, value))
                .and_then(|()| {
                    maps.put_backend_record(
                        id,
                        &BackendRecord {
                            task_id: id_field(task),
                            balancer: balancer.id,
                            _pad: 0,
                        },
                    )
                });
            if let Err(e) = written {
                balancer.pending_retire.push(id);
                return Err(e.into());
            }
            if let Some(old) = balancer
                .backends
                .insert(task.clone(), AppliedBackend { id, value: *value })
            {
                balancer.pending_retire.push(old.id);
            }
            stats.backends_written += 1;
        }
        let removed: Vec<String> = balancer
            .backends
            .keys()
            .filter(|t| !want.backends.contains_key(*t))
            .cloned()
            .collect();
        for task in removed {
            if let Some(old) = balancer.backends.remove(&task) {
                balancer.pending_retire.push(old.id);
            }
        }

        let digest = table_digest(
            seed,
            balancer.backends.iter().map(|(t, b)| (t.as_str(), b.id)),
        );
        if digest != balancer.digest {
            self.rebuild_ring(key, balancer, &want.name, seed, digest, maps, stats)?;
        }

        // The ring no longer names them: out of the maps. Established flows
        // keep going (conntrack holds the backend's address, not its id).
        while let Some(&id) = balancer.pending_retire.last() {
            maps.remove_backend_record(id)?;
            self.backend_ids.retire(id);
            balancer.pending_retire.pop();
            stats.backends_removed += 1;
        }
        Ok(())
    }

    /// Write a fresh segment, flip the ring to it, retire the old segment.
    #[allow(clippy::too_many_arguments)]
    fn rebuild_ring(
        &mut self,
        key: &BalancerKey,
        balancer: &mut AppliedBalancer,
        name: &str,
        seed: u32,
        digest: u64,
        maps: &mut impl MeshMapOps,
        stats: &mut ApplyStats,
    ) -> Result<(), ApplyError> {
        let tasks: Vec<&str> = balancer.backends.keys().map(String::as_str).collect();
        let ids: Vec<u32> = balancer.backends.values().map(|b| b.id).collect();
        let table = MaglevTable::build(&tasks, seed).ok_or_else(|| ApplyError::TableTooLarge {
            service: name.to_owned(),
            backends: tasks.len(),
        })?;
        let new_size = table.len() as u32;
        let old = balancer.ring;
        let old_capacity = balancer.seg_capacity;

        if new_size == 0 {
            if old.size != 0 {
                let emptied = Ring {
                    offset: old.offset,
                    size: 0,
                };
                maps.set_ring(balancer.id, &emptied)?;
                balancer.ring = emptied;
            }
        } else {
            // Room for the old size too: between the two steps of the flip
            // a packet may combine the new offset with the old size.
            let capacity = new_size.max(old.size);
            let offset = self.new_segment(capacity, name, maps, stats)?;
            let slots: Vec<u32> = (0..capacity as usize)
                .map(|i| ids[table.slots()[i % table.len()] as usize])
                .collect();
            if let Err(e) = maps.write_segment(offset, &slots) {
                self.segments.retire(offset, capacity);
                return Err(e.into());
            }
            stats.maglev_slots_written += u64::from(capacity);
            // The flip. An array value is copied with memcpy, which does not
            // promise to write 8 bytes at once; so change one 4-byte field
            // per update. Every combination a reader can see is then a
            // segment that is live and long enough.
            if offset != old.offset {
                let step = Ring {
                    offset,
                    size: old.size,
                };
                if let Err(e) = maps.set_ring(balancer.id, &step) {
                    self.segments.retire(offset, capacity);
                    return Err(e.into());
                }
                balancer.ring = step;
            }
            let live = Ring {
                offset,
                size: new_size,
            };
            // From here on the ring may point at the new segment: it must
            // never be retired as a failed attempt; it replaces the old one.
            if old_capacity > 0 {
                self.segments.retire(old.offset, old_capacity);
            }
            balancer.seg_capacity = capacity;
            if balancer.ring != live {
                maps.set_ring(balancer.id, &live)?;
                balancer.ring = live;
            }
        }
        if new_size == 0 && old_capacity > 0 {
            self.segments.retire(old.offset, old_capacity);
            balancer.seg_capacity = 0;
        }
        balancer.digest = digest;
        maps.put_balancer_record(balancer.id, &record(key, balancer))?;
        stats.rings_rebuilt += 1;
        Ok(())
    }

    fn remove_balancer(
        &mut self,
        key: &BalancerKey,
        maps: &mut impl MeshMapOps,
        stats: &mut ApplyStats,
    ) -> Result<(), ApplyError> {
        let Some(mut balancer) = self.balancers.remove(key) else {
            return Ok(());
        };
        match self.empty_balancer(&mut balancer, maps) {
            Ok(backends) => {
                self.service_ids.retire(balancer.id);
                stats.services_removed += 1;
                stats.backends_removed += backends;
                Ok(())
            }
            Err(e) => {
                self.balancers.insert(key.clone(), balancer);
                Err(e.into())
            }
        }
    }

    /// Take a service out of the maps (its front ends are already gone);
    /// returns how many backends went with it.
    fn empty_balancer(
        &mut self,
        balancer: &mut AppliedBalancer,
        maps: &mut impl MeshMapOps,
    ) -> Result<usize, MapsError> {
        if balancer.ring.size != 0 {
            let emptied = Ring {
                offset: balancer.ring.offset,
                size: 0,
            };
            maps.set_ring(balancer.id, &emptied)?;
            balancer.ring = emptied;
        }
        if balancer.seg_capacity > 0 {
            self.segments
                .retire(balancer.ring.offset, balancer.seg_capacity);
            balancer.seg_capacity = 0;
        }
        let ids = std::mem::take(&mut balancer.backends)
            .into_values()
            .map(|b| b.id);
        balancer.pending_retire.extend(ids);
        let mut removed = 0;
        while let Some(&id) = balancer.pending_retire.last() {
            maps.remove_backend_record(id)?;
            self.backend_ids.retire(id);
            balancer.pending_retire.pop();
            removed += 1;
        }
        maps.remove_balancer_record(balancer.id)?;
        Ok(removed)
    }
}

/// The record of `balancer` as it stands.
fn record(key: &BalancerKey, balancer: &AppliedBalancer) -> BalancerRecord {
    BalancerRecord {
        service_id: id_field(&key.service_id),
        vni: key.vni,
        seg_offset: balancer.ring.offset,
        seg_capacity: balancer.seg_capacity,
        _pad: 0,
        digest: balancer.digest,
    }
}

/// The service ID in a record, or a name no desired state can contain (so
/// the next apply removes it) if the record is unreadable.
pub(super) fn record_key(id: u32, record: &BalancerRecord) -> BalancerKey {
    BalancerKey {
        service_id: id_from_field(&record.service_id)
            .unwrap_or_else(|| format!("\0unreadable-{id}")),
        vni: record.vni,
    }
}

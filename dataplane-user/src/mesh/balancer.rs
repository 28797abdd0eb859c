//! Per-service steps of the diff: sync one balancer's backends and ring,
//! rebuild and flip its Maglev table, take it out of the maps.

use std::collections::BTreeMap;

use hive_common::maps::Ring;

use super::{
    apply::{AppliedBackend, AppliedBalancer, ApplyError, ApplyStats, Reconciler, table_digest},
    desired::{BalancerKey, DesiredBalancer},
    ops::MeshMapOps,
};
use crate::{
    maglev::MaglevTable,
    maps::{BackendRecord, BalancerRecord, MapsError, records::id_field},
};

impl Reconciler {
    pub(super) fn sync_balancer(
        &mut self,
        key: &BalancerKey,
        want: &DesiredBalancer,
        seed: u32,
        maps: &mut impl MeshMapOps,
        stats: &mut ApplyStats,
    ) -> Result<(), ApplyError> {
        // The common case, nothing changed: decide without allocating.
        if let Some(b) = self.balancers.get(key)
            && b.pending_retire.is_empty()
            && b.backends.len() == want.backends.len()
            && b.backends
                .iter()
                .zip(&want.backends)
                .all(|((t, b), (wt, wb))| t == wt && b.value == *wb)
            && b.digest == table_digest(seed, b.backends.iter().map(|(t, b)| (t.as_str(), b.id)))
        {
            return Ok(());
        }
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
            self.retire_backend(id, maps)?;
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

    pub(super) fn remove_balancer(
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
            self.retire_backend(id, maps)?;
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

//! Rebuilding the applied state from the maps, after an agent restart.
//!
//! Nothing is written here: the model is read back from the ABI maps (node,
//! peers, endpoints, front ends, rings, backends) and the agent's records
//! (which Swarm service and task each dense id stands for, where each
//! service's segment is and what it was built from). The first apply then
//! diffs against what the kernel really holds, so it touches only entries
//! that differ. See `docs/dataplane.md`, "Restarts".

use std::collections::BTreeMap;

use hive_common::maps::{MAGLEV_SLOTS, MAX_BACKENDS, MAX_SERVICES, NodeConfig};

use super::{
    alloc::{IdAllocator, SegmentAllocator},
    apply::{AppliedBackend, AppliedBalancer, ApplyError, Reconciler, record_key},
    fast::FastMap,
    ops::MeshMapOps,
};
use crate::maps::records::id_from_field;

impl Reconciler {
    /// The applied state the maps hold.
    pub fn recover(maps: &impl MeshMapOps) -> Result<Self, ApplyError> {
        let node = maps.read_node()?;
        let node = (node.flags & NodeConfig::FLAG_CONFIGURED != 0).then_some(node);
        let peers: FastMap<_, _> = maps.read_peers()?.into_iter().collect();
        let endpoints: FastMap<_, _> = maps.read_endpoints()?.into_iter().collect();
        let frontends: FastMap<_, _> = maps.read_frontends()?.into_iter().collect();

        let mut balancers = FastMap::default();
        let mut key_of_id = FastMap::default();
        for (id, record) in maps.read_balancer_records()? {
            if id == 0 || id >= MAX_SERVICES {
                return Err(ApplyError::Corrupt {
                    detail: format!("a service record has id {id}, outside 1..{MAX_SERVICES}"),
                });
            }
            let ring = maps.read_ring(id)?;
            // The record is written after the ring flips: if they disagree,
            // the flip happened and the record did not; trust the ring and
            // rebuild the table on the next apply.
            let (seg_capacity, digest) =
                if record.seg_offset == ring.offset && record.seg_capacity >= ring.size {
                    (record.seg_capacity, record.digest)
                } else {
                    (ring.size, 0)
                };
            let key = record_key(id, &record);
            key_of_id.insert(id, key.clone());
            balancers.insert(
                key,
                AppliedBalancer {
                    id,
                    backends: BTreeMap::new(),
                    pending_retire: Vec::new(),
                    ring,
                    seg_capacity,
                    digest,
                },
            );
        }

        let mut orphan_backends = Vec::new();
        let mut backend_ids = Vec::new();
        for (id, record) in maps.read_backend_records()? {
            if id == 0 || id >= MAX_BACKENDS {
                return Err(ApplyError::Corrupt {
                    detail: format!("a backend record has id {id}, outside 1..{MAX_BACKENDS}"),
                });
            }
            backend_ids.push(id);
            let balancer = key_of_id
                .get(&record.balancer)
                .and_then(|key| balancers.get_mut(key));
            let (Some(balancer), Some(task)) = (balancer, id_from_field(&record.task_id)) else {
                orphan_backends.push(id);
                continue;
            };
            let value = maps.read_backend(id)?;
            // Two records for one task: a crash between writing a
            // replacement and retiring the old one. Keep one, retire the
            // other after the next flip; the digest decides whether the
            // ring is rebuilt.
            if let Some(other) = balancer.backends.insert(task, AppliedBackend { id, value }) {
                balancer.pending_retire.push(other.id);
            }
        }

        let used_segments: Vec<(u32, u32)> = balancers
            .values()
            .map(|b| (b.ring.offset, b.seg_capacity))
            .collect();
        let segments = SegmentAllocator::with_used(MAGLEV_SLOTS, used_segments).map_err(|offset| {
            ApplyError::Corrupt {
                detail: format!("two services' Maglev segments overlap at slot {offset}, or one ends past the map"),
            }
        })?;
        Ok(Self {
            node,
            peers,
            endpoints,
            frontends,
            service_ids: IdAllocator::with_used(MAX_SERVICES, balancers.values().map(|b| b.id)),
            backend_ids: IdAllocator::with_used(MAX_BACKENDS, backend_ids),
            balancers,
            orphan_backends,
            segments,
        })
    }
}

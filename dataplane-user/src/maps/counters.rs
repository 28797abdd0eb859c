//! Readers of the per-CPU counters: one value per possible CPU, summed.
//! Programs increment their own CPU's copy without atomics; only user space
//! adds them up.

use aya::maps::{MapData, PerCpuArray, PerCpuValues};
use hive_common::{
    DropReason,
    maps::{self as abi, PacketCounter, PacketCounterSlot, ServiceCounters},
};

use super::{MapsError, MeshMaps, read_err, write_err};

fn sum_counters(values: &[ServiceCounters]) -> ServiceCounters {
    values
        .iter()
        .fold(ServiceCounters::default(), |a, v| ServiceCounters {
            packets: a.packets + v.packets,
            bytes: a.bytes + v.bytes,
            new_flows: a.new_flows + v.new_flows,
        })
}

fn zero<V: aya::Pod + Default>(
    map: &mut PerCpuArray<MapData, V>,
    name: &'static str,
    index: u32,
    nr_cpus: usize,
) -> Result<(), MapsError> {
    let zeros = PerCpuValues::try_from(vec![V::default(); nr_cpus])
        .map_err(|source| MapsError::Cpus { source })?;
    map.set(index, zeros, 0).map_err(write_err(name, index))
}

impl MeshMaps {
    /// Drops per reason since the maps were created, every reason listed.
    pub fn drop_counts(&self) -> Result<Vec<(DropReason, u64)>, MapsError> {
        DropReason::ALL
            .iter()
            .map(|&reason| {
                let per_cpu = self
                    .drops
                    .get(&(reason as u32), 0)
                    .map_err(read_err(abi::DROP_COUNTERS))?;
                Ok((reason, per_cpu.iter().sum()))
            })
            .collect()
    }

    pub fn packet_counter(&self, slot: PacketCounterSlot) -> Result<PacketCounter, MapsError> {
        let per_cpu = self
            .packets
            .get(&(slot as u32), 0)
            .map_err(read_err(abi::PACKET_COUNTERS))?;
        Ok(per_cpu
            .iter()
            .fold(PacketCounter::default(), |a, v| PacketCounter {
                packets: a.packets + v.packets,
                bytes: a.bytes + v.bytes,
            }))
    }

    /// Counters of a dense service id (one service on one network).
    pub fn service_counters(&self, service: u32) -> Result<ServiceCounters, MapsError> {
        let per_cpu = self
            .service_stats
            .get(&service, 0)
            .map_err(read_err(abi::SERVICE_STATS))?;
        Ok(sum_counters(&per_cpu))
    }

    /// Counters of a dense backend id.
    pub fn backend_counters(&self, backend: u32) -> Result<ServiceCounters, MapsError> {
        let per_cpu = self
            .backend_stats
            .get(&backend, 0)
            .map_err(read_err(abi::BACKEND_STATS))?;
        Ok(sum_counters(&per_cpu))
    }

    /// Zero a service id's counters (when the id is given to a new service).
    pub fn reset_service_counters(&mut self, service: u32) -> Result<(), MapsError> {
        zero(
            &mut self.service_stats,
            abi::SERVICE_STATS,
            service,
            self.nr_cpus,
        )
    }

    /// Zero a backend id's counters (when the id is given to a new backend).
    pub fn reset_backend_counters(&mut self, backend: u32) -> Result<(), MapsError> {
        zero(
            &mut self.backend_stats,
            abi::BACKEND_STATS,
            backend,
            self.nr_cpus,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_over_cpus() {
        let c = |p, b, f| ServiceCounters {
            packets: p,
            bytes: b,
            new_flows: f,
        };
        assert_eq!(
            sum_counters(&[c(1, 100, 1), c(2, 50, 0), c(0, 0, 0)]),
            c(3, 150, 1)
        );
    }
}

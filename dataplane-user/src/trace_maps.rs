//! Typed handles on the trace maps of one node (`hive_common::trace`): the
//! one place outside `crate::maps` that holds raw aya map types, kept here
//! so the tracer does not have to open (and create records in) every mesh
//! map just to read events. The maps stay in the core (its [`crate::stats`]
//! reads their lost counters); the tracer (`hive-trace`) re-exports them.

use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues, RingBuf};
use hive_common::trace::{
    TRACE_ADDRS, TRACE_CONFIG, TRACE_LOST, TRACE_RING, TRACE_SERVICES, TraceConfig, TraceLost,
};

/// Errors from the trace maps.
#[derive(Debug, thiserror::Error)]
pub enum TraceMapsError {
    #[error("cannot open the pinned trace map {}: {source}; is hive's data plane (with tracing, this version or later) loaded on this node?", path.display())]
    OpenPinned {
        path: PathBuf,
        #[source]
        source: Box<MapError>,
    },
    #[error("the eBPF object has no map {name}; rebuild hive")]
    Missing { name: &'static str },
    #[error(
        "map {name} does not have the layout this hive expects ({source}); the pins were left by another hive version"
    )]
    Layout {
        name: &'static str,
        #[source]
        source: Box<MapError>,
    },
    #[error("cannot {action} {name}: {source}")]
    Access {
        action: &'static str,
        name: &'static str,
        #[source]
        source: Box<MapError>,
    },
}

fn access(action: &'static str, name: &'static str) -> impl FnOnce(MapError) -> TraceMapsError {
    move |source| TraceMapsError::Access {
        action,
        name,
        source: Box::new(source),
    }
}

/// Events not delivered, summed over CPUs.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LostCounts {
    pub rate_limited: u64,
    pub ring_full: u64,
}

/// The trace maps of one node.
pub struct TraceMaps {
    config: Array<MapData, TraceConfig>,
    lost: PerCpuArray<MapData, u64>,
    addrs: HashMap<MapData, u32, u32>,
    services: HashMap<MapData, u32, u32>,
    ring: RingBuf<MapData>,
}

impl std::fmt::Debug for TraceMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceMaps").finish_non_exhaustive()
    }
}

fn typed<T: TryFrom<Map, Error = MapError>>(
    name: &'static str,
    map: Map,
) -> Result<T, TraceMapsError> {
    T::try_from(map).map_err(|source| TraceMapsError::Layout {
        name,
        source: Box::new(source),
    })
}

impl TraceMaps {
    /// Open the maps pinned in a node's pin directory.
    pub fn open_pinned(dir: &Path) -> Result<Self, TraceMapsError> {
        let open = |name: &'static str| -> Result<Map, TraceMapsError> {
            let path = dir.join(name);
            let err = |source| TraceMapsError::OpenPinned {
                path: path.clone(),
                source: Box::new(source),
            };
            let data = MapData::from_pin(&path).map_err(err)?;
            Map::from_map_data(data).map_err(err)
        };
        Ok(Self {
            config: typed(TRACE_CONFIG, open(TRACE_CONFIG)?)?,
            lost: typed(TRACE_LOST, open(TRACE_LOST)?)?,
            addrs: typed(TRACE_ADDRS, open(TRACE_ADDRS)?)?,
            services: typed(TRACE_SERVICES, open(TRACE_SERVICES)?)?,
            ring: typed(TRACE_RING, open(TRACE_RING)?)?,
        })
    }

    /// Take the maps out of a loaded object (`BPF_PROG_RUN` fixtures).
    pub fn from_ebpf(ebpf: &mut aya::Ebpf) -> Result<Self, TraceMapsError> {
        let mut take =
            |name: &'static str| ebpf.take_map(name).ok_or(TraceMapsError::Missing { name });
        Ok(Self {
            config: typed(TRACE_CONFIG, take(TRACE_CONFIG)?)?,
            lost: typed(TRACE_LOST, take(TRACE_LOST)?)?,
            addrs: typed(TRACE_ADDRS, take(TRACE_ADDRS)?)?,
            services: typed(TRACE_SERVICES, take(TRACE_SERVICES)?)?,
            ring: typed(TRACE_RING, take(TRACE_RING)?)?,
        })
    }

    pub fn config(&self) -> Result<TraceConfig, TraceMapsError> {
        self.config.get(&0, 0).map_err(access("read", TRACE_CONFIG))
    }

    pub fn set_config(&mut self, config: &TraceConfig) -> Result<(), TraceMapsError> {
        self.config
            .set(0, config, 0)
            .map_err(access("write", TRACE_CONFIG))
    }

    /// Replace the address set of the service filter.
    pub fn set_filter_addrs(&mut self, addrs_be: &[u32]) -> Result<(), TraceMapsError> {
        replace_set(&mut self.addrs, addrs_be).map_err(access("write", TRACE_ADDRS))
    }

    /// Replace the set of service ids the service filter accepts besides
    /// the config's own (the service's ids on its other networks).
    pub fn set_filter_services(&mut self, ids: &[u32]) -> Result<(), TraceMapsError> {
        replace_set(&mut self.services, ids).map_err(access("write", TRACE_SERVICES))
    }

    pub fn lost(&self) -> Result<LostCounts, TraceMapsError> {
        let sum = |slot: TraceLost| -> Result<u64, TraceMapsError> {
            let values: PerCpuValues<u64> = self
                .lost
                .get(&(slot as u32), 0)
                .map_err(access("read", TRACE_LOST))?;
            Ok(values.iter().sum())
        };
        Ok(LostCounts {
            rate_limited: sum(TraceLost::RateLimited)?,
            ring_full: sum(TraceLost::RingFull)?,
        })
    }

    /// Every record waiting in the ring buffer, oldest first per CPU.
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) {
        while let Some(item) = self.ring.next() {
            each(&item);
        }
    }
}

/// Make the keys of a presence-only map exactly `keys`.
fn replace_set(map: &mut HashMap<MapData, u32, u32>, keys: &[u32]) -> Result<(), MapError> {
    let old: Vec<u32> = map.keys().filter_map(Result::ok).collect();
    for key in old {
        if !keys.contains(&key) {
            // An entry already gone is fine.
            let _ = map.remove(&key);
        }
    }
    for key in keys {
        map.insert(key, 1, 0)?;
    }
    Ok(())
}

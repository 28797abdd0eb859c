//! Typed handles on every map of the mesh ABI (`hive_common::maps`) and on
//! the agent's own records. No raw aya map type leaves this module.
//!
//! [`MeshMaps`] opens either from a freshly loaded [`aya::Ebpf`] (tests,
//! `BPF_PROG_RUN` fixtures) or from the pins under a node's pin directory
//! (the agent, also after a restart).

mod barrier;
mod counters;
pub mod records;
mod sys;

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::maps::{Array, HashMap, IterableMap as _, Map, MapData, MapError, PerCpuArray};
use hive_common::maps::{
    self as abi, Backend, Endpoint, FlowEntry, FlowKey, FlowKind, Frontend, NodeConfig,
    PacketCounter, Peer, Ring, ServiceCounters, ServiceKey,
};

pub use barrier::RcuBarrier;
pub use records::{BackendRecord, BalancerRecord};
pub use sys::detach_pinned_link;

/// Every ABI map [`MeshMaps`] needs, by pin name.
pub const ABI_MAPS: [&str; 12] = [
    abi::DROP_COUNTERS,
    abi::PACKET_COUNTERS,
    abi::NODE_CONFIG,
    abi::SERVICES,
    abi::RINGS,
    abi::MAGLEV,
    abi::BACKENDS,
    abi::CONNTRACK,
    abi::ENDPOINTS,
    abi::PEERS,
    abi::SERVICE_STATS,
    abi::BACKEND_STATS,
];

/// Errors from opening, reading or writing the maps.
#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error(
        "the loaded eBPF object has no map {name}; the programs and hive-common disagree, rebuild hive"
    )]
    Missing { name: &'static str },
    #[error("cannot open pinned map {}: {source}; is the data plane loaded for this node (`Dataplane::open`)?", path.display())]
    OpenPinned {
        path: PathBuf,
        source: Box<MapError>,
    },
    #[error(
        "map {name} does not have the layout this hive expects: {source}; the pins were left by a different hive version, remove them (`Dataplane::destroy`) and reload"
    )]
    Layout {
        name: &'static str,
        source: Box<MapError>,
    },
    #[error("cannot create map {name}: {source}")]
    Create {
        name: &'static str,
        source: Box<MapError>,
    },
    #[error("cannot pin map {name} at {}: {source}", path.display())]
    Pin {
        name: &'static str,
        path: PathBuf,
        source: Box<aya::pin::PinError>,
    },
    #[error("cannot write {name}[{key}]: {source}")]
    Write {
        name: &'static str,
        key: String,
        source: Box<MapError>,
    },
    #[error("cannot delete {name}[{key}]: {source}")]
    Delete {
        name: &'static str,
        key: String,
        source: Box<MapError>,
    },
    #[error("cannot read {name}: {source}")]
    Read {
        name: &'static str,
        source: Box<MapError>,
    },
    #[error("cannot count the CPUs (per-CPU maps hold one value per possible CPU): {source}")]
    Cpus { source: io::Error },
    #[error("cannot wait for running eBPF programs to finish (RCU grace period): {source}")]
    Barrier { source: io::Error },
}

/// Typed handles on all mesh maps of one node.
pub struct MeshMaps {
    drops: PerCpuArray<MapData, u64>,
    packets: PerCpuArray<MapData, PacketCounter>,
    node: Array<MapData, NodeConfig>,
    services: HashMap<MapData, ServiceKey, Frontend>,
    rings: Array<MapData, Ring>,
    maglev: Array<MapData, u32>,
    backends: Array<MapData, Backend>,
    conntrack: HashMap<MapData, FlowKey, FlowEntry>,
    endpoints: HashMap<MapData, u32, Endpoint>,
    peers: HashMap<MapData, u32, Peer>,
    service_stats: PerCpuArray<MapData, ServiceCounters>,
    backend_stats: PerCpuArray<MapData, ServiceCounters>,
    balancer_records: HashMap<MapData, u32, BalancerRecord>,
    backend_records: HashMap<MapData, u32, BackendRecord>,
    nr_cpus: usize,
}

impl std::fmt::Debug for MeshMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshMaps")
            .field("nr_cpus", &self.nr_cpus)
            .finish_non_exhaustive()
    }
}

/// Where a map comes from while opening.
trait Source {
    fn take(&mut self, name: &'static str) -> Result<Map, MapsError>;
}

struct FromEbpf<'a>(&'a mut aya::Ebpf);

impl Source for FromEbpf<'_> {
    fn take(&mut self, name: &'static str) -> Result<Map, MapsError> {
        self.0.take_map(name).ok_or(MapsError::Missing { name })
    }
}

struct FromPins<'a>(&'a Path);

impl Source for FromPins<'_> {
    fn take(&mut self, name: &'static str) -> Result<Map, MapsError> {
        let path = self.0.join(name);
        let data = MapData::from_pin(&path).map_err(|source| MapsError::OpenPinned {
            path: path.clone(),
            source: Box::new(source),
        })?;
        Map::from_map_data(data).map_err(|source| MapsError::OpenPinned {
            path,
            source: Box::new(source),
        })
    }
}

fn typed<T>(source: &mut dyn Source, name: &'static str) -> Result<T, MapsError>
where
    T: TryFrom<Map, Error = MapError>,
{
    T::try_from(source.take(name)?).map_err(|source| MapsError::Layout {
        name,
        source: Box::new(source),
    })
}

impl MeshMaps {
    /// Take the maps out of a freshly loaded object. The agent's records
    /// are opened or created (and pinned) under `records_dir` when given,
    /// else created private to this process.
    pub fn from_ebpf(ebpf: &mut aya::Ebpf, records_dir: Option<&Path>) -> Result<Self, MapsError> {
        Self::open(&mut FromEbpf(ebpf), records_dir)
    }

    /// Open the maps pinned in a node's pin directory (the agent's own
    /// records are created there if they are missing).
    pub fn open_pinned(dir: &Path) -> Result<Self, MapsError> {
        Self::open(&mut FromPins(dir), Some(dir))
    }

    fn open(source: &mut dyn Source, records_dir: Option<&Path>) -> Result<Self, MapsError> {
        let nr_cpus = aya::util::nr_cpus().map_err(|(_, source)| MapsError::Cpus { source })?;
        Ok(Self {
            drops: typed(source, abi::DROP_COUNTERS)?,
            packets: typed(source, abi::PACKET_COUNTERS)?,
            node: typed(source, abi::NODE_CONFIG)?,
            services: typed(source, abi::SERVICES)?,
            rings: typed(source, abi::RINGS)?,
            maglev: typed(source, abi::MAGLEV)?,
            backends: typed(source, abi::BACKENDS)?,
            conntrack: typed(source, abi::CONNTRACK)?,
            endpoints: typed(source, abi::ENDPOINTS)?,
            peers: typed(source, abi::PEERS)?,
            service_stats: typed(source, abi::SERVICE_STATS)?,
            backend_stats: typed(source, abi::BACKEND_STATS)?,
            balancer_records: record_map(
                records::BALANCER_RECORDS,
                records::BALANCER_RECORDS_ENTRIES,
                records_dir,
            )?,
            backend_records: record_map(
                records::BACKEND_RECORDS,
                records::BACKEND_RECORDS_ENTRIES,
                records_dir,
            )?,
            nr_cpus,
        })
    }
}

/// Open the pinned record map `name` in `dir`, or create (and pin) it.
fn record_map<V: aya::Pod>(
    name: &'static str,
    entries: u32,
    dir: Option<&Path>,
) -> Result<HashMap<MapData, u32, V>, MapsError> {
    if let Some(dir) = dir {
        let path = dir.join(name);
        if path.exists() {
            return typed(&mut FromPins(dir), name);
        }
        let map =
            HashMap::<MapData, u32, V>::create(entries, 0).map_err(|source| MapsError::Create {
                name,
                source: Box::new(source),
            })?;
        map.pin(&path).map_err(|source| MapsError::Pin {
            name,
            path: path.clone(),
            source: Box::new(source),
        })?;
        return typed(&mut FromPins(dir), name);
    }
    HashMap::<MapData, u32, V>::create(entries, 0).map_err(|source| MapsError::Create {
        name,
        source: Box::new(source),
    })
}

/// `true` for the "no such key" a delete of an absent entry reports.
fn is_not_found(err: &MapError) -> bool {
    match err {
        MapError::KeyNotFound | MapError::ElementNotFound => true,
        MapError::SyscallError(e) => e.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

fn write_err(name: &'static str, key: impl std::fmt::Debug) -> impl FnOnce(MapError) -> MapsError {
    move |source| MapsError::Write {
        name,
        key: format!("{key:?}"),
        source: Box::new(source),
    }
}

fn read_err(name: &'static str) -> impl FnOnce(MapError) -> MapsError {
    move |source| MapsError::Read {
        name,
        source: Box::new(source),
    }
}

/// Delete `key`, treating an absent key as done.
fn delete<V: aya::Pod, K: aya::Pod + std::fmt::Debug>(
    map: &mut HashMap<MapData, K, V>,
    name: &'static str,
    key: &K,
) -> Result<(), MapsError> {
    match map.remove(key) {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(source) => Err(MapsError::Delete {
            name,
            key: format!("{key:?}"),
            source: Box::new(source),
        }),
    }
}

fn collect<K: aya::Pod, V: aya::Pod>(
    map: &HashMap<MapData, K, V>,
    name: &'static str,
) -> Result<Vec<(K, V)>, MapsError> {
    let mut out = Vec::new();
    for entry in map.iter() {
        match entry {
            Ok(kv) => out.push(kv),
            // The entry was deleted (e.g. by the LRU) between next_key and
            // lookup; the iteration itself goes on.
            Err(e) if is_not_found(&e) => {}
            Err(source) => {
                return Err(MapsError::Read {
                    name,
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(out)
}

impl MeshMaps {
    pub fn node_config(&self) -> Result<NodeConfig, MapsError> {
        self.node.get(&0, 0).map_err(read_err(abi::NODE_CONFIG))
    }

    pub fn set_node_config(&mut self, config: &NodeConfig) -> Result<(), MapsError> {
        self.node
            .set(0, config, 0)
            .map_err(write_err(abi::NODE_CONFIG, 0))
    }

    pub fn frontends(&self) -> Result<Vec<(ServiceKey, Frontend)>, MapsError> {
        collect(&self.services, abi::SERVICES)
    }

    pub fn frontend(&self, key: &ServiceKey) -> Result<Option<Frontend>, MapsError> {
        match self.services.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(source) => Err(MapsError::Read {
                name: abi::SERVICES,
                source: Box::new(source),
            }),
        }
    }

    pub fn put_frontend(&mut self, key: &ServiceKey, frontend: &Frontend) -> Result<(), MapsError> {
        self.services
            .insert(key, frontend, 0)
            .map_err(write_err(abi::SERVICES, key))
    }

    pub fn remove_frontend(&mut self, key: &ServiceKey) -> Result<(), MapsError> {
        delete(&mut self.services, abi::SERVICES, key)
    }

    pub fn ring(&self, service: u32) -> Result<Ring, MapsError> {
        self.rings.get(&service, 0).map_err(read_err(abi::RINGS))
    }

    pub fn set_ring(&mut self, service: u32, ring: &Ring) -> Result<(), MapsError> {
        self.rings
            .set(service, ring, 0)
            .map_err(write_err(abi::RINGS, service))
    }

    /// `len` slots of `HIVE_MAGLEV` from `offset`.
    pub fn maglev_slots(&self, offset: u32, len: u32) -> Result<Vec<u32>, MapsError> {
        (offset..offset.saturating_add(len))
            .map(|i| self.maglev.get(&i, 0).map_err(read_err(abi::MAGLEV)))
            .collect()
    }

    /// Write `slots` from `offset`: one batched `bpf(2)` call where the
    /// kernel has them (5.6+), rather than one per slot — a first apply at
    /// 10,000 services writes two million slots.
    pub fn write_maglev_slots(&mut self, offset: u32, slots: &[u32]) -> Result<(), MapsError> {
        let len = u32::try_from(slots.len()).unwrap_or(u32::MAX);
        let end = offset.saturating_add(len);
        if end > self.maglev.len() {
            // What the kernel would say for the first slot past the end.
            let first_out = offset.max(self.maglev.len());
            return Err(write_err(abi::MAGLEV, first_out)(MapError::OutOfBounds {
                index: first_out,
                max_entries: self.maglev.len(),
            }));
        }
        let keys: Vec<u32> = (offset..end).collect();
        match sys::update_batch(self.maglev.map().fd(), &keys, slots) {
            Ok(()) => Ok(()),
            Err(sys::BatchError::Unsupported) => {
                for (i, backend) in (offset..).zip(slots) {
                    self.maglev
                        .set(i, backend, 0)
                        .map_err(write_err(abi::MAGLEV, i))?;
                }
                Ok(())
            }
            Err(sys::BatchError::Failed(io_error)) => Err(MapsError::Write {
                name: abi::MAGLEV,
                key: format!("{offset}..{end}"),
                source: Box::new(MapError::SyscallError(aya::sys::SyscallError {
                    call: "bpf_map_update_batch",
                    io_error,
                })),
            }),
        }
    }

    pub fn backend(&self, id: u32) -> Result<Backend, MapsError> {
        self.backends.get(&id, 0).map_err(read_err(abi::BACKENDS))
    }

    pub fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), MapsError> {
        self.backends
            .set(id, backend, 0)
            .map_err(write_err(abi::BACKENDS, id))
    }

    pub fn endpoints(&self) -> Result<Vec<(u32, Endpoint)>, MapsError> {
        collect(&self.endpoints, abi::ENDPOINTS)
    }

    pub fn put_endpoint(&mut self, addr_be: u32, endpoint: &Endpoint) -> Result<(), MapsError> {
        self.endpoints
            .insert(addr_be, endpoint, 0)
            .map_err(write_err(abi::ENDPOINTS, addr_be))
    }

    pub fn remove_endpoint(&mut self, addr_be: u32) -> Result<(), MapsError> {
        delete(&mut self.endpoints, abi::ENDPOINTS, &addr_be)
    }

    pub fn peers(&self) -> Result<Vec<(u32, Peer)>, MapsError> {
        collect(&self.peers, abi::PEERS)
    }

    pub fn put_peer(&mut self, addr_be: u32, peer: &Peer) -> Result<(), MapsError> {
        self.peers
            .insert(addr_be, peer, 0)
            .map_err(write_err(abi::PEERS, addr_be))
    }

    pub fn remove_peer(&mut self, addr_be: u32) -> Result<(), MapsError> {
        delete(&mut self.peers, abi::PEERS, &addr_be)
    }

    /// Every conntrack entry (a snapshot; the programs keep changing it).
    pub fn conntrack(&self) -> Result<Vec<(FlowKey, FlowEntry)>, MapsError> {
        collect(&self.conntrack, abi::CONNTRACK)
    }

    /// Delete every conntrack entry of a flow of one of `addrs` (task
    /// addresses whose drain is over, sorted): `Forward` entries that name
    /// one as their backend, and every entry keyed by one as its source or
    /// destination (`ReverseNat` and `Tunnel` entries of its replies, the
    /// entries of flows it opened itself). Returns how many went.
    ///
    /// One pass over a snapshot of the table, one lookup per entry: at the
    /// table's full 262,144 entries that is about half a second of
    /// syscalls. Entries the programs add meanwhile cannot name these
    /// addresses: no ring names them and no endpoint leads to them any more.
    pub fn forget_flows_of(&mut self, addrs: &[u32]) -> Result<usize, MapsError> {
        if addrs.is_empty() {
            return Ok(0);
        }
        let named = |a: &u32| addrs.binary_search(a).is_ok();
        let doomed: Vec<FlowKey> = self
            .conntrack()?
            .into_iter()
            .filter(|(k, e)| {
                named(&k.saddr_be)
                    || named(&k.daddr_be)
                    || (k.kind == FlowKind::Forward as u8 && named(&e.addr_be))
            })
            .map(|(k, _)| k)
            .collect();
        for key in &doomed {
            delete(&mut self.conntrack, abi::CONNTRACK, key)?;
        }
        Ok(doomed.len())
    }

    pub fn put_conntrack(&mut self, key: &FlowKey, entry: &FlowEntry) -> Result<(), MapsError> {
        self.conntrack
            .insert(key, entry, 0)
            .map_err(write_err(abi::CONNTRACK, key))
    }

    pub fn balancer_records(&self) -> Result<Vec<(u32, BalancerRecord)>, MapsError> {
        collect(&self.balancer_records, records::BALANCER_RECORDS)
    }

    pub fn put_balancer_record(
        &mut self,
        id: u32,
        record: &BalancerRecord,
    ) -> Result<(), MapsError> {
        self.balancer_records
            .insert(id, record, 0)
            .map_err(write_err(records::BALANCER_RECORDS, id))
    }

    pub fn remove_balancer_record(&mut self, id: u32) -> Result<(), MapsError> {
        delete(&mut self.balancer_records, records::BALANCER_RECORDS, &id)
    }

    pub fn backend_records(&self) -> Result<Vec<(u32, BackendRecord)>, MapsError> {
        collect(&self.backend_records, records::BACKEND_RECORDS)
    }

    pub fn put_backend_record(&mut self, id: u32, record: &BackendRecord) -> Result<(), MapsError> {
        self.backend_records
            .insert(id, record, 0)
            .map_err(write_err(records::BACKEND_RECORDS, id))
    }

    pub fn remove_backend_record(&mut self, id: u32) -> Result<(), MapsError> {
        delete(&mut self.backend_records, records::BACKEND_RECORDS, &id)
    }
}

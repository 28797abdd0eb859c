//! [`MemoryDataplane`]: the data plane's reconciler over in-memory maps. What the agent
//! applies is validated, compiled and diffed exactly as on the kernel (the same
//! [`MeshApplier`]); only the maps are a log instead of BPF maps. A [`MemoryHandle`] lets a
//! test read what is held and count the map operations since it last looked.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use hive_dataplane::DataplaneError;
use hive_dataplane::attach::task::TaskIfaces;
use hive_dataplane::mesh::fake::{FakeMaps, Op};
use hive_dataplane::mesh::{
    ApplyStats, MeshApplier, MeshDelta, MeshState, Reconciler, UnderlayLink,
};

use super::Dataplane;

/// What the in-memory data plane holds.
#[derive(Debug, Default)]
pub struct Held {
    /// The last state applied successfully (after a delta, in no particular order).
    pub state: Option<MeshState>,
    /// How many applies succeeded (whole states and deltas).
    pub applies: u64,
    /// How many of them were deltas.
    pub deltas: u64,
    /// The services, endpoints, peers and local endpoints the data plane validated and
    /// compiled at the last apply ([`MeshApplier::work`]).
    pub work: usize,
    pub maps: FakeMaps,
    /// Task veths with `tc_from_task` attached.
    pub task_ifaces: BTreeSet<u32>,
    /// Network namespace cookie → resolver port.
    pub resolver_ports: std::collections::BTreeMap<u64, u16>,
}

/// The agent's data plane in memory (see the module docs).
#[derive(Debug)]
pub struct MemoryDataplane {
    applier: MeshApplier,
    held: Arc<Mutex<Held>>,
    /// Where each service and endpoint is in `Held::state`, so that a delta patches it in
    /// place (the test double's bookkeeping, not the data plane's work).
    service_at: HashMap<String, usize>,
    endpoint_at: HashMap<Ipv4Addr, usize>,
}

/// A test's view of a [`MemoryDataplane`].
#[derive(Debug, Clone)]
pub struct MemoryHandle(Arc<Mutex<Held>>);

impl MemoryHandle {
    pub fn held(&self) -> MutexGuard<'_, Held> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The map operations since the last call.
    pub fn take_ops(&self) -> Vec<Op> {
        self.held().maps.take_log()
    }
}

/// The underlay link the in-memory data plane pretends to be attached to.
const UNDERLAY: UnderlayLink = UnderlayLink {
    ifindex: 2,
    mac: [0x02, 0, 0, 0, 0, 0x01],
};

impl MemoryDataplane {
    pub fn new() -> (Self, MemoryHandle) {
        let held = Arc::new(Mutex::new(Held::default()));
        (
            Self {
                applier: MeshApplier::new(Reconciler::new()),
                held: held.clone(),
                service_at: HashMap::new(),
                endpoint_at: HashMap::new(),
            },
            MemoryHandle(held),
        )
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Puts `value` (or nothing) at `key` in `list`, whose positions `at` knows.
fn patch<K: Hash + Eq + Clone, T>(
    list: &mut Vec<T>,
    at: &mut HashMap<K, usize>,
    key: &K,
    value: Option<T>,
    key_of: impl Fn(&T) -> K,
) {
    match (at.get(key).copied(), value) {
        (Some(i), Some(value)) => list[i] = value,
        (None, Some(value)) => {
            at.insert(key.clone(), list.len());
            list.push(value);
        }
        (Some(i), None) => {
            at.remove(key);
            list.swap_remove(i);
            if let Some(moved) = list.get(i) {
                at.insert(key_of(moved), i);
            }
        }
        (None, None) => {}
    }
}

impl TaskIfaces for MemoryDataplane {
    fn attach_task_iface(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        self.held().task_ifaces.insert(ifindex);
        Ok(())
    }

    fn detach_task_iface(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        self.held().task_ifaces.remove(&ifindex);
        Ok(())
    }
}

impl Dataplane for MemoryDataplane {
    fn apply(&mut self, state: &MeshState) -> Result<ApplyStats, DataplaneError> {
        let held = &mut *self.held.lock().unwrap_or_else(|e| e.into_inner());
        let stats = self.applier.apply(state, UNDERLAY, &mut held.maps)?;
        held.state = Some(state.clone());
        held.applies += 1;
        held.work = self.applier.work();
        self.service_at = state
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        self.endpoint_at = state
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| (e.addr, i))
            .collect();
        Ok(stats)
    }

    fn apply_delta(&mut self, delta: &MeshDelta) -> Result<ApplyStats, DataplaneError> {
        let held = &mut *self.held.lock().unwrap_or_else(|e| e.into_inner());
        let stats = self.applier.apply_delta(delta, &mut held.maps)?;
        held.applies += 1;
        held.deltas += 1;
        held.work = self.applier.work();
        if let Some(state) = &mut held.state {
            for (id, service) in &delta.services {
                patch(
                    &mut state.services,
                    &mut self.service_at,
                    id,
                    service.clone(),
                    |s| s.id.clone(),
                );
            }
            for (addr, endpoint) in &delta.endpoints {
                patch(
                    &mut state.endpoints,
                    &mut self.endpoint_at,
                    addr,
                    endpoint.clone(),
                    |e| e.addr,
                );
            }
            if let Some(peers) = &delta.peers {
                state.peers.clone_from(peers);
            }
            if let Some(locals) = &delta.local_endpoints {
                state.local_endpoints.clone_from(locals);
            }
        }
        Ok(stats)
    }

    fn set_resolver_port(&self, netns_cookie: u64, port: u16) -> Result<(), DataplaneError> {
        self.held().resolver_ports.insert(netns_cookie, port);
        Ok(())
    }

    fn forget_resolver_port(&self, netns_cookie: u64) -> Result<(), DataplaneError> {
        self.held().resolver_ports.remove(&netns_cookie);
        Ok(())
    }

    fn redirect_resolvers(&self, _cgroup: &Path) -> Result<(), DataplaneError> {
        Ok(())
    }

    fn destroy(self: Box<Self>) -> Result<(), DataplaneError> {
        *self.held() = Held::default();
        Ok(())
    }
}

//! The maps of `hive_common::maps`, as the programs declare them. Names are
//! the pin file names user space looks for; capacities are the ABI's.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap},
};
use hive_common::maps::{
    Backend, CONNTRACK_ENTRIES, Endpoint, FlowEntry, FlowKey, Frontend, LabForward, MAGLEV_SLOTS,
    MAX_BACKENDS, MAX_ENDPOINTS, MAX_PEERS, MAX_RESOLVERS, MAX_SERVICES, NodeConfig, Peer, Ring,
    ServiceKey,
};

#[map(name = "HIVE_NODE")]
pub static NODE: Array<NodeConfig> = Array::with_max_entries(1, 0);

#[map(name = "HIVE_SERVICES")]
pub static SERVICES: HashMap<ServiceKey, Frontend> = HashMap::with_max_entries(MAX_SERVICES, 0);

#[map(name = "HIVE_RINGS")]
pub static RINGS: Array<Ring> = Array::with_max_entries(MAX_SERVICES, 0);

#[map(name = "HIVE_MAGLEV")]
pub static MAGLEV: Array<u32> = Array::with_max_entries(MAGLEV_SLOTS, 0);

#[map(name = "HIVE_BACKENDS")]
pub static BACKENDS: Array<Backend> = Array::with_max_entries(MAX_BACKENDS, 0);

/// `BPF_F_NO_COMMON_LRU`: each CPU keeps its own LRU list, so inserting a new flow's entries
/// takes no lock shared with the other CPUs (the table itself is still one, shared).
const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;

#[map(name = "HIVE_CT")]
pub static CT: LruHashMap<FlowKey, FlowEntry> =
    LruHashMap::with_max_entries(CONNTRACK_ENTRIES, BPF_F_NO_COMMON_LRU);

#[map(name = "HIVE_ENDPOINTS")]
pub static ENDPOINTS: HashMap<u32, Endpoint> = HashMap::with_max_entries(MAX_ENDPOINTS, 0);

/// The benchmark's floor forwarder's one entry (`lab_forward`). Not `HIVE_`-named, so the
/// agent never pins it: it exists only inside a load that attaches `xdp_lab_forward`.
#[map(name = "LAB_FORWARD")]
pub static LAB_FORWARD: Array<LabForward> = Array::with_max_entries(1, 0);

#[map(name = "HIVE_PEERS")]
pub static PEERS: HashMap<u32, Peer> = HashMap::with_max_entries(MAX_PEERS, 0);

/// This node's configuration, or `None` until user space has set
/// `FLAG_CONFIGURED` (until then every program passes everything).
#[inline(always)]
pub fn node() -> Option<&'static NodeConfig> {
    let node = NODE.get(0)?;
    if node.flags & NodeConfig::FLAG_CONFIGURED == 0 {
        return None;
    }
    Some(node)
}

/// A peer's MAC, if `node_be` is a known peer.
#[inline(always)]
pub fn peer_mac(node_be: u32) -> Option<[u8; 6]> {
    // SAFETY: `Peer` is plain data; a concurrent update can at worst show a
    // torn MAC, which user space never writes in place (it inserts whole
    // entries).
    unsafe { PEERS.get(node_be) }.map(|p| p.mac)
}

/// An endpoint (task address → node, VNI).
#[inline(always)]
pub fn endpoint(addr_be: u32) -> Option<Endpoint> {
    // SAFETY: as in `peer_mac`.
    unsafe { ENDPOINTS.get(addr_be) }.copied()
}

/// Task namespace cookie → its embedded resolver's real port (`resolver`).
#[map(name = "HIVE_RESOLVERS")]
pub static RESOLVERS: LruHashMap<u64, u16> = LruHashMap::with_max_entries(MAX_RESOLVERS, 0);

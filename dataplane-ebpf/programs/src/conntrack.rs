//! Connection tracking in `HIVE_CT`: coarse TCP states, idle timeouts, and
//! the entries a balanced flow needs (`Forward` + `ReverseNat`) or a flow
//! that arrived through a tunnel from an external client needs (`Tunnel`).
//!
//! An entry idle for longer than its timeout is treated as absent; the LRU
//! evicts it eventually. Timeouts follow Cilium's defaults
//! (`bpf/lib/conntrack.h`): 60 s for a half-open TCP connection and for
//! UDP, 6 h for an established TCP connection, 10 s after FIN or RST.

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use hive_common::maps::{FlowEntry, FlowKey, FlowKind, IPPROTO_TCP, TcpState};

use aya_ebpf::{macros::map, maps::PerCpuArray};

use crate::{
    headers::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    maps::CT,
};

/// Scratch space to build conntrack entries in (the BPF stack is 512 bytes
/// per call chain and Rust is generous with it). Not part of the ABI: user
/// space never reads it.
#[map(name = "HIVE_CT_SCRATCH")]
static SCRATCH: PerCpuArray<FlowEntry> = PerCpuArray::with_max_entries(1, 0);

const SECOND_NS: u64 = 1_000_000_000;
pub const TIMEOUT_TCP_SYN_NS: u64 = 60 * SECOND_NS;
pub const TIMEOUT_TCP_ESTABLISHED_NS: u64 = 6 * 3600 * SECOND_NS;
pub const TIMEOUT_TCP_CLOSING_NS: u64 = 10 * SECOND_NS;
pub const TIMEOUT_UDP_NS: u64 = 60 * SECOND_NS;
/// `last_seen_ns` is rewritten at most this often while the TCP state stays
/// the same: writing it on every packet would bounce the entry's cache line
/// between CPUs for a precision nobody needs.
pub const REFRESH_NS: u64 = SECOND_NS;

/// Conntrack's clock: the coarse monotonic one (`CLOCK_MONOTONIC_COARSE`,
/// the same base as user space's `CLOCK_MONOTONIC`, a tick behind at most).
/// Timeouts are seconds and refreshes one a second, so a tick's precision is
/// plenty; the precise clock costs a TSC read through the hypervisor's clock
/// source, about 30 ns on the benchmark machine, on every packet
/// (`docs/dsr.md`, "What is left for the connection target"). Trace events
/// read the precise clock themselves.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: bpf_ktime_get_coarse_ns has no preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}

#[inline(always)]
fn timeout(proto: u8, state: u8) -> u64 {
    if proto != IPPROTO_TCP {
        return TIMEOUT_UDP_NS;
    }
    if state == TcpState::Established as u8 {
        TIMEOUT_TCP_ESTABLISHED_NS
    } else if state == TcpState::Closing as u8 || state == TcpState::Reset as u8 {
        TIMEOUT_TCP_CLOSING_NS
    } else {
        TIMEOUT_TCP_SYN_NS
    }
}

/// The state after a packet with `flags` in either direction.
#[inline(always)]
pub fn next_tcp_state(proto: u8, current: u8, flags: u8) -> u8 {
    if proto != IPPROTO_TCP {
        return TcpState::None as u8;
    }
    if flags & TCP_RST != 0 {
        TcpState::Reset as u8
    } else if flags & TCP_FIN != 0 {
        if current == TcpState::Reset as u8 {
            current
        } else {
            TcpState::Closing as u8
        }
    } else if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 {
        if current == TcpState::None as u8 {
            TcpState::SynSent as u8
        } else {
            current
        }
    } else if flags & TCP_ACK != 0
        && (current == TcpState::None as u8 || current == TcpState::SynSent as u8)
    {
        TcpState::Established as u8
    } else {
        current
    }
}

/// A bare SYN: the first packet of a TCP connection (or its retry).
#[inline(always)]
pub fn is_syn(proto: u8, flags: u8) -> bool {
    proto == IPPROTO_TCP && flags & TCP_SYN != 0 && flags & TCP_ACK == 0
}

/// A bare SYN on a closing or reset entry opens a new connection that
/// reuses the 5-tuple: it must be balanced afresh.
#[inline(always)]
pub fn is_reopen(proto: u8, state: u8, flags: u8) -> bool {
    is_syn(proto, flags) && (state == TcpState::Closing as u8 || state == TcpState::Reset as u8)
}

/// A live entry, brought up to date in place for this packet, and whether
/// its timestamp was due ([`REFRESH_NS`]): the callers' moment to refresh
/// the flow's companion entry. A TCP state change alone is written in place
/// and is no such moment: an LRU update allocates a fresh element (the
/// costliest thing a packet does here), and every connection changes state
/// two or three times.
#[derive(Copy, Clone)]
pub struct Hit {
    /// The entry in the map (not a copy: stack is the scarce resource).
    pub entry: &'static FlowEntry,
    pub due: bool,
    /// This packet changed the entry's TCP state (written in place).
    pub changed: bool,
}

/// Look `key` up; an expired entry counts as absent. When `reopen_is_miss`
/// a SYN on a finished connection is a miss too. The entry's state and
/// timestamp are brought up to date for this packet.
#[inline(always)]
pub fn lookup(key: &FlowKey, tcp_flags: u8, now: u64, reopen_is_miss: bool) -> Option<Hit> {
    let ptr = CT.get_ptr_mut(key)?;
    // SAFETY: the pointer is to a live LRU element; a concurrent update of
    // the same flow can at worst show a mix of two valid entries for the
    // same flow, which both lead to the same place.
    let (last_seen_ns, tcp_state) = unsafe { ((*ptr).last_seen_ns, (*ptr).tcp_state) };
    if now.saturating_sub(last_seen_ns) > timeout(key.proto, tcp_state) {
        return None;
    }
    if reopen_is_miss && is_reopen(key.proto, tcp_state, tcp_flags) {
        return None;
    }
    let state = next_tcp_state(key.proto, tcp_state, tcp_flags);
    let due = now.saturating_sub(last_seen_ns) > REFRESH_NS;
    if due || state != tcp_state {
        // SAFETY: as above; fields of plain data.
        unsafe {
            (*ptr).tcp_state = state;
            (*ptr).last_seen_ns = now;
            if due {
                // A next hop learnt from the routes lives until the refresh.
                (*ptr).flags &= !FlowEntry::FLAG_NEXT_HOP;
            }
        }
    }
    // SAFETY: as above; the element stays allocated while the program runs
    // (RCU), whatever the LRU does concurrently.
    Some(Hit {
        entry: unsafe { &*ptr },
        due,
        changed: state != tcp_state,
    })
}

/// Insert or replace an entry. An entry the key already has is rewritten in
/// place: an LRU map's update always takes a fresh element and frees the old
/// one, and under a steady load of short connections the table is always full
/// (a finished connection's entry stays until evicted), so each such update
/// would first evict another flow's element. A key that already has one is
/// common: a refresh, and a new connection on a client port whose previous
/// connection's entry is still there (`docs/dsr.md`, "What is left for the
/// connection target"). A failed insert (the kernel could not allocate an
/// element) is not a reason to drop the packet: the flow's next packet is
/// balanced again, to the same backend unless the table changed. Not inlined:
/// its frame is small, and inlined it grew `record_balanced`'s past the tc
/// path's share of the verifier's 512 bytes.
#[inline(never)]
pub fn upsert(key: &FlowKey, entry: &FlowEntry) {
    if let Some(ptr) = CT.get_ptr_mut(key) {
        // SAFETY: a live LRU element, kept allocated while the program runs
        // (RCU); the lookup marked it referenced. Another CPU reading the same
        // tuple at this moment may see a mix of the old and the new entry, as
        // with `lookup`'s in-place updates: only where one connection of the
        // tuple replaces another, and either leads the packet somewhere valid
        // or to a drop its retransmit recovers from.
        unsafe { ptr.write(*entry) };
        return;
    }
    if CT.insert(key, entry, 0).is_err() {
        // Nothing else to do; see above.
    }
}

/// The key of the reply direction of `key`, with kind `kind`.
#[inline(always)]
pub fn reply_key(
    saddr_be: u32,
    sport_be: u16,
    daddr_be: u32,
    dport_be: u16,
    proto: u8,
    kind: FlowKind,
) -> FlowKey {
    FlowKey {
        saddr_be,
        daddr_be,
        sport_be,
        dport_be,
        proto,
        kind: kind as u8,
        _pad: [0; 2],
    }
}

/// Everything [`record_balanced`] needs to know about a balanced flow
/// besides its `Forward` key and target.
#[derive(Copy, Clone)]
pub struct Balanced {
    /// The service address and port the client used (restored on replies).
    pub service_addr_be: u32,
    pub service_port_be: u16,
    /// North-south: replies leave through the underlay NIC to `client_mac`.
    pub north_south: bool,
    pub client_mac: [u8; 6],
    pub tcp_state: u8,
    /// The client is the backend itself (see [`FlowEntry::FLAG_HAIRPIN`]):
    /// its replies go to the service address, which keys the `ReverseNat`
    /// entry instead of the client's.
    pub hairpin: bool,
    /// Direct return (`docs/dsr.md`): the replies never come back through
    /// this node, so the flow needs no `ReverseNat` entry here.
    pub direct: bool,
    /// A new flow: its `Forward` entry is to be inserted. An existing
    /// flow's was brought up to date in place by [`lookup`]; only its
    /// companion `ReverseNat` entry is rewritten then.
    pub new: bool,
}

/// Write the `Forward` and `ReverseNat` entries of a flow the node balanced
/// to `target` (a new flow), or refresh the `ReverseNat` entry of an
/// existing one (see [`Balanced::new`]). Not inlined, for the stack frame (see
/// `tc::balance`); the entries are built in a per-CPU scratch slot rather
/// than on the stack, which is what makes this path fit the verifier's
/// 512 bytes per call chain.
#[inline(never)]
pub fn record_balanced(fwd: &FlowKey, target: &crate::lb::Target, b: &Balanced, now: u64) {
    if b.direct && !b.new {
        // No companion entry to refresh.
        return;
    }
    let Some(e) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let remote = if target.remote {
        FlowEntry::FLAG_REMOTE
    } else {
        0
    };
    let direct = if b.direct {
        FlowEntry::FLAG_DIRECT_RETURN
    } else {
        0
    };
    // SAFETY: this CPU's scratch slot; nothing else runs on this CPU while
    // the program does (BPF programs are not preempted by each other on a
    // CPU for the same hook; and nothing keeps data in it across calls).
    unsafe {
        (*e).last_seen_ns = now;
        (*e).addr_be = target.addr_be;
        (*e).node_be = target.node_be;
        (*e).vni = target.vni;
        (*e).service = target.service;
        (*e).backend = target.backend;
        (*e).port_be = target.port_be;
        (*e).tcp_state = b.tcp_state;
        (*e).flags = remote | direct;
        (*e).client_mac = [0; 6];
        (*e)._pad = [0; 2];
        if b.new {
            upsert(fwd, &*e);
        }
    }
    if b.direct {
        return;
    }
    let (reply_to_be, hairpin) = if b.hairpin {
        (b.service_addr_be, FlowEntry::FLAG_HAIRPIN)
    } else {
        (fwd.saddr_be, 0)
    };
    let reverse_key = reply_key(
        target.addr_be,
        target.port_be,
        reply_to_be,
        fwd.sport_be,
        fwd.proto,
        FlowKind::ReverseNat,
    );
    let ns = if b.north_south {
        FlowEntry::FLAG_NORTH_SOUTH
    } else {
        0
    };
    // SAFETY: as above.
    unsafe {
        (*e).addr_be = b.service_addr_be;
        (*e).port_be = b.service_port_be;
        (*e).flags = remote | ns | hairpin;
        (*e).client_mac = b.client_mac;
        upsert(&reverse_key, &*e);
    }
}

/// The other kind of a reply's entry: `Tunnel` for `ReverseNat` and back
/// (`tc_from_task` looks for both, in an order the node's mode decides).
#[inline(always)]
pub fn other_reply_kind(kind: u8) -> u8 {
    kind ^ (FlowKind::ReverseNat as u8 ^ FlowKind::Tunnel as u8)
}

/// A client's flow through this node's own published port to a local
/// task, whose `ReverseNat` entry was just written: remove the `Tunnel`
/// entry of the same reply tuple, left by an earlier connection of the
/// client port through another node's tunnel, so that it cannot take the
/// replies (`tc_from_task` looks for the `Tunnel` entry first where the
/// node returns the protocol directly; see [`record_tunnel`] for the other
/// way round).
#[inline(always)]
pub fn forget_tunnel(fwd: &FlowKey, target: &crate::lb::Target) {
    let key = reply_key(
        target.addr_be,
        target.port_be,
        fwd.saddr_be,
        fwd.sport_be,
        fwd.proto,
        FlowKind::Tunnel,
    );
    forget(&key);
}

/// Remove `key`'s entry if it has one. Absent is the common case, and
/// looked up first it costs a lock-free bucket walk; a delete takes the
/// bucket's lock even to find nothing (0.2 µs a connection in the
/// benchmark, `docs/dsr.md`). Gone in between (a concurrent delete, the
/// LRU) is fine too.
#[inline(always)]
fn forget(key: &FlowKey) {
    if CT.get_ptr(key).is_some() {
        let _ = CT.remove(key);
    }
}

/// Remember `mac`, this node's next hop towards the client, in the direct-return
/// `Tunnel` entry `key` (`FlowEntry::FLAG_NEXT_HOP`) for the flow's next replies.
/// Nothing to do if the entry is gone in between.
#[inline(always)]
pub fn remember_next_hop(key: &FlowKey, mac: [u8; 6]) {
    if let Some(ptr) = CT.get_ptr_mut(key) {
        // SAFETY: a live LRU element (see `lookup`); two fields of plain data. A
        // concurrent reply of the same flow writes the same next hop.
        unsafe {
            (*ptr).client_mac = mac;
            (*ptr).flags |= FlowEntry::FLAG_NEXT_HOP;
        }
    }
}

/// Remember to tunnel the replies of `key` (the reply tuple of an external
/// client's flow that `peer_be` balanced to a task of this node) back to
/// `peer_be`. The entry is rewritten when missing, stale or pointing at
/// another node.
///
/// One client address and port can reach the same task through several
/// nodes (an external load balancer in front of every node; Maglev gives
/// the tuple the same backend everywhere), one connection after the other.
/// The task's replies carry nothing that says which node the client used,
/// and `tc_from_task` looks for a `ReverseNat` entry before a `Tunnel` one
/// in `snat` (the other way round where the node returns the protocol
/// directly, `tc::reply`): a `ReverseNat` entry this node wrote when the
/// client's previous connection came in through its own published port
/// would send the SYN-ACK out with this node's address, to a client that
/// is waiting for another's. So the packet that opens a flow through a
/// tunnel (a bare SYN; for UDP, a packet that moves the tunnel to another
/// node) removes that entry: the newest opening packet decides which node
/// answers. A SYN through this node's own published port rewrites its
/// `ReverseNat` entry in turn (`balance::decide`) and removes the `Tunnel`
/// one ([`forget_tunnel`]), so whichever kind is looked for first, only
/// the newest connection's entry is there to be found.
///
/// `direct_port_be` is the published port of a flow the peer balanced for
/// direct return (`docs/dsr.md`), 0 otherwise: the entry then tells
/// `tc_from_task` to send the replies straight to the client, from the
/// peer's address (the one the client used) and that port.
#[inline(always)]
pub fn record_tunnel(
    key: &FlowKey,
    peer_be: u32,
    vni: u32,
    direct_port_be: u16,
    tcp_flags: u8,
    now: u64,
) {
    // A SYN on a finished connection's entry (the client port wrapped
    // within the entry's 10 s) is a miss: the new connection gets an entry
    // of its own rather than running on the closed one's, which would
    // expire 10 s into any pause of the new connection and leave its
    // replies to the kernel, untranslated and unnoticed.
    let hit = lookup(key, tcp_flags, now, true);
    let stale = match &hit {
        Some(h) => {
            h.entry.node_be != peer_be || h.entry.vni != vni || h.entry.port_be != direct_port_be
        }
        None => true,
    };
    let opens = if key.proto == IPPROTO_TCP {
        is_syn(key.proto, tcp_flags)
    } else {
        stale
    };
    if opens {
        let mut reverse = *key;
        reverse.kind = FlowKind::ReverseNat as u8;
        forget(&reverse);
    }
    if stale {
        let direct = direct_port_be != 0;
        let entry = FlowEntry {
            last_seen_ns: now,
            addr_be: if direct { peer_be } else { 0 },
            node_be: peer_be,
            vni,
            port_be: direct_port_be,
            tcp_state: next_tcp_state(key.proto, 0, tcp_flags),
            flags: if direct {
                FlowEntry::FLAG_DIRECT_RETURN | FlowEntry::FLAG_NORTH_SOUTH
            } else {
                0
            },
            ..FlowEntry::default()
        };
        upsert(key, &entry);
    }
}

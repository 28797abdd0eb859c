//! Service lookup and the Maglev pick (lookup only: user space builds the
//! tables, see `docs/dataplane.md` "Maglev and atomic updates").

use hive_common::{
    DropReason,
    maps::{Backend, FlowEntry, Frontend, ServiceKey},
};

use crate::maps::{BACKENDS, MAGLEV, RINGS, SERVICES};

/// Where a balanced flow goes.
#[derive(Copy, Clone)]
pub struct Target {
    pub addr_be: u32,
    pub port_be: u16,
    pub node_be: u32,
    pub vni: u32,
    pub service: u32,
    pub backend: u32,
    pub remote: bool,
}

impl Target {
    /// The target a `Forward` conntrack entry recorded.
    #[inline(always)]
    pub fn from_forward(e: &FlowEntry) -> Target {
        Target {
            addr_be: e.addr_be,
            port_be: e.port_be,
            node_be: e.node_be,
            vni: e.vni,
            service: e.service,
            backend: e.backend,
            remote: e.flags & FlowEntry::FLAG_REMOTE != 0,
        }
    }
}

/// The front end of a VIP:port or a published port (`addr_be == 0`).
#[inline(always)]
pub fn frontend(addr_be: u32, port_be: u16, proto: u8) -> Option<Frontend> {
    let key = ServiceKey {
        addr_be,
        port_be,
        proto,
        _pad: 0,
    };
    // SAFETY: `Frontend` is plain data; user space replaces whole entries.
    unsafe { SERVICES.get(key) }.copied()
}

/// Whether `addr_be` is a service VIP. User space marks every VIP with a
/// `ServiceKey { addr_be: VIP, port_be: 0, proto: 0 }` entry so that packets
/// to a VIP without ports (ICMP, later fragments) can be told apart from
/// traffic to other addresses.
#[inline(always)]
pub fn is_vip(addr_be: u32) -> bool {
    frontend(addr_be, 0, 0).is_some()
}

/// Whether the backend a `Forward` entry recorded still takes new flows of
/// the service `fe` leads to: its id still names the same task address and
/// node, user space has not marked it draining, and the front end still
/// belongs to the entry's service. A new connection on an entry that fails
/// this is balanced afresh (Cilium's `lb4_local` re-selects a backend the
/// same way when a SYN's conntrack entry names one that is gone or not
/// active); other packets keep the recorded backend, so established flows
/// drain.
#[inline(always)]
pub fn takes_new_flows(fe: &Frontend, e: &FlowEntry) -> bool {
    if e.service != fe.service {
        return false;
    }
    match BACKENDS.get(e.backend) {
        Some(be) => {
            be.addr_be == e.addr_be
                && be.node_be == e.node_be
                && be.flags & Backend::FLAG_DRAINING == 0
        }
        None => false,
    }
}

/// Maglev: slot `hash % M` of the service's live table segment.
#[inline(always)]
pub fn pick(fe: &Frontend, hash: u32) -> Result<Target, DropReason> {
    let ring = *RINGS.get(fe.service).ok_or(DropReason::NoBackend)?;
    if ring.size == 0 {
        return Err(DropReason::NoBackend);
    }
    let slot = ring.offset.wrapping_add(hash % ring.size);
    let backend = *MAGLEV.get(slot).ok_or(DropReason::NoBackend)?;
    let be: Backend = *BACKENDS.get(backend).ok_or(DropReason::NoBackend)?;
    if be.addr_be == 0 {
        return Err(DropReason::NoBackend);
    }
    Ok(Target {
        addr_be: be.addr_be,
        port_be: fe.target_port_be,
        node_be: be.node_be,
        vni: be.vni,
        service: fe.service,
        backend,
        remote: be.flags & Backend::FLAG_LOCAL == 0,
    })
}

/// Slots tried after the first when the first is the sender itself.
const HAIRPIN_PROBES: u32 = 32;
/// Stride between probed slots (the golden-ratio constant): far apart, not
/// neighbours. A Maglev table of few backends has long runs of one backend
/// (25 slots in a row in a 211-slot table of 2 backends, over 200 seeds), so
/// probing neighbours left a flow of a 2-replica service that hashed into
/// the sender's run with the sender itself, and that connection never
/// completed. Spread out, each probe is a fresh draw: with 2 replicas all
/// 32 miss with probability about 2^-32.
const HAIRPIN_STRIDE: u32 = 0x9e37_79b9;

/// [`pick`] for a flow a task sends to a VIP: if the slot names the sender itself, the next
/// slots are tried for another backend. A flow to itself has to be hairpinned (source
/// translated to the VIP and sent back into the task, `tc::balance`), which costs a second
/// rewrite on every packet; with other replicas the task gets one of them instead. A service
/// whose only backend is the sender keeps it, hairpinned.
#[inline(always)]
pub fn pick_for_sender(fe: &Frontend, hash: u32, sender_be: u32) -> Result<Target, DropReason> {
    let first = pick(fe, hash)?;
    if first.addr_be != sender_be {
        return Ok(first);
    }
    for step in 1..=HAIRPIN_PROBES {
        let other = pick(fe, hash.wrapping_add(step.wrapping_mul(HAIRPIN_STRIDE)))?;
        if other.addr_be != sender_be {
            return Ok(other);
        }
    }
    Ok(first)
}

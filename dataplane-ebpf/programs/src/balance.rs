//! The first step both balancing programs take for a packet to a service
//! (paths 1–3 of `docs/dataplane.md`): the backend its flow already has,
//! from the flow's `Forward` entry, or a Maglev pick for a new flow.

use hive_common::{
    DropReason, flow_hash,
    maps::{FlowEntry, FlowKey, FlowKind, Frontend, IPPROTO_TCP, NodeConfig},
};

use crate::{
    conntrack,
    lb::{self, Target},
    parse::{Ipv4, L4},
};

/// Where a packet's flow goes, and what its conntrack entries need.
#[derive(Copy, Clone)]
pub struct Decision {
    pub target: Target,
    /// Maglev picked `target` for this packet: a new flow.
    pub new: bool,
    /// The flow's entries are to be (re)written: a new flow, a bare SYN, or
    /// a refresh due (`conntrack::REFRESH_NS`); for an existing flow that is
    /// its `ReverseNat` entry alone (`conntrack::Balanced::new`). A TCP
    /// state change alone is written in place by the lookup.
    pub refresh: bool,
    /// The flow's TCP state after this packet.
    pub tcp_state: u8,
    /// The flow's `Forward` entry says it runs with direct return
    /// (`FlowEntry::FLAG_DIRECT_RETURN`); false for a new pick, whose path
    /// the node's mesh mode decides ([`direct_return`]).
    pub direct: bool,
    /// Nothing about the flow changed with this packet: an existing flow, no
    /// refresh, no TCP state change. What the backend's node recorded of it
    /// stands (the tunnel's steady mark, `docs/dsr.md`).
    pub steady: bool,
}

/// Whether a flow to `target` runs with direct return (`docs/dsr.md`): only
/// north-south flows to a remote backend do; an established flow keeps the
/// path it started on, a new one follows the node's mesh mode for its
/// protocol.
#[inline(always)]
pub fn direct_return(node: &NodeConfig, d: &Decision, proto: u8) -> bool {
    if !d.target.remote {
        return false;
    }
    if !d.new {
        return d.direct;
    }
    returns_directly(node, proto)
}

/// Whether the node's mesh mode returns new flows of `proto` directly
/// (`NodeConfig::FLAG_DIRECT_RETURN_TCP`, `_UDP`; `docs/dsr.md`).
#[inline(always)]
pub fn returns_directly(node: &NodeConfig, proto: u8) -> bool {
    let flag = if proto == IPPROTO_TCP {
        NodeConfig::FLAG_DIRECT_RETURN_TCP
    } else {
        NodeConfig::FLAG_DIRECT_RETURN_UDP
    };
    node.flags & flag != 0
}

/// The flow's hash: Maglev's key, and the VXLAN source port of its tunnel.
#[inline(always)]
pub fn hash(node: &NodeConfig, ip: &Ipv4, l4: &L4) -> u32 {
    flow_hash(
        node.hash_seed,
        ip.saddr_be,
        l4.sport_be,
        l4.dport_be,
        ip.proto,
    )
}

/// The key of the flow's `Forward` entry.
#[inline(always)]
pub fn forward_key(ip: &Ipv4, l4: &L4) -> FlowKey {
    conntrack::reply_key(
        ip.saddr_be,
        l4.sport_be,
        ip.daddr_be,
        l4.dport_be,
        ip.proto,
        FlowKind::Forward,
    )
}

/// The backend of flow `fwd` (see [`forward_key`]) for a packet with
/// `tcp_flags`: the one its entry recorded, or Maglev's pick by `hash` for a
/// new flow. `sender_be` is the sending task's own address, which a task
/// never gets back through its service's VIP (`lb::pick_for_sender`);
/// `None` for a client outside the mesh.
#[inline(always)]
pub fn decide(
    fe: &Frontend,
    fwd: &FlowKey,
    hash: u32,
    tcp_flags: u8,
    now: u64,
    sender_be: Option<u32>,
) -> Result<Decision, DropReason> {
    let opens = conntrack::is_syn(fwd.proto, tcp_flags);
    if let Some(hit) = conntrack::lookup(fwd, tcp_flags, now, true) {
        // A new connection whose entry names a backend that left the ring
        // (a replaced task, one being shut down) would follow the entry into
        // a task that is gone or going, and every retry of the SYN would
        // refresh the entry again: the client port would never get through.
        // It is balanced afresh instead, below.
        if !opens || lb::takes_new_flows(fe, hit.entry) {
            return Ok(Decision {
                target: Target::from_forward(hit.entry),
                new: false,
                // A SYN always rewrites the flow's entries: the `ReverseNat`
                // entry of a client port that came through another node in
                // between may have been taken over by that node's tunnel
                // (`conntrack::record_tunnel`), and the newest SYN decides
                // which node answers.
                refresh: hit.due || opens,
                tcp_state: hit.entry.tcp_state,
                direct: hit.entry.flags & FlowEntry::FLAG_DIRECT_RETURN != 0,
                steady: !(hit.due || opens || hit.changed),
            });
        }
    }
    let target = match sender_be {
        Some(sender_be) => lb::pick_for_sender(fe, hash, sender_be)?,
        None => lb::pick(fe, hash)?,
    };
    Ok(Decision {
        target,
        new: true,
        refresh: true,
        tcp_state: conntrack::next_tcp_state(fwd.proto, 0, tcp_flags),
        direct: false,
        steady: false,
    })
}

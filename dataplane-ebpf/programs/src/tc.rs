//! `tc_from_task`: everything a local task sends. Lookup order (see
//! `docs/dataplane.md`): `ReverseNat` and `Tunnel` (replies), then service
//! VIP, then overlay endpoint, then the kernel.

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_REDIRECT},
    helpers::bpf_redirect,
    programs::TcContext,
};
use hive_common::{
    DropReason, flow_hash,
    maps::{Endpoint, FlowEntry, FlowKey, FlowKind, Frontend, NodeConfig, PacketCounterSlot},
    trace::TraceVerdict,
};

use crate::{
    balance::{self, Decision},
    conntrack::{self, Balanced},
    counters, events, handoff,
    headers::{ETH_HDR_LEN, EthHdr, Ipv4Hdr},
    icmp, lb, maps, mss, nat,
    packet::{Packet, TcPacket},
    parse::{self, Ipv4, L4},
    route,
    vxlan::{self, Tunnel},
    xdp::{check_balanceable, overlay_mss},
};

const OK: i32 = TC_ACT_OK;
/// Not a tc verdict: "encapsulate towards the tunnel the callee filled in".
const TUNNEL: i32 = -100;
/// Not a tc verdict: "answer with ICMP fragmentation-needed".
const TOO_BIG: i32 = -101;
/// Not a tc verdict: "no flow path claimed the packet, try the others".
const NOT_MINE: i32 = -102;
/// Not a tc verdict: "a task's packet to itself through its VIP, DNAT done:
/// hairpin it" ([`hairpin`]).
const HAIRPIN: i32 = -103;
/// Not a tc verdict: "the reply of a hairpinned flow, source restored:
/// hairpin it" ([`hairpin`]).
const HAIRPIN_REPLY: i32 = -104;
/// Not a tc verdict: "now addressed to a task of this node: move it into
/// the task" ([`to_local_task`]).
const LOCAL: i32 = -105;

pub fn try_from_task(ctx: &TcContext) -> Result<i32, DropReason> {
    let Some(node) = maps::node() else {
        return Ok(OK);
    };
    let pkt = TcPacket { ctx };
    let Some(ip) = parse::ipv4(&pkt, 0)? else {
        return Ok(OK);
    };
    let l4 = parse::l4(&pkt, &ip)?;
    let mut slot = MaybeUninit::uninit();
    let tunnel = Tunnel::unset_in(&mut slot);
    // A packet with ports reads the clock for conntrack. Others (ICMP on the
    // overlay) need none.
    let verdict = match &l4 {
        Some(l4) => flow(ctx, &ip, l4, conntrack::now(), tunnel)?,
        None => NOT_MINE,
    };
    if verdict != NOT_MINE
        && events::on()
        && let Some(l4) = &l4
    {
        events::balanced_tc(ctx, &ip, l4);
    }
    let verdict = if verdict == NOT_MINE {
        other(ctx, &ip, l4.as_ref(), tunnel)?
    } else {
        verdict
    };
    // The tunnel and ICMP paths are siblings of the lookups above, not
    // callees: each gets its own stack frame (512 bytes per call chain).
    match verdict {
        TUNNEL if too_big(ctx, node, &ip) => too_big_answered(ctx, node, &ip),
        TUNNEL => encap(ctx, node, &ip, l4.as_ref(), tunnel),
        TOO_BIG => too_big_answered(ctx, node, &ip),
        HAIRPIN | HAIRPIN_REPLY => match &l4 {
            Some(l4) => hairpin(ctx, &ip, l4, verdict == HAIRPIN_REPLY),
            // Only flows with ports are balanced, and so hairpinned.
            None => Ok(OK),
        },
        LOCAL => to_local_task(ctx),
        v => Ok(v),
    }
}

/// [`answer_too_big`], then its drop event, from here rather than from inside it: the
/// event's frame then follows the entry program's, not the answer's as well (512 bytes per
/// call chain).
#[inline(always)]
fn too_big_answered(ctx: &TcContext, node: &NodeConfig, ip: &Ipv4) -> Result<i32, DropReason> {
    let verdict = answer_too_big(ctx, node, ip)?;
    if events::on() {
        events::drop_tc(ctx, DropReason::FragmentationNeeded, TraceVerdict::Redirect);
    }
    Ok(verdict)
}

/// Replies (`ReverseNat`, `Tunnel`) and service VIPs: paths that need the
/// ports. Returns a verdict, [`NOT_MINE`], [`TOO_BIG`], [`HAIRPIN`],
/// [`HAIRPIN_REPLY`] or [`TUNNEL`] with `out` set (sentinels rather than an
/// enum with a payload: returned structs become a hidden argument, and BPF
/// functions take at most five).
#[inline(always)]
fn flow(
    ctx: &TcContext,
    ip: &Ipv4,
    l4: &L4,
    now: u64,
    out: &mut Tunnel,
) -> Result<i32, DropReason> {
    let verdict = reply(ctx, ip, l4, now, out)?;
    if verdict != NOT_MINE {
        return Ok(verdict);
    }
    if let Some(fe) = lb::frontend(ip.daddr_be, l4.dport_be, ip.proto) {
        check_balanceable(ip)?;
        return balance(ctx, ip, l4, &Service { fe, now }, out);
    }
    // A VIP port the service does not declare: balanced to the same port of a
    // task, as Docker's VIP (IPVS by firewall mark) forwards every port. The
    // VIP marker's front end names the service's ring.
    if let Some(mut fe) = lb::frontend(ip.daddr_be, 0, 0) {
        fe.target_port_be = l4.dport_be;
        check_balanceable(ip)?;
        return balance(ctx, ip, l4, &Service { fe, now }, out);
    }
    Ok(NOT_MINE)
}

/// A reply of a flow this node balanced (`ReverseNat`) or of one another
/// node tunnelled here (`Tunnel`); [`NOT_MINE`] if neither. Returns like
/// [`flow`]. Not inlined: its own stack frame, a sibling of [`balance`]'s
/// (512 bytes per call chain).
#[inline(never)]
fn reply(
    ctx: &TcContext,
    ip: &Ipv4,
    l4: &L4,
    now: u64,
    out: &mut Tunnel,
) -> Result<i32, DropReason> {
    let Some(node) = maps::node() else {
        return Ok(OK);
    };
    // Where the node returns this protocol directly, the `Tunnel` entry is
    // looked for first: a remote client's replies are what that mode is
    // for, and a `ReverseNat` lookup first would be a miss on every one of
    // them. Either order finds the newest connection's entry: an opening
    // packet removes the other kind's entry of the tuple
    // (`conntrack::record_tunnel`, `conntrack::forget_tunnel`; `docs/dsr.md`,
    // "The reply path's lookup order").
    let mut key = conntrack::reply_key(
        ip.saddr_be,
        l4.sport_be,
        ip.daddr_be,
        l4.dport_be,
        ip.proto,
        if balance::returns_directly(node, ip.proto) {
            FlowKind::Tunnel
        } else {
            FlowKind::ReverseNat
        },
    );
    let mut entry = conntrack::lookup(&key, l4.tcp_flags, now, false).map(|h| h.entry);
    if entry.is_none() {
        key.kind = conntrack::other_reply_kind(key.kind);
        entry = conntrack::lookup(&key, l4.tcp_flags, now, false).map(|h| h.entry);
    }
    if let Some(e) = entry {
        if key.kind == FlowKind::ReverseNat as u8 {
            return reverse_nat(&mut TcPacket { ctx }, node, ip, l4, e);
        }
        if e.flags & FlowEntry::FLAG_DIRECT_RETURN != 0 {
            return direct_return(ctx, ip, l4, e, &key);
        }
        let peer_mac = maps::peer_mac(e.node_be).ok_or(DropReason::UnknownPeer)?;
        *out = Tunnel::new(e.node_be, peer_mac, e.vni);
        return Ok(TUNNEL);
    }
    Ok(NOT_MINE)
}

/// VIPs without ports, and the overlay (any protocol).
#[inline(always)]
fn other(ctx: &TcContext, ip: &Ipv4, l4: Option<&L4>, out: &mut Tunnel) -> Result<i32, DropReason> {
    if l4.is_none() && lb::is_vip(ip.daddr_be) {
        return Err(if ip.is_fragment() {
            DropReason::Ipv4Fragment
        } else {
            DropReason::UnsupportedProtocol
        });
    }
    if let Some(ep) = maps::endpoint(ip.daddr_be) {
        if ep.flags & Endpoint::FLAG_LOCAL != 0 {
            if events::on() {
                let to = events::Delivery {
                    vni: ep.vni,
                    handed_off: true,
                };
                events::delivered(ctx, ip, l4, &to);
            }
            return handoff::into_task(ctx, ep.ifindex, ip.daddr_be);
        }
        let peer_mac = maps::peer_mac(ep.node_be).ok_or(DropReason::UnknownPeer)?;
        *out = Tunnel::new(ep.node_be, peer_mac, ep.vni);
        return Ok(TUNNEL);
    }
    Ok(OK)
}

/// The service a packet is for, and the packet's clock reading: one
/// argument of [`balance`], for the five a BPF function takes.
struct Service {
    fe: Frontend,
    now: u64,
}

/// Path 3 of `docs/dataplane.md`: a task's packet to a service VIP. Not
/// inlined: its own stack frame, so that the main path's frame plus
/// `record_balanced`'s stays within the verifier's 512 bytes per call chain.
/// Returns like [`flow`].
#[inline(never)]
fn balance(
    ctx: &TcContext,
    ip: &Ipv4,
    l4: &L4,
    svc: &Service,
    out: &mut Tunnel,
) -> Result<i32, DropReason> {
    let Some(node) = maps::node() else {
        return Ok(OK);
    };
    let (fe, now) = (&svc.fe, svc.now);
    let pkt = &mut TcPacket { ctx };
    let hash = balance::hash(node, ip, l4);
    let fwd = balance::forward_key(ip, l4);
    let Decision {
        target,
        new,
        refresh,
        tcp_state,
        ..
    } = balance::decide(fe, &fwd, hash, l4.tcp_flags, now, Some(ip.saddr_be))?;
    let tunnel = if target.remote {
        let peer_mac = maps::peer_mac(target.node_be).ok_or(DropReason::UnknownPeer)?;
        if too_big(ctx, node, ip) {
            // Before DNAT: the quote must show the VIP the task sent to.
            if events::on() {
                // For the drop event of `answer_too_big`.
                events::note_flow(target.service, target.backend);
            }
            return Ok(TOO_BIG);
        }
        Some(Tunnel::new(target.node_be, peer_mac, target.vni))
    } else {
        None
    };
    // The sender is the backend: only when it is the service's one replica
    // (`lb::pick_for_sender`), or was when the flow began.
    let hairpin = target.addr_be == ip.saddr_be;
    if events::on() {
        // Emitted by `try_from_task` (see `events::note_balanced`).
        events::note_balanced(&target, new, hairpin);
    }
    if refresh {
        let b = Balanced {
            service_addr_be: ip.daddr_be,
            service_port_be: l4.dport_be,
            north_south: false,
            client_mac: [0; 6],
            tcp_state,
            hairpin,
            direct: false,
            new,
        };
        conntrack::record_balanced(&fwd, &target, &b, now);
    }
    nat::dnat(pkt, ip, l4, target.addr_be, target.port_be)?;
    counters::flow(target.service, target.backend, u64::from(ip.tot_len), new);
    if hairpin {
        return Ok(HAIRPIN);
    }
    match tunnel {
        None => Ok(LOCAL),
        Some(tunnel) => {
            *out = tunnel;
            Ok(TUNNEL)
        }
    }
}

/// A local backend's reply to a flow this node balanced.
#[inline(always)]
fn reverse_nat(
    pkt: &mut TcPacket<'_>,
    node: &NodeConfig,
    ip: &Ipv4,
    l4: &L4,
    e: &FlowEntry,
) -> Result<i32, DropReason> {
    let north_south = nat::restore_service(pkt, ip, l4, e)?;
    if events::on() {
        events::reverse_nat(pkt.ctx, ip, l4, e);
    }
    if e.flags & FlowEntry::FLAG_HAIRPIN != 0 {
        return Ok(HAIRPIN_REPLY);
    }
    if !north_south {
        // East-west: the client is a task of this node.
        return Ok(LOCAL);
    }
    nat::to_client(pkt, node, e)?;
    redirect(node.underlay_ifindex, 0)
}

/// Direct return (`docs/dsr.md`): a local task's reply to a client another
/// node balanced to it. Source := that node's address and published port
/// (`e`, the flow's `Tunnel` entry `key`), then straight out of the underlay
/// NIC to the client, by the next hop an earlier reply found or by the
/// kernel's route and neighbour ([`route`]). Not inlined: a sibling of the
/// lookups' frames, like [`encap`].
#[inline(never)]
fn direct_return(
    ctx: &TcContext,
    ip: &Ipv4,
    l4: &L4,
    e: &FlowEntry,
    key: &FlowKey,
) -> Result<i32, DropReason> {
    let Some(node) = maps::node() else {
        return Ok(OK);
    };
    nat::snat(&mut TcPacket { ctx }, ip, l4, e.addr_be, e.port_be)?;
    counters::count(PacketCounterSlot::DirectReturn, u64::from(ip.tot_len));
    if events::on() {
        events::reverse_nat(ctx, ip, l4, e);
    }
    if e.flags & FlowEntry::FLAG_NEXT_HOP != 0 {
        return route::to_next_hop(ctx, node, &e.client_mac);
    }
    route::out_underlay(ctx, node, e.addr_be, ip.daddr_be, key)
}

/// The hairpin of a task that reached its own service through the VIP
/// (`docs/dataplane.md`, path 3): the task must see the flow come from the
/// VIP, not from itself, or its replies would never leave it to be
/// translated back. `ip` and `l4` are the packet as the task sent it:
/// - a packet to the service, already DNATed to the task: source := the
///   VIP (its destination as sent), same port;
/// - a reply (`reply`), source already restored to the VIP: destination :=
///   the task's own address (its source as sent), same port.
///
/// Then Ethernet addresses swapped and out of the host side of the task's
/// veth, straight back in: neither the host's routing nor its `rp_filter`,
/// which would see the VIP arrive from a task, is asked. Not inlined: a
/// sibling of the lookups' frames, like [`encap`].
#[inline(never)]
fn hairpin(ctx: &TcContext, ip: &Ipv4, l4: &L4, reply: bool) -> Result<i32, DropReason> {
    let pkt = &mut TcPacket { ctx };
    if reply {
        nat::dnat(pkt, ip, l4, ip.saddr_be, l4.dport_be)?;
    } else {
        nat::snat(pkt, ip, l4, ip.daddr_be, l4.sport_be)?;
    }
    let eth: EthHdr = pkt.load(0)?;
    pkt.store(
        0,
        &EthHdr {
            dst: eth.src,
            src: eth.dst,
            proto_be: eth.proto_be,
        },
    )?;
    // SAFETY: reading a field of the context the kernel passed us.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    redirect(ifindex, 0)
}

/// A packet now addressed to a task of this node (a local backend after
/// DNAT, or the caller of a VIP getting its reply): into the task's
/// namespace, past the node's IP stack. Reads the destination from the
/// packet, which NAT has rewritten. Not inlined: a sibling of the lookups'
/// frames, like [`encap`]. An address with no local endpoint (user space
/// never leaves one: every local backend has its endpoint) goes to the
/// kernel.
#[inline(never)]
fn to_local_task(ctx: &TcContext) -> Result<i32, DropReason> {
    let pkt = TcPacket { ctx };
    let ip: Ipv4Hdr = pkt.load(ETH_HDR_LEN)?;
    match maps::endpoint(ip.daddr_be) {
        Some(ep) if ep.flags & Endpoint::FLAG_LOCAL != 0 => {
            handoff::into_task(ctx, ep.ifindex, ip.daddr_be)
        }
        _ => Ok(OK),
    }
}

/// Whether `ip` would not fit the underlay once tunnelled. GSO packets are
/// segmented to the task MTU after us, so only their segments count.
#[inline(always)]
fn too_big(ctx: &TcContext, node: &NodeConfig, ip: &Ipv4) -> bool {
    // SAFETY: reading a field of the context the kernel passed us.
    let gso_size = unsafe { (*ctx.skb.skb).gso_size };
    gso_size == 0 && ip.tot_len > node.overlay_mtu
}

/// Answer with ICMP fragmentation-needed, sent back into the task.
/// Not inlined: a BPF-to-BPF call gets its own stack frame, so this path's
/// 100-odd bytes of headers do not add to the main path's 512-byte budget.
#[inline(never)]
fn answer_too_big(ctx: &TcContext, node: &NodeConfig, ip: &Ipv4) -> Result<i32, DropReason> {
    icmp::too_big_tc(ctx, ip, node.underlay_addr_be, node.overlay_mtu)?;
    counters::drop(DropReason::FragmentationNeeded);
    // SAFETY: as in `too_big`.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // Egress of the host side of the task's veth: the task receives it.
    redirect(ifindex, 0)
}

/// Clamp, encapsulate and send to the underlay NIC. Not inlined: one copy
/// for every path, in its own stack frame.
#[inline(never)]
fn encap(
    ctx: &TcContext,
    node: &NodeConfig,
    ip: &Ipv4,
    l4: Option<&L4>,
    tunnel: &Tunnel,
) -> Result<i32, DropReason> {
    let pkt = &mut TcPacket { ctx };
    let (sport_be, dport_be) = match l4 {
        Some(l4) => (l4.sport_be, l4.dport_be),
        None => (0, 0),
    };
    let hash = flow_hash(node.hash_seed, ip.saddr_be, sport_be, dport_be, ip.proto);
    if let Some(l4) = l4 {
        mss::clamp(pkt, ip, l4, overlay_mss(node))?;
    }
    // The flow from the bytes: `ip` predates the DNAT of a balanced flow.
    let traced = events::on() && events::encap_begin_tc(ctx, tunnel);
    vxlan::encap_tc(ctx, node, tunnel, ip.tot_len, hash)?;
    if traced {
        events::submit_tc(ctx);
    }
    redirect(node.underlay_ifindex, 0)
}

#[inline(always)]
pub(crate) fn redirect(ifindex: u32, flags: u64) -> Result<i32, DropReason> {
    // SAFETY: bpf_redirect only records the target; it returns
    // TC_ACT_REDIRECT, or TC_ACT_SHOT for invalid flags.
    let ret = unsafe { bpf_redirect(ifindex, flags) };
    if ret == i64::from(TC_ACT_REDIRECT) {
        Ok(TC_ACT_REDIRECT)
    } else {
        Err(DropReason::RedirectFailed)
    }
}

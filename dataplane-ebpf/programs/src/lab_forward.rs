//! `xdp_lab_forward` and `tc_lab_forward`: the benchmark's floor of a path through an
//! ingress node, never loaded by the agent (`docs/dsr.md`, "The floor of a path through
//! the ingress node").
//!
//! A TCP frame of the configured address and port (its destination: a client's frame;
//! or its source: a task's reply) is sent on with only its Ethernet addresses rewritten:
//! from XDP back out of the same veth (`XDP_TX`); from tc out of the same device, into a
//! task's namespace (`bpf_redirect_peer`) or out of another device. No lookup, NAT,
//! tunnel or state: what a mesh costs beyond these hops is its own.
//!
//! `xdp_lab_vxlan` and `xdp_lab_decap` are the same hop through hive's tunnel
//! (`docs/dsr.md`, "A floor with hive's tunnel"): the matched frame leaves from XDP
//! wrapped in the VXLAN headers hive's ingress writes (`vxlan::outer_from`,
//! `vxlan::push_outer_xdp`); on the backend's node XDP strips them
//! (`vxlan::decap_xdp`), addresses the inner frame to the node as hive's decapsulation
//! does, and passes it on to tc. No conntrack, Maglev, NAT, MSS clamp or counters.
//!
//! `xdp_lab_switch` is not a hop of a path but of the lab's wire (`docs/dsr.md`, "The
//! lab's wire"): on a bridge port of the underlay, frames to one node's MAC go straight
//! to that node's bridge port (`bpf_redirect`), still XDP frames, as a switch hands a
//! frame on without the receiving node copying it; every other frame passes to the
//! bridge.

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action},
    programs::{TcContext, XdpContext},
};
use hive_common::{
    DropReason, flow_hash,
    maps::{IPPROTO_TCP, IPPROTO_UDP, LabForward},
};

use crate::{
    handoff,
    headers::{ETH_HDR_LEN, EthHdr, VXLAN_ENCAP_LEN, VXLAN_FLAG_I, VxlanHdr},
    maps::LAB_FORWARD,
    packet::{Packet, TcPacket, XdpPacket},
    parse, tc,
    vxlan::{self, Local, Tunnel},
};

/// The seed of the flow hash that picks the outer UDP source port (hive's is the
/// node's `hash_seed`; the value changes which port, not what it costs).
const HASH_SEED: u32 = 0;

pub fn try_forward_xdp(ctx: &XdpContext) -> Result<u32, DropReason> {
    let Some(to) = LAB_FORWARD.get(0) else {
        return Ok(xdp_action::XDP_PASS);
    };
    let mut pkt = XdpPacket { ctx };
    match forwarded(&pkt, to)? {
        Some(eth) => {
            pkt.store(0, &eth)?;
            Ok(xdp_action::XDP_TX)
        }
        None => Ok(xdp_action::XDP_PASS),
    }
}

pub fn try_forward_tc(ctx: &TcContext) -> Result<i32, DropReason> {
    let Some(to) = LAB_FORWARD.get(0) else {
        return Ok(TC_ACT_OK);
    };
    let mut pkt = TcPacket { ctx };
    let Some(eth) = forwarded(&pkt, to)? else {
        return Ok(TC_ACT_OK);
    };
    pkt.store(0, &eth)?;
    match to.out {
        LabForward::OUT_SAME => {
            // SAFETY: reading a field of the context the kernel passed us.
            let ifindex = unsafe { (*ctx.skb.skb).ifindex };
            tc::redirect(ifindex, 0)
        }
        LabForward::OUT_PEER => handoff::redirect_peer(to.ifindex),
        LabForward::OUT_EGRESS => tc::redirect(to.ifindex, 0),
        // Not a value `hive_lab::floor_forward` writes.
        _ => Err(DropReason::RedirectFailed),
    }
}

pub fn try_vxlan_xdp(ctx: &XdpContext) -> Result<u32, DropReason> {
    let Some(to) = LAB_FORWARD.get(0) else {
        return Ok(xdp_action::XDP_PASS);
    };
    let pkt = XdpPacket { ctx };
    let Some(frame) = matched(&pkt, to)? else {
        return Ok(xdp_action::XDP_PASS);
    };
    let (peer_mac, node_be) = if picks_second(to, frame.client_port_be) {
        (to.to[1], to.nodes_be[1])
    } else {
        (to.to[0], to.nodes_be[0])
    };
    let local = Local {
        mac: to.from,
        addr_be: to.underlay_be,
        port_be: to.vxlan_port_be,
    };
    let tunnel = Tunnel::new(node_be, peer_mac, to.vni);
    let hash = flow_hash(
        HASH_SEED,
        frame.saddr_be,
        frame.sport_be,
        frame.dport_be,
        IPPROTO_TCP,
    );
    let outer = vxlan::outer_from(&local, &tunnel, frame.tot_len, hash);
    vxlan::push_outer_xdp(ctx, &outer)?;
    Ok(xdp_action::XDP_TX)
}

pub fn try_decap_xdp(ctx: &XdpContext) -> Result<u32, DropReason> {
    let Some(to) = LAB_FORWARD.get(0) else {
        return Ok(xdp_action::XDP_PASS);
    };
    let pkt = XdpPacket { ctx };
    if !is_floor_vxlan(&pkt, to)? {
        return Ok(xdp_action::XDP_PASS);
    }
    vxlan::decap_xdp(ctx)?;
    let mut pkt = XdpPacket { ctx };
    // Addressed to this node, as hive's decapsulation addresses it: the frame inside is
    // addressed to the ingress node, and the kernel would take it as another host's.
    pkt.store(0, &to.to[0])?;
    Ok(xdp_action::XDP_PASS)
}

pub fn try_switch_xdp(ctx: &XdpContext) -> Result<u32, DropReason> {
    let Some(to) = LAB_FORWARD.get(0) else {
        return Ok(xdp_action::XDP_PASS);
    };
    let eth: EthHdr = XdpPacket { ctx }.load(0)?;
    if to.ifindex == 0 || eth.dst != to.to[0] {
        return Ok(xdp_action::XDP_PASS);
    }
    // SAFETY: a helper call with plain integer arguments; it returns an XDP action.
    Ok(unsafe { aya_ebpf::helpers::bpf_redirect(to.ifindex, 0) } as u32)
}

/// Whether the frame is VXLAN to this node's `addr_be:port_be` (UDP), with room for
/// hive's outer headers and an inner Ethernet header.
#[inline(always)]
fn is_floor_vxlan<P: Packet>(pkt: &P, to: &LabForward) -> Result<bool, DropReason> {
    if to.backends == 0 {
        return Ok(false);
    }
    let Some(ip) = parse::ipv4(pkt, 0)? else {
        return Ok(false);
    };
    if ip.daddr_be != to.addr_be || ip.proto != IPPROTO_UDP || ip.is_fragment() {
        return Ok(false);
    }
    if ip.has_options() || ip.end() < VXLAN_ENCAP_LEN + ETH_HDR_LEN {
        return Ok(false);
    }
    let [_, dport_be]: [u16; 2] = pkt.load(ip.l4_off())?;
    if dport_be != to.port_be {
        return Ok(false);
    }
    let vx: VxlanHdr = pkt.load(VXLAN_ENCAP_LEN - core::mem::size_of::<VxlanHdr>())?;
    Ok(vx.flags & VXLAN_FLAG_I != 0)
}

/// What the hops need of a frame they forward.
struct Matched {
    saddr_be: u32,
    tot_len: u16,
    sport_be: u16,
    dport_be: u16,
    client_port_be: u16,
}

/// The frame's new Ethernet header if it is one to forward.
#[inline(always)]
fn forwarded<P: Packet>(pkt: &P, to: &LabForward) -> Result<Option<EthHdr>, DropReason> {
    let Some(frame) = matched(pkt, to)? else {
        return Ok(None);
    };
    let eth: EthHdr = pkt.load(0)?;
    let dst = if picks_second(to, frame.client_port_be) {
        to.to[1]
    } else {
        to.to[0]
    };
    Ok(Some(EthHdr {
        dst,
        src: to.from,
        proto_be: eth.proto_be,
    }))
}

/// The frame, if it is one of `to`'s: TCP of `addr_be:port_be`.
#[inline(always)]
fn matched<P: Packet>(pkt: &P, to: &LabForward) -> Result<Option<Matched>, DropReason> {
    if to.backends == 0 {
        return Ok(None);
    }
    let Some(ip) = parse::ipv4(pkt, 0)? else {
        return Ok(None);
    };
    let by_source = to.flags & LabForward::MATCH_SOURCE != 0;
    let addr_be = if by_source { ip.saddr_be } else { ip.daddr_be };
    if addr_be != to.addr_be || ip.proto != IPPROTO_TCP || ip.is_later_fragment() {
        return Ok(None);
    }
    // The ports only, in place of `parse::l4`, whose bounds checks LLVM folds here into
    // ones the verifier cannot follow.
    let [sport_be, dport_be]: [u16; 2] = pkt.load(ip.l4_off())?;
    let (port_be, client_port_be) = if by_source {
        (sport_be, dport_be)
    } else {
        (dport_be, sport_be)
    };
    if port_be != to.port_be {
        return Ok(None);
    }
    Ok(Some(Matched {
        saddr_be: ip.saddr_be,
        tot_len: ip.tot_len,
        sport_be,
        dport_be,
        client_port_be,
    }))
}

/// Whether a flow goes to the second of two backends: by the client port's low bit.
#[inline(always)]
fn picks_second(to: &LabForward, client_port_be: u16) -> bool {
    to.backends > 1 && u16::from_be(client_port_be) & 1 == 1
}

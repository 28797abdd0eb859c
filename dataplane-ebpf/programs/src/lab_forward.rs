//! `xdp_lab_forward` and `tc_lab_forward`: the benchmark's floor of a path through an
//! ingress node, never loaded by the agent (`docs/dsr.md`, "The floor of a path through
//! the ingress node").
//!
//! A TCP frame of the configured address and port (its destination: a client's frame;
//! or its source: a task's reply) is sent on with only its Ethernet addresses rewritten:
//! from XDP back out of the same veth (`XDP_TX`); from tc out of the same device, into a
//! task's namespace (`bpf_redirect_peer`) or out of another device. No lookup, NAT,
//! tunnel or state: what a mesh costs beyond these hops is its own.

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action},
    programs::{TcContext, XdpContext},
};
use hive_common::{
    DropReason,
    maps::{IPPROTO_TCP, LabForward},
};

use crate::{
    handoff,
    headers::EthHdr,
    maps::LAB_FORWARD,
    packet::{Packet, TcPacket, XdpPacket},
    parse, tc,
};

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

/// The frame's new Ethernet header if it is one to forward.
#[inline(always)]
fn forwarded<P: Packet>(pkt: &P, to: &LabForward) -> Result<Option<EthHdr>, DropReason> {
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
    let eth: EthHdr = pkt.load(0)?;
    Ok(Some(EthHdr {
        dst: backend_mac(to, u16::from_be(client_port_be)),
        src: to.from,
        proto_be: eth.proto_be,
    }))
}

/// A flow's destination MAC: by the client port's low bit when there are two.
#[inline(always)]
fn backend_mac(to: &LabForward, client_port: u16) -> [u8; 6] {
    if to.backends > 1 && client_port & 1 == 1 {
        to.to[1]
    } else {
        to.to[0]
    }
}

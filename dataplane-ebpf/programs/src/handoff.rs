//! Packets for a task of this node skip the node's IP stack.
//!
//! `tc_from_task` moves what it has decided is for a local task itself
//! ([`into_task`]). `xdp_from_underlay` cannot put a packet into another
//! network namespace: `XDP_REDIRECT` into a veth lands on the far end's XDP
//! ring, which only drains when the task's side runs an XDP program of its
//! own. So it marks a decapsulated frame ([`mark`]) and passes it; the
//! kernel builds the skb, and `tc_from_underlay` at tc ingress of the same
//! NIC ([`try_to_task`]) moves it. Either way `bpf_redirect_peer` puts the
//! skb into the task's namespace: no routing, no forwarding, no second trip
//! through a veth's backlog queue (as Cilium's BPF host routing enters a
//! pod, `redirect_ep`).

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_REDIRECT},
    helpers::{bpf_redirect_peer, bpf_xdp_adjust_meta},
    programs::{TcContext, XdpContext},
};
use hive_common::{
    DropReason,
    handoff::TaskHandoff,
    maps::{PacketCounterSlot, task_mac},
};

use crate::{
    counters,
    headers::{ETH_HDR_LEN, EthHdr, Ipv4Hdr},
    packet::{Packet, TcPacket},
};

/// Ask `tc_from_underlay` to move this frame into the task behind the
/// host-side veth `ifindex`. `false` if the driver keeps no metadata: the
/// kernel then routes the packet to the task, as it would without hive.
#[inline(always)]
pub fn mark(ctx: &XdpContext, ifindex: u32) -> bool {
    if ifindex == 0 {
        // A local endpoint without its veth's index: the kernel's way.
        return false;
    }
    // SAFETY: the helper checks itself that the metadata fits the headroom.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(TaskHandoff::LEN as i32)) } != 0 {
        return false;
    }
    // SAFETY: reading a field of the context the kernel gave us.
    let meta = unsafe { (*ctx.ctx).data_meta } as usize;
    if meta + TaskHandoff::LEN > ctx.data() {
        return false;
    }
    let handoff = TaskHandoff {
        magic: TaskHandoff::MAGIC,
        ifindex,
    };
    // SAFETY: the 8 bytes at `meta` lie before `data` (checked above), in the
    // metadata area the helper just made.
    unsafe { core::ptr::write_unaligned(meta as *mut TaskHandoff, handoff) };
    true
}

/// `tc_from_underlay`: a frame [`mark`]ed by `xdp_from_underlay` goes
/// straight into its task; every other frame goes on into the kernel.
#[inline(always)]
pub fn try_to_task(ctx: &TcContext) -> Result<i32, DropReason> {
    let skb = ctx.skb.skb;
    // SAFETY: reading fields of the context the kernel gave us.
    let (meta, data) = unsafe { ((*skb).data_meta as usize, (*skb).data as usize) };
    if meta + TaskHandoff::LEN > data {
        return Ok(TC_ACT_OK);
    }
    // SAFETY: the 8 bytes at `meta` lie before `data` (checked above): the
    // skb's metadata, which only `xdp_from_underlay` writes on this NIC.
    let handoff = unsafe { core::ptr::read_unaligned(meta as *const TaskHandoff) };
    if handoff.magic != TaskHandoff::MAGIC {
        return Ok(TC_ACT_OK);
    }
    let ip: Ipv4Hdr = TcPacket { ctx }.load(ETH_HDR_LEN)?;
    into_task(ctx, handoff.ifindex, ip.daddr_be)
}

/// Move the packet for the task at `daddr_be` into its namespace, behind
/// the host-side veth `ifindex`, from tc ingress (of the underlay NIC, or
/// of the sending task's veth): the skb changes namespace in place, with no
/// routing, no forwarding and no queue. The Ethernet header is rewritten
/// as a router would: the task's MAC (`task_mac`) as destination, the
/// frame's old destination (this node) as source. An `ifindex` that is no
/// veth with a peer in another namespace (a task removed a moment ago)
/// makes the kernel drop the packet (`skb_do_redirect`).
#[inline(always)]
pub fn into_task(ctx: &TcContext, ifindex: u32, daddr_be: u32) -> Result<i32, DropReason> {
    if ifindex == 0 {
        // A local endpoint without its veth's index: the kernel routes it.
        return Ok(TC_ACT_OK);
    }
    let mut pkt = TcPacket { ctx };
    let eth: EthHdr = pkt.load(0)?;
    pkt.store(
        0,
        &EthHdr {
            dst: task_mac(daddr_be),
            src: eth.dst,
            proto_be: eth.proto_be,
        },
    )?;
    counters::count(PacketCounterSlot::TaskHandoff, u64::from(ctx.len()));
    redirect_peer(ifindex)
}

/// Into the namespace at the other end of the veth `ifindex`, from tc ingress.
#[inline(always)]
pub fn redirect_peer(ifindex: u32) -> Result<i32, DropReason> {
    // SAFETY: bpf_redirect_peer only records the target; it returns
    // TC_ACT_REDIRECT, or TC_ACT_SHOT for invalid flags.
    let ret = unsafe { bpf_redirect_peer(ifindex, 0) };
    if ret == i64::from(TC_ACT_REDIRECT) {
        Ok(TC_ACT_REDIRECT)
    } else {
        Err(DropReason::RedirectFailed)
    }
}

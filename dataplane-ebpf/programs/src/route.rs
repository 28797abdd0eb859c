//! The next hop of a packet this node sends out of its underlay NIC on its own
//! account: a direct-return reply (`docs/dsr.md`, "The reply's next hop").
//!
//! The kernel's FIB and neighbour table decide it, as they would for a packet the
//! node routed: the client may sit behind a router this node reaches differently
//! from the ingress node. `bpf_fib_lookup` asks both in one helper call, and when
//! the neighbour is known the packet leaves with its Ethernet header written here,
//! by `bpf_redirect`. Only when the lookup cannot finish the job (no neighbour
//! entry yet, or any other answer than success) does the packet take
//! `bpf_redirect_neigh`, which resolves the neighbour, and routes again, itself.
//! That fallback is what every reply used to take: a second route lookup and a
//! pass through the neighbour output path, about 0.7 µs a connection
//! (`docs/dsr.md`).
//!
//! A next hop the lookup found is kept in the flow's `Tunnel` entry
//! (`FlowEntry::FLAG_NEXT_HOP`) until the entry's next refresh, at most a second
//! of traffic: the flow's further replies leave by it with no lookup
//! ([`to_next_hop`]).

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_OUTPUT, TC_ACT_REDIRECT, bpf_fib_lookup},
    helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect_neigh},
    programs::TcContext,
};
use hive_common::{
    DropReason,
    maps::{FlowKey, NodeConfig},
};

use crate::{
    conntrack,
    packet::{Packet, TcPacket},
    tc::redirect,
    zeroed::zeroed_in,
};

const AF_INET: u8 = 2;

/// Out of the underlay NIC to `mac`, a next hop an earlier reply of the flow
/// found.
#[inline(always)]
pub fn to_next_hop(ctx: &TcContext, node: &NodeConfig, mac: &[u8; 6]) -> Result<i32, DropReason> {
    store_macs(ctx, mac, &node.underlay_mac)?;
    redirect(node.underlay_ifindex, 0)
}

/// Out of the underlay NIC to `daddr_be`, the packet's source being `saddr_be`
/// (both as the packet now carries them); the next hop found is remembered in
/// the flow's `Tunnel` entry `flow`. An output lookup bound to the underlay NIC,
/// as `bpf_redirect_neigh` does it: a route through another device is not taken
/// by either. Not inlined: the lookup's 64 bytes of parameters get a frame of
/// their own, a sibling of the trace event's (512 bytes per call chain).
#[inline(never)]
pub fn out_underlay(
    ctx: &TcContext,
    node: &NodeConfig,
    saddr_be: u32,
    daddr_be: u32,
    flow: &FlowKey,
) -> Result<i32, DropReason> {
    let mut slot = MaybeUninit::<bpf_fib_lookup>::uninit();
    // SAFETY: plain integers and arrays of them, in unions of such: all zeros is
    // valid. Zeroed in place: `mem::zeroed` would be a `memset` call per reply.
    let params = unsafe { zeroed_in(&mut slot) };
    params.family = AF_INET;
    params.ifindex = node.underlay_ifindex;
    params.__bindgen_anon_3.ipv4_src = saddr_be;
    params.__bindgen_anon_4.ipv4_dst = daddr_be;
    // tot_len stays 0: the kernel then checks the skb against the egress MTU
    // itself, GSO included.
    // SAFETY: `params` is ours and of the size passed; the helper writes only
    // within it.
    let ret = unsafe {
        fib_lookup(
            ctx.skb.skb as *mut _,
            params as *mut bpf_fib_lookup,
            size_of::<bpf_fib_lookup>() as i32,
            BPF_FIB_LOOKUP_OUTPUT,
        )
    };
    if ret == i64::from(BPF_FIB_LKUP_RET_SUCCESS) {
        store_macs(ctx, &params.dmac, &params.smac)?;
        conntrack::remember_next_hop(flow, params.dmac);
        return redirect(params.ifindex, 0);
    }
    // SAFETY: bpf_redirect_neigh only records the target (no next hop given:
    // null params, size 0); it returns TC_ACT_REDIRECT or TC_ACT_SHOT for
    // invalid flags.
    let ret = unsafe { bpf_redirect_neigh(node.underlay_ifindex, core::ptr::null_mut(), 0, 0) };
    if ret == i64::from(TC_ACT_REDIRECT) {
        Ok(TC_ACT_REDIRECT)
    } else {
        Err(DropReason::RedirectFailed)
    }
}

/// The Ethernet header's two addresses, in one store.
#[inline(always)]
fn store_macs(ctx: &TcContext, dst: &[u8; 6], src: &[u8; 6]) -> Result<(), DropReason> {
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(dst);
    macs[6..].copy_from_slice(src);
    TcPacket { ctx }.store(0, &macs)
}

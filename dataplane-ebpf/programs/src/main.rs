//! hive's data-plane programs. One entry program per attach point, named by
//! direction; each is a thin wrapper over a `try_*` function whose error is a
//! typed [`DropReason`] that gets counted before the packet is dropped.
//! The packet paths are described in `docs/dataplane.md`.
#![no_std]
#![no_main]

mod balance;
mod conntrack;
mod counters;
mod csum;
mod events;
mod handoff;
mod headers;
mod icmp;
mod lab_forward;
mod lb;
mod log;
mod maps;
mod mss;
mod nat;
mod packet;
mod parse;
mod resolver;
mod route;
mod tc;
mod vxlan;
mod xdp;
mod zeroed;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, xdp_action},
    macros::{cgroup_sock_addr, classifier, xdp},
    programs::{SockAddrContext, TcContext, XdpContext},
};
use hive_common::trace::TraceVerdict;

/// XDP on a node's underlay NIC: every packet that reaches the node from the
/// outside world or from another node enters here.
#[xdp]
pub fn xdp_from_underlay(ctx: XdpContext) -> u32 {
    match xdp::try_from_underlay(&ctx) {
        Ok(action) => action,
        Err(reason) => {
            counters::drop(reason);
            log::debug!(&ctx, "xdp_from_underlay: drop, reason {}", reason as u8);
            if events::on() {
                events::drop_xdp(&ctx, reason, TraceVerdict::Drop);
            }
            xdp_action::XDP_DROP
        }
    }
}

/// tc ingress of the host side of a task's veth: everything the task sends.
#[classifier]
pub fn tc_from_task(ctx: TcContext) -> i32 {
    match tc::try_from_task(&ctx) {
        Ok(action) => action,
        Err(reason) => {
            counters::drop(reason);
            log::debug!(&ctx, "tc_from_task: drop, reason {}", reason as u8);
            if events::on() {
                events::drop_tc(&ctx, reason, TraceVerdict::Drop);
            }
            TC_ACT_SHOT
        }
    }
}

/// tc ingress of a node's underlay NIC, behind `xdp_from_underlay`: moves
/// the frames it marked into their local task (`handoff`).
#[classifier]
pub fn tc_from_underlay(ctx: TcContext) -> i32 {
    match handoff::try_to_task(&ctx) {
        Ok(action) => action,
        Err(reason) => {
            counters::drop(reason);
            TC_ACT_SHOT
        }
    }
}

/// `connect` of the node's tasks (their cgroup): a TCP or connected-UDP
/// query to 127.0.0.11:53 reaches the task's embedded resolver (`resolver`).
/// Always allows the call.
#[cgroup_sock_addr(connect4)]
pub fn resolver_connect4(ctx: SockAddrContext) -> i32 {
    resolver::to_resolver(&ctx);
    1
}

/// `sendmsg`/`sendto` of the node's tasks on unconnected UDP sockets.
#[cgroup_sock_addr(sendmsg4)]
pub fn resolver_sendmsg4(ctx: SockAddrContext) -> i32 {
    resolver::to_resolver(&ctx);
    1
}

/// `recvmsg`/`recvfrom` of the node's tasks on UDP sockets: the answer's
/// source reads as 127.0.0.11:53.
#[cgroup_sock_addr(recvmsg4)]
pub fn resolver_recvmsg4(ctx: SockAddrContext) -> i32 {
    resolver::from_resolver(&ctx);
    1
}

/// The floor for `BPF_PROG_RUN` benchmarks: the cost of running any XDP
/// program at all, to subtract from the figures of the real ones.
#[xdp]
pub fn xdp_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The benchmark's floor of a path through an ingress node (`lab_forward`); never
/// attached by the agent. A frame it cannot parse is dropped, as the mesh drops it.
#[xdp]
pub fn xdp_lab_forward(ctx: XdpContext) -> u32 {
    lab_forward::try_forward_xdp(&ctx).unwrap_or(xdp_action::XDP_DROP)
}

/// [`xdp_lab_forward`] from tc ingress of the same device.
#[classifier]
pub fn tc_lab_forward(ctx: TcContext) -> i32 {
    lab_forward::try_forward_tc(&ctx).unwrap_or(TC_ACT_SHOT)
}

/// [`xdp_lab_forward`] through hive's tunnel: the frame leaves wrapped in hive's VXLAN
/// headers (`lab_forward`); never attached by the agent.
#[xdp]
pub fn xdp_lab_vxlan(ctx: XdpContext) -> u32 {
    lab_forward::try_vxlan_xdp(&ctx).unwrap_or(xdp_action::XDP_DROP)
}

/// The other end of [`xdp_lab_vxlan`]: strips the VXLAN headers and passes the inner
/// frame on (`lab_forward`); never attached by the agent.
#[xdp]
pub fn xdp_lab_decap(ctx: XdpContext) -> u32 {
    lab_forward::try_decap_xdp(&ctx).unwrap_or(xdp_action::XDP_DROP)
}

/// A bridge port of the lab's underlay as a switch: frames to one node's MAC go straight
/// to that node's port (`lab_forward`); never attached by the agent.
#[xdp]
pub fn xdp_lab_switch(ctx: XdpContext) -> u32 {
    lab_forward::try_switch_xdp(&ctx).unwrap_or(xdp_action::XDP_PASS)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

//! hive's data-plane programs. One entry program per attach point, named by
//! direction; each is a thin wrapper over a `try_*` function whose error is a
//! typed [`DropReason`] that gets counted before the packet is dropped.
#![no_std]
#![no_main]

mod counters;
mod parse;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use hive_common::{DropReason, maps::PacketCounterSlot};

/// XDP on a node's underlay NIC: every packet that reaches the node from the
/// outside world or from another node enters here.
#[xdp]
pub fn xdp_from_underlay(ctx: XdpContext) -> u32 {
    match try_xdp_from_underlay(&ctx) {
        Ok(action) => action,
        Err(reason) => counters::drop(reason),
    }
}

fn try_xdp_from_underlay(ctx: &XdpContext) -> Result<u32, DropReason> {
    let len = (ctx.data_end() - ctx.data()) as u64;
    counters::count(PacketCounterSlot::UnderlayRx, len);
    match parse::ipv4(ctx)? {
        Some(_ip) => {
            counters::count(PacketCounterSlot::UnderlayIpv4, len);
            Ok(xdp_action::XDP_PASS)
        }
        // Not IPv4 (ARP, IPv6, ...): the kernel's stack handles it.
        None => Ok(xdp_action::XDP_PASS),
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

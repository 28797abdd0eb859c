//! Per-CPU counters that count whether or not tracing is on.

use aya_ebpf::{bindings::xdp_action, macros::map, maps::PerCpuArray};
use hive_common::{
    DropReason,
    maps::{PacketCounter, PacketCounterSlot},
};

#[map(name = "HIVE_DROPS")]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DropReason::SLOTS, 0);

#[map(name = "HIVE_PACKETS")]
static PACKETS: PerCpuArray<PacketCounter> =
    PerCpuArray::with_max_entries(PacketCounterSlot::SLOTS, 0);

/// Count a drop and return the verdict that drops the packet.
#[inline(always)]
pub fn drop(reason: DropReason) -> u32 {
    if let Some(slot) = DROPS.get_ptr_mut(reason as u32) {
        // SAFETY: the pointer comes from the kernel for this CPU's slot; per-CPU
        // maps are not shared with other CPUs, so the increment cannot race.
        unsafe { *slot += 1 };
    }
    xdp_action::XDP_DROP
}

/// Count one packet of `len` bytes at `slot`.
#[inline(always)]
pub fn count(slot: PacketCounterSlot, len: u64) {
    if let Some(counter) = PACKETS.get_ptr_mut(slot as u32) {
        // SAFETY: as in `drop`: this CPU's slot, no concurrent writer.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += len;
        }
    }
}

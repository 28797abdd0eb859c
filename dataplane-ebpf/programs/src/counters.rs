//! Per-CPU counters that count whether or not tracing is on.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use hive_common::{
    DropReason,
    maps::{MAX_BACKENDS, MAX_SERVICES, PacketCounter, PacketCounterSlot, ServiceCounters},
};

#[map(name = "HIVE_DROPS")]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DropReason::SLOTS, 0);

#[map(name = "HIVE_PACKETS")]
static PACKETS: PerCpuArray<PacketCounter> =
    PerCpuArray::with_max_entries(PacketCounterSlot::SLOTS, 0);

#[map(name = "HIVE_SVC_STATS")]
static SVC_STATS: PerCpuArray<ServiceCounters> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);

#[map(name = "HIVE_BE_STATS")]
static BE_STATS: PerCpuArray<ServiceCounters> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

/// Count a drop (or an answered packet such as ICMP too-big, which still
/// ends the original packet's journey).
#[inline(always)]
pub fn drop(reason: DropReason) {
    if let Some(slot) = DROPS.get_ptr_mut(reason as u32) {
        // SAFETY: the pointer comes from the kernel for this CPU's slot; per-CPU
        // maps are not shared with other CPUs, so the increment cannot race.
        unsafe { *slot += 1 };
    }
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

/// Count a packet of a balanced flow against its service and backend;
/// `new_flow` when it created the flow's conntrack entries.
#[inline(always)]
pub fn flow(service: u32, backend: u32, len: u64, new_flow: bool) {
    let new = u64::from(new_flow);
    if let Some(c) = SVC_STATS.get_ptr_mut(service) {
        // SAFETY: as in `drop`.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += len;
            (*c).new_flows += new;
        }
    }
    if let Some(c) = BE_STATS.get_ptr_mut(backend) {
        // SAFETY: as in `drop`.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += len;
            (*c).new_flows += new;
        }
    }
}

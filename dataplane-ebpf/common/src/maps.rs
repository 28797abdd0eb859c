//! Map names and value layouts shared with user space.
//!
//! Map names are also the file names under a node's pin directory
//! (`/sys/fs/bpf/hive/<node>/`), so they are part of the on-disk interface
//! that lets a restarted agent find the maps the previous one left behind.

/// `PerCpuArray<u64>` indexed by `DropReason as u32`.
pub const DROP_COUNTERS: &str = "HIVE_DROPS";

/// `PerCpuArray<PacketCounter>` indexed by [`PacketCounterSlot`].
pub const PACKET_COUNTERS: &str = "HIVE_PACKETS";

/// Packets and bytes seen at one point of a program.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct PacketCounter {
    pub packets: u64,
    pub bytes: u64,
}

const _: () = assert!(core::mem::size_of::<PacketCounter>() == 16);

#[cfg(feature = "user")]
// SAFETY: `PacketCounter` is `repr(C)`, has no padding (size assert above)
// and every bit pattern is a valid value.
unsafe impl aya::Pod for PacketCounter {}

/// Slots of [`PACKET_COUNTERS`].
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PacketCounterSlot {
    /// Every frame `xdp_from_underlay` saw.
    UnderlayRx = 0,
    /// IPv4 frames `xdp_from_underlay` parsed successfully.
    UnderlayIpv4 = 1,
}

impl PacketCounterSlot {
    pub const SLOTS: u32 = 16;
}

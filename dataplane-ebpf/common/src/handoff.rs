//! What `xdp_from_underlay` leaves for `tc_from_underlay` in front of a
//! frame (the XDP metadata area, `bpf_xdp_adjust_meta`; the kernel keeps it
//! as the skb's metadata on `XDP_PASS`).
//!
//! A decapsulated packet for a task of this node carries a [`TaskHandoff`];
//! `tc_from_underlay` then moves it straight into the task's namespace with
//! `bpf_redirect_peer`, past the node's IP stack. A frame without one (other
//! traffic, or a driver that keeps no metadata) goes to the kernel as before.
//! See `docs/dataplane.md`, "Into the task without the node's IP stack".

/// The hand-off of one frame.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskHandoff {
    /// [`TaskHandoff::MAGIC`]: the metadata is hive's, written for this frame.
    pub magic: u32,
    /// The host side of the task's veth (`Endpoint::ifindex`).
    pub ifindex: u32,
}
// The kernel wants metadata in multiples of 4 bytes, at most 32.
const _: () = assert!(core::mem::size_of::<TaskHandoff>() == 8);

impl TaskHandoff {
    /// `hive` in ASCII.
    pub const MAGIC: u32 = 0x6869_7665;
    pub const LEN: usize = core::mem::size_of::<TaskHandoff>();

    /// Parse the metadata area `meta` (exactly what precedes the frame).
    pub fn parse(meta: &[u8]) -> Option<TaskHandoff> {
        let word = |i: usize| -> Option<u32> {
            let b = meta.get(i..i + 4)?;
            Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        if meta.len() != Self::LEN || word(0)? != Self::MAGIC {
            return None;
        }
        Some(TaskHandoff {
            magic: Self::MAGIC,
            ifindex: word(4)?,
        })
    }
}

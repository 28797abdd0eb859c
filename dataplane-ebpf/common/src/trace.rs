//! Trace events: what the programs tell `hive mesh trace` about a packet.
//!
//! Every entry program can emit events into one BPF ring buffer per node
//! ([`TRACE_RING`]). Tracing is off unless user space switches it on in
//! [`TRACE_CONFIG`]; while it is off an event site costs one array lookup
//! (inlined by the verifier) and a flag test. A record is a fixed-size
//! [`TraceRecord`]: a versioned [`TraceEvent`] header followed by up to
//! [`TraceConfig::snaplen`] bytes of the packet as it was at the event (for
//! pcap; a tracer that writes no pcap asks for none, and its events cost no
//! copy). Cilium's `trace.h`/`drop.h` notifications are the model: a
//! version, a type, the reason, the interface, the lengths, then the bytes.
//!
//! Compatibility: `version` changes only when a field changes meaning;
//! fields are appended (readers skip to `hdr_len`), kinds and verdicts are
//! never renumbered.

/// `RingBuf` of [`TraceRecord`]s.
pub const TRACE_RING: &str = "HIVE_TRACE";
/// `Array<TraceConfig>` with one entry: on/off, filter, rate limit, expiry.
pub const TRACE_CONFIG: &str = "HIVE_TRACE_CONFIG";
/// `PerCpuArray<u64>` indexed by [`TraceLost`]: events not delivered.
pub const TRACE_LOST: &str = "HIVE_TRACE_LOST";
/// `HashMap<u32 /* addr, network order */, u32>`: the addresses of the
/// filtered service's backends, so that events which carry no service id
/// (the backend node only sees a tunnelled flow) still match the filter.
pub const TRACE_ADDRS: &str = "HIVE_TRACE_ADDRS";
/// `HashMap<u32 /* service id */, u32>`: every id of the filtered service on
/// this node beside [`TraceConfig::service`] (a service attached to several
/// networks has one id per network).
pub const TRACE_SERVICES: &str = "HIVE_TRACE_SERVICES";

/// Size of [`TRACE_RING`] in bytes (a power of two, a multiple of the page
/// size): about 5,000 records.
pub const TRACE_RING_BYTES: u32 = 1 << 20;
/// Capacity of [`TRACE_ADDRS`].
pub const MAX_TRACE_ADDRS: u32 = 4096;
/// Capacity of [`TRACE_SERVICES`].
pub const MAX_TRACE_SERVICES: u32 = 256;
/// Bytes of each packet captured after the header (Ethernet + IPv4 + TCP
/// with options, or the outer headers of a VXLAN packet and most of the
/// inner ones).
pub const TRACE_CAPTURE_MAX: usize = 128;
/// Version of [`TraceEvent`].
pub const TRACE_VERSION: u8 = 1;

/// What happened to the packet.
#[repr(u8)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum TraceKind {
    /// A new flow was given a backend by Maglev (`service` → `backend`,
    /// translated to `xlate_addr`:`xlate_port`).
    LbSelect = 1,
    /// The packet was VXLAN-encapsulated towards node `tunnel_be`.
    Encap = 2,
    /// A VXLAN packet from node `tunnel_be` was decapsulated (the flow is
    /// the inner one).
    Decap = 3,
    /// The packet is handed to the kernel for a task on this node.
    LocalDelivery = 4,
    /// A backend's reply got the service address back as its source
    /// (`xlate_addr`:`xlate_port`).
    ReverseNat = 5,
    /// The packet was dropped (or answered instead of forwarded) for
    /// `drop_reason`.
    Drop = 6,
}

impl TraceKind {
    pub const fn from_u8(v: u8) -> Option<TraceKind> {
        match v {
            1 => Some(TraceKind::LbSelect),
            2 => Some(TraceKind::Encap),
            3 => Some(TraceKind::Decap),
            4 => Some(TraceKind::LocalDelivery),
            5 => Some(TraceKind::ReverseNat),
            6 => Some(TraceKind::Drop),
            _ => None,
        }
    }

    /// Stable, lower-case name (trace lines, JSON, pcap comments).
    pub const fn name(self) -> &'static str {
        match self {
            TraceKind::LbSelect => "lb-select",
            TraceKind::Encap => "encap",
            TraceKind::Decap => "decap",
            TraceKind::LocalDelivery => "local-delivery",
            TraceKind::ReverseNat => "reverse-nat",
            TraceKind::Drop => "drop",
        }
    }
}

/// The program that emitted an event.
#[repr(u8)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum TraceProgram {
    XdpFromUnderlay = 1,
    TcFromTask = 2,
}

impl TraceProgram {
    pub const fn from_u8(v: u8) -> Option<TraceProgram> {
        match v {
            1 => Some(TraceProgram::XdpFromUnderlay),
            2 => Some(TraceProgram::TcFromTask),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            TraceProgram::XdpFromUnderlay => "xdp_from_underlay",
            TraceProgram::TcFromTask => "tc_from_task",
        }
    }
}

/// Where the packet goes after the event, whatever the program type.
#[repr(u8)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum TraceVerdict {
    /// To the kernel's stack (`XDP_PASS`, `TC_ACT_OK`).
    Pass = 1,
    /// Back out of the NIC it came in on (`XDP_TX`).
    Tx = 2,
    /// To another interface (`bpf_redirect`).
    Redirect = 3,
    /// Dropped (`XDP_DROP`, `TC_ACT_SHOT`).
    Drop = 4,
}

impl TraceVerdict {
    pub const fn from_u8(v: u8) -> Option<TraceVerdict> {
        match v {
            1 => Some(TraceVerdict::Pass),
            2 => Some(TraceVerdict::Tx),
            3 => Some(TraceVerdict::Redirect),
            4 => Some(TraceVerdict::Drop),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            TraceVerdict::Pass => "pass",
            TraceVerdict::Tx => "tx",
            TraceVerdict::Redirect => "redirect",
            TraceVerdict::Drop => "drop",
        }
    }
}

/// Slots of [`TRACE_LOST`].
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TraceLost {
    /// Over the configured rate (token bucket per CPU).
    RateLimited = 0,
    /// The ring buffer was full (the reader is too slow).
    RingFull = 1,
}

impl TraceLost {
    pub const SLOTS: u32 = 4;
}

/// Header of every trace record. 72 bytes, padding-free (explicit `_pad`).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceEvent {
    /// [`TRACE_VERSION`].
    pub version: u8,
    /// A [`TraceKind`].
    pub kind: u8,
    /// A [`TraceProgram`].
    pub program: u8,
    /// A [`TraceVerdict`].
    pub verdict: u8,
    /// A [`crate::DropReason`] for [`TraceKind::Drop`], else 0.
    pub drop_reason: u8,
    /// IP protocol of the flow (0 when the packet could not be parsed).
    pub proto: u8,
    /// Size of this header; the captured bytes start here.
    pub hdr_len: u16,
    /// Interface the packet arrived on.
    pub ifindex: u32,
    /// CPU that ran the program.
    pub cpu: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC): comparable across the nodes
    /// of a lab, which share one kernel.
    pub timestamp_ns: u64,
    /// The flow as the packet carried it at the event (the inner flow of
    /// VXLAN traffic).
    pub saddr_be: u32,
    pub daddr_be: u32,
    pub sport_be: u16,
    pub dport_be: u16,
    /// Dense service id (`hive mesh stats` maps it back), 0 = unknown.
    pub service: u32,
    /// Dense backend id, 0 = unknown.
    pub backend: u32,
    /// Length of the packet at the event.
    pub orig_len: u32,
    /// LbSelect: the backend address; ReverseNat: the restored service
    /// address; 0 otherwise.
    pub xlate_addr_be: u32,
    /// Encap: the node tunnelled to; Decap: the node it came from.
    pub tunnel_be: u32,
    /// Port that goes with `xlate_addr_be`.
    pub xlate_port_be: u16,
    /// Bytes of the packet that follow the header (≤ [`TRACE_CAPTURE_MAX`]).
    pub cap_len: u16,
    /// VXLAN network identifier for Encap/Decap, else 0.
    pub vni: u32,
    /// TCP flags of the flow's TCP header at the event (the inner one of
    /// VXLAN traffic); 0 for other protocols or when unparsed. Appended in
    /// November 2026: known without a capture.
    pub tcp_flags: u8,
    pub _pad: [u8; 7],
}
const _: () = assert!(core::mem::size_of::<TraceEvent>() == 72);

/// One ring-buffer record: header and the captured bytes.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TraceRecord {
    pub event: TraceEvent,
    pub data: [u8; TRACE_CAPTURE_MAX],
}
const _: () = assert!(core::mem::size_of::<TraceRecord>() == 72 + TRACE_CAPTURE_MAX);

/// The one entry of [`TRACE_CONFIG`].
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceConfig {
    /// [`TraceConfig::FLAG_*`] bits.
    pub flags: u32,
    /// With [`TraceConfig::FLAG_SERVICE`]: only events of this service id or
    /// of one in [`TRACE_SERVICES`], or without a service id but to or from
    /// an address in [`TRACE_ADDRS`].
    pub service: u32,
    /// With [`TraceConfig::FLAG_CLIENT`]: only flows with this address on
    /// either side (and this port on the same side, unless 0).
    pub client_addr_be: u32,
    pub client_port_be: u16,
    /// Bytes of each packet to copy after the header, at most
    /// [`TRACE_CAPTURE_MAX`]; 0 = the header only. Copying costs about a
    /// third of a delivered event (`docs/observability.md`), so only a
    /// tracer that writes pcap asks for bytes.
    pub snaplen: u16,
    /// Events per second and CPU; 0 = no limit.
    pub rate_per_sec: u32,
    /// Bucket size (events a CPU may send at once).
    pub burst: u32,
    /// `bpf_ktime_get_ns()` after which the programs treat tracing as off:
    /// a tracer renews it while it runs, so a tracer that crashed switches
    /// tracing off by itself. 0 = expired.
    pub expires_ns: u64,
}
const _: () = assert!(core::mem::size_of::<TraceConfig>() == 32);

impl TraceConfig {
    pub const FLAG_ENABLED: u32 = 1 << 0;
    /// Only [`TraceKind::Drop`] events.
    pub const FLAG_DROPS_ONLY: u32 = 1 << 1;
    pub const FLAG_SERVICE: u32 = 1 << 2;
    pub const FLAG_CLIENT: u32 = 1 << 3;
}

#[cfg(feature = "user")]
mod pod {
    use super::*;

    // SAFETY: `repr(C)`, padding-free (size assert above) and valid for
    // any bit pattern.
    unsafe impl aya::Pod for TraceEvent {}
    // SAFETY: as above (a header and a byte array, 8-aligned, 200 bytes).
    unsafe impl aya::Pod for TraceRecord {}
    // SAFETY: as above (explicit `_pad`).
    unsafe impl aya::Pod for TraceConfig {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn event_offsets_match_the_c_layout() {
        assert_eq!(offset_of!(TraceEvent, hdr_len), 6);
        assert_eq!(offset_of!(TraceEvent, ifindex), 8);
        assert_eq!(offset_of!(TraceEvent, cpu), 12);
        assert_eq!(offset_of!(TraceEvent, timestamp_ns), 16);
        assert_eq!(offset_of!(TraceEvent, saddr_be), 24);
        assert_eq!(offset_of!(TraceEvent, sport_be), 32);
        assert_eq!(offset_of!(TraceEvent, service), 36);
        assert_eq!(offset_of!(TraceEvent, backend), 40);
        assert_eq!(offset_of!(TraceEvent, orig_len), 44);
        assert_eq!(offset_of!(TraceEvent, xlate_addr_be), 48);
        assert_eq!(offset_of!(TraceEvent, tunnel_be), 52);
        assert_eq!(offset_of!(TraceEvent, xlate_port_be), 56);
        assert_eq!(offset_of!(TraceEvent, cap_len), 58);
        assert_eq!(offset_of!(TraceEvent, vni), 60);
        assert_eq!(offset_of!(TraceEvent, tcp_flags), 64);
        assert_eq!(offset_of!(TraceRecord, data), 72);
        assert_eq!(offset_of!(TraceConfig, client_port_be), 12);
        assert_eq!(offset_of!(TraceConfig, snaplen), 14);
        assert_eq!(offset_of!(TraceConfig, rate_per_sec), 16);
        assert_eq!(offset_of!(TraceConfig, expires_ns), 24);
    }

    #[test]
    fn kinds_verdicts_and_programs_round_trip() {
        for v in 0..=255u8 {
            if let Some(k) = TraceKind::from_u8(v) {
                assert_eq!(k as u8, v);
            }
            if let Some(p) = TraceProgram::from_u8(v) {
                assert_eq!(p as u8, v);
            }
            if let Some(d) = TraceVerdict::from_u8(v) {
                assert_eq!(d as u8, v);
            }
        }
        assert_eq!(TraceKind::from_u8(0), None);
    }
}

//! Why a packet was dropped.
//!
//! Every drop in every hive program carries one of these reasons and is
//! counted per CPU (map [`crate::maps::DROP_COUNTERS`]), tracing on or off.
//! Values are part of the user-visible interface (`hive mesh stats`, trace
//! events, pcap annotations): a value is never reused or renumbered; a
//! retired reason keeps its slot. New reasons are appended.

/// A typed drop reason. `0` is reserved so that a zeroed counter slot or event
/// field never reads as a real reason.
#[repr(u8)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The frame ended before the header the program needed to read.
    TruncatedPacket = 1,
    /// The IPv4 header length or total length is inconsistent with the frame.
    MalformedIpv4 = 2,
    /// An IPv4 fragment was sent to a service; fragments cannot be balanced, send unfragmented packets (path MTU discovery).
    Ipv4Fragment = 3,
    /// An IPv4 packet with options was sent to a service; hive does not forward IP options.
    Ipv4Options = 4,
    /// A packet to a service VIP was neither TCP nor UDP.
    UnsupportedProtocol = 5,
    /// The service has no running task to send the flow to.
    NoBackend = 6,
    /// A VXLAN packet came from an address that is not a node of this swarm.
    VxlanFromNonPeer = 7,
    /// A VXLAN packet had bad flags, a short inner frame or an inner packet that is not IPv4.
    MalformedVxlan = 8,
    /// A VXLAN packet carried a network identifier this node does not serve.
    UnknownVni = 9,
    /// The backend's node is not a known overlay peer, so there is nowhere to tunnel the packet.
    UnknownPeer = 10,
    /// The packet is too large to tunnel with the 50 bytes of VXLAN; an ICMP fragmentation-needed was sent to its source.
    FragmentationNeeded = 11,
    /// The kernel refused to grow or shrink the packet for encapsulation or decapsulation.
    HeadroomFailed = 12,
    /// The kernel refused to redirect the packet to its output interface.
    RedirectFailed = 13,
    /// The packet's TTL ran out on the way through the mesh.
    TtlExceeded = 14,
    /// A tunnelled packet was addressed to a task that does not run on this node.
    NoEndpoint = 15,
}

impl DropReason {
    /// Number of slots a per-reason counter array needs (highest value + 1).
    pub const SLOTS: u32 = 64;

    /// All reasons, in value order; user space iterates this for reports.
    pub const ALL: [DropReason; 15] = [
        DropReason::TruncatedPacket,
        DropReason::MalformedIpv4,
        DropReason::Ipv4Fragment,
        DropReason::Ipv4Options,
        DropReason::UnsupportedProtocol,
        DropReason::NoBackend,
        DropReason::VxlanFromNonPeer,
        DropReason::MalformedVxlan,
        DropReason::UnknownVni,
        DropReason::UnknownPeer,
        DropReason::FragmentationNeeded,
        DropReason::HeadroomFailed,
        DropReason::RedirectFailed,
        DropReason::TtlExceeded,
        DropReason::NoEndpoint,
    ];

    /// Stable, lower-case name shown to users (`hive mesh stats`, traces).
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::TruncatedPacket => "truncated-packet",
            DropReason::MalformedIpv4 => "malformed-ipv4",
            DropReason::Ipv4Fragment => "ipv4-fragment",
            DropReason::Ipv4Options => "ipv4-options",
            DropReason::UnsupportedProtocol => "unsupported-protocol",
            DropReason::NoBackend => "no-backend",
            DropReason::VxlanFromNonPeer => "vxlan-from-non-peer",
            DropReason::MalformedVxlan => "malformed-vxlan",
            DropReason::UnknownVni => "unknown-vni",
            DropReason::UnknownPeer => "unknown-peer",
            DropReason::FragmentationNeeded => "fragmentation-needed",
            DropReason::HeadroomFailed => "headroom-failed",
            DropReason::RedirectFailed => "redirect-failed",
            DropReason::TtlExceeded => "ttl-exceeded",
            DropReason::NoEndpoint => "no-endpoint",
        }
    }

    /// One sentence a user can act on.
    pub const fn description(self) -> &'static str {
        match self {
            DropReason::TruncatedPacket => {
                "the frame ended before the header the program needed to read"
            }
            DropReason::MalformedIpv4 => {
                "the IPv4 header length or total length is inconsistent with the frame"
            }
            DropReason::Ipv4Fragment => {
                "an IPv4 fragment was sent to a service; fragments cannot be balanced, send unfragmented packets (path MTU discovery)"
            }
            DropReason::Ipv4Options => {
                "an IPv4 packet with options was sent to a service; hive does not forward IP options"
            }
            DropReason::UnsupportedProtocol => "a packet to a service VIP was neither TCP nor UDP",
            DropReason::NoBackend => "the service has no running task to send the flow to",
            DropReason::VxlanFromNonPeer => {
                "a VXLAN packet came from an address that is not a node of this swarm"
            }
            DropReason::MalformedVxlan => {
                "a VXLAN packet had bad flags, a short inner frame or an inner packet that is not IPv4"
            }
            DropReason::UnknownVni => {
                "a VXLAN packet carried a network identifier this node does not serve"
            }
            DropReason::UnknownPeer => {
                "the backend's node is not a known overlay peer, so there is nowhere to tunnel the packet"
            }
            DropReason::FragmentationNeeded => {
                "the packet is too large to tunnel with the 50 bytes of VXLAN; an ICMP fragmentation-needed was sent to its source"
            }
            DropReason::HeadroomFailed => {
                "the kernel refused to grow or shrink the packet for encapsulation or decapsulation"
            }
            DropReason::RedirectFailed => {
                "the kernel refused to redirect the packet to its output interface"
            }
            DropReason::TtlExceeded => "the packet's TTL ran out on the way through the mesh",
            DropReason::NoEndpoint => {
                "a tunnelled packet was addressed to a task that does not run on this node"
            }
        }
    }

    /// The reason for a raw counter slot or event byte, if it names one.
    pub const fn from_u8(value: u8) -> Option<DropReason> {
        match value {
            1 => Some(DropReason::TruncatedPacket),
            2 => Some(DropReason::MalformedIpv4),
            3 => Some(DropReason::Ipv4Fragment),
            4 => Some(DropReason::Ipv4Options),
            5 => Some(DropReason::UnsupportedProtocol),
            6 => Some(DropReason::NoBackend),
            7 => Some(DropReason::VxlanFromNonPeer),
            8 => Some(DropReason::MalformedVxlan),
            9 => Some(DropReason::UnknownVni),
            10 => Some(DropReason::UnknownPeer),
            11 => Some(DropReason::FragmentationNeeded),
            12 => Some(DropReason::HeadroomFailed),
            13 => Some(DropReason::RedirectFailed),
            14 => Some(DropReason::TtlExceeded),
            15 => Some(DropReason::NoEndpoint),
            _ => None,
        }
    }
}

const _: () = assert!((DropReason::ALL.len() as u32) < DropReason::SLOTS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_are_unique() {
        for reason in DropReason::ALL {
            assert_eq!(DropReason::from_u8(reason as u8), Some(reason));
        }
        assert_eq!(DropReason::from_u8(0), None);
    }

    #[test]
    fn all_is_in_value_order_without_gaps() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i + 1);
        }
    }

    #[test]
    fn names_are_unique() {
        for a in DropReason::ALL {
            for b in DropReason::ALL {
                if a != b {
                    assert_ne!(a.name(), b.name());
                }
            }
        }
    }
}

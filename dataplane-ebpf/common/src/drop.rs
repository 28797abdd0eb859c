//! Why a packet was dropped.
//!
//! Every drop in every hive program carries one of these reasons and is
//! counted per CPU (map [`crate::maps::DROP_COUNTERS`]), tracing on or off.
//! Values are part of the user-visible interface (`hive mesh stats`, trace
//! events, pcap annotations): a value is never reused or renumbered; retired
//! reasons keep their slot.

/// A typed drop reason. `0` is reserved so that a zeroed counter slot or event
/// field never reads as a real reason.
#[repr(u8)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The frame is shorter than the header the program had to read.
    TruncatedPacket = 1,
    /// An IPv4 header whose IHL is below 5 or whose total length does not
    /// fit the frame.
    MalformedIpv4 = 2,
}

impl DropReason {
    /// Number of slots a per-reason counter array needs (highest value + 1).
    pub const SLOTS: u32 = 64;

    /// All reasons, in value order; user space iterates this for reports.
    pub const ALL: [DropReason; 2] = [DropReason::TruncatedPacket, DropReason::MalformedIpv4];

    /// Stable, lower-case name shown to users (`hive mesh stats`, traces).
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::TruncatedPacket => "truncated-packet",
            DropReason::MalformedIpv4 => "malformed-ipv4",
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
        }
    }

    /// The reason for a raw counter slot or event byte, if it names one.
    pub const fn from_u8(value: u8) -> Option<DropReason> {
        match value {
            1 => Some(DropReason::TruncatedPacket),
            2 => Some(DropReason::MalformedIpv4),
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
    fn all_is_in_value_order() {
        let values = DropReason::ALL.map(|r| r as u8);
        assert!(values.windows(2).all(|w| w[0] < w[1]));
    }
}

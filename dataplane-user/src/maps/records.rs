//! The agent's own records, pinned next to the programs' maps so that a
//! restarted agent can tell which map entry stands for what.
//!
//! The programs never read these. They hold what the ABI maps do not: the
//! Swarm identities behind the dense ids, and where each service's Maglev
//! segment is and which backend set it was built from. Keeping them in
//! pinned BPF maps (bpffs cannot hold regular files) gives them exactly the
//! lifetime of the maps they describe: a reboot or `destroy` clears both.

use hive_common::maps::{MAX_BACKENDS, MAX_SERVICES};

use crate::mesh::state::MAX_ID_LEN;

/// `HashMap<u32 service id, BalancerRecord>`.
pub const BALANCER_RECORDS: &str = "HIVE_AGENT_LB";
/// `HashMap<u32 backend id, BackendRecord>`.
pub const BACKEND_RECORDS: &str = "HIVE_AGENT_BE";
pub const BALANCER_RECORDS_ENTRIES: u32 = MAX_SERVICES;
pub const BACKEND_RECORDS_ENTRIES: u32 = MAX_BACKENDS;

/// What a dense service id stands for.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BalancerRecord {
    /// Swarm service ID, NUL-padded.
    pub service_id: [u8; MAX_ID_LEN],
    pub vni: u32,
    /// The Maglev segment this record describes; it is the live one only if
    /// `seg_offset` equals the ring's offset (the record is written after
    /// the ring flips, so a crash in between leaves them different).
    pub seg_offset: u32,
    /// Slots reserved at `seg_offset` (≥ the ring size).
    pub seg_capacity: u32,
    pub _pad: u32,
    /// Digest of the table's inputs (seed and (task, backend id) list);
    /// 0 = unknown, rebuild.
    pub digest: u64,
}
const _: () = assert!(size_of::<BalancerRecord>() == MAX_ID_LEN + 24);

/// What a dense backend id stands for.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BackendRecord {
    /// Swarm task ID, NUL-padded.
    pub task_id: [u8; MAX_ID_LEN],
    /// The service id (balancer) the backend belongs to.
    pub balancer: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<BackendRecord>() == MAX_ID_LEN + 8);

// SAFETY: both are `repr(C)`, padding-free (size asserts above, explicit
// `_pad`) and valid for any bit pattern.
unsafe impl aya::Pod for BalancerRecord {}
// SAFETY: as above.
unsafe impl aya::Pod for BackendRecord {}

/// An ID as a fixed, NUL-padded field. IDs are validated to fit
/// ([`MAX_ID_LEN`]); a longer one would be cut, never overflow.
pub fn id_field(id: &str) -> [u8; MAX_ID_LEN] {
    let mut field = [0u8; MAX_ID_LEN];
    let n = id.len().min(MAX_ID_LEN);
    field[..n].copy_from_slice(&id.as_bytes()[..n]);
    field
}

/// The ID in a field written by [`id_field`]; `None` if it is not UTF-8
/// (not written by us).
pub fn id_from_field(field: &[u8; MAX_ID_LEN]) -> Option<String> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(MAX_ID_LEN);
    std::str::from_utf8(&field[..end]).ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_fields() {
        for id in [
            "",
            "svc",
            "x7k2p9q1m3n5b8v4c6z0a2s4d",
            &"a".repeat(MAX_ID_LEN),
        ] {
            assert_eq!(id_from_field(&id_field(id)).as_deref(), Some(id));
        }
    }
}

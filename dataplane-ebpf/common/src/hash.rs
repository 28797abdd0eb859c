//! The flow hash every node computes identically, in the kernel and in user
//! space (tests, `hive mesh` tooling).
//!
//! Only the client side of the flow and the service port go in: a published
//! port is reached at a different address on every node, and a client whose
//! packets move to another ingress node (ECMP change) must land on the same
//! backend. The function is a seeded murmur3-style mixer: cheap enough for
//! the per-packet path, and no helper call.

/// Hash of a flow towards a service, for Maglev and for the VXLAN source port.
#[inline(always)]
pub const fn flow_hash(seed: u32, saddr_be: u32, sport_be: u16, dport_be: u16, proto: u8) -> u32 {
    let mut h = seed ^ 0x9e37_79b9;
    h = mix(h, saddr_be);
    h = mix(h, ((sport_be as u32) << 16) | dport_be as u32);
    h = mix(h, proto as u32);
    fmix(h ^ 13)
}

#[inline(always)]
const fn mix(h: u32, k: u32) -> u32 {
    let mut k = k.wrapping_mul(0xcc9e_2d51);
    k = k.rotate_left(15);
    k = k.wrapping_mul(0x1b87_3593);
    let h = (h ^ k).rotate_left(13);
    h.wrapping_mul(5).wrapping_add(0xe654_6b64)
}

#[inline(always)]
const fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_on_every_input() {
        let base = flow_hash(1, 0x0a00_0001, 1000, 80, 6);
        assert_ne!(base, flow_hash(2, 0x0a00_0001, 1000, 80, 6));
        assert_ne!(base, flow_hash(1, 0x0a00_0002, 1000, 80, 6));
        assert_ne!(base, flow_hash(1, 0x0a00_0001, 1001, 80, 6));
        assert_ne!(base, flow_hash(1, 0x0a00_0001, 1000, 81, 6));
        assert_ne!(base, flow_hash(1, 0x0a00_0001, 1000, 80, 17));
    }

    #[test]
    fn spreads_source_ports_evenly() {
        let mut buckets = [0u32; 8];
        for port in 0..8000u16 {
            buckets[(flow_hash(7, 0x0a00_0001, port, 8080, 6) % 8) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (800..1200).contains(&b)),
            "{buckets:?}"
        );
    }
}

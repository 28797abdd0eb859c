//! The underlay probe (docs/dsr.md, "What the underlay must allow"): can a node send a
//! packet with another node's address as its source?
//!
//! Direct return (`--mesh-mode dsr|hybrid`) has the backend's node answer the client with
//! the ingress node's address as the source. Networks with source/destination checks, IP
//! source guard or strict uRPF drop such packets, and the client's connections then hang.
//! Before the swarm turns the mode on, the manager that takes the update listens on its own
//! node ([`Listener`]) and asks every other ready node (`UnderlayProbe`, served by
//! `daemon::probe_service`) to send it one UDP datagram whose source is the manager's own
//! underlay address ([`datagram`]); a probe that does not arrive refuses the mode
//! (`manager::controlapi::underlay_check`).
//!
//! The datagram goes to a UDP control port of the manager's node (gossip's), which hive's
//! XDP program always hands to the kernel; the kernel then drops it as a martian (its
//! source is the node's own address), so only the listener's packet socket, which sees it
//! first, ever reads it.

mod socket;

use std::net::Ipv4Addr;

pub use socket::{Listener, send};

/// A probe's identity: random, one per sending node.
pub type Nonce = [u8; 16];

/// The payload's first bytes, before the nonce.
const MAGIC: &[u8; 8] = b"HIVEPRB1";
const IPV4_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const PAYLOAD: usize = MAGIC.len() + 16;
const IPPROTO_UDP: u8 = 17;

/// The probe: an IPv4/UDP datagram from `target`:`port` to `target`:`port` carrying `nonce`,
/// IPv4 header included (sent on a raw socket).
pub fn datagram(target: Ipv4Addr, port: u16, nonce: &Nonce) -> Vec<u8> {
    let total = IPV4_HEADER + UDP_HEADER + PAYLOAD;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    // Id 0 (the kernel fills it in), don't fragment, TTL 64, UDP, checksum below.
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, IPPROTO_UDP, 0, 0]);
    p.extend_from_slice(&target.octets());
    p.extend_from_slice(&target.octets());
    let checksum = ipv4_checksum(&p[..IPV4_HEADER]);
    p[10..12].copy_from_slice(&checksum.to_be_bytes());
    p.extend_from_slice(&port.to_be_bytes());
    p.extend_from_slice(&port.to_be_bytes());
    p.extend_from_slice(&((UDP_HEADER + PAYLOAD) as u16).to_be_bytes());
    // No UDP checksum (allowed over IPv4).
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(MAGIC);
    p.extend_from_slice(nonce);
    p
}

/// The nonce of `packet` (an IPv4 packet, no link header) if it is a probe to and from
/// `target` on `port`.
pub fn probe_nonce(packet: &[u8], target: Ipv4Addr, port: u16) -> Option<Nonce> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    if packet[0] >> 4 != 4 || ihl < IPV4_HEADER || packet.get(9)? != &IPPROTO_UDP {
        return None;
    }
    if packet.get(12..16)? != target.octets() || packet.get(16..20)? != target.octets() {
        return None;
    }
    let udp = packet.get(ihl..)?;
    if udp.get(2..4)? != port.to_be_bytes() {
        return None;
    }
    let payload = udp.get(UDP_HEADER..UDP_HEADER + PAYLOAD)?;
    if &payload[..MAGIC.len()] != MAGIC {
        return None;
    }
    payload[MAGIC.len()..].try_into().ok()
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);

    #[test]
    fn a_probe_reads_back_with_its_nonce_and_a_valid_header_checksum() {
        let nonce = [7u8; 16];
        let p = datagram(TARGET, 7946, &nonce);
        assert_eq!(p.len(), 52);
        assert_eq!(
            ipv4_checksum(&p[..20]),
            0,
            "a header with its checksum sums to 0"
        );
        assert_eq!(probe_nonce(&p, TARGET, 7946), Some(nonce));
    }

    #[test]
    fn other_packets_are_not_probes() {
        let p = datagram(TARGET, 7946, &[1; 16]);
        assert_eq!(probe_nonce(&p, Ipv4Addr::new(192, 168, 77, 2), 7946), None);
        assert_eq!(probe_nonce(&p, TARGET, 7947), None);
        let mut garbled = p.clone();
        garbled[IPV4_HEADER + UDP_HEADER] ^= 1;
        assert_eq!(probe_nonce(&garbled, TARGET, 7946), None);
        assert_eq!(probe_nonce(&p[..30], TARGET, 7946), None);
        assert_eq!(probe_nonce(&[], TARGET, 7946), None);
    }
}

//! Header parsing over [`Packet`]: Ethernet → IPv4 → TCP/UDP, with every
//! length the packet claims checked against the bytes it has.

use hive_common::{
    DropReason,
    maps::{IPPROTO_TCP, IPPROTO_UDP},
};

use crate::{
    headers::{
        ETH_HDR_LEN, ETH_P_IP_BE, IP_MF, IP_OFFSET_MASK, IPV4_HDR_LEN, Ipv4Hdr, TCP_HDR_LEN,
        UDP_HDR_LEN,
    },
    packet::{L4Csum, Packet},
};

/// What the programs need of an IPv4 header.
#[derive(Copy, Clone)]
pub struct Ipv4 {
    /// Offset of the IPv4 header in the packet.
    pub off: usize,
    /// Header length in bytes (IHL × 4).
    pub hdr_len: usize,
    /// Total length (host order).
    pub tot_len: u16,
    pub proto: u8,
    pub saddr_be: u32,
    pub daddr_be: u32,
    /// Flags and fragment offset (host order).
    pub frag_off: u16,
}

impl Ipv4 {
    #[inline(always)]
    pub fn has_options(&self) -> bool {
        self.hdr_len != IPV4_HDR_LEN
    }

    /// Any fragment, first or later.
    #[inline(always)]
    pub fn is_fragment(&self) -> bool {
        self.frag_off & (IP_MF | IP_OFFSET_MASK) != 0
    }

    /// A fragment other than the first: it carries no L4 header.
    #[inline(always)]
    pub fn is_later_fragment(&self) -> bool {
        self.frag_off & IP_OFFSET_MASK != 0
    }

    #[inline(always)]
    pub fn l4_off(&self) -> usize {
        self.off + self.hdr_len
    }

    #[inline(always)]
    pub fn csum_off(&self) -> usize {
        self.off + 10
    }

    #[inline(always)]
    pub fn saddr_off(&self) -> usize {
        self.off + 12
    }

    #[inline(always)]
    pub fn daddr_off(&self) -> usize {
        self.off + 16
    }

    /// Offset one past the last byte of the IPv4 packet.
    #[inline(always)]
    pub fn end(&self) -> usize {
        self.off + usize::from(self.tot_len)
    }
}

/// What the programs need of a TCP or UDP header.
#[derive(Copy, Clone)]
pub struct L4 {
    pub off: usize,
    pub sport_be: u16,
    pub dport_be: u16,
    /// TCP flags byte; 0 for UDP.
    pub tcp_flags: u8,
    /// TCP header length including options; 8 for UDP.
    pub hdr_len: usize,
    pub csum: L4Csum,
}

impl L4 {
    #[inline(always)]
    pub fn sport_off(&self) -> usize {
        self.off
    }

    #[inline(always)]
    pub fn dport_off(&self) -> usize {
        self.off + 2
    }
}

/// The IPv4 header of the Ethernet frame at `eth_off`; `None` for other
/// ethertypes (ARP, IPv6, ...), which hive leaves to the kernel.
#[inline(always)]
pub fn ipv4<P: Packet>(pkt: &P, eth_off: usize) -> Result<Option<Ipv4>, DropReason> {
    let ethertype: u16 = pkt.load(eth_off + 12)?;
    if ethertype != ETH_P_IP_BE {
        return Ok(None);
    }
    let off = eth_off + ETH_HDR_LEN;
    let hdr: Ipv4Hdr = pkt.load(off)?;
    let hdr_len = usize::from(hdr.version_ihl & 0x0f) * 4;
    let tot_len = u16::from_be(hdr.tot_len_be);
    if hdr.version_ihl >> 4 != 4 || hdr_len < IPV4_HDR_LEN || usize::from(tot_len) < hdr_len {
        return Err(DropReason::MalformedIpv4);
    }
    // The frame may be longer (Ethernet padding of short packets) but never
    // shorter than the IP packet claims.
    if off + usize::from(tot_len) > pkt.len() {
        return Err(DropReason::MalformedIpv4);
    }
    Ok(Some(Ipv4 {
        off,
        hdr_len,
        tot_len,
        proto: hdr.protocol,
        saddr_be: hdr.saddr_be,
        daddr_be: hdr.daddr_be,
        frag_off: u16::from_be(hdr.frag_off_be),
    }))
}

/// The first bytes of a TCP header, up to and including the flags.
#[repr(C, packed)]
#[derive(Copy, Clone)]
struct TcpStart {
    sport_be: u16,
    dport_be: u16,
    _seq: u32,
    _ack: u32,
    doff: u8,
    flags: u8,
}

/// The TCP or UDP header of `ip`; `None` for other protocols and for later
/// fragments (which have no L4 header).
#[inline(always)]
pub fn l4<P: Packet>(pkt: &P, ip: &Ipv4) -> Result<Option<L4>, DropReason> {
    if ip.is_later_fragment() {
        return Ok(None);
    }
    let off = ip.l4_off();
    if ip.proto == IPPROTO_TCP {
        if off + TCP_HDR_LEN > ip.end() {
            return Err(DropReason::TruncatedPacket);
        }
        let tcp: TcpStart = pkt.load(off)?;
        let hdr_len = usize::from(tcp.doff >> 4) * 4;
        if hdr_len < TCP_HDR_LEN || off + hdr_len > ip.end() {
            return Err(DropReason::TruncatedPacket);
        }
        Ok(Some(L4 {
            off,
            sport_be: tcp.sport_be,
            dport_be: tcp.dport_be,
            tcp_flags: tcp.flags,
            hdr_len,
            csum: L4Csum {
                off: off + 16,
                udp: false,
            },
        }))
    } else if ip.proto == IPPROTO_UDP {
        if off + UDP_HDR_LEN > ip.end() {
            return Err(DropReason::TruncatedPacket);
        }
        let ports: [u16; 2] = pkt.load(off)?;
        Ok(Some(L4 {
            off,
            sport_be: ports[0],
            dport_be: ports[1],
            tcp_flags: 0,
            hdr_len: UDP_HDR_LEN,
            csum: L4Csum {
                off: off + 6,
                udp: true,
            },
        }))
    } else {
        Ok(None)
    }
}

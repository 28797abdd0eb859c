//! Wire formats hive reads and writes. `repr(C, packed)` so that they can be
//! copied to and from any packet offset; fields in network order are `*_be`
//! and hold the raw memory value.

pub const ETH_HDR_LEN: usize = 14;
pub const IPV4_HDR_LEN: usize = 20;
pub const UDP_HDR_LEN: usize = 8;
pub const TCP_HDR_LEN: usize = 20;
pub const VXLAN_HDR_LEN: usize = 8;
pub const ICMP_HDR_LEN: usize = 8;
/// Outer Ethernet + IPv4 + UDP + VXLAN: the bytes pushed in front of the
/// inner frame. Also what the tunnel adds to the inner IPv4 packet (outer
/// IPv4 + UDP + VXLAN + inner Ethernet), hence task MTU = underlay MTU − 50.
pub const VXLAN_ENCAP_LEN: usize = core::mem::size_of::<VxlanOuter>();

pub const ETH_P_IP_BE: u16 = 0x0800u16.to_be();
pub const IPPROTO_ICMP: u8 = 1;

/// IPv4 `frag_off` bits (host order).
pub const IP_DF: u16 = 0x4000;
pub const IP_MF: u16 = 0x2000;
pub const IP_OFFSET_MASK: u16 = 0x1fff;

/// TCP flag bits (byte 13 of the header).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// VXLAN flags byte: "I" (a valid VNI follows), RFC 7348 §5.
pub const VXLAN_FLAG_I: u8 = 0x08;
/// VXLAN flags byte: hive's direct-return mark (`docs/dsr.md`), at the bit
/// VXLAN-GBP calls G; bytes 2–3 (GBP's group policy ID) then carry the
/// published port the client used, the outer source the ingress node's
/// address. Only hive nodes read it.
pub const VXLAN_FLAG_DIRECT_RETURN: u8 = 0x80;
/// VXLAN flags byte: hive's "nothing to record" mark (`docs/dsr.md`, "Steady packets"), at
/// the lowest reserved bit. The ingress node sets it on a client's packet of a flow it
/// balanced from a published port when its own entry for the flow was not due for a
/// refresh and the packet changes no TCP state: the backend's node, which recorded the
/// flow at its last refresh, skips its conntrack for it. Only hive nodes read it; a node
/// that does not know it records every packet, as before.
pub const VXLAN_FLAG_STEADY: u8 = 0x01;

#[repr(C, packed)]
#[derive(Copy, Clone)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub proto_be: u16,
}

#[repr(C, packed)]
#[derive(Copy, Clone)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len_be: u16,
    pub id_be: u16,
    pub frag_off_be: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub check_be: u16,
    pub saddr_be: u32,
    pub daddr_be: u32,
}

impl Ipv4Hdr {
    /// A fresh 20-byte header with its checksum filled in.
    #[inline(always)]
    pub fn new(protocol: u8, saddr_be: u32, daddr_be: u32, tot_len: u16, frag_off: u16) -> Self {
        let mut hdr = Ipv4Hdr {
            version_ihl: 0x45,
            tos: 0,
            tot_len_be: tot_len.to_be(),
            id_be: 0,
            frag_off_be: frag_off.to_be(),
            ttl: 64,
            protocol,
            check_be: 0,
            saddr_be,
            daddr_be,
        };
        // SAFETY: `Ipv4Hdr` is 20 packed bytes with no padding, so it can be
        // read as ten 16-bit words; `read_unaligned` tolerates alignment 1.
        let words: [u16; 10] = unsafe { core::ptr::read_unaligned((&raw const hdr).cast()) };
        hdr.check_be = !crate::csum::fold(crate::csum::sum_words(&words));
        hdr
    }
}

#[repr(C, packed)]
#[derive(Copy, Clone)]
pub struct UdpHdr {
    pub sport_be: u16,
    pub dport_be: u16,
    pub len_be: u16,
    pub check_be: u16,
}

#[repr(C, packed)]
#[derive(Copy, Clone)]
pub struct VxlanHdr {
    pub flags: u8,
    pub _reserved1: [u8; 3],
    /// VNI in the upper 24 bits, network order.
    pub vni_be: u32,
}

/// Everything VXLAN puts before the inner Ethernet header.
#[repr(C, packed)]
#[derive(Copy, Clone)]
pub struct VxlanOuter {
    pub eth: EthHdr,
    pub ip: Ipv4Hdr,
    pub udp: UdpHdr,
    pub vxlan: VxlanHdr,
}
const _: () = assert!(core::mem::size_of::<VxlanOuter>() == 50);
const _: () = assert!(core::mem::size_of::<EthHdr>() == ETH_HDR_LEN);
const _: () = assert!(core::mem::size_of::<Ipv4Hdr>() == IPV4_HDR_LEN);

/// ICMP "destination unreachable" header (RFC 792, RFC 1191 for `mtu`).
#[repr(C, packed)]
#[derive(Copy, Clone)]
pub struct IcmpUnreachHdr {
    pub kind: u8,
    pub code: u8,
    pub check_be: u16,
    pub _unused: u16,
    pub mtu_be: u16,
}

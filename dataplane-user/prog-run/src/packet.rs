//! Packets for fixtures: a builder for Ethernet/IPv4/TCP/UDP/ICMP/VXLAN
//! frames with correct checksums (and ways to make them wrong on purpose),
//! and a parser that checks the checksums of what a program produced.

use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::{
    Ethernet2Slice, Icmpv4Slice, Ipv4HeaderSlice, TcpHeaderSlice, TcpOptionElement, UdpHeaderSlice,
};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

pub type Mac = [u8; 6];

/// RFC 1071 checksum of `data` (odd length padded with a zero byte).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// TCP/UDP checksum of `segment` (its checksum field included as is) with
/// the IPv4 pseudo-header; a correct segment sums to 0.
pub fn l4_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    let mut acc = sum(&src.octets(), 0);
    acc = sum(&dst.octets(), acc);
    acc += u32::from(proto);
    acc += segment.len() as u32;
    !fold(sum(segment, acc))
}

/// The transport part of a [`PacketBuilder`].
#[derive(Debug, Clone)]
pub enum Transport {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        options: Vec<u8>,
    },
    Udp {
        sport: u16,
        dport: u16,
        no_checksum: bool,
    },
    /// ICMP echo request.
    IcmpEcho { id: u16, seq: u16 },
    /// Any other protocol, payload as given.
    Raw { proto: u8 },
}

/// An Ethernet + IPv4 frame under construction.
#[derive(Debug, Clone)]
pub struct PacketBuilder {
    pub eth_src: Mac,
    pub eth_dst: Mac,
    pub ethertype: u16,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub id: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// In 8-byte units.
    pub fragment_offset: u16,
    /// Raw IP options (padded to 4 bytes by the builder).
    pub ip_options: Vec<u8>,
    /// Overrides the IHL nibble (for malformed headers).
    pub ihl_override: Option<u8>,
    /// Overrides the total length (for malformed headers).
    pub tot_len_override: Option<u16>,
    pub transport: Transport,
    pub payload: Vec<u8>,
    /// Cut the finished frame to this many bytes (truncated packets).
    pub truncate: Option<usize>,
}

impl PacketBuilder {
    fn new(src: Ipv4Addr, dst: Ipv4Addr, transport: Transport) -> Self {
        PacketBuilder {
            eth_src: [0x02, 0, 0, 0, 0, 0xc1],
            eth_dst: [0x02, 0, 0, 0, 0, 0xa1],
            ethertype: ETH_P_IP,
            src,
            dst,
            ttl: 64,
            id: 0x1234,
            dont_fragment: true,
            more_fragments: false,
            fragment_offset: 0,
            ip_options: Vec::new(),
            ihl_override: None,
            tot_len_override: None,
            transport,
            payload: Vec::new(),
            truncate: None,
        }
    }

    /// A TCP segment (flags ACK by default).
    pub fn tcp(src: SocketAddrV4, dst: SocketAddrV4) -> Self {
        let t = Transport::Tcp {
            sport: src.port(),
            dport: dst.port(),
            seq: 1000,
            ack: 0,
            flags: TCP_ACK,
            options: Vec::new(),
        };
        Self::new(*src.ip(), *dst.ip(), t)
    }

    pub fn udp(src: SocketAddrV4, dst: SocketAddrV4) -> Self {
        Self::new(
            *src.ip(),
            *dst.ip(),
            Transport::Udp {
                sport: src.port(),
                dport: dst.port(),
                no_checksum: false,
            },
        )
    }

    pub fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Self::new(src, dst, Transport::IcmpEcho { id: 7, seq: 1 })
    }

    pub fn raw(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Self {
        Self::new(src, dst, Transport::Raw { proto })
    }

    pub fn macs(mut self, src: Mac, dst: Mac) -> Self {
        self.eth_src = src;
        self.eth_dst = dst;
        self
    }

    /// TCP flags (no-op for other transports).
    pub fn flags(mut self, new: u8) -> Self {
        if let Transport::Tcp { flags, .. } = &mut self.transport {
            *flags = new;
        }
        self
    }

    /// Add a TCP MSS option (kind 2, length 4), after a NOP to make the
    /// parser walk at least one other option.
    pub fn mss(mut self, mss: u16) -> Self {
        if let Transport::Tcp { options, .. } = &mut self.transport {
            options.push(1);
            options.extend_from_slice(&[2, 4]);
            options.extend_from_slice(&mss.to_be_bytes());
        }
        self
    }

    /// UDP without checksum (checksum field 0).
    pub fn no_udp_checksum(mut self) -> Self {
        if let Transport::Udp { no_checksum, .. } = &mut self.transport {
            *no_checksum = true;
        }
        self
    }

    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    pub fn ip_options(mut self, options: impl Into<Vec<u8>>) -> Self {
        self.ip_options = options.into();
        self
    }

    pub fn fragment(mut self, more_fragments: bool, offset_units: u16) -> Self {
        self.dont_fragment = false;
        self.more_fragments = more_fragments;
        self.fragment_offset = offset_units;
        self
    }

    pub fn ihl(mut self, ihl: u8) -> Self {
        self.ihl_override = Some(ihl);
        self
    }

    pub fn tot_len(mut self, len: u16) -> Self {
        self.tot_len_override = Some(len);
        self
    }

    pub fn truncate(mut self, len: usize) -> Self {
        self.truncate = Some(len);
        self
    }

    pub fn ethertype(mut self, ethertype: u16) -> Self {
        self.ethertype = ethertype;
        self
    }

    /// The IPv4 packet (no Ethernet header).
    pub fn ip_bytes(&self) -> Vec<u8> {
        let l4 = self.transport_bytes();
        let mut options = self.ip_options.clone();
        while !options.len().is_multiple_of(4) {
            options.push(0);
        }
        let hdr_len = 20 + options.len();
        let tot_len = self.tot_len_override.unwrap_or((hdr_len + l4.len()) as u16);
        let ihl = self.ihl_override.unwrap_or((hdr_len / 4) as u8);
        let mut frag = self.fragment_offset & 0x1fff;
        if self.dont_fragment {
            frag |= 0x4000;
        }
        if self.more_fragments {
            frag |= 0x2000;
        }
        let mut ip = Vec::with_capacity(hdr_len + l4.len());
        ip.push(0x40 | (ihl & 0x0f));
        ip.push(0);
        ip.extend_from_slice(&tot_len.to_be_bytes());
        ip.extend_from_slice(&self.id.to_be_bytes());
        ip.extend_from_slice(&frag.to_be_bytes());
        ip.push(self.ttl);
        ip.push(self.proto());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(&self.src.octets());
        ip.extend_from_slice(&self.dst.octets());
        ip.extend_from_slice(&options);
        let check = checksum(&ip[..hdr_len]);
        ip[10..12].copy_from_slice(&check.to_be_bytes());
        ip.extend_from_slice(&l4);
        ip
    }

    /// The whole Ethernet frame.
    pub fn build(&self) -> Vec<u8> {
        let mut frame = Vec::new();
        frame.extend_from_slice(&self.eth_dst);
        frame.extend_from_slice(&self.eth_src);
        frame.extend_from_slice(&self.ethertype.to_be_bytes());
        frame.extend_from_slice(&self.ip_bytes());
        if let Some(len) = self.truncate {
            frame.truncate(len);
        }
        frame
    }

    fn proto(&self) -> u8 {
        match &self.transport {
            Transport::Tcp { .. } => IPPROTO_TCP,
            Transport::Udp { .. } => IPPROTO_UDP,
            Transport::IcmpEcho { .. } => IPPROTO_ICMP,
            Transport::Raw { proto } => *proto,
        }
    }

    fn transport_bytes(&self) -> Vec<u8> {
        match &self.transport {
            Transport::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags,
                options,
            } => {
                let mut options = options.clone();
                while !options.len().is_multiple_of(4) {
                    options.push(1); // NOP padding before the data
                }
                let doff = (20 + options.len()) / 4;
                let mut t = Vec::new();
                t.extend_from_slice(&sport.to_be_bytes());
                t.extend_from_slice(&dport.to_be_bytes());
                t.extend_from_slice(&seq.to_be_bytes());
                t.extend_from_slice(&ack.to_be_bytes());
                t.push((doff as u8) << 4);
                t.push(*flags);
                t.extend_from_slice(&65535u16.to_be_bytes());
                t.extend_from_slice(&[0, 0, 0, 0]);
                t.extend_from_slice(&options);
                t.extend_from_slice(&self.payload);
                let check = l4_checksum(self.src, self.dst, IPPROTO_TCP, &t);
                t[16..18].copy_from_slice(&check.to_be_bytes());
                t
            }
            Transport::Udp {
                sport,
                dport,
                no_checksum,
            } => {
                let mut u = Vec::new();
                u.extend_from_slice(&sport.to_be_bytes());
                u.extend_from_slice(&dport.to_be_bytes());
                u.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                u.extend_from_slice(&[0, 0]);
                u.extend_from_slice(&self.payload);
                if !no_checksum {
                    let mut check = l4_checksum(self.src, self.dst, IPPROTO_UDP, &u);
                    if check == 0 {
                        check = 0xffff;
                    }
                    u[6..8].copy_from_slice(&check.to_be_bytes());
                }
                u
            }
            Transport::IcmpEcho { id, seq } => {
                let mut i = vec![8, 0, 0, 0];
                i.extend_from_slice(&id.to_be_bytes());
                i.extend_from_slice(&seq.to_be_bytes());
                i.extend_from_slice(&self.payload);
                let check = checksum(&i);
                i[2..4].copy_from_slice(&check.to_be_bytes());
                i
            }
            Transport::Raw { .. } => self.payload.clone(),
        }
    }
}

/// A VXLAN frame from `outer_src` to `outer_dst` (UDP `dport`) carrying
/// `inner` (a whole Ethernet frame). `flags` is the VXLAN flags byte
/// (0x08 for a valid header).
#[allow(clippy::too_many_arguments)]
pub fn vxlan_frame(
    eth_src: Mac,
    eth_dst: Mac,
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    vni: u32,
    inner: &[u8],
) -> Vec<u8> {
    let mut payload = vec![flags, 0, 0, 0];
    payload.extend_from_slice(&(vni << 8).to_be_bytes());
    payload.extend_from_slice(inner);
    PacketBuilder::udp(
        SocketAddrV4::new(outer_src, sport),
        SocketAddrV4::new(outer_dst, dport),
    )
    .no_udp_checksum()
    .macs(eth_src, eth_dst)
    .payload(payload)
    .build()
}

/// A parsed frame, with checksum verdicts.
#[derive(Debug, Clone)]
pub struct Frame {
    pub eth_dst: Mac,
    pub eth_src: Mac,
    pub ethertype: u16,
    pub ip: Option<Ip>,
}

#[derive(Debug, Clone)]
pub struct Ip {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    pub tot_len: u16,
    pub hdr_len: usize,
    pub frag: u16,
    pub header_checksum_ok: bool,
    pub l4: L4,
    /// Bytes after the IP header, up to `tot_len`.
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        mss: Option<u16>,
        checksum_ok: bool,
    },
    /// `checksum` is the raw field (0: none).
    Udp {
        sport: u16,
        dport: u16,
        len: u16,
        checksum: u16,
        checksum_ok: bool,
    },
    Icmp {
        kind: u8,
        code: u8,
        checksum_ok: bool,
        rest: [u8; 4],
    },
    Other,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot parse the output frame: {what}")]
pub struct ParseError {
    what: String,
}

fn short(what: impl std::fmt::Display) -> ParseError {
    ParseError {
        what: what.to_string(),
    }
}

/// Two ones' complement checksums are equal; 0x0000 and 0xffff are the two
/// forms of zero.
fn same_checksum(computed: u16, field: u16) -> bool {
    computed == field || matches!((computed, field), (0, 0xffff) | (0xffff, 0))
}

/// Parse an Ethernet frame with `etherparse` (a parser other than the
/// builder above, so a mistake in one is not mirrored in the other); for
/// IPv4, check every checksum.
pub fn parse(frame: &[u8]) -> Result<Frame, ParseError> {
    let eth = Ethernet2Slice::from_slice_without_fcs(frame)
        .map_err(|err| short(format_args!("Ethernet header: {err}")))?;
    let ethertype = eth.ether_type().0;
    let ip = if ethertype == ETH_P_IP {
        Some(parse_ip(eth.payload().payload)?)
    } else {
        None
    };
    Ok(Frame {
        eth_dst: eth.destination(),
        eth_src: eth.source(),
        ethertype,
        ip,
    })
}

fn parse_ip(b: &[u8]) -> Result<Ip, ParseError> {
    let header =
        Ipv4HeaderSlice::from_slice(b).map_err(|err| short(format_args!("IPv4 header: {err}")))?;
    let hdr_len = header.slice().len();
    let tot_len = header.total_len();
    if b.len() < usize::from(tot_len) || usize::from(tot_len) < hdr_len {
        return Err(short("IPv4 lengths inconsistent"));
    }
    let src = header.source_addr();
    let dst = header.destination_addr();
    let proto = header.protocol().0;
    let payload = b[hdr_len..usize::from(tot_len)].to_vec();
    let frag = (u16::from(header.dont_fragment()) << 14)
        | (u16::from(header.more_fragments()) << 13)
        | header.fragments_offset().value();
    let l4 = if header.fragments_offset().value() != 0 {
        L4::Other
    } else {
        parse_l4(src, dst, proto, &payload)?
    };
    Ok(Ip {
        src,
        dst,
        proto,
        ttl: header.ttl(),
        tot_len,
        hdr_len,
        frag,
        header_checksum_ok: same_checksum(
            header.to_header().calc_header_checksum(),
            header.header_checksum(),
        ),
        l4,
        payload,
    })
}

fn parse_l4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, p: &[u8]) -> Result<L4, ParseError> {
    Ok(match proto {
        IPPROTO_TCP => {
            let tcp = TcpHeaderSlice::from_slice(p)
                .map_err(|err| short(format_args!("TCP header: {err}")))?;
            let mss = tcp
                .options_iterator()
                .filter_map(|option| match option {
                    Ok(TcpOptionElement::MaximumSegmentSize(mss)) => Some(mss),
                    _ => None,
                })
                .last();
            let flags = [
                (tcp.fin(), TCP_FIN),
                (tcp.syn(), TCP_SYN),
                (tcp.rst(), TCP_RST),
                (tcp.psh(), TCP_PSH),
                (tcp.ack(), TCP_ACK),
                (tcp.urg(), 0x20),
                (tcp.ece(), 0x40),
                (tcp.cwr(), 0x80),
            ]
            .into_iter()
            .filter(|(set, _)| *set)
            .fold(0, |flags, (_, bit)| flags | bit);
            let checksum_ok = tcp
                .calc_checksum_ipv4_raw(src.octets(), dst.octets(), &p[tcp.slice().len()..])
                .is_ok_and(|computed| same_checksum(computed, tcp.checksum()));
            L4::Tcp {
                sport: tcp.source_port(),
                dport: tcp.destination_port(),
                flags,
                mss,
                checksum_ok,
            }
        }
        IPPROTO_UDP => {
            let udp = UdpHeaderSlice::from_slice(p)
                .map_err(|err| short(format_args!("UDP header: {err}")))?;
            let checksum = udp.checksum();
            let checksum_ok = checksum == 0
                || udp
                    .to_header()
                    .calc_checksum_ipv4_raw(src.octets(), dst.octets(), &p[udp.slice().len()..])
                    .is_ok_and(|computed| same_checksum(computed, checksum));
            L4::Udp {
                sport: udp.source_port(),
                dport: udp.destination_port(),
                len: udp.length(),
                checksum,
                checksum_ok,
            }
        }
        IPPROTO_ICMP => {
            let icmp = Icmpv4Slice::from_slice(p)
                .map_err(|err| short(format_args!("ICMP header: {err}")))?;
            L4::Icmp {
                kind: icmp.type_u8(),
                code: icmp.code_u8(),
                checksum_ok: same_checksum(
                    icmp.icmp_type().calc_checksum(icmp.payload()),
                    icmp.checksum(),
                ),
                rest: icmp.bytes5to8(),
            }
        }
        _ => L4::Other,
    })
}

/// A VXLAN frame taken apart: outer headers, VNI, inner frame bytes.
#[derive(Debug, Clone)]
pub struct Vxlan {
    pub outer: Frame,
    pub flags: u8,
    pub vni: u32,
    pub inner: Vec<u8>,
}

/// Take a VXLAN frame apart (outer IPv4 without options assumed).
pub fn parse_vxlan(frame: &[u8]) -> Result<Vxlan, ParseError> {
    let outer = parse(frame)?;
    let ip = outer
        .ip
        .as_ref()
        .ok_or_else(|| short("outer frame is not IPv4"))?;
    if !matches!(ip.l4, L4::Udp { .. }) || ip.payload.len() < 16 {
        return Err(short("outer packet is not UDP with a VXLAN header"));
    }
    let v = &ip.payload[8..];
    Ok(Vxlan {
        flags: v[0],
        vni: u32::from_be_bytes([v[4], v[5], v[6], v[7]]) >> 8,
        inner: v[8..].to_vec(),
        outer,
    })
}

//! ICMP fragmentation-needed (RFC 792 type 3 code 4, next-hop MTU per
//! RFC 1191) for packets too large to tunnel. Katran's
//! `send_icmp4_too_big` is the model: turn the packet itself into the
//! answer (quote its IP header and first 8 payload bytes) and bounce it.

use aya_ebpf::{
    bindings::bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    helpers::{bpf_skb_change_tail, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::{TcContext, XdpContext},
};
use hive_common::DropReason;

use crate::{
    csum,
    headers::{
        ETH_HDR_LEN, ETH_P_IP_BE, EthHdr, ICMP_HDR_LEN, IPPROTO_ICMP, IPV4_HDR_LEN, IcmpUnreachHdr,
        Ipv4Hdr,
    },
    packet::{Packet, TcPacket, XdpPacket},
    parse::Ipv4,
};

/// The quoted original: its (option-free) IPv4 header and 8 bytes of L4.
const QUOTE_LEN: usize = IPV4_HDR_LEN + 8;
/// What is put between the Ethernet header and the quote.
const PREFIX_LEN: usize = IPV4_HDR_LEN + ICMP_HDR_LEN;
/// Offsets in the answer.
const IP_OFF: usize = ETH_HDR_LEN;
const ICMP_OFF: usize = IP_OFF + IPV4_HDR_LEN;
const QUOTE_OFF: usize = ICMP_OFF + ICMP_HDR_LEN;

// Both program types resize the packet so that the quote is already where
// the answer needs it (offset 42), then write the three headers in front:
// no copy of the quote on the stack, which the verifier's 512-byte stack
// budget cannot afford on these paths.

/// Write the headers of the answer into a packet already laid out as
/// `[14 bytes: to be the Ethernet header][28 bytes: free][quote]`.
#[inline(always)]
fn fill<P: Packet>(
    pkt: &mut P,
    eth: &EthHdr,
    ip: &Ipv4,
    saddr_be: u32,
    mtu: u16,
) -> Result<(), DropReason> {
    pkt.store(
        0,
        &EthHdr {
            dst: eth.src,
            src: eth.dst,
            proto_be: ETH_P_IP_BE,
        },
    )?;
    let hdr = Ipv4Hdr::new(
        IPPROTO_ICMP,
        saddr_be,
        ip.saddr_be,
        (PREFIX_LEN + QUOTE_LEN) as u16,
        0,
    );
    pkt.store(IP_OFF, &hdr)?;
    let mut icmp = IcmpUnreachHdr {
        kind: 3,
        code: 4,
        check_be: 0,
        _unused: 0,
        mtu_be: mtu.to_be(),
    };
    let quote: [u16; QUOTE_LEN / 2] = pkt.load(QUOTE_OFF)?;
    // SAFETY: `IcmpUnreachHdr` is 8 packed bytes, read as four u16 words.
    let words: [u16; 4] = unsafe { core::ptr::read_unaligned((&raw const icmp).cast()) };
    icmp.check_be = !csum::fold(csum::sum_words(&words) + csum::sum_words(&quote));
    pkt.store(ICMP_OFF, &icmp)
}

/// Turn the XDP frame into an ICMP fragmentation-needed to its sender.
/// The caller returns `XDP_TX`. Not inlined, for the stack frame (see
/// `xdp::from_peer`).
#[inline(never)]
pub fn too_big_xdp(ctx: &XdpContext, ip: &Ipv4, saddr_be: u32, mtu: u16) -> Result<(), DropReason> {
    let mut pkt = XdpPacket { ctx };
    let eth: EthHdr = pkt.load(0)?;
    let len = (ctx.data_end() - ctx.data()) as i32;
    let keep = (ETH_HDR_LEN + QUOTE_LEN) as i32;
    // SAFETY: the helpers check their own bounds; packet pointers are
    // re-read from the context afterwards. Shrinking leaves
    // `[eth][quote]`, growing the head by 28 gives `[28][eth][quote]`.
    unsafe {
        if bpf_xdp_adjust_tail(ctx.ctx, keep - len) != 0
            || bpf_xdp_adjust_head(ctx.ctx, -(PREFIX_LEN as i32)) != 0
        {
            return Err(DropReason::HeadroomFailed);
        }
    }
    fill(&mut pkt, &eth, ip, saddr_be, mtu)
}

/// Turn the skb into an ICMP fragmentation-needed to its sender (tc). The
/// caller redirects it back out of the interface it came from.
#[inline(always)]
pub fn too_big_tc(ctx: &TcContext, ip: &Ipv4, saddr_be: u32, mtu: u16) -> Result<(), DropReason> {
    let mut pkt = TcPacket { ctx };
    let eth: EthHdr = pkt.load(0)?;
    // SAFETY: the helper validates the skb and the new length itself.
    // Trimming leaves `[eth][quote]`; room after the MAC header gives
    // `[eth][28][quote]`.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, (ETH_HDR_LEN + QUOTE_LEN) as u32, 0) } != 0 {
        return Err(DropReason::HeadroomFailed);
    }
    ctx.skb
        .adjust_room(PREFIX_LEN as i32, BPF_ADJ_ROOM_MAC, 0)
        .map_err(|_| DropReason::HeadroomFailed)?;
    fill(&mut pkt, &eth, ip, saddr_be, mtu)
}

//! VXLAN (RFC 7348) encapsulation and decapsulation.
//!
//! Outer headers: Ethernet (this node's NIC → the peer's MAC), IPv4 (this
//! node → the peer, DF set: hive never lets the underlay fragment, see
//! `docs/dataplane.md` "MTU"), UDP (source port from the flow hash so the
//! peer's RSS and any ECMP spread flows, RFC 7348 §5; checksum 0, allowed for
//! IPv4 by RFC 7348 §5 and RFC 768), VXLAN (I flag, VNI).

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::{
        BPF_F_ADJ_ROOM_ENCAP_L2_ETH, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L4_UDP,
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    },
    helpers::bpf_xdp_adjust_head,
    programs::{TcContext, XdpContext},
};
use hive_common::{DropReason, maps::NodeConfig};

use crate::{
    headers::{
        ETH_HDR_LEN, ETH_P_IP_BE, EthHdr, IP_DF, IPV4_HDR_LEN, Ipv4Hdr, UDP_HDR_LEN, UdpHdr,
        VXLAN_ENCAP_LEN, VXLAN_FLAG_DIRECT_RETURN, VXLAN_FLAG_I, VXLAN_FLAG_STEADY, VXLAN_HDR_LEN,
        VxlanHdr, VxlanOuter,
    },
    zeroed::zeroed_in,
};
use hive_common::maps::IPPROTO_UDP;

/// Where a tunnelled packet goes. `repr(C)`: in this order no run of zeroed
/// fields is long enough for LLVM to zero it with a call of the `memset`
/// subprogram ([`crate::zeroed`]).
#[repr(C)]
#[derive(Copy, Clone)]
pub struct Tunnel {
    pub node_be: u32,
    pub peer_mac: [u8; 6],
    /// Direct return (`docs/dsr.md`): the published port the client used
    /// (network order), carried in the VXLAN header; 0 for today's path.
    /// A field rather than padding, so that copies never move uninitialised
    /// bytes (the verifier rejects reading a register LLVM left undefined).
    pub direct_port_be: u16,
    pub vni: u32,
    /// Nothing for the peer to record of this packet ([`VXLAN_FLAG_STEADY`]): set by the
    /// ingress path, never by `tc`.
    pub steady: bool,
    /// Explicit, for the reason `direct_port_be` is a field; scalars, not a
    /// byte array, which LLVM zeroes with a call of `memset`.
    _pad0: u8,
    _pad1: u16,
}

impl Tunnel {
    #[inline(always)]
    pub fn new(node_be: u32, peer_mac: [u8; 6], vni: u32) -> Self {
        Tunnel {
            node_be,
            peer_mac,
            direct_port_be: 0,
            vni,
            steady: false,
            _pad0: 0,
            _pad1: 0,
        }
    }

    /// A tunnel not chosen yet, in `slot`: the out-parameter of the paths that may choose
    /// one (`tc::try_from_task`, on every packet a task sends), zeroed in place
    /// ([`zeroed_in`]: `Tunnel::default()` would be a `memset` call).
    #[inline(always)]
    pub fn unset_in(slot: &mut MaybeUninit<Tunnel>) -> &mut Tunnel {
        // SAFETY: every field is an integer, bytes or a bool: all zeros is valid.
        unsafe { zeroed_in(slot) }
    }

    /// The VXLAN header's flags byte for this packet.
    #[inline(always)]
    fn flags(&self) -> u8 {
        let mut flags = VXLAN_FLAG_I;
        if self.direct_port_be != 0 {
            flags |= VXLAN_FLAG_DIRECT_RETURN;
        }
        if self.steady {
            flags |= VXLAN_FLAG_STEADY;
        }
        flags
    }
}

/// UDP source port for a flow: in the dynamic range 49152–65535 (RFC 6335),
/// from the flow hash so a flow always uses the same one.
#[inline(always)]
pub fn source_port(hash: u32) -> u16 {
    49152 | (hash as u16 & 0x3fff)
}

/// This node's end of its tunnels: the outer headers' source.
#[derive(Copy, Clone)]
pub struct Local {
    pub mac: [u8; 6],
    pub addr_be: u32,
    /// The VXLAN port, the outer UDP destination (network order).
    pub port_be: u16,
}

impl Local {
    #[inline(always)]
    pub fn of(node: &NodeConfig) -> Self {
        Local {
            mac: node.underlay_mac,
            addr_be: node.underlay_addr_be,
            port_be: node.vxlan_port_be,
        }
    }
}

/// The outer headers for an inner IPv4 packet of `inner_ip_len` bytes.
#[inline(always)]
pub fn outer(node: &NodeConfig, tunnel: &Tunnel, inner_ip_len: u16, hash: u32) -> VxlanOuter {
    outer_from(&Local::of(node), tunnel, inner_ip_len, hash)
}

/// [`outer`] from `local`'s end of the tunnel.
#[inline(always)]
pub fn outer_from(local: &Local, tunnel: &Tunnel, inner_ip_len: u16, hash: u32) -> VxlanOuter {
    let udp_len = (UDP_HDR_LEN + VXLAN_HDR_LEN + ETH_HDR_LEN) as u16 + inner_ip_len;
    VxlanOuter {
        eth: EthHdr {
            dst: tunnel.peer_mac,
            src: local.mac,
            proto_be: ETH_P_IP_BE,
        },
        ip: Ipv4Hdr::new(
            IPPROTO_UDP,
            local.addr_be,
            tunnel.node_be,
            IPV4_HDR_LEN as u16 + udp_len,
            IP_DF,
        ),
        udp: UdpHdr {
            sport_be: source_port(hash).to_be(),
            dport_be: local.port_be,
            len_be: udp_len.to_be(),
            check_be: 0,
        },
        vxlan: VxlanHdr {
            flags: tunnel.flags(),
            // Memory order: byte 1 reserved, bytes 2-3 the port as on the wire.
            _reserved1: {
                let [hi, lo] = tunnel.direct_port_be.to_ne_bytes();
                [0, hi, lo]
            },
            vni_be: (tunnel.vni << 8).to_be(),
        },
    }
}

/// Prepend the outer headers to the frame (XDP). The old Ethernet header
/// stays as the inner one. Not inlined, for the stack frame (see
/// `xdp::from_peer`).
#[inline(never)]
pub fn encap_xdp(
    ctx: &XdpContext,
    node: &NodeConfig,
    tunnel: &Tunnel,
    inner_ip_len: u16,
    hash: u32,
) -> Result<(), DropReason> {
    push_outer_xdp(ctx, &outer(node, tunnel, inner_ip_len, hash))
}

/// Prepend `outer` to the frame (XDP), the core of [`encap_xdp`].
#[inline(always)]
pub fn push_outer_xdp(ctx: &XdpContext, outer: &VxlanOuter) -> Result<(), DropReason> {
    // SAFETY: the helper checks the headroom itself (XDP_PACKET_HEADROOM,
    // 256 bytes, is guaranteed by every driver with XDP support).
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(VXLAN_ENCAP_LEN as i32)) } != 0 {
        return Err(DropReason::HeadroomFailed);
    }
    let start = ctx.data();
    if start + VXLAN_ENCAP_LEN > ctx.data_end() {
        return Err(DropReason::HeadroomFailed);
    }
    // SAFETY: the 50 bytes at `start` are inside the packet (checked above).
    unsafe { core::ptr::write_unaligned(start as *mut VxlanOuter, *outer) };
    Ok(())
}

/// Strip the outer headers (XDP); the inner Ethernet frame starts at 0.
#[inline(always)]
pub fn decap_xdp(ctx: &XdpContext) -> Result<(), DropReason> {
    // SAFETY: the helper refuses to move data past data_end.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, VXLAN_ENCAP_LEN as i32) } != 0 {
        return Err(DropReason::HeadroomFailed);
    }
    Ok(())
}

/// Encapsulate an skb (tc). `bpf_skb_adjust_room` with the encap flags
/// (5.2+; `ENCAP_L2_ETH` 5.9+) inserts the room after the MAC header and
/// records the inner headers, so GSO and checksum offload of the inner
/// packet keep working through the tunnel. The original Ethernet header
/// (still at 0) is copied to become the inner one; then the outer headers
/// are written in front, one store each (no 64-byte copy on the stack).
#[inline(always)]
pub fn encap_tc(
    ctx: &TcContext,
    node: &NodeConfig,
    tunnel: &Tunnel,
    inner_ip_len: u16,
    hash: u32,
) -> Result<(), DropReason> {
    let failed = |_| DropReason::HeadroomFailed;
    let inner_eth: EthHdr = ctx.load(0).map_err(failed)?;
    let flags = u64::from(
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP | BPF_F_ADJ_ROOM_ENCAP_L2_ETH,
    ) | ((ETH_HDR_LEN as u64) << 56);
    ctx.skb
        .adjust_room(VXLAN_ENCAP_LEN as i32, BPF_ADJ_ROOM_MAC, flags)
        .map_err(failed)?;
    ctx.skb
        .store(VXLAN_ENCAP_LEN, &inner_eth, 0)
        .map_err(failed)?;
    let o = outer(node, tunnel, inner_ip_len, hash);
    ctx.skb.store(0, &o, 0).map_err(failed)
}

//! Bounds-checked header access. Every read goes through [`ptr_at`], which the
//! verifier can follow: it proves `offset + size_of::<T>() <= data_end`.

use aya_ebpf::programs::XdpContext;
use hive_common::DropReason;

pub const ETH_HDR_LEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;

/// The fixed part of an IPv4 header.
#[repr(C)]
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

/// A pointer to a `T` at `offset` bytes into the packet, if it fits.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, DropReason> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(DropReason::TruncatedPacket);
    }
    Ok((start + offset) as *const T)
}

/// The IPv4 header after the Ethernet header, `None` for other ethertypes.
#[inline(always)]
pub fn ipv4(ctx: &XdpContext) -> Result<Option<*const Ipv4Hdr>, DropReason> {
    let ethertype_be: *const u16 = ptr_at(ctx, 12)?;
    // SAFETY: `ptr_at` checked the two bytes lie inside the packet.
    if u16::from_be(unsafe { *ethertype_be }) != ETH_P_IP {
        return Ok(None);
    }
    let ip: *const Ipv4Hdr = ptr_at(ctx, ETH_HDR_LEN)?;
    // SAFETY: `ptr_at` checked the whole fixed header lies inside the packet.
    let hdr = unsafe { *ip };
    let ihl_bytes = usize::from(hdr.version_ihl & 0x0f) * 4;
    let total = usize::from(u16::from_be(hdr.tot_len_be));
    if hdr.version_ihl >> 4 != 4 || ihl_bytes < 20 || total < ihl_bytes {
        return Err(DropReason::MalformedIpv4);
    }
    if ctx.data() + ETH_HDR_LEN + total > ctx.data_end() {
        return Err(DropReason::MalformedIpv4);
    }
    Ok(Some(ip))
}

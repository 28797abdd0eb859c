//! One interface to packet bytes for both program types, so that parsing,
//! NAT and MSS clamping are written once.
//!
//! * XDP ([`XdpPacket`]): direct packet access with an explicit bounds check
//!   per access (what the verifier wants), checksums patched with RFC 1624
//!   arithmetic because XDP has no checksum helpers.
//! * tc ([`TcPacket`]): loads read the linear data in place when the bytes
//!   are there (headers almost always are) and fall back to
//!   `bpf_skb_load_bytes` (paged data); stores use `bpf_skb_store_bytes`
//!   (works on non-linear skbs without a pull) and `bpf_l3/l4_csum_replace`, which are
//!   the only correct way to edit an skb whose L4 checksum is
//!   `CHECKSUM_PARTIAL` (what a task's veth hands us: the field then holds
//!   the pseudo-header sum, and `BPF_F_PSEUDO_HDR` updates it the right way;
//!   `net/core/filter.c`, `inet_proto_csum_replace4`, since 4.1).

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    helpers::bpf_xdp_load_bytes,
    programs::{TcContext, XdpContext},
};
use hive_common::DropReason;

use crate::csum;

/// Largest offset any access uses (outer headers + inner headers + TCP
/// options). A constant bound lets the verifier prove the pointer
/// arithmetic of variable offsets (IHL, TCP option walk) safe.
const MAX_OFFSET: usize = 256;

/// Where the L4 checksum of the packet lives, and whether it is UDP's
/// (where 0 means "no checksum" and must stay 0, RFC 768).
#[derive(Copy, Clone)]
pub struct L4Csum {
    pub off: usize,
    pub udp: bool,
}

pub trait Packet {
    /// Bytes of the whole packet (skb->len for tc, may exceed the linear part).
    fn len(&self) -> usize;
    /// Copy a `T` out of the packet at `off`.
    fn load<T: Copy>(&self, off: usize) -> Result<T, DropReason>;
    /// One byte at a variable `off` (option walks). For XDP this goes
    /// through `bpf_xdp_load_bytes` (5.18+): LLVM turns the bounds check of a
    /// 1-byte direct access into `ptr >= data_end`, from which the verifier
    /// derives no readable range.
    fn load_byte(&self, off: usize) -> Result<u8, DropReason>;
    /// Copy `v` into the packet at `off`. Does not touch any checksum.
    fn store<T: Copy>(&mut self, off: usize, v: &T) -> Result<(), DropReason>;
    /// Replace an IPv4 address at `off` (`old` → `new`), updating the IPv4
    /// header checksum at `ip_csum_off` and, when given, the L4 checksum
    /// (addresses are part of the TCP/UDP pseudo-header).
    fn replace_addr(
        &mut self,
        off: usize,
        old: u32,
        new: u32,
        ip_csum_off: usize,
        l4: Option<L4Csum>,
    ) -> Result<(), DropReason>;
    /// Replace a 16-bit field covered only by the L4 checksum (port, MSS).
    /// The field may sit at an odd offset (an MSS option behind a NOP):
    /// every L4 header starts at an even offset (14 + 4 × IHL), so the
    /// parity of `off` is the parity within the checksummed data, and an odd
    /// field straddles two checksum words, contributing its bytes swapped.
    fn replace_l4_u16(
        &mut self,
        off: usize,
        old: u16,
        new: u16,
        l4: L4Csum,
    ) -> Result<(), DropReason>;
}

pub struct XdpPacket<'a> {
    pub ctx: &'a XdpContext,
}

impl XdpPacket<'_> {
    /// A pointer to `size` bytes at `off`, if they lie inside the packet.
    #[inline(always)]
    fn ptr(&self, off: usize, size: usize) -> Result<usize, DropReason> {
        if off > MAX_OFFSET {
            return Err(DropReason::TruncatedPacket);
        }
        let start = self.ctx.data();
        if start + off + size > self.ctx.data_end() {
            return Err(DropReason::TruncatedPacket);
        }
        Ok(start + off)
    }
}

impl Packet for XdpPacket<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.ctx.data_end() - self.ctx.data()
    }

    #[inline(always)]
    fn load<T: Copy>(&self, off: usize) -> Result<T, DropReason> {
        let p = self.ptr(off, core::mem::size_of::<T>())?;
        // SAFETY: `ptr` checked that size_of::<T>() bytes at `p` are inside
        // the packet; `read_unaligned` because packet offsets have no alignment.
        Ok(unsafe { core::ptr::read_unaligned(p as *const T) })
    }

    #[inline(always)]
    fn load_byte(&self, off: usize) -> Result<u8, DropReason> {
        let mut byte = 0u8;
        // SAFETY: the helper bounds-checks `off` against the packet and
        // writes exactly one byte to `byte`.
        let ret =
            unsafe { bpf_xdp_load_bytes(self.ctx.ctx, off as u32, (&raw mut byte).cast(), 1) };
        if ret != 0 {
            return Err(DropReason::TruncatedPacket);
        }
        Ok(byte)
    }

    #[inline(always)]
    fn store<T: Copy>(&mut self, off: usize, v: &T) -> Result<(), DropReason> {
        let p = self.ptr(off, core::mem::size_of::<T>())?;
        // SAFETY: as in `load`; XDP packet memory is writable.
        unsafe { core::ptr::write_unaligned(p as *mut T, *v) };
        Ok(())
    }

    #[inline(always)]
    fn replace_addr(
        &mut self,
        off: usize,
        old: u32,
        new: u32,
        ip_csum_off: usize,
        l4: Option<L4Csum>,
    ) -> Result<(), DropReason> {
        self.store(off, &new)?;
        let check: u16 = self.load(ip_csum_off)?;
        self.store(ip_csum_off, &csum::replace_u32(check, old, new))?;
        if let Some(l4) = l4 {
            let check: u16 = self.load(l4.off)?;
            if !(l4.udp && check == 0) {
                let mut updated = csum::replace_u32(check, old, new);
                if l4.udp && updated == 0 {
                    updated = 0xffff;
                }
                self.store(l4.off, &updated)?;
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn replace_l4_u16(
        &mut self,
        off: usize,
        old: u16,
        new: u16,
        l4: L4Csum,
    ) -> Result<(), DropReason> {
        self.store(off, &new)?;
        let (old, new) = csum_words(off, old, new);
        let check: u16 = self.load(l4.off)?;
        if !(l4.udp && check == 0) {
            let mut updated = csum::replace_u16(check, old, new);
            if l4.udp && updated == 0 {
                updated = 0xffff;
            }
            self.store(l4.off, &updated)?;
        }
        Ok(())
    }
}

pub struct TcPacket<'a> {
    pub ctx: &'a TcContext,
}

impl TcPacket<'_> {
    #[inline(always)]
    fn l4_flags(l4: L4Csum) -> u64 {
        if l4.udp {
            u64::from(BPF_F_MARK_MANGLED_0)
        } else {
            0
        }
    }
}

impl Packet for TcPacket<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.ctx.len() as usize
    }

    #[inline(always)]
    fn load<T: Copy>(&self, off: usize) -> Result<T, DropReason> {
        if off > MAX_OFFSET {
            return Err(DropReason::TruncatedPacket);
        }
        // Headers are almost always in the skb's linear part: read them in
        // place, as XDP does, instead of paying a helper call per load.
        let start = self.ctx.data();
        if start + off + core::mem::size_of::<T>() <= self.ctx.data_end() {
            // SAFETY: the bytes lie inside the linear data, checked just
            // above against `data_end`; `read_unaligned` because packet
            // offsets have no alignment.
            return Ok(unsafe { core::ptr::read_unaligned((start + off) as *const T) });
        }
        // Beyond the linear part: the helper also reads paged data.
        self.ctx.load(off).map_err(|_| DropReason::TruncatedPacket)
    }

    #[inline(always)]
    fn load_byte(&self, off: usize) -> Result<u8, DropReason> {
        // Through the helper, as XDP's: the option walk's variable offset
        // defeats the verifier's tracking of an in-place bounds check.
        if off > MAX_OFFSET {
            return Err(DropReason::TruncatedPacket);
        }
        self.ctx.load(off).map_err(|_| DropReason::TruncatedPacket)
    }

    #[inline(always)]
    fn store<T: Copy>(&mut self, off: usize, v: &T) -> Result<(), DropReason> {
        if off > MAX_OFFSET {
            return Err(DropReason::TruncatedPacket);
        }
        self.ctx
            .store(off, v, 0)
            .map_err(|_| DropReason::TruncatedPacket)
    }

    #[inline(always)]
    fn replace_addr(
        &mut self,
        off: usize,
        old: u32,
        new: u32,
        ip_csum_off: usize,
        l4: Option<L4Csum>,
    ) -> Result<(), DropReason> {
        // The L4 update goes first: it reads skb->ip_summed, which storing
        // the new address does not change, and both helpers only need the
        // old and new values, not the bytes in the packet.
        if let Some(l4) = l4 {
            let flags = Self::l4_flags(l4) | u64::from(BPF_F_PSEUDO_HDR) | 4;
            self.ctx
                .l4_csum_replace(l4.off, u64::from(old), u64::from(new), flags)
                .map_err(|_| DropReason::TruncatedPacket)?;
        }
        self.ctx
            .l3_csum_replace(ip_csum_off, u64::from(old), u64::from(new), 4)
            .map_err(|_| DropReason::TruncatedPacket)?;
        self.store(off, &new)
    }

    #[inline(always)]
    fn replace_l4_u16(
        &mut self,
        off: usize,
        old_value: u16,
        new_value: u16,
        l4: L4Csum,
    ) -> Result<(), DropReason> {
        let (old, new) = csum_words(off, old_value, new_value);
        self.ctx
            .l4_csum_replace(
                l4.off,
                u64::from(old),
                u64::from(new),
                Self::l4_flags(l4) | 2,
            )
            .map_err(|_| DropReason::TruncatedPacket)?;
        self.store(off, &new_value)
    }
}

/// The values a 16-bit field at `off` contributes to the checksum (see
/// [`Packet::replace_l4_u16`]).
#[inline(always)]
fn csum_words(off: usize, old: u16, new: u16) -> (u16, u16) {
    if off & 1 == 1 {
        (old.swap_bytes(), new.swap_bytes())
    } else {
        (old, new)
    }
}

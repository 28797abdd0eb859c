//! Internet checksum arithmetic (RFC 1071) and incremental updates
//! (RFC 1624). XDP has no checksum helpers, so the XDP paths patch
//! checksums with these; tc uses `bpf_l3/l4_csum_replace` instead because
//! only the helpers understand `CHECKSUM_PARTIAL` skbs (see `packet.rs`).
//!
//! All values are raw memory words (network byte order read natively): the
//! one's-complement sum is invariant under byte swapping, so no conversion is
//! needed as long as every operand is read the same way.

/// Fold a 32-bit one's-complement accumulator into 16 bits.
#[inline(always)]
pub fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')` for one 16-bit word.
#[inline(always)]
pub fn replace_u16(check: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!check) + u32::from(!old) + u32::from(new);
    !fold(sum)
}

/// [`replace_u16`] for a 32-bit field (both of its words).
#[inline(always)]
pub fn replace_u32(check: u16, old: u32, new: u32) -> u16 {
    let sum = u32::from(!check)
        + u32::from(!(old as u16))
        + u32::from(!((old >> 16) as u16))
        + u32::from(new as u16)
        + u32::from((new >> 16) as u16);
    !fold(sum)
}

/// One's-complement sum of `N` 16-bit words (not folded, not inverted).
#[inline(always)]
pub fn sum_words<const N: usize>(words: &[u16; N]) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    // Bounded by the const N; unrolled by LLVM, so the verifier sees no loop.
    while i < N {
        sum += u32::from(words[i]);
        i += 1;
    }
    sum
}

//! Zeroing without `memset`. BPF has no inline `memset` in this build: LLVM turns a
//! zeroed run of bytes (a `Default` struct, `mem::zeroed`, an array literal, or zeroing
//! a value and moving it) into a call of a byte-loop `memset` subprogram, about 10 ns a
//! call plus the loop. On a per-packet path that is a measurable share (`docs/dsr.md`,
//! "What is left for the connection target", item 6).

use core::{mem::MaybeUninit, ptr::write_volatile};

/// `slot` zeroed in place, word by word, with volatile stores LLVM does not turn back
/// into a `memset` call; the value stays where the caller keeps it (moving it out would
/// bring the call back).
///
/// # Safety
///
/// All zeros must be a valid value of `T` (integers, byte arrays, `false`, and structs
/// and unions of them).
#[inline(always)]
pub unsafe fn zeroed_in<T>(slot: &mut MaybeUninit<T>) -> &mut T {
    const {
        assert!(
            size_of::<T>().is_multiple_of(size_of::<u32>()) && align_of::<T>() >= align_of::<u32>()
        )
    };
    let words = slot.as_mut_ptr() as *mut u32;
    for i in 0..size_of::<T>() / size_of::<u32>() {
        // SAFETY: `T` is whole words long and word-aligned (asserted above), so each
        // pointer is within the slot and aligned.
        unsafe { write_volatile(words.add(i), 0) };
    }
    // SAFETY: every byte is written, and the caller vouches that zeros are a `T`.
    unsafe { slot.assume_init_mut() }
}

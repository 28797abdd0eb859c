//! Fixed-width base-36 text for byte strings, as SwarmKit prints join tokens and IDs.
//!
//! SwarmKit formats a big integer with Go's `big.Int.Text(36)` (digits `0-9a-z`) and left-pads it
//! with `0`. We do the same on big-endian byte arrays with schoolbook division; the inputs are at
//! most 32 bytes, so the quadratic cost does not matter. This is text encoding, not crypto.

/// The 36 digits in order, lowercase like Go's `big.Int.Text(36)`.
const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Encodes `bytes` (a big-endian unsigned integer) in base 36, left-padded with `0` to `width`.
///
/// A value that needs more than `width` digits is returned in full; callers pick widths that
/// fit their input size (25 for 16 bytes, 50 for 32 bytes).
pub(crate) fn encode(bytes: &[u8], width: usize) -> String {
    let mut number = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    while number.iter().any(|&b| b != 0) {
        let mut remainder: u32 = 0;
        for byte in number.iter_mut() {
            let acc = (remainder << 8) | u32::from(*byte);
            // remainder < 36, so acc < 36 * 256 and the quotient fits a byte.
            *byte = (acc / 36) as u8;
            remainder = acc % 36;
        }
        digits.push(DIGITS[remainder as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    digits.into_iter().map(char::from).collect()
}

/// Why a base-36 string could not be turned into `N` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// A character outside `0-9a-z` (case-insensitive).
    InvalidChar(char),
    /// The value does not fit in `N` bytes.
    Overflow,
}

/// Decodes base-36 text (case-insensitive, as Go's `SetString`) into a big-endian `N`-byte array.
pub(crate) fn decode<const N: usize>(text: &str) -> Result<[u8; N], DecodeError> {
    let mut number = [0u8; N];
    for c in text.chars() {
        let digit = c.to_digit(36).ok_or(DecodeError::InvalidChar(c))?;
        // number = number * 36 + digit, from the least significant byte up.
        let mut carry = digit;
        for byte in number.iter_mut().rev() {
            let acc = u32::from(*byte) * 36 + carry;
            *byte = (acc & 0xff) as u8;
            carry = acc >> 8;
        }
        if carry != 0 {
            return Err(DecodeError::Overflow);
        }
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_all_padding() {
        assert_eq!(encode(&[0; 16], 25), "0".repeat(25));
    }

    #[test]
    fn small_values_match_go_big_int_text() {
        assert_eq!(encode(&[35], 3), "00z");
        assert_eq!(encode(&[36], 3), "010");
        assert_eq!(encode(&[0x01, 0x00], 1), "74"); // 256 = 7*36 + 4
    }

    #[test]
    fn max_values_fit_swarmkit_widths() {
        // ceil(log36(2^128)) = 25 and ceil(log36(2^256)) = 50: SwarmKit's widths.
        assert_eq!(encode(&[0xff; 16], 25).len(), 25);
        assert_eq!(encode(&[0xff; 32], 50).len(), 50);
    }

    #[test]
    fn round_trip_and_case_insensitive() {
        let bytes: [u8; 32] = core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
        let text = encode(&bytes, 50);
        assert_eq!(decode::<32>(&text), Ok(bytes));
        assert_eq!(decode::<32>(&text.to_uppercase()), Ok(bytes));
    }

    #[test]
    fn rejects_bad_chars_and_overflow() {
        assert_eq!(decode::<16>("12-3"), Err(DecodeError::InvalidChar('-')));
        assert_eq!(decode::<16>(&"z".repeat(25)), Err(DecodeError::Overflow));
    }
}

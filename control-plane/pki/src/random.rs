//! Randomness from the operating system's CSPRNG, for token secrets, IDs and serial numbers.

use super::base36;

/// The operating system could not give us random bytes.
#[derive(Debug, thiserror::Error)]
#[error(
    "could not read random bytes from the operating system ({source}); check that /dev/urandom or getrandom(2) is available"
)]
pub struct RandomError {
    source: getrandom::Error,
}

/// Bytes of entropy in an ID or a join-token secret: 128 bits, as SwarmKit
/// (`generatedSecretEntropyBytes = 16`).
const ID_ENTROPY_BYTES: usize = 16;

/// Base-36 characters needed for 128 bits: ceil(log36(2^128)) = 25, as SwarmKit.
pub(crate) const ID_LEN: usize = 25;

/// Fills an `N`-byte array from the OS CSPRNG.
pub fn bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|source| RandomError { source })?;
    Ok(out)
}

/// A new random identifier in SwarmKit's shape: 128 random bits as 25 base-36 characters
/// (e.g. `dw02poa4vqvzxi5c10gm4pq2g`). Used for node IDs, cluster IDs and token secrets.
///
/// The result is a valid DNS label, which matters because a node ID is also a SAN of its
/// certificate.
pub fn random_id() -> Result<String, RandomError> {
    Ok(base36::encode(&bytes::<ID_ENTROPY_BYTES>()?, ID_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_swarmkit_shape_and_differ() {
        let a = random_id().unwrap();
        let b = random_id().unwrap();
        assert_eq!(a.len(), ID_LEN);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        );
        assert_ne!(a, b);
    }
}

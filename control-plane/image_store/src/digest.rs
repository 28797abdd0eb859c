//! Content digests (`sha256:<64 hex>`), the names of everything in the image store.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A SHA-256 content digest. Only SHA-256 is accepted: it is what registries, `docker save`
/// and OCI layouts use, and the store verifies every blob against it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    /// 64 lowercase hex digits.
    hex: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// docker's `ErrDigestInvalidFormat`.
    #[error("invalid checksum digest format")]
    Format,
    /// docker's `ErrDigestUnsupported`.
    #[error("unsupported digest algorithm")]
    Algorithm,
    /// docker's `ErrDigestInvalidLength`.
    #[error("invalid checksum digest length")]
    Length,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// The digest a finished hasher computed.
    pub fn from_hasher(hasher: Sha256) -> Self {
        let hash = hasher.finalize();
        let mut hex = String::with_capacity(64);
        for byte in hash {
            use fmt::Write as _;
            let _ = write!(hex, "{byte:02x}");
        }
        Self { hex }
    }

    /// The 64 hex digits, without `sha256:`.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, as `docker image ls` shows an image ID.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    /// Parses `algorithm:hex` as docker's `digest.Parse` does.
    fn from_str(text: &str) -> Result<Self, DigestError> {
        let (algorithm, hex) = text.split_once(':').ok_or(DigestError::Format)?;
        if algorithm.is_empty() || hex.is_empty() {
            return Err(DigestError::Format);
        }
        if !algorithm
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
        {
            return Err(DigestError::Format);
        }
        if algorithm != "sha256" {
            return Err(DigestError::Algorithm);
        }
        if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(DigestError::Format);
        }
        if hex.len() != 64 {
            return Err(DigestError::Length);
        }
        if hex.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(DigestError::Format);
        }
        Ok(Self {
            hex: hex.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_and_print() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert_eq!(d.short(), "e3b0c44298fc");
        assert_eq!("sha256".parse::<Digest>(), Err(DigestError::Format));
        assert_eq!("sha256:abc".parse::<Digest>(), Err(DigestError::Length));
        assert_eq!("sha512:abc".parse::<Digest>(), Err(DigestError::Algorithm));
        assert_eq!(
            format!("sha256:{}", "g".repeat(64)).parse::<Digest>(),
            Err(DigestError::Format)
        );
    }
}

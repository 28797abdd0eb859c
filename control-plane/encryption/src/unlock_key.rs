//! The unlock key of an autolocked swarm, in Swarm's human-readable form:
//! `SWMKEY-1-` followed by the unpadded standard base64 of 32 random bytes (SwarmKit
//! `encryption.HumanReadableKey`).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;

use super::aead::{AeadError, KEY_LEN, Key};

/// The prefix of every unlock key.
pub const PREFIX: &str = "SWMKEY-1-";

/// Why a string is not an unlock key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid unlock key: an unlock key looks like SWMKEY-1-<43 base64 characters>")]
pub struct BadUnlockKey;

/// An unlock key. Displays as `SWMKEY-1-…`; its Debug form hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct UnlockKey(Key);

impl fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnlockKey(..)")
    }
}

impl UnlockKey {
    /// A new random unlock key.
    pub fn generate() -> Result<Self, AeadError> {
        Key::generate().map(Self)
    }

    pub fn key(&self) -> &Key {
        &self.0
    }
}

impl fmt::Display for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", STANDARD_NO_PAD.encode(self.0.as_bytes()))
    }
}

impl FromStr for UnlockKey {
    type Err = BadUnlockKey;

    fn from_str(text: &str) -> Result<Self, BadUnlockKey> {
        let encoded = text.trim().strip_prefix(PREFIX).ok_or(BadUnlockKey)?;
        let bytes = STANDARD_NO_PAD.decode(encoded).map_err(|_| BadUnlockKey)?;
        let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| BadUnlockKey)?;
        Ok(Self(Key::from_bytes(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_swarm_form() {
        let key = UnlockKey::generate().unwrap();
        let text = key.to_string();
        assert!(text.starts_with("SWMKEY-1-"));
        assert_eq!(text.len(), PREFIX.len() + 43, "32 bytes, unpadded base64");
        assert_eq!(text.parse::<UnlockKey>().unwrap(), key);
        assert_eq!(format!(" {text}\n").parse::<UnlockKey>().unwrap(), key);
        assert!(!format!("{key:?}").contains(&text[PREFIX.len()..]));
    }

    #[test]
    fn parses_docker_keys_and_refuses_others() {
        // The example of Docker's documentation.
        let docker = "SWMKEY-1-WuYH/IX284+lRcXuoVf38viIDK3HJEKY13MIHX+tTt8";
        assert_eq!(docker.parse::<UnlockKey>().unwrap().to_string(), docker);
        for bad in [
            "",
            "SWMKEY-1-",
            "SWMKEY-2-WuYH/IX284+lRcXuoVf38viIDK3HJEKY13MIHX+tTt8",
            "SWMKEY-1-WuYH/IX284+lRcXuoVf38viIDK3HJEKY13MIHX+tT",
            "SWMKEY-1-WuYH/IX284+lRcXuoVf38viIDK3HJEKY13MIHX+tTt8=",
            "SWMTKN-1-abc",
        ] {
            assert_eq!(bad.parse::<UnlockKey>(), Err(BadUnlockKey), "{bad:?}");
        }
    }
}

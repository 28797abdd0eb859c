//! A manager's TLS private key sealed with its key-encryption key while autolock is on, as
//! SwarmKit keeps `swarm-node.key` encrypted with the unlock key (docs/encryption.md).
//!
//! ```text
//! -----BEGIN HIVE SEALED NODE KEY-----
//! <base64 of: salt (16 bytes) ‖ nonce ‖ ChaCha20-Poly1305(PKCS#8 PEM of the key) ‖ tag>
//! -----END HIVE SEALED NODE KEY-----
//! ```
//!
//! The sealing key is HKDF-SHA256(KEK, salt, a fixed `info`), the same derivation as the one
//! that turns an unlock key into the key wrapping the KEK, with another `info`: the two keys
//! are never the same. The label is deliberately not `ENCRYPTED PRIVATE KEY`: the body is not
//! PKCS#8's encrypted form, and no tool should try to read it as such.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::aead::{AeadError, Key};

/// The PEM label of a sealed node key.
pub const LABEL: &str = "HIVE SEALED NODE KEY";
const BEGIN: &str = "-----BEGIN HIVE SEALED NODE KEY-----";
const END: &str = "-----END HIVE SEALED NODE KEY-----";
/// HKDF `info` of the key that a KEK seals the node's TLS key with.
const SEAL_INFO: &str = "hive manager KEK seals the node TLS key v1";
const SALT_LEN: usize = 16;
/// Base64 characters per PEM line (RFC 7468).
const LINE: usize = 64;

/// Why a sealed node key cannot be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealedKeyError {
    /// Not the sealed form, or its base64 is damaged.
    #[error("it is not a sealed node key ({0})")]
    Format(&'static str),
    /// The key does not open it: another manager's KEK, or a changed byte.
    #[error("it does not open with this manager's key-encryption key (wrong key, or damaged)")]
    Open,
    #[error(transparent)]
    Crypto(#[from] AeadError),
}

/// Whether `text` (the content of `swarm-node.key`) is the sealed form.
pub fn is_sealed(text: &str) -> bool {
    text.trim_start().starts_with(BEGIN)
}

/// `pem` (the node key as PKCS#8 PEM) sealed with a key derived from `kek`.
pub fn seal(kek: &Key, pem: &str) -> Result<String, AeadError> {
    let salt = Key::generate()?;
    let salt = &salt.as_bytes()[..SALT_LEN];
    let sealed = kek
        .derive(salt, SEAL_INFO.as_bytes())?
        .seal(pem.as_bytes())?;
    let mut body = salt.to_vec();
    body.extend_from_slice(&sealed);
    let encoded = STANDARD.encode(body);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / LINE + 80);
    out.push_str(BEGIN);
    out.push('\n');
    for line in encoded.as_bytes().chunks(LINE) {
        // Base64 is ASCII: every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(END);
    out.push('\n');
    Ok(out)
}

/// The PKCS#8 PEM that [`seal`] sealed with `kek`.
pub fn open(kek: &Key, text: &str) -> Result<String, SealedKeyError> {
    let body = text
        .trim()
        .strip_prefix(BEGIN)
        .and_then(|rest| rest.strip_suffix(END))
        .ok_or(SealedKeyError::Format("no HIVE SEALED NODE KEY block"))?;
    let encoded: String = body.split_whitespace().collect();
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|_| SealedKeyError::Format("bad base64"))?;
    if bytes.len() < SALT_LEN {
        return Err(SealedKeyError::Format("too short"));
    }
    let (salt, sealed) = bytes.split_at(SALT_LEN);
    let plain = kek
        .derive(salt, SEAL_INFO.as_bytes())?
        .open(sealed)
        .map_err(|_| SealedKeyError::Open)?;
    String::from_utf8(plain).map_err(|_| SealedKeyError::Format("the key inside is not text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";

    #[test]
    fn sealed_keys_open_only_with_their_kek_and_show_nothing() {
        let kek = Key::generate().unwrap();
        let sealed = seal(&kek, PEM).unwrap();
        assert!(is_sealed(&sealed));
        assert!(!is_sealed(PEM));
        assert!(!sealed.contains("PRIVATE KEY"), "{sealed}");
        assert!(!sealed.contains("MIGHAgEAMBMG"), "{sealed}");
        assert!(sealed.lines().all(|l| l.len() <= LINE), "{sealed}");
        assert_eq!(open(&kek, &sealed).unwrap(), PEM);
        // A fresh salt and nonce each time.
        assert_ne!(seal(&kek, PEM).unwrap(), sealed);

        let other = Key::generate().unwrap();
        assert_eq!(open(&other, &sealed), Err(SealedKeyError::Open));
        assert_eq!(
            open(&kek, PEM),
            Err(SealedKeyError::Format("no HIVE SEALED NODE KEY block"))
        );
    }

    #[test]
    fn a_changed_byte_is_refused() {
        let kek = Key::generate().unwrap();
        let sealed = seal(&kek, PEM).unwrap();
        let mut lines: Vec<String> = sealed.lines().map(str::to_owned).collect();
        let body = &mut lines[1];
        let flipped = if body.ends_with('A') { 'B' } else { 'A' };
        body.pop();
        body.push(flipped);
        let damaged = lines.join("\n");
        assert!(matches!(
            open(&kek, &damaged),
            Err(SealedKeyError::Open | SealedKeyError::Format(_))
        ));
    }
}

//! Sealing and opening bytes with a 256-bit key: ring's ChaCha20-Poly1305 AEAD, a fresh random
//! 96-bit nonce per message, stored in front of the ciphertext (`nonce ‖ ciphertext ‖ tag`).
//!
//! Random nonces are safe for far more messages than a manager writes in its life (the chance
//! of a repeat after 2^32 messages under one key is about 2^-33); see docs/encryption.md.

use std::fmt;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom as _, SystemRandom};

/// Bytes of a key.
pub const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AeadError {
    #[error("the system's random number generator failed")]
    Random,
    #[error("the data cannot be decrypted with this key (wrong key, or damaged data)")]
    Open,
}

/// A 256-bit symmetric key. Its bytes are never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A new random key.
    pub fn generate() -> Result<Self, AeadError> {
        let mut bytes = [0; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| AeadError::Random)?;
        Ok(Self(bytes))
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A key derived from this one with HKDF-SHA256 (`salt`, `info`): how an unlock key
    /// becomes the key that wraps the key-encryption key.
    pub fn derive(&self, salt: &[u8], info: &[u8]) -> Result<Key, AeadError> {
        let info = [info];
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&self.0);
        let okm = prk
            .expand(&info, &CHACHA20_POLY1305)
            .map_err(|_| AeadError::Random)?;
        let mut bytes = [0; KEY_LEN];
        okm.fill(&mut bytes).map_err(|_| AeadError::Random)?;
        Ok(Key(bytes))
    }

    fn aead(&self) -> Result<LessSafeKey, AeadError> {
        // CHACHA20_POLY1305 takes exactly KEY_LEN bytes; ring refuses nothing else.
        UnboundKey::new(&CHACHA20_POLY1305, &self.0)
            .map(LessSafeKey::new)
            .map_err(|_| AeadError::Open)
    }

    /// `nonce ‖ ciphertext ‖ tag` of `plaintext`.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, AeadError> {
        let mut nonce = [0; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| AeadError::Random)?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + CHACHA20_POLY1305.tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .aead()?
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| AeadError::Random)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// The plaintext of what [`Key::seal`] produced; fails if the key is wrong or a byte changed.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, AeadError> {
        if sealed.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return Err(AeadError::Open);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| AeadError::Open)?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .aead()?
            .open_in_place(nonce, Aad::empty(), &mut buffer)
            .map_err(|_| AeadError::Open)?
            .len();
        buffer.truncate(plain);
        Ok(buffer)
    }
}

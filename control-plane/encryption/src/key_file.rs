//! The manager's store keys on disk, beside its TLS key:
//! `<data-dir>/certificates/swarm-raft-keys.json` (0600).
//!
//! ```text
//! {"version":1,
//!  "dek":"<base64 of the DEK sealed with the KEK>",
//!  "kek":{"plain":"<base64 KEK>"}                                  (not autolocked)
//!     or {"locked":{"salt":"<base64>","sealed":"<base64 KEK sealed with HKDF(unlock key, salt)>"}}}
//! ```
//!
//! The file is replaced atomically (temporary file, fsync, rename, fsync of the directory).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::aead::{AeadError, KEY_LEN, Key};
use super::unlock_key::UnlockKey;
use crate::private_file;

/// The node's certificates directory under the data dir, which the key file shares with the
/// PKI's files (the PKI's `CertDir` re-exports it).
pub const CERTIFICATES_DIR: &str = "certificates";
/// File name, in the certificates directory.
pub const KEY_FILE: &str = "swarm-raft-keys.json";
const VERSION: u32 = 1;
/// HKDF `info` of the key that an unlock key wraps the KEK with.
const WRAP_INFO: &[u8] = b"hive swarm unlock key wraps the raft KEK v1";
const SALT_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} is damaged ({reason}); restore it from a backup, or leave the swarm and join again",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
    /// The KEK is wrapped with an unlock key and none (or a wrong one) was given.
    #[error("swarm could not be unlocked: invalid key provided")]
    WrongKey,
    #[error(transparent)]
    Crypto(#[from] AeadError),
    #[error(transparent)]
    Write(#[from] private_file::FileError),
}

/// A manager's keys, in memory: the DEK encrypts the store, the KEK wraps the DEK. During a
/// rotation the DEK it replaces is kept too, until every value is re-sealed.
#[derive(Debug, Clone)]
pub struct StoreKeys {
    pub dek: Key,
    pub kek: Key,
    pub previous_dek: Option<Key>,
}

impl StoreKeys {
    pub fn generate() -> Result<Self, AeadError> {
        Ok(Self {
            dek: Key::generate()?,
            kek: Key::generate()?,
            previous_dek: None,
        })
    }

    /// New keys replacing these: a new DEK and KEK, with this DEK kept as the previous one.
    /// Whoever knew the old keys (a copy of the key file from before autolock) cannot open
    /// what the new DEK seals.
    pub fn rotated(&self) -> Result<Self, AeadError> {
        Ok(Self {
            previous_dek: Some(self.dek.clone()),
            ..Self::generate()?
        })
    }

    /// These keys once the rotation is complete.
    pub fn without_previous(self) -> Self {
        Self {
            previous_dek: None,
            ..self
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kek {
    Plain(String),
    Locked { salt: String, sealed: String },
}

/// The file as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    version: u32,
    dek: String,
    kek: Kek,
    /// The DEK being rotated away (sealed with the KEK), while values sealed with it remain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_dek: Option<String>,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(CERTIFICATES_DIR).join(KEY_FILE)
}

fn wrapping_key(unlock: &UnlockKey, salt: &[u8]) -> Result<Key, AeadError> {
    unlock.key().derive(salt, WRAP_INFO)
}

impl KeyFile {
    /// `keys` as stored: the KEK in the clear, or wrapped with `unlock`.
    pub fn wrap(keys: &StoreKeys, unlock: Option<&UnlockKey>) -> Result<Self, AeadError> {
        let kek = match unlock {
            None => Kek::Plain(STANDARD.encode(keys.kek.as_bytes())),
            Some(unlock) => {
                let salt = Key::generate()?;
                let salt = &salt.as_bytes()[..SALT_LEN];
                let sealed = wrapping_key(unlock, salt)?.seal(keys.kek.as_bytes())?;
                Kek::Locked {
                    salt: STANDARD.encode(salt),
                    sealed: STANDARD.encode(sealed),
                }
            }
        };
        let previous_dek = keys
            .previous_dek
            .as_ref()
            .map(|previous| keys.kek.seal(previous.as_bytes()))
            .transpose()?
            .map(|sealed| STANDARD.encode(sealed));
        Ok(Self {
            version: VERSION,
            dek: STANDARD.encode(keys.kek.seal(keys.dek.as_bytes())?),
            kek,
            previous_dek,
        })
    }

    /// Whether an unlock key is needed to read the keys.
    pub fn is_locked(&self) -> bool {
        matches!(self.kek, Kek::Locked { .. })
    }

    /// The keys, with `unlock` if the file is locked. A wrong or missing key is
    /// [`KeyFileError::WrongKey`].
    pub fn unwrap_keys(&self, unlock: Option<&UnlockKey>) -> Result<StoreKeys, KeyFileError> {
        let corrupt = |reason: &str| KeyFileError::Corrupt {
            path: PathBuf::from(KEY_FILE),
            reason: reason.to_owned(),
        };
        let decode = |text: &str| STANDARD.decode(text).map_err(|_| corrupt("bad base64"));
        let to_key = |bytes: Vec<u8>| -> Result<Key, KeyFileError> {
            let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| corrupt("bad key length"))?;
            Ok(Key::from_bytes(bytes))
        };
        let kek = match (&self.kek, unlock) {
            (Kek::Plain(kek), _) => to_key(decode(kek)?)?,
            (Kek::Locked { .. }, None) => return Err(KeyFileError::WrongKey),
            (Kek::Locked { salt, sealed }, Some(unlock)) => {
                let wrapping = wrapping_key(unlock, &decode(salt)?)?;
                to_key(
                    wrapping
                        .open(&decode(sealed)?)
                        .map_err(|_| KeyFileError::WrongKey)?,
                )?
            }
        };
        let open_dek = |sealed: &str| -> Result<Key, KeyFileError> {
            let dek = kek
                .open(&decode(sealed)?)
                .map_err(|_| corrupt("the data key does not open with the key-encryption key"))?;
            to_key(dek)
        };
        Ok(StoreKeys {
            dek: open_dek(&self.dek)?,
            previous_dek: self.previous_dek.as_deref().map(open_dek).transpose()?,
            kek,
        })
    }

    /// Reads the file of `data_dir`; `None` if there is none.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, KeyFileError> {
        let path = path(data_dir);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(KeyFileError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        let file: Self = serde_json::from_slice(&text).map_err(|e| KeyFileError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if file.version != VERSION {
            return Err(KeyFileError::Corrupt {
                path,
                reason: format!("version {} is not {VERSION}", file.version),
            });
        }
        Ok(Some(file))
    }

    /// Replaces the file of `data_dir` with this one, atomically and privately.
    pub fn save(&self, data_dir: &Path) -> Result<(), KeyFileError> {
        let path = path(data_dir);
        let bytes = serde_json::to_vec(self).map_err(|e| KeyFileError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(private_file::write(&path, &bytes)?)
    }

    /// Removes the file of `data_dir` (leaving the swarm, or no longer a manager).
    pub fn remove(data_dir: &Path) -> Result<(), KeyFileError> {
        Ok(private_file::remove(&path(data_dir))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlocked_keys_round_trip_without_a_key() {
        let keys = StoreKeys::generate().unwrap();
        let file = KeyFile::wrap(&keys, None).unwrap();
        assert!(!file.is_locked());
        let back = file.unwrap_keys(None).unwrap();
        assert_eq!(back.dek, keys.dek);
        assert_eq!(back.kek, keys.kek);
    }

    #[test]
    fn a_rotation_keeps_the_previous_dek_until_it_is_done() {
        let keys = StoreKeys::generate().unwrap();
        let unlock = UnlockKey::generate().unwrap();
        let rotated = keys.rotated().unwrap();
        assert_ne!(rotated.dek, keys.dek);
        assert_ne!(rotated.kek, keys.kek);
        let file = KeyFile::wrap(&rotated, Some(&unlock)).unwrap();
        let text = serde_json::to_string(&file).unwrap();
        assert!(text.contains("previous_dek"), "{text}");
        assert!(
            !text.contains(&STANDARD.encode(keys.dek.as_bytes())),
            "{text}"
        );
        let back = file.unwrap_keys(Some(&unlock)).unwrap();
        assert_eq!(back.previous_dek, Some(keys.dek));
        assert_eq!(back.dek, rotated.dek);
        let done = KeyFile::wrap(&back.without_previous(), Some(&unlock)).unwrap();
        assert!(
            !serde_json::to_string(&done)
                .unwrap()
                .contains("previous_dek")
        );
        assert_eq!(done.unwrap_keys(Some(&unlock)).unwrap().previous_dek, None);
    }

    #[test]
    fn locked_keys_need_the_right_unlock_key() {
        let keys = StoreKeys::generate().unwrap();
        let unlock = UnlockKey::generate().unwrap();
        let file = KeyFile::wrap(&keys, Some(&unlock)).unwrap();
        assert!(file.is_locked());
        assert!(matches!(
            file.unwrap_keys(None),
            Err(KeyFileError::WrongKey)
        ));
        let wrong = UnlockKey::generate().unwrap();
        assert!(matches!(
            file.unwrap_keys(Some(&wrong)),
            Err(KeyFileError::WrongKey)
        ));
        let back = file.unwrap_keys(Some(&unlock)).unwrap();
        assert_eq!(back.dek, keys.dek);
        let text = serde_json::to_string(&file).unwrap();
        let kek = STANDARD.encode(keys.kek.as_bytes());
        let dek = STANDARD.encode(keys.dek.as_bytes());
        assert!(!text.contains(&kek) && !text.contains(&dek), "{text}");
    }

    #[test]
    fn saved_files_load_back_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        assert!(KeyFile::load(dir.path()).unwrap().is_none());
        let keys = StoreKeys::generate().unwrap();
        KeyFile::wrap(&keys, None)
            .unwrap()
            .save(dir.path())
            .unwrap();
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = KeyFile::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.unwrap_keys(None).unwrap().dek, keys.dek);
        KeyFile::remove(dir.path()).unwrap();
        assert!(KeyFile::load(dir.path()).unwrap().is_none());
    }

    #[test]
    fn sealing_hides_and_detects_tampering() {
        let key = Key::generate().unwrap();
        let secret = b"hunter2-very-secret";
        let sealed = key.seal(secret).unwrap();
        assert!(!sealed.windows(secret.len()).any(|w| w == secret));
        assert_eq!(key.open(&sealed).unwrap(), secret);
        assert_ne!(key.seal(secret).unwrap(), sealed, "a fresh nonce each time");
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(key.open(&tampered), Err(AeadError::Open));
        assert_eq!(Key::generate().unwrap().open(&sealed), Err(AeadError::Open));
        assert_eq!(key.open(&sealed[..5]), Err(AeadError::Open));
    }
}

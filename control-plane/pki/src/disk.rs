//! A node's identity on disk: `<data-dir>/certificates/`, with SwarmKit's file names.
//!
//! ```text
//! <data-dir>/certificates/          0700
//!     swarm-root-ca.crt              0600  cluster root CA certificate (PEM)
//!     swarm-node.crt                 0600  this node's certificate (PEM)
//!     swarm-node.key                 0600  this node's private key (PKCS#8 PEM; on a manager of
//!                                          an autolocked swarm, sealed with its KEK)
//! ```
//!
//! The root CA key is not here: managers keep it in the Raft store. Each file is replaced
//! atomically (write a temporary file, fsync, rename, fsync the directory), so a crash leaves
//! either the old or the new file, never half of one.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::ca::{CaError, RootCert, pem_encode};
use super::credentials::{CredentialsError, NodeCredentials, NodeKey};
use hive_encryption::{Key, node_key};

/// Directory under the data dir (shared with the encryption key file).
pub use hive_encryption::key_file::CERTIFICATES_DIR;
/// Root CA certificate file (SwarmKit `rootCACertFilename`).
pub const ROOT_CA_CERT_FILE: &str = "swarm-root-ca.crt";
/// Node certificate file (SwarmKit `nodeTLSCertFilename`).
pub const NODE_CERT_FILE: &str = "swarm-node.crt";
/// Node key file (SwarmKit `nodeTLSKeyFilename`).
pub const NODE_KEY_FILE: &str = "swarm-node.key";

const DIR_MODE: u32 = 0o700;
/// Certificates are public, but everything under the data directory is the daemon's alone
/// (docs/security.md, "The data directory and the socket").
const CERT_MODE: u32 = 0o600;
const KEY_MODE: u32 = 0o600;

/// The certificates directory of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertDir {
    dir: PathBuf,
}

impl CertDir {
    /// `<data_dir>/certificates`.
    pub fn in_data_dir(data_dir: &Path) -> CertDir {
        CertDir {
            dir: data_dir.join(CERTIFICATES_DIR),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Whether a node certificate is stored (the node is, or was, in a swarm).
    pub fn has_node_cert(&self) -> bool {
        self.dir.join(NODE_CERT_FILE).exists()
    }

    /// Saves the root CA certificate alone (a joining node, once it has pinned the root).
    pub fn save_root(&self, root: &RootCert) -> Result<(), DiskError> {
        self.create_dir()?;
        write_atomic(
            &self.dir.join(ROOT_CA_CERT_FILE),
            root.to_pem().as_bytes(),
            CERT_MODE,
        )
    }

    /// Loads the root CA certificate.
    pub fn load_root(&self) -> Result<RootCert, DiskError> {
        let path = self.dir.join(ROOT_CA_CERT_FILE);
        let pem = read_text(&path)?;
        RootCert::from_pem(&pem).map_err(|source| DiskError::BadRoot { path, source })
    }

    /// Saves root, key and certificate, the key in the clear. The key goes first: if the
    /// process dies before the certificate is written, loading reports the mismatch instead
    /// of using a stale pair.
    pub fn save(&self, creds: &NodeCredentials) -> Result<(), DiskError> {
        self.save_with(creds, None)
    }

    /// [`Self::save`], with the key sealed with `kek` if one is given (a manager of an
    /// autolocked swarm, docs/encryption.md).
    pub fn save_with(&self, creds: &NodeCredentials, kek: Option<&Key>) -> Result<(), DiskError> {
        self.create_dir()?;
        self.save_root(creds.root())?;
        self.write_key(&creds.key().to_pem(), kek)?;
        // The node certificate first, then its intermediates, as SwarmKit writes the file.
        let chain: String = std::iter::once(creds.cert())
            .chain(creds.intermediates())
            .map(|cert| pem_encode("CERTIFICATE", cert))
            .collect();
        write_atomic(&self.dir.join(NODE_CERT_FILE), chain.as_bytes(), CERT_MODE)
    }

    /// Writes the node key file: `pem` sealed with `kek`, or in the clear.
    fn write_key(&self, pem: &str, kek: Option<&Key>) -> Result<(), DiskError> {
        let path = self.dir.join(NODE_KEY_FILE);
        let text = match kek {
            Some(kek) => node_key::seal(kek, pem).map_err(|e| DiskError::Corrupt {
                path: path.clone(),
                reason: format!("cannot seal the key: {e}"),
            })?,
            None => pem.to_owned(),
        };
        write_atomic(&path, text.as_bytes(), KEY_MODE)
    }

    /// The node key as PKCS#8 PEM, opened with `kek` if it is sealed.
    fn read_key(&self, kek: Option<&Key>) -> Result<String, DiskError> {
        let path = self.dir.join(NODE_KEY_FILE);
        check_key_permissions(&path)?;
        let text = read_text(&path)?;
        if !node_key::is_sealed(&text) {
            return Ok(text);
        }
        let kek = kek.ok_or_else(|| DiskError::KeySealed { path: path.clone() })?;
        node_key::open(kek, &text).map_err(|e| DiskError::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    /// Whether the node key file holds the sealed form; `None` if there is no key file.
    pub fn key_is_sealed(&self) -> Result<Option<bool>, DiskError> {
        match read_text(&self.dir.join(NODE_KEY_FILE)) {
            Ok(text) => Ok(Some(node_key::is_sealed(&text))),
            Err(DiskError::Missing { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Whether the node key file is sealed and opens with `kek`.
    pub fn key_opens_with(&self, kek: &Key) -> bool {
        read_text(&self.dir.join(NODE_KEY_FILE))
            .is_ok_and(|text| node_key::is_sealed(&text) && node_key::open(kek, &text).is_ok())
    }

    /// Rewrites the node key file sealed with `to` (in the clear if `None`), opening it with
    /// `from` if it is sealed now. Leaves the file alone if it is already so (a sealed file
    /// is left alone if it opens with `to`) and if there is none. Whether it was rewritten.
    pub fn reseal_key(&self, from: Option<&Key>, to: Option<&Key>) -> Result<bool, DiskError> {
        let Some(sealed) = self.key_is_sealed()? else {
            return Ok(false);
        };
        let done = match (sealed, to) {
            (false, None) => true,
            (true, Some(to)) => self.key_opens_with(to),
            _ => false,
        };
        if done {
            return Ok(false);
        }
        let pem = self.read_key(from)?;
        // Checked before it replaces the only copy: a key that does not parse is not sealed
        // again, but reported.
        NodeKey::from_pem(&pem).map_err(|e| DiskError::Corrupt {
            path: self.dir.join(NODE_KEY_FILE),
            reason: e.to_string(),
        })?;
        self.write_key(&pem, to)?;
        Ok(true)
    }

    /// Loads and checks this node's identity: the certificate must be issued by the stored
    /// root, valid at `now`, and match the stored key. A sealed key is refused
    /// ([`DiskError::KeySealed`]); see [`Self::load_with`].
    pub fn load(&self, now: SystemTime) -> Result<NodeCredentials, DiskError> {
        self.load_with(now, None)
    }

    /// [`Self::load`], opening a sealed key with `kek` (a key in the clear is read as is).
    pub fn load_with(
        &self,
        now: SystemTime,
        kek: Option<&Key>,
    ) -> Result<NodeCredentials, DiskError> {
        let root = self.load_root()?;
        let cert_path = self.dir.join(NODE_CERT_FILE);
        let corrupt = |reason: String| DiskError::Corrupt {
            path: cert_path.clone(),
            reason,
        };
        let mut chain = CertificateDer::pem_slice_iter(read_text(&cert_path)?.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(format!("no PEM certificate in it ({e})")))?
            .into_iter();
        let cert = chain
            .next()
            .ok_or_else(|| corrupt("no PEM certificate in it".to_owned()))?;
        let intermediates: Vec<_> = chain.collect();
        let key_path = self.dir.join(NODE_KEY_FILE);
        let key = NodeKey::from_pem(&self.read_key(kek)?).map_err(|e| DiskError::Corrupt {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        NodeCredentials::new(root, cert, key, now)
            .map(|creds| creds.with_intermediates(intermediates))
            .map_err(|source| DiskError::Credentials {
                dir: self.dir.clone(),
                source,
            })
    }

    /// Removes the identity files (on `swarm leave`). Missing files are not an error.
    pub fn remove(&self) -> Result<(), DiskError> {
        for name in [NODE_CERT_FILE, NODE_KEY_FILE, ROOT_CA_CERT_FILE] {
            let path = self.dir.join(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(DiskError::Write { path, source }),
            }
        }
        Ok(())
    }

    fn create_dir(&self) -> Result<(), DiskError> {
        fs::create_dir_all(&self.dir).map_err(|source| DiskError::Write {
            path: self.dir.clone(),
            source,
        })?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(DIR_MODE)).map_err(|source| {
            DiskError::Write {
                path: self.dir.clone(),
                source,
            }
        })
    }
}

/// Reads a whole file as text, telling "missing" apart from other failures.
fn read_text(path: &Path) -> Result<String, DiskError> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| DiskError::Corrupt {
            path: path.to_owned(),
            reason: "it is not text (PEM)".to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(DiskError::Missing {
            path: path.to_owned(),
        }),
        Err(source) => Err(DiskError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// A private key readable by group or others may already be copied; refuse it, as ssh does.
fn check_key_permissions(path: &Path) -> Result<(), DiskError> {
    let metadata = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(DiskError::Missing {
                path: path.to_owned(),
            });
        }
        Err(source) => {
            return Err(DiskError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(DiskError::KeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Writes `contents` to `path` with `mode`, atomically.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), DiskError> {
    let write_err = |source| DiskError::Write {
        path: path.to_owned(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    // A leftover temporary file from a crash may have any mode; start afresh.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(write_err(source)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(write_err)?;
    // The umask may have narrowed `mode`; certificates should still be world-readable.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(write_err)?;
    file.write_all(contents).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(write_err)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_err)?;
    }
    Ok(())
}

/// A node identity that cannot be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A file is absent: the node has no (complete) swarm identity.
    #[error(
        "{} is missing: this node has no complete swarm identity; join a swarm (`hive swarm join`) or create one (`hive swarm init`)",
        path.display()
    )]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file or the directory could not be written.
    #[error("cannot write {}: {source}; check the data directory's disk space and permissions", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file is not what it should be.
    #[error(
        "{} is damaged: {reason}; restore the certificates directory from a backup, or leave the swarm and join again",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The root CA file does not hold a usable CA certificate.
    #[error("{} is damaged: {source}; restore it from a backup, or leave the swarm and join again", path.display())]
    BadRoot {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: CaError,
    },
    /// The key is sealed (autolock) and no key to open it was given.
    #[error(
        "{} is encrypted with this manager's key-encryption key: unlock the swarm with `hive swarm unlock`",
        path.display()
    )]
    KeySealed {
        /// The file.
        path: PathBuf,
    },
    /// The key file is readable by others.
    #[error("{} is readable by other users (mode {mode:o}); run `chmod 600 {}`", path.display(), path.display())]
    KeyPermissions {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The files parse but do not form a valid identity.
    #[error("the node identity in {} is not usable: {source}", dir.display())]
    Credentials {
        /// The certificates directory.
        dir: PathBuf,
        /// What is wrong.
        source: CredentialsError,
    },
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::super::Role;
    use super::super::test_support::TestCluster;
    use super::*;

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_893_456_000)
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn save_then_load_gives_the_same_identity_with_private_modes() {
        let data = tempfile::tempdir().unwrap();
        let dir = CertDir::in_data_dir(data.path());
        let cluster = TestCluster::new("c1", t0());
        let creds = cluster.node("node1", Role::Manager, t0());
        assert!(!dir.has_node_cert());
        dir.save(&creds).unwrap();
        assert!(dir.has_node_cert());

        let loaded = dir.load(t0()).unwrap();
        assert_eq!(loaded.identity(), creds.identity());
        assert_eq!(loaded.cert(), creds.cert());
        assert_eq!(loaded.root(), creds.root());
        assert_eq!(dir.path(), data.path().join("certificates"));
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&dir.path().join(NODE_KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.path().join(NODE_CERT_FILE)), 0o600);
        assert_eq!(mode(&dir.path().join(ROOT_CA_CERT_FILE)), 0o600);

        // Saving again (a renewal) replaces the files in place.
        let renewed = cluster.node("node1", Role::Manager, t0() + Duration::from_secs(60));
        dir.save(&renewed).unwrap();
        assert_eq!(dir.load(t0()).unwrap().cert(), renewed.cert());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        dir.remove().unwrap();
        assert!(!dir.has_node_cert());
        dir.remove().unwrap();
    }

    #[test]
    fn missing_files_say_how_to_get_an_identity() {
        let data = tempfile::tempdir().unwrap();
        let dir = CertDir::in_data_dir(data.path());
        let err = dir.load(t0()).unwrap_err();
        assert!(matches!(err, DiskError::Missing { .. }), "{err}");
        assert!(
            err.to_string().contains("swarm-root-ca.crt is missing"),
            "{err}"
        );
        assert!(err.to_string().contains("hive swarm join"), "{err}");

        // Root only, as a joining node has it before its certificate arrives.
        let cluster = TestCluster::new("c1", t0());
        dir.save_root(cluster.ca.cert()).unwrap();
        assert_eq!(&dir.load_root().unwrap(), cluster.ca.cert());
        let err = dir.load(t0()).unwrap_err();
        assert!(
            err.to_string().contains("swarm-node.crt is missing"),
            "{err}"
        );
    }

    #[test]
    fn damaged_files_are_reported_by_name() {
        let data = tempfile::tempdir().unwrap();
        let dir = CertDir::in_data_dir(data.path());
        let cluster = TestCluster::new("c1", t0());
        dir.save(&cluster.node("node1", Role::Worker, t0()))
            .unwrap();

        let cert = dir.path().join(NODE_CERT_FILE);
        let good_cert = fs::read(&cert).unwrap();
        fs::write(&cert, "not pem").unwrap();
        let err = dir.load(t0()).unwrap_err();
        assert!(matches!(err, DiskError::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains("swarm-node.crt is damaged"),
            "{err}"
        );
        fs::write(&cert, good_cert).unwrap();

        let key = dir.path().join(NODE_KEY_FILE);
        fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = dir.load(t0()).unwrap_err();
        assert!(
            err.to_string().contains("swarm-node.key is damaged"),
            "{err}"
        );

        let root = dir.path().join(ROOT_CA_CERT_FILE);
        fs::write(&root, [0xff, 0xfe]).unwrap();
        let err = dir.load(t0()).unwrap_err();
        assert!(
            err.to_string().contains("swarm-root-ca.crt is damaged"),
            "{err}"
        );
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let data = tempfile::tempdir().unwrap();
        let dir = CertDir::in_data_dir(data.path());
        let cluster = TestCluster::new("c1", t0());
        dir.save(&cluster.node("node1", Role::Worker, t0()))
            .unwrap();
        let key = dir.path().join(NODE_KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = dir.load(t0()).unwrap_err();
        assert!(
            matches!(err, DiskError::KeyPermissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_key_from_another_node_is_refused() {
        let data = tempfile::tempdir().unwrap();
        let dir = CertDir::in_data_dir(data.path());
        let cluster = TestCluster::new("c1", t0());
        dir.save(&cluster.node("node1", Role::Worker, t0()))
            .unwrap();
        let other = cluster.node("node2", Role::Worker, t0());
        write_atomic(
            &dir.path().join(NODE_KEY_FILE),
            other.key().to_pem().as_bytes(),
            KEY_MODE,
        )
        .unwrap();
        let err = dir.load(t0()).unwrap_err();
        assert!(
            matches!(
                err,
                DiskError::Credentials {
                    source: CredentialsError::KeyMismatch { .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_sealed_key_needs_its_kek_and_is_not_a_pem_key_on_disk() {
        let data = tempfile::tempdir().unwrap();
        let dir = CertDir::in_data_dir(data.path());
        let cluster = TestCluster::new("c1", t0());
        let creds = cluster.node("node1", Role::Manager, t0());
        let kek = Key::generate().unwrap();
        dir.save_with(&creds, Some(&kek)).unwrap();
        let key_path = dir.path().join(NODE_KEY_FILE);
        assert_eq!(mode(&key_path), 0o600);
        let on_disk = fs::read_to_string(&key_path).unwrap();
        assert!(!on_disk.contains("PRIVATE KEY"), "{on_disk}");
        assert!(NodeKey::from_pem(&on_disk).is_err());
        assert_eq!(dir.key_is_sealed().unwrap(), Some(true));

        let err = dir.load(t0()).unwrap_err();
        assert!(matches!(err, DiskError::KeySealed { .. }), "{err}");
        assert!(err.to_string().contains("hive swarm unlock"), "{err}");
        let err = dir
            .load_with(t0(), Some(&Key::generate().unwrap()))
            .unwrap_err();
        assert!(
            err.to_string().contains("swarm-node.key is damaged"),
            "{err}"
        );
        let loaded = dir.load_with(t0(), Some(&kek)).unwrap();
        assert_eq!(loaded.identity(), creds.identity());

        // A key in the clear loads whether or not a KEK is given.
        dir.save(&creds).unwrap();
        assert_eq!(dir.key_is_sealed().unwrap(), Some(false));
        assert_eq!(
            dir.load_with(t0(), Some(&kek)).unwrap().identity(),
            creds.identity()
        );
    }

    #[test]
    fn resealing_rewrites_only_what_is_not_sealed_as_asked() {
        let data = tempfile::tempdir().unwrap();
        let dir = CertDir::in_data_dir(data.path());
        assert!(!dir.reseal_key(None, None).unwrap(), "no key file");
        let cluster = TestCluster::new("c1", t0());
        let creds = cluster.node("node1", Role::Manager, t0());
        dir.save(&creds).unwrap();
        let (one, two) = (Key::generate().unwrap(), Key::generate().unwrap());

        assert!(!dir.reseal_key(None, None).unwrap());
        assert!(dir.reseal_key(None, Some(&one)).unwrap());
        let sealed = fs::read(dir.path().join(NODE_KEY_FILE)).unwrap();
        assert!(!dir.reseal_key(Some(&one), Some(&one)).unwrap());
        assert_eq!(fs::read(dir.path().join(NODE_KEY_FILE)).unwrap(), sealed);
        // Sealed with another key than the one that opens it: refused, the file unchanged.
        assert!(dir.reseal_key(Some(&two), None).is_err());
        assert_eq!(fs::read(dir.path().join(NODE_KEY_FILE)).unwrap(), sealed);
        assert!(dir.reseal_key(Some(&one), Some(&two)).unwrap());
        assert_eq!(
            dir.load_with(t0(), Some(&two)).unwrap().identity(),
            creds.identity()
        );
        assert!(dir.reseal_key(Some(&two), None).unwrap());
        assert_eq!(dir.load(t0()).unwrap().identity(), creds.identity());
    }
}

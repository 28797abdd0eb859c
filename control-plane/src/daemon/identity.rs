//! The one writer of this node's certificates directory, and how its TLS key is kept there:
//! in the clear, or — on a manager while autolock is on — sealed with the manager's KEK, as
//! SwarmKit keeps `swarm-node.key` encrypted with the unlock key (docs/encryption.md).
//!
//! Renewals ([`super::renew`]), role changes ([`super::roles`]) and the autolock follower
//! ([`super::lock::follow`]) all write the key through [`IdentityFiles`], one at a time, so a
//! renewal never writes the key with a KEK the follower has just replaced.
//!
//! Each activation of the node starts an *epoch* ([`IdentityFiles::adopt`]); the follower of
//! an earlier activation (stopping, but maybe mid-step) can no longer change the sealing.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use crate::encryption::Key;
use crate::pki::{CertDir, DiskError, NodeCredentials};

#[derive(Debug, Default)]
struct Sealing {
    epoch: u64,
    /// The key the node key on disk is sealed with; `None`: in the clear.
    kek: Option<Key>,
}

/// `<data-dir>/certificates` as this daemon writes it.
#[derive(Debug)]
pub struct IdentityFiles {
    dir: CertDir,
    sealing: Mutex<Sealing>,
}

impl IdentityFiles {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: CertDir::in_data_dir(data_dir),
            sealing: Mutex::default(),
        }
    }

    fn sealing(&self) -> MutexGuard<'_, Sealing> {
        self.sealing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key the node key is sealed with now (`None`: in the clear).
    pub fn kek(&self) -> Option<Key> {
        self.sealing().kek.clone()
    }

    /// Saves `creds` with the key sealed as it is kept now (a renewal).
    pub fn save(&self, creds: &NodeCredentials) -> Result<(), DiskError> {
        let sealing = self.sealing();
        self.dir.save_with(creds, sealing.kek.as_ref())
    }

    /// Saves `creds` with the key in the clear, as a node has it before its activation
    /// decides otherwise (init, join, a role change: a new manager's KEK is not wrapped yet,
    /// a worker has none). Ends the current epoch.
    pub fn save_in_the_clear(&self, creds: &NodeCredentials) -> Result<(), DiskError> {
        let mut sealing = self.sealing();
        sealing.epoch += 1;
        sealing.kek = None;
        self.dir.save(creds)
    }

    /// Loads this node's credentials, opening the key with the KEK it is sealed with now.
    pub fn load(&self, now: SystemTime) -> Result<NodeCredentials, DiskError> {
        let sealing = self.sealing();
        self.dir.load_with(now, sealing.kek.as_ref())
    }

    /// Starts an epoch (an activation) with `creds`, just loaded or saved: from now on the
    /// key is kept sealed with `kek` (in the clear if `None`), and the files are rewritten
    /// from `creds` if the key on disk is not so yet (an interrupted change of autolock).
    /// Returns the epoch, for [`Self::set_kek`].
    pub fn adopt(&self, creds: &NodeCredentials, kek: Option<Key>) -> Result<u64, DiskError> {
        let mut sealing = self.sealing();
        sealing.epoch += 1;
        sealing.kek = None;
        let as_wanted = match (self.dir.key_is_sealed()?, &kek) {
            (Some(false), None) => true,
            (Some(true), Some(kek)) => self.dir.key_opens_with(kek),
            _ => false,
        };
        if !as_wanted {
            self.dir.save_with(creds, kek.as_ref())?;
            tracing::info!(
                sealed = kek.is_some(),
                "rewrote this node's TLS key as the swarm's autolock setting says"
            );
        }
        sealing.kek = kek;
        Ok(sealing.epoch)
    }

    /// Re-seals the key on disk with `kek` (in the clear if `None`), if `epoch` is still the
    /// current one. Whether it changed anything.
    pub fn set_kek(&self, epoch: u64, kek: Option<Key>) -> Result<bool, DiskError> {
        let mut sealing = self.sealing();
        if sealing.epoch != epoch || sealing.kek == kek {
            return Ok(false);
        }
        self.dir.reseal_key(sealing.kek.as_ref(), kek.as_ref())?;
        sealing.kek = kek;
        Ok(true)
    }

    /// Forgets the sealing (the node left the swarm; its files are removed).
    pub fn forget(&self) {
        let mut sealing = self.sealing();
        sealing.epoch += 1;
        sealing.kek = None;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::pki::Role;
    use crate::pki::test_support::TestCluster;

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_893_456_000)
    }

    fn key_text(data: &Path) -> String {
        std::fs::read_to_string(data.join("certificates/swarm-node.key")).unwrap()
    }

    #[test]
    fn renewals_follow_the_sealing_and_old_epochs_change_nothing() {
        let data = tempfile::tempdir().unwrap();
        let files = IdentityFiles::new(data.path());
        let cluster = TestCluster::new("c1", t0());
        let creds = cluster.node("m1", Role::Manager, t0());
        files.save_in_the_clear(&creds).unwrap();
        let epoch = files.adopt(&creds, None).unwrap();
        assert!(key_text(data.path()).contains("PRIVATE KEY"));

        // Autolock on.
        let kek = Key::generate().unwrap();
        assert!(files.set_kek(epoch, Some(kek.clone())).unwrap());
        assert!(!key_text(data.path()).contains("PRIVATE KEY"));
        assert!(!files.set_kek(epoch, Some(kek.clone())).unwrap());
        // A renewal is sealed too, and loads back.
        let renewed = cluster.node("m1", Role::Manager, t0() + Duration::from_secs(60));
        files.save(&renewed).unwrap();
        assert!(!key_text(data.path()).contains("PRIVATE KEY"));
        assert_eq!(files.load(t0()).unwrap().cert(), renewed.cert());
        assert!(CertDir::in_data_dir(data.path()).load(t0()).is_err());

        // A role change writes in the clear and ends the epoch: the old follower is ignored.
        let worker = cluster.node("m1", Role::Worker, t0() + Duration::from_secs(120));
        files.save_in_the_clear(&worker).unwrap();
        assert!(!files.set_kek(epoch, Some(kek.clone())).unwrap());
        assert!(key_text(data.path()).contains("PRIVATE KEY"));
        assert_eq!(files.kek(), None);
    }

    #[test]
    fn an_activation_finishes_an_interrupted_change() {
        let data = tempfile::tempdir().unwrap();
        let files = IdentityFiles::new(data.path());
        let cluster = TestCluster::new("c1", t0());
        let creds = cluster.node("m1", Role::Manager, t0());
        let kek = Key::generate().unwrap();
        // Autolock was turned on, the KEK file written, the TLS key not yet.
        CertDir::in_data_dir(data.path()).save(&creds).unwrap();
        files.adopt(&creds, Some(kek.clone())).unwrap();
        assert!(CertDir::in_data_dir(data.path()).key_opens_with(&kek));
        // Turned off, the TLS key still sealed.
        files.adopt(&creds, None).unwrap();
        assert!(key_text(data.path()).contains("PRIVATE KEY"));
        assert_eq!(
            CertDir::in_data_dir(data.path())
                .load(t0())
                .unwrap()
                .identity(),
            creds.identity()
        );
    }
}

//! A manager's store keys at start, autolock and `swarm unlock` (docs/encryption.md).
//!
//! - [`store_keys`]: the keys a manager opens its store with — loaded from the key file, or
//!   made (and an older plaintext store sealed) if there is none. A locked file is refused:
//!   the daemon then waits for [`unlock`].
//! - [`install`]: hands the keys to the store's codec before the store opens, and finishes a
//!   data key rotation a stopped manager left half-way.
//! - [`follow`]: while a manager runs, keeps its key file wrapped as the cluster says —
//!   with the replicated unlock key while autolock is on (re-wrapped when it is rotated),
//!   in the clear otherwise, and the node's TLS key sealed with the KEK while autolock is on
//!   ([`IdentityFiles`]). Turning autolock on also rotates the manager's DEK and KEK, so
//!   that a copy of the key file from before (when the KEK lay in the clear) opens nothing
//!   written after.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::DaemonError;
use super::identity::IdentityFiles;
use super::node::SwarmNode;
use super::node_file::RAFT_DIR;
use crate::api::{ApiError, pb};
use crate::encryption::{KeyFile, KeyFileError, StoreKeys, UnlockKey};
use crate::manager::Manager;
use crate::pki::CertDir;

/// How often a manager compares its key file's wrapping with the cluster's autolock setting.
const FOLLOW_PERIOD: Duration = Duration::from_millis(500);

/// The keys of this manager's store, made if it has none yet. `Err(Locked)` if the key file
/// needs the unlock key.
pub fn store_keys(data_dir: &Path) -> Result<StoreKeys, DaemonError> {
    if let Some(file) = KeyFile::load(data_dir)? {
        if file.is_locked() {
            return Err(DaemonError::Locked);
        }
        return Ok(file.unwrap_keys(None)?);
    }
    let keys = StoreKeys::generate().map_err(KeyFileError::from)?;
    KeyFile::wrap(&keys, None)
        .map_err(KeyFileError::from)?
        .save(data_dir)?;
    let raft_dir = data_dir.join(RAFT_DIR);
    if raft_dir.exists() {
        // A store written before encryption at rest: seal it with the new key now.
        crate::store::set_data_key(Some(keys.dek.clone()));
        crate::store::migrate::reseal_dir(&raft_dir).map_err(DaemonError::Seal)?;
    }
    Ok(keys)
}

/// Installs `keys` in the store's codec; blocking, before the store in `data_dir` opens. If
/// a data key rotation was interrupted (the key file still holds the previous DEK), re-seals
/// the store with the new DEK first and drops the previous one from the file, which stays
/// wrapped with `wrapped_with`. Returns the keys as they are then.
pub fn install(
    data_dir: &Path,
    keys: StoreKeys,
    wrapped_with: Option<&UnlockKey>,
) -> Result<StoreKeys, DaemonError> {
    crate::store::set_data_key(Some(keys.dek.clone()));
    let Some(previous) = keys.previous_dek.clone() else {
        return Ok(keys);
    };
    crate::store::set_data_key(Some(previous));
    crate::store::rotate_data_key(keys.dek.clone());
    crate::store::migrate::reseal_dir(&data_dir.join(RAFT_DIR)).map_err(DaemonError::Seal)?;
    let keys = keys.without_previous();
    KeyFile::wrap(&keys, wrapped_with)
        .map_err(KeyFileError::from)?
        .save(data_dir)?;
    crate::store::forget_previous_data_key();
    tracing::info!("finished the rotation of this manager's data key");
    Ok(keys)
}

/// Starts a rotation: new keys, with the current DEK kept as the previous one, saved wrapped
/// with `unlock`; from then on the store seals with the new DEK. [`finish_rotation`] re-seals
/// what the previous one sealed. If the manager stops in between, the key file holds both
/// DEKs and [`install`] finishes at the next start.
fn begin_rotation(
    data_dir: &Path,
    keys: &StoreKeys,
    unlock: &UnlockKey,
) -> Result<StoreKeys, KeyFileError> {
    let rotated = keys.rotated()?;
    KeyFile::wrap(&rotated, Some(unlock))?.save(data_dir)?;
    crate::store::rotate_data_key(rotated.dek.clone());
    Ok(rotated)
}

/// Re-seals the running store with the new DEK, then forgets the previous one, in the key
/// file (wrapped with `wrapped_with`) and in the codec.
async fn finish_rotation(
    manager: &Manager,
    data_dir: &Path,
    keys: StoreKeys,
    wrapped_with: Option<&UnlockKey>,
) -> Result<StoreKeys, String> {
    let resealed = manager.store.reseal().await.map_err(|e| e.to_string())?;
    let done = keys.without_previous();
    KeyFile::wrap(&done, wrapped_with)
        .map_err(KeyFileError::from)
        .and_then(|f| f.save(data_dir))
        .map_err(|e| e.to_string())?;
    crate::store::forget_previous_data_key();
    tracing::info!(
        values = resealed,
        "rotated this manager's data key and re-sealed its store"
    );
    Ok(done)
}

/// The unlock key the cluster wants the managers' keys wrapped with, if any.
fn wanted_unlock_key(manager: &Manager) -> Option<Option<UnlockKey>> {
    let cluster = manager.cluster().ok()?;
    if !cluster.spec.encryption_config.auto_lock_managers || cluster.unlock_key.is_empty() {
        return Some(None);
    }
    match cluster.unlock_key.parse() {
        Ok(key) => Some(Some(key)),
        Err(err) => {
            tracing::warn!(%err, "the cluster's unlock key is not valid; keeping this manager's keys as they are");
            None
        }
    }
}

/// What a running manager's [`follow`] starts from.
#[derive(Debug)]
pub struct Sealed {
    /// The store keys.
    pub keys: StoreKeys,
    /// The unlock key the key file is wrapped with now (`None`: the KEK is in the clear).
    pub wrapped_with: Option<UnlockKey>,
    /// The certificates directory, whose TLS key is sealed with the KEK while autolock is on.
    pub identity: Arc<IdentityFiles>,
    /// This activation's epoch of `identity`.
    pub epoch: u64,
}

/// Keeps the key file of `data_dir` wrapped as the cluster wants (see the module docs), and
/// the node's TLS key sealed with the KEK while autolock is on, in the clear otherwise, until
/// `stop`.
pub async fn follow(
    manager: Arc<Manager>,
    data_dir: PathBuf,
    sealed: Sealed,
    mut stop: watch::Receiver<bool>,
) {
    let Sealed {
        mut keys,
        wrapped_with: mut current,
        identity,
        epoch,
    } = sealed;
    loop {
        if let Some(wanted) = wanted_unlock_key(&manager)
            && wanted != current
        {
            let changed = match (&current, &wanted) {
                // Autolock turned on: new keys (re-sealing follows below).
                (None, Some(unlock)) => {
                    begin_rotation(&data_dir, &keys, unlock).map(|rotated| keys = rotated)
                }
                _ => KeyFile::wrap(&keys, wanted.as_ref())
                    .map_err(KeyFileError::from)
                    .and_then(|f| f.save(&data_dir)),
            };
            match changed {
                Ok(()) => {
                    tracing::info!(
                        autolock = wanted.is_some(),
                        "re-wrapped this manager's store keys as the swarm's autolock setting says"
                    );
                    current = wanted;
                }
                Err(err) => {
                    tracing::warn!(%err, "could not re-wrap this manager's store keys; trying again")
                }
            }
        }
        // The TLS key after the key file: sealed with a KEK the key file already holds, so
        // a stop in between leaves a key that the next start opens (and seals as wanted).
        // An unlock key rotation keeps the KEK: the TLS key stays as it is, reachable only
        // through the KEK, which the new unlock key now wraps.
        let wanted_kek = current.as_ref().map(|_| keys.kek.clone());
        if identity.kek() != wanted_kek {
            match identity.set_kek(epoch, wanted_kek) {
                Ok(true) => tracing::info!(
                    sealed = current.is_some(),
                    "rewrote this node's TLS key as the swarm's autolock setting says"
                ),
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(%err, "could not rewrite this node's TLS key; trying again")
                }
            }
        }
        if keys.previous_dek.is_some() {
            match finish_rotation(&manager, &data_dir, keys.clone(), current.as_ref()).await {
                Ok(done) => keys = done,
                Err(err) => {
                    tracing::warn!(%err, "could not re-seal the store with the new data key; trying again")
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(FOLLOW_PERIOD) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// `swarm unlock`: opens the keys of a locked manager with `request.key` and starts it. A
/// wrong key changes nothing.
pub async fn unlock(
    node: &Arc<SwarmNode>,
    request: pb::UnlockRequest,
) -> Result<pb::UnlockResponse, ApiError> {
    let _guard = node.lock().await;
    let Some(file) = node.locked_file() else {
        return Err(ApiError::Refused("Swarm is not locked.".to_owned()));
    };
    let key: UnlockKey = request
        .key
        .parse()
        .map_err(|e: crate::encryption::BadUnlockKey| ApiError::Invalid(e.to_string()))?;
    let data_dir = &node.config.data_dir;
    let stored = KeyFile::load(data_dir)
        .map_err(|e| ApiError::internal("reading this manager's keys", e))?
        .ok_or_else(|| ApiError::internal("reading this manager's keys", "the key file is gone"))?;
    let keys = match stored.unwrap_keys(Some(&key)) {
        Ok(keys) => keys,
        Err(KeyFileError::WrongKey) => {
            return Err(ApiError::Invalid(KeyFileError::WrongKey.to_string()));
        }
        Err(err) => return Err(ApiError::internal("opening this manager's keys", err)),
    };
    // The TLS key is sealed with the KEK while autolock is on: opened here, in memory.
    let creds = CertDir::in_data_dir(data_dir)
        .load_with(SystemTime::now(), Some(&keys.kek))
        .map_err(|e| ApiError::internal("loading this node's certificates", e))?;
    node.activate_with_keys(file, creds, Some((keys, key)))
        .await
        .map_err(|e| ApiError::internal("starting the unlocked manager", e))?;
    tracing::info!("swarm unlocked");
    Ok(pb::UnlockResponse {})
}

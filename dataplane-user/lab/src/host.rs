//! What a lab needs from the host: root, bpffs, and a lock that keeps two
//! `hive lab` commands from changing the same mounts at once.

use std::{
    fs::{File, OpenOptions},
    io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
    mount::MsFlags,
    sys::statfs::{BPF_FS_MAGIC, statfs},
};

use super::naming::BPFFS_DIR;

/// The lock file; it lives outside the lab dirs so `down` can delete those.
pub const LOCK_FILE: &str = "/run/hive/lab.lock";
/// How long to wait for another `hive lab` command to finish.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(60);
const LOCK_POLL: Duration = Duration::from_millis(25);

/// Errors about the host's prerequisites.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "hive lab needs root: it creates network namespaces, veth links and mounts; run it as root (e.g. `sudo hive lab ...`)"
    )]
    NotRoot,
    #[error("cannot check whether bpffs is mounted at {path}: {source}")]
    StatBpffs { path: PathBuf, source: Errno },
    #[error("cannot mount bpffs at {path} (`mount -t bpf bpf {path}`): {source}")]
    MountBpffs { path: PathBuf, source: Errno },
    #[error("cannot open the lab lock {path}: {source}")]
    OpenLock { path: PathBuf, source: io::Error },
    #[error("cannot take the lab lock {path}: {source}")]
    Lock { path: PathBuf, source: Errno },
    #[error(
        "another `hive lab` command has held {path} for {waited:?}; wait for it to finish (or find it with `fuser {path}`)"
    )]
    LockTimeout { path: PathBuf, waited: Duration },
}

/// Refuse to go on without root.
pub fn require_root() -> Result<(), HostError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(HostError::NotRoot)
    }
}

/// Mount bpffs at `/sys/fs/bpf` unless it already is; a fresh machine does
/// not have it, and pins made on a plain directory would not be pins.
/// Returns whether it mounted it.
pub fn ensure_bpffs() -> Result<bool, HostError> {
    let path = Path::new(BPFFS_DIR);
    let mounted = statfs(path)
        .map(|fs| fs.filesystem_type() == BPF_FS_MAGIC)
        .or_else(|err| match err {
            Errno::ENOENT => Ok(false),
            source => Err(HostError::StatBpffs {
                path: path.to_path_buf(),
                source,
            }),
        })?;
    if mounted {
        return Ok(false);
    }
    nix::mount::mount(
        Some("bpf"),
        path,
        Some("bpf"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME,
        Some("mode=0700"),
    )
    .map_err(|source| HostError::MountBpffs {
        path: path.to_path_buf(),
        source,
    })?;
    tracing::info!(path = BPFFS_DIR, "mounted bpffs");
    Ok(true)
}

/// Held while a `hive lab` command changes mounts; released on drop, and by
/// the kernel if the process dies.
#[derive(Debug)]
pub struct LabLock {
    _lock: Flock<File>,
}

/// Take the lab lock, waiting at most [`LOCK_TIMEOUT`].
pub fn lock() -> Result<LabLock, HostError> {
    let path = Path::new(LOCK_FILE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| HostError::OpenLock {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let started = Instant::now();
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|source| HostError::OpenLock {
                path: path.to_path_buf(),
                source,
            })?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(LabLock { _lock: lock }),
            Err((_, Errno::EWOULDBLOCK)) if started.elapsed() < LOCK_TIMEOUT => {
                std::thread::sleep(LOCK_POLL);
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(HostError::LockTimeout {
                    path: path.to_path_buf(),
                    waited: started.elapsed(),
                });
            }
            Err((_, source)) => {
                return Err(HostError::Lock {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
}

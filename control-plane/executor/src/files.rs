//! Secrets and configs as files in a container (docs/secrets.md, "Where data lives"): the
//! agent hands the executor their bytes, held in memory only; `prepare` mounts a tmpfs for
//! the task at `<run_dir>/files/<task-id>`, writes each file there with its owner and mode,
//! and binds each one read-only at its target in the container. `remove` unmounts the tmpfs
//! and removes its directory, so nothing of the data ever reaches the node's disk.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::mount::{MntFlags, MsFlags};

use super::oci::{Mount, MountKind};

/// Bytes of a secret or config. Never printed: `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct FileBytes(pub Arc<Vec<u8>>);

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileBytes({} bytes)", self.0.len())
    }
}

/// One file a task gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFile {
    /// Absolute path inside the container.
    pub target: PathBuf,
    pub data: FileBytes,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("secret and config targets must be absolute paths: {}", target.display())]
    RelativeTarget { target: PathBuf },
    #[error("cannot {action} {} for the task's secrets and configs: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot mount a tmpfs at {} for the task's secrets and configs: {source}", path.display())]
    Mount { path: PathBuf, source: nix::Error },
}

/// The per-task tmpfs.
pub fn files_dir(run_dir: &Path, task_id: &str) -> PathBuf {
    run_dir.join("files").join(task_id)
}

/// Mounts the tmpfs at `dir`, writes `files` into it and returns their bind mounts (blocking).
/// On failure the tmpfs is released again.
pub fn materialise(dir: &Path, files: &[TaskFile]) -> Result<Vec<Mount>, FilesError> {
    for file in files {
        if !file.target.is_absolute() {
            return Err(FilesError::RelativeTarget {
                target: file.target.clone(),
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| FilesError::Io {
        action: "create",
        path: dir.to_path_buf(),
        source,
    })?;
    let total: usize = files.iter().map(|f| f.data.0.len() + 4096).sum();
    let options = format!("mode=0755,size={}", total + 64 * 1024);
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(options.as_str()),
    )
    .map_err(|source| FilesError::Mount {
        path: dir.to_path_buf(),
        source,
    })?;
    let written = write_all(dir, files);
    if written.is_err() {
        let _ = release(dir);
    }
    written
}

fn write_all(dir: &Path, files: &[TaskFile]) -> Result<Vec<Mount>, FilesError> {
    let mut mounts = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let path = dir.join(index.to_string());
        let io = |action| {
            let path = path.clone();
            move |source| FilesError::Io {
                action,
                path,
                source,
            }
        };
        std::fs::write(&path, file.data.0.as_slice()).map_err(io("write"))?;
        std::os::unix::fs::chown(&path, Some(file.uid), Some(file.gid)).map_err(io("chown"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode))
            .map_err(io("chmod"))?;
        mounts.push(Mount {
            target: file.target.clone(),
            readonly: true,
            kind: MountKind::Bind { source: path },
        });
    }
    Ok(mounts)
}

/// Unmounts the tmpfs at `dir` (if mounted) and removes the directory (blocking).
pub fn release(dir: &Path) -> Result<(), FilesError> {
    match nix::mount::umount2(dir, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL | nix::Error::ENOENT) => {}
        Err(source) => {
            return Err(FilesError::Mount {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(FilesError::Io {
            action: "remove",
            path: dir.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let bytes = FileBytes(Arc::new(b"hunter2".to_vec()));
        assert_eq!(format!("{bytes:?}"), "FileBytes(7 bytes)");
    }
}

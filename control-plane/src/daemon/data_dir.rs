//! Who may read the data directory (issue 14, item 8): the Raft store holds the root CA's key
//! and both join tokens, so everything under `--data-dir` is the daemon's alone — directories
//! 0700, files 0600.
//!
//! Two halves keep it so. The `hive daemon` binary runs with umask 077 (`cli/daemon.rs`), so
//! whatever it creates (the Raft databases, certificates, task state) is created private; tasks
//! get Docker's umask 022 back in their own process (`executor/process.rs`). And [`secure`], at
//! every start, restricts what an earlier hive (or an operator's copy) left more open.

use std::io;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Mode of every directory under the data directory, the data directory included.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file under the data directory.
pub const FILE_MODE: u32 = 0o600;
/// The umask of the daemon process: what it creates is its user's alone.
pub const DAEMON_UMASK: u32 = 0o077;

#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}; the data directory must be private to the hive daemon", path.display())]
pub struct DataDirError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// Creates `data_dir` (0700) if it is missing and restricts everything under it: directories
/// to [`DIR_MODE`], regular files to [`FILE_MODE`]. Symbolic links are neither followed nor
/// changed, and other file types (sockets, FIFOs) are left alone. The unpacked image layers
/// ([`crate::image_store::LAYERS_DIR`]) keep the modes their images gave them (a container's
/// `/bin/sh` must stay executable); their 0700 parent keeps them the daemon's alone. Returns
/// how many entries were changed.
pub fn secure(data_dir: &Path) -> Result<usize, DataDirError> {
    let fail = |action, path: &Path| {
        let path = path.to_owned();
        move |source| DataDirError {
            action,
            path,
            source,
        }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(data_dir)
        .map_err(fail("create", data_dir))?;
    let mut changed = 0;
    let layers = data_dir.join(crate::image_store::LAYERS_DIR);
    let mut pending = vec![data_dir.to_owned()];
    while let Some(dir) = pending.pop() {
        changed += restrict(&dir, DIR_MODE).map_err(fail("restrict the permissions of", &dir))?;
        let entries = std::fs::read_dir(&dir).map_err(fail("list", &dir))?;
        for entry in entries {
            let entry = entry.map_err(fail("list", &dir))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(fail("inspect", &path))?;
            if kind.is_dir() && path == layers {
                changed += restrict(&path, DIR_MODE)
                    .map_err(fail("restrict the permissions of", &path))?;
            } else if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                changed += restrict(&path, FILE_MODE)
                    .map_err(fail("restrict the permissions of", &path))?;
            }
        }
    }
    if changed > 0 {
        tracing::info!(
            dir = %data_dir.display(),
            changed,
            "restricted the data directory to the daemon (directories 0700, files 0600)"
        );
    }
    Ok(changed)
}

/// Sets `path`'s permission bits to `mode` if they differ; 1 if it changed them.
fn restrict(path: &Path, mode: u32) -> io::Result<usize> {
    // symlink_metadata: `path` came from a listing as a directory or a regular file, never a
    // link, so this reads the entry itself.
    let current = std::fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    if current == mode {
        return Ok(0);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn everything_under_the_data_dir_becomes_private() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("hive");
        let raft = data.join("raft");
        std::fs::create_dir_all(&raft).unwrap();
        for dir in [&data, &raft] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let db = raft.join("state.redb");
        std::fs::write(&db, "x").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let outside = root.path().join("outside");
        std::fs::write(&outside, "x").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();

        assert_eq!(secure(&data).unwrap(), 3);
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&raft), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&outside), 0o644, "links are not followed");
        assert_eq!(secure(&data).unwrap(), 0, "nothing left to change");
    }

    #[test]
    fn unpacked_image_layers_keep_their_modes() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("hive");
        let layers = data.join(crate::image_store::LAYERS_DIR);
        let bin = layers.join("abc").join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let sh = bin.join("sh");
        std::fs::write(&sh, "x").unwrap();
        std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&layers, std::fs::Permissions::from_mode(0o755)).unwrap();
        secure(&data).unwrap();
        assert_eq!(mode(&sh), 0o755);
        assert_eq!(
            mode(&layers),
            0o700,
            "the layers' directory itself is private"
        );
    }

    #[test]
    fn a_missing_data_dir_is_created_private() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("a/b");
        secure(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
    }
}

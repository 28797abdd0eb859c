//! The one way the daemon replaces a file of its data directory (the node file, the store's
//! key file, the image index): a crash leaves the old file or the new one, never a mix, and the
//! file is the daemon's alone (0600) from its first byte, whatever the process's umask.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A failed step of [`write`] or [`remove`]: what was being done, to which path.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct FileError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn fail(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
    let path = path.to_owned();
    move |source| FileError {
        action,
        path,
        source,
    }
}

/// Replaces `path` with `bytes`: a temporary file beside it (created 0600 by `tempfile`),
/// fsync, rename over `path`, fsync of the directory. Creates the directory if it is missing.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(fail("create", dir))?;
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(fail("create a file in", dir))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(fail("write", path))?;
    temp.persist(path).map_err(|e| FileError {
        action: "replace",
        path: path.to_owned(),
        source: e.error,
    })?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail("sync", dir))
}

/// Removes `path`; a file that is not there is already removed.
pub fn remove(path: &Path) -> Result<(), FileError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(FileError {
            action: "remove",
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn replaces_privately_and_removes_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("file.json");
        write(&path, b"one").unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert!(!path.exists());
    }
}

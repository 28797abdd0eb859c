//! Blobs by digest (`blobs/sha256/<hex>`, 0600), each verified before it gets its name: a
//! blob is written to a temporary file, hashed on the way, fsynced and only then renamed into
//! place, so a wrong digest, a truncated download or a crash leaves nothing under a digest.

use std::fs::File;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use super::digest::Digest;
use super::error::{ImageError, io};

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    tmp: PathBuf,
}

impl BlobStore {
    /// `dir` holds the blobs, `tmp` the files being written (same file system).
    pub fn new(dir: PathBuf, tmp: PathBuf) -> Self {
        Self { dir, tmp }
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// A new blob being written; nothing is stored unless [`BlobWriter::commit`] succeeds.
    pub fn writer(&self) -> Result<BlobWriter, ImageError> {
        let file = NamedTempFile::new_in(&self.tmp).map_err(io("create a file in", &self.tmp))?;
        Ok(BlobWriter {
            file,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Stores `bytes` as the blob `expected`.
    pub fn put(&self, bytes: &[u8], expected: &Digest) -> Result<(), ImageError> {
        let mut writer = self.writer()?;
        writer.write(bytes)?;
        writer.commit(self, expected)
    }

    /// Moves a file already hashed to `digest` (e.g. spooled from an archive) into the store.
    pub fn adopt(&self, file: NamedTempFile, digest: &Digest) -> Result<(), ImageError> {
        let target = self.path(digest);
        if target.is_file() {
            return Ok(());
        }
        file.as_file().sync_all().map_err(io("sync", file.path()))?;
        file.persist(&target).map_err(|e| ImageError::Io {
            action: "store the blob",
            path: target.clone(),
            source: e.error,
        })?;
        sync_dir(&self.dir)
    }

    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let path = self.path(digest);
        std::fs::read(&path).map_err(io("read the blob", path))
    }

    pub fn open(&self, digest: &Digest) -> Result<File, ImageError> {
        let path = self.path(digest);
        File::open(&path).map_err(io("open the blob", path))
    }

    pub fn size(&self, digest: &Digest) -> u64 {
        std::fs::metadata(self.path(digest)).map_or(0, |m| m.len())
    }

    pub fn remove(&self, digest: &Digest) -> Result<(), ImageError> {
        let path = self.path(digest);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io("remove the blob", path)(e))
            }
            _ => Ok(()),
        }
    }

    /// The digests of every stored blob.
    pub fn list(&self) -> Result<Vec<Digest>, ImageError> {
        let entries = std::fs::read_dir(&self.dir).map_err(io("list", &self.dir))?;
        Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                format!("sha256:{}", e.file_name().to_string_lossy())
                    .parse()
                    .ok()
            })
            .collect())
    }
}

/// A blob on its way in: a temporary file and the running hash of what was written.
#[derive(Debug)]
pub struct BlobWriter {
    file: NamedTempFile,
    hasher: Sha256,
    size: u64,
}

impl BlobWriter {
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        let path = self.file.path().to_owned();
        self.file.write_all(bytes).map_err(io("write", path))
    }

    /// Copies everything `reader` yields.
    pub fn copy_from(&mut self, reader: &mut impl Read) -> Result<(), ImageError> {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = reader
                .read(&mut buffer)
                .map_err(io("read the data for", self.file.path()))?;
            if n == 0 {
                return Ok(());
            }
            self.write(&buffer[..n])?;
        }
    }

    /// The digest of what was written so far, and the temporary file holding it.
    pub fn finish(self) -> (Digest, NamedTempFile) {
        (Digest::from_hasher(self.hasher), self.file)
    }

    /// Verifies the content against `expected` and stores it under that name; on a mismatch
    /// the temporary file is removed and nothing is stored.
    pub fn commit(self, store: &BlobStore, expected: &Digest) -> Result<(), ImageError> {
        let (actual, file) = self.finish();
        if &actual != expected {
            return Err(ImageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        store.adopt(file, expected)
    }
}

/// fsync a directory so a rename into it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_digest_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (blobs, tmp) = (dir.path().join("blobs"), dir.path().join("tmp"));
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        let store = BlobStore::new(blobs.clone(), tmp.clone());
        let good = Digest::of(b"hello");
        store.put(b"hello", &good).unwrap();
        assert_eq!(store.read(&good).unwrap(), b"hello");
        let wrong = Digest::of(b"other");
        let err = store.put(b"hello", &wrong).unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(!store.contains(&wrong));
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        assert_eq!(store.list().unwrap(), vec![good]);
    }
}

//! The store's index (`images/index.json`, 0600): which images the node has, by manifest
//! digest, and which names point at them. Rewritten whole and atomically (temporary file,
//! fsync, rename) after every change; the blobs and layers it names are written first, so a
//! crash leaves at worst unreferenced content that `prune` removes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::error::{ImageError, io};
use hive_encryption::private_file;

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The blob as distributed (compressed or not).
    pub blob: Digest,
    /// sha256 of the uncompressed tar: the unpacked directory's name.
    pub diff_id: Digest,
    /// Uncompressed size in bytes.
    pub size: u64,
}

/// One image: a manifest, its configuration and layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub manifest: Digest,
    /// The image ID, as docker's (the configuration's digest).
    pub config: Digest,
    /// Lowest first.
    pub layers: Vec<LayerRecord>,
    /// The index (manifest list) this manifest was chosen from, if it came from one.
    #[serde(default)]
    pub index: Option<Digest>,
    /// `repository@digest` names (`RepoDigests`), fully qualified.
    #[serde(default)]
    pub repo_digests: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Index {
    /// By manifest digest.
    pub images: BTreeMap<Digest, ImageRecord>,
    /// Fully qualified `repository:tag` → manifest digest.
    pub tags: BTreeMap<String, Digest>,
}

impl Index {
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ImageError::Index {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(io("read", path)(e)),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), ImageError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| ImageError::Index {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        private_file::write(path, &bytes).map_err(|e| ImageError::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        })
    }

    /// The tags that point at `manifest`.
    pub fn tags_of(&self, manifest: &Digest) -> Vec<String> {
        self.tags
            .iter()
            .filter(|(_, d)| *d == manifest)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// The image `reference` names: a tag, a manifest digest or the index digest an image was
    /// chosen from.
    pub fn resolve(&self, tagged: Option<&str>, digest: Option<&Digest>) -> Option<&ImageRecord> {
        if let Some(digest) = digest {
            return self.images.get(digest).or_else(|| {
                self.images
                    .values()
                    .find(|image| image.index.as_ref() == Some(digest))
            });
        }
        tagged
            .and_then(|tag| self.tags.get(tag))
            .and_then(|manifest| self.images.get(manifest))
    }

    /// Images whose ID (config digest) starts with `prefix` (hex, optionally `sha256:`).
    pub fn by_id_prefix(&self, prefix: &str) -> Vec<&ImageRecord> {
        let prefix = prefix.strip_prefix("sha256:").unwrap_or(prefix);
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Vec::new();
        }
        let mut found: Vec<&ImageRecord> = self
            .images
            .values()
            .filter(|image| image.config.hex().starts_with(prefix))
            .collect();
        // Several manifests may share one configuration (the same image in two formats):
        // one ID, one image to the user.
        found.sort_by(|a, b| a.config.cmp(&b.config));
        found.dedup_by(|a, b| a.config == b.config);
        found
    }
}

//! The node's image store (docs/images.md): OCI images pulled from a registry or loaded from
//! a file, kept content-addressed under `<data-dir>/images/`:
//!
//! ```text
//! images/blobs/sha256/<hex>   manifests, configurations and layer blobs, verified (0600)
//! images/layers/<diff-id hex>/ each layer unpacked once, overlay-ready (see `unpack`)
//! images/tmp/                  files on their way in; emptied at start
//! images/index.json            images by manifest digest, tags → manifest
//! ```
//!
//! The executor asks [`ImageStore::ensure`] for a task's image and gets a [`LocalImage`]: the
//! unpacked layer directories (lowest first) to stack as overlay lower directories, and the
//! image's configuration. It marks the image in use while a task runs
//! ([`ImageStore::mark_in_use`] / [`ImageStore::release`]), so `image rm` refuses it.

pub mod archive;
pub mod auth;
pub mod blobs;
pub mod digest;
pub mod error;
pub mod health;
pub mod index;
pub mod pull;
pub mod reference;
pub mod resolve;
mod source;
pub mod unpack;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub use auth::RegistryAuth;
pub use digest::Digest;
pub use error::ImageError;
pub use reference::ImageReference;

use blobs::BlobStore;
use error::io;
use index::{ImageRecord, Index, LayerRecord};

/// The image store's directory under the daemon's data directory. The daemon's start-up
/// permission pass (`daemon::data_dir::secure`) leaves [`LAYERS_DIR`] under it alone: an
/// unpacked layer keeps the modes its image gave its files.
pub const STORE_DIR: &str = "images";
/// Unpacked layers, relative to the data directory.
pub const LAYERS_DIR: &str = "images/layers";

/// An image this node has, ready to run.
#[derive(Debug, Clone)]
pub struct LocalImage {
    /// The reference it was asked for (fully qualified).
    pub reference: ImageReference,
    /// The platform manifest's digest (the bytes a service pins).
    pub manifest_digest: Digest,
    /// The image ID (docker's), the configuration's digest.
    pub config_digest: Digest,
    /// Unpacked layer directories, lowest first: overlayfs lower directories in the reverse
    /// order (`lowerdir=top:...:bottom`). Whiteouts are overlayfs's (character devices 0/0,
    /// `trusted.overlay.opaque=y`). Read-only: never write into them.
    pub layers: Vec<PathBuf>,
    pub config: oci_spec::image::ImageConfiguration,
    /// The image's `HEALTHCHECK` (docker's `config.Healthcheck`), if it has one.
    pub health_check: Option<hive_store::objects::HealthConfig>,
}

/// One row of `image ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    pub id: Digest,
    pub manifest: Digest,
    /// Fully qualified `repository:tag`s.
    pub repo_tags: Vec<String>,
    /// Fully qualified `repository@digest`s.
    pub repo_digests: Vec<String>,
    /// RFC 3339, from the configuration; empty if it has none.
    pub created: String,
    /// Uncompressed bytes of all layers.
    pub size: u64,
    pub in_use: bool,
}

/// What `image rm` did, in docker's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Untagged(String),
    Deleted(Digest),
}

/// The registries the daemon reaches over plain HTTP (`--insecure-registry HOST:PORT`).
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    pub insecure: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    layers: PathBuf,
    tmp: PathBuf,
    index_path: PathBuf,
    blobs: BlobStore,
    index: Mutex<Index>,
    /// Holders (task IDs) by manifest digest. In memory: the executor marks the images of
    /// the tasks it runs or adopts after a restart.
    in_use: Mutex<BTreeMap<Digest, BTreeSet<String>>>,
    registries: RegistryOptions,
    /// One pull or load writes at a time; reads never wait for it.
    writing: tokio::sync::Mutex<()>,
}

impl ImageStore {
    /// Opens (creating, 0700) the store under `data_dir` and removes what an interrupted pull
    /// or load left in its temporary directory.
    pub fn open(data_dir: &Path, registries: RegistryOptions) -> Result<Self, ImageError> {
        let root = data_dir.join(STORE_DIR);
        let blobs_dir = root.join("blobs").join("sha256");
        let layers = data_dir.join(LAYERS_DIR);
        let tmp = root.join("tmp");
        for dir in [&root, &blobs_dir, &layers] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io("create", dir))?;
        }
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(io("create", &tmp))?;
        // Layers whose unpacking was interrupted.
        for entry in std::fs::read_dir(&layers)
            .map_err(io("list", &layers))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().ends_with(".unpacking") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let index_path = root.join("index.json");
        let index = Index::load(&index_path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                blobs: BlobStore::new(blobs_dir, tmp.clone()),
                layers,
                tmp,
                index_path,
                index: Mutex::new(index),
                in_use: Mutex::new(BTreeMap::new()),
                registries,
                writing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.inner
            .index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn in_use(&self) -> MutexGuard<'_, BTreeMap<Digest, BTreeSet<String>>> {
        self.inner
            .in_use
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    pub fn registries(&self) -> &RegistryOptions {
        &self.inner.registries
    }

    /// The directory of the unpacked layer `diff_id`.
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.inner.layers.join(diff_id.hex())
    }

    /// The image `reference` names, if this node has it.
    pub fn get(&self, reference: &ImageReference) -> Result<LocalImage, ImageError> {
        let record = self
            .index()
            .resolve(reference.tagged().as_deref(), reference.digest())
            .cloned()
            .ok_or_else(|| ImageError::NotFound {
                image: reference.to_string(),
            })?;
        self.local_image(reference, &record)
    }

    /// The image `reference` names, pulled first if this node does not have it.
    pub async fn ensure(
        &self,
        reference: &ImageReference,
        auth: Option<&RegistryAuth>,
    ) -> Result<LocalImage, ImageError> {
        match self.get(reference) {
            Err(ImageError::NotFound { .. }) => self.pull(reference, auth).await,
            found => found,
        }
    }

    /// Pulls `reference` from its registry (also when the node has a copy: a tag may have
    /// moved) and tags it.
    pub async fn pull(
        &self,
        reference: &ImageReference,
        auth: Option<&RegistryAuth>,
    ) -> Result<LocalImage, ImageError> {
        let _writing = self.inner.writing.lock().await;
        let mut record = pull::pull(self, reference, auth)
            .await
            .inspect_err(|_| self.forget_partial())?;
        let pinned = reference.with_digest(record.index.clone().unwrap_or(record.manifest.clone()));
        let repo_digest = format!(
            "{}@{}",
            pinned.repository(),
            pinned.digest().map(ToString::to_string).unwrap_or_default()
        );
        if !record.repo_digests.contains(&repo_digest) {
            record.repo_digests.push(repo_digest);
        }
        self.commit(record.clone(), reference.tagged())?;
        self.local_image(reference, &record)
    }

    /// Loads the images of a `docker save` tar or an OCI layout tar; returns each loaded
    /// image's tags (or, untagged, its ID) as `docker load` prints them.
    pub async fn load(
        &self,
        archive: impl std::io::Read + Send + 'static,
    ) -> Result<Vec<archive::Loaded>, ImageError> {
        let _writing = self.inner.writing.lock().await;
        let store = self.clone();
        let loaded = tokio::task::spawn_blocking(move || archive::load(&store, archive))
            .await
            .map_err(|e| ImageError::Archive(format!("the loader stopped: {e}")))
            .and_then(|loaded| loaded)
            .inspect_err(|_| self.forget_partial())?;
        for image in &loaded {
            let mut tags = Vec::new();
            for tag in &image.tags {
                tags.push(tag.clone());
            }
            self.commit_tags(image.record.clone(), &tags)?;
        }
        Ok(loaded)
    }

    /// Records `record` and points `tag` at it.
    fn commit(&self, record: ImageRecord, tag: Option<String>) -> Result<(), ImageError> {
        self.commit_tags(record, &tag.into_iter().collect::<Vec<_>>())
    }

    fn commit_tags(&self, record: ImageRecord, tags: &[String]) -> Result<(), ImageError> {
        let mut index = self.index();
        let manifest = record.manifest.clone();
        match index.images.get_mut(&manifest) {
            Some(existing) => {
                for d in record.repo_digests {
                    if !existing.repo_digests.contains(&d) {
                        existing.repo_digests.push(d);
                    }
                }
                if existing.index.is_none() {
                    existing.index = record.index;
                }
            }
            None => {
                index.images.insert(manifest.clone(), record);
            }
        }
        for tag in tags {
            index.tags.insert(tag.clone(), manifest.clone());
        }
        index.save(&self.inner.index_path)
    }

    /// Stores a configuration blob and every layer of an image, unpacking each layer that is
    /// not unpacked yet (blocking; `spawn_blocking` in async code).
    pub(crate) fn unpack_layers(
        &self,
        image: &str,
        layers: &[(Digest, Option<Digest>)],
    ) -> Result<Vec<LayerRecord>, ImageError> {
        let mut records = Vec::new();
        for (blob, expected_diff_id) in layers {
            let layer_error = |source| ImageError::Layer {
                image: image.to_owned(),
                layer: blob.clone(),
                source,
            };
            if let Some(diff_id) = expected_diff_id
                && self.layer_dir(diff_id).is_dir()
                && let Some(size) = self.known_layer_size(diff_id)
            {
                records.push(LayerRecord {
                    blob: blob.clone(),
                    diff_id: diff_id.clone(),
                    size,
                });
                continue;
            }
            let file = self.blobs().open(blob)?;
            // Without a known diff_id (never for pulled or loaded images: the configuration
            // lists them) the directory is named after the content's hash once known.
            let target = match expected_diff_id {
                Some(diff_id) => self.layer_dir(diff_id),
                None => self.inner.tmp.join(format!("layer-{}", blob.hex())),
            };
            let _ = std::fs::remove_dir_all(&target);
            let unpacked = unpack::unpack_layer(file, &target, expected_diff_id.as_ref())
                .map_err(layer_error)?;
            if expected_diff_id.is_none() {
                let dir = self.layer_dir(&unpacked.diff_id);
                if dir.is_dir() {
                    let _ = std::fs::remove_dir_all(&target);
                } else {
                    std::fs::rename(&target, &dir).map_err(io("rename into place", &dir))?;
                }
            }
            records.push(LayerRecord {
                blob: blob.clone(),
                diff_id: unpacked.diff_id,
                size: unpacked.size,
            });
        }
        Ok(records)
    }

    /// Whether the layer `diff_id` is unpacked and known to the index (so no blob is needed).
    pub(crate) fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).is_dir() && self.known_layer_size(diff_id).is_some()
    }

    fn known_layer_size(&self, diff_id: &Digest) -> Option<u64> {
        self.index()
            .images
            .values()
            .flat_map(|i| &i.layers)
            .find(|l| &l.diff_id == diff_id)
            .map(|l| l.size)
    }

    fn local_image(
        &self,
        reference: &ImageReference,
        record: &ImageRecord,
    ) -> Result<LocalImage, ImageError> {
        let config = self.config(record)?;
        let health_check = health::image_health_check(&self.blobs().read(&record.config)?)
            .map_err(|e| ImageError::Manifest {
                image: record.config.to_string(),
                reason: e.to_string(),
            })?;
        Ok(LocalImage {
            reference: reference.clone(),
            manifest_digest: record.manifest.clone(),
            config_digest: record.config.clone(),
            layers: record
                .layers
                .iter()
                .map(|l| self.layer_dir(&l.diff_id))
                .collect(),
            config,
            health_check,
        })
    }

    /// The parsed configuration of an image.
    pub fn config(
        &self,
        record: &ImageRecord,
    ) -> Result<oci_spec::image::ImageConfiguration, ImageError> {
        let bytes = self.blobs().read(&record.config)?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Manifest {
            image: record.config.to_string(),
            reason: format!("its configuration is not valid JSON of an OCI image: {e}"),
        })
    }

    /// Marks the image `manifest` as used by `holder` (a task ID): `image rm` and `prune`
    /// leave it alone until [`Self::release`].
    pub fn mark_in_use(&self, manifest: &Digest, holder: &str) {
        self.in_use()
            .entry(manifest.clone())
            .or_default()
            .insert(holder.to_owned());
    }

    /// Drops every mark `holder` set.
    pub fn release(&self, holder: &str) {
        let mut in_use = self.in_use();
        for holders in in_use.values_mut() {
            holders.remove(holder);
        }
        in_use.retain(|_, holders| !holders.is_empty());
    }

    fn holder_of(&self, manifest: &Digest) -> Option<String> {
        self.in_use()
            .get(manifest)
            .and_then(|h| h.iter().next().cloned())
    }

    /// Every image, newest first.
    pub fn list(&self) -> Vec<ImageSummary> {
        let index = self.index().clone();
        let mut rows: Vec<ImageSummary> = index
            .images
            .values()
            .map(|record| {
                let created = self
                    .config(record)
                    .ok()
                    .and_then(|c| c.created().clone())
                    .unwrap_or_default();
                ImageSummary {
                    id: record.config.clone(),
                    manifest: record.manifest.clone(),
                    repo_tags: index.tags_of(&record.manifest),
                    repo_digests: record.repo_digests.clone(),
                    created,
                    size: record.layers.iter().map(|l| l.size).sum(),
                    in_use: self.holder_of(&record.manifest).is_some(),
                }
            })
            .collect();
        rows.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        rows
    }

    /// The image `query` names: a reference (`nginx`, `host:5000/a:1`, `name@sha256:…`), an
    /// image ID or a unique prefix of one.
    pub fn find(&self, query: &str) -> Result<(ImageRecord, Option<String>), ImageError> {
        let not_found = || ImageError::NotFound {
            image: query.to_owned(),
        };
        let index = self.index();
        // A name first, then an ID prefix (docker's order: an image named `cafe` wins over
        // the image whose ID starts with cafe).
        let parsed = query.parse::<ImageReference>();
        if let Ok(reference) = &parsed
            && let Some(record) = index.resolve(reference.tagged().as_deref(), reference.digest())
        {
            return Ok((record.clone(), reference.tagged()));
        }
        match index.by_id_prefix(query).as_slice() {
            [only] => Ok(((*only).clone(), None)),
            [] => match parsed {
                Err(e) => Err(ImageError::Reference(e)),
                Ok(_) => Err(not_found()),
            },
            _ => Err(ImageError::Ambiguous {
                prefix: query.to_owned(),
            }),
        }
    }

    /// The record and configuration of the image `query` names, with its tags.
    pub fn inspect(
        &self,
        query: &str,
    ) -> Result<(ImageSummary, oci_spec::image::ImageConfiguration), ImageError> {
        let (record, _) = self.find(query)?;
        let config = self.config(&record)?;
        let summary = self
            .list()
            .into_iter()
            .find(|s| s.manifest == record.manifest)
            .ok_or_else(|| ImageError::NotFound {
                image: query.to_owned(),
            })?;
        Ok((summary, config))
    }

    /// `image rm QUERY`: a tag is untagged, and the image deleted once no tag is left; an ID
    /// deletes the image (every manifest of that configuration) and its tag. An image a task
    /// uses is refused.
    pub async fn remove(&self, query: &str) -> Result<Vec<Removed>, ImageError> {
        // Garbage collection must not meet a pull's blobs that are not in the index yet.
        let _writing = self.inner.writing.lock().await;
        let (record, tag) = self.find(query)?;
        let targets: Vec<ImageRecord> = match tag {
            Some(_) => vec![record.clone()],
            None => self
                .index()
                .images
                .values()
                .filter(|r| r.config == record.config)
                .cloned()
                .collect(),
        };
        for target in &targets {
            if let Some(holder) = self.holder_of(&target.manifest) {
                return Err(ImageError::InUse {
                    image: query.to_owned(),
                    holder,
                });
            }
        }
        let mut removed = Vec::new();
        {
            let mut index = self.index();
            if let Some(tag) = &tag {
                index.tags.remove(tag);
                removed.push(Removed::Untagged(familiar(tag)));
            } else {
                let tags: Vec<String> = targets
                    .iter()
                    .flat_map(|t| index.tags_of(&t.manifest))
                    .collect();
                if tags.len() > 1 {
                    return Err(ImageError::MultipleReferences {
                        id: record.config.short().to_owned(),
                    });
                }
                for tag in tags {
                    index.tags.remove(&tag);
                    removed.push(Removed::Untagged(familiar(&tag)));
                }
            }
            let mut deleted = false;
            for target in &targets {
                if index.tags_of(&target.manifest).is_empty() {
                    for d in &target.repo_digests {
                        removed.push(Removed::Untagged(familiar(d)));
                    }
                    index.images.remove(&target.manifest);
                    deleted = true;
                }
            }
            let config_left = index.images.values().any(|r| r.config == record.config);
            if deleted && !config_left {
                removed.push(Removed::Deleted(record.config.clone()));
            }
            index.save(&self.inner.index_path)?;
        }
        self.collect_garbage()?;
        Ok(removed)
    }

    /// `image prune`: removes dangling images (no tag), or with `all` every image no task
    /// uses; returns the deleted IDs and the bytes reclaimed.
    pub async fn prune(&self, all: bool) -> Result<(Vec<Removed>, u64), ImageError> {
        let _writing = self.inner.writing.lock().await;
        let mut removed = Vec::new();
        {
            let mut index = self.index();
            let victims: Vec<ImageRecord> = index
                .images
                .values()
                .filter(|r| self.holder_of(&r.manifest).is_none())
                .filter(|r| all || index.tags_of(&r.manifest).is_empty())
                .cloned()
                .collect();
            for record in &victims {
                for tag in index.tags_of(&record.manifest) {
                    index.tags.remove(&tag);
                    removed.push(Removed::Untagged(familiar(&tag)));
                }
                index.images.remove(&record.manifest);
            }
            let mut gone: Vec<&Digest> = victims
                .iter()
                .map(|r| &r.config)
                .filter(|config| !index.images.values().any(|r| &r.config == *config))
                .collect();
            gone.sort();
            gone.dedup();
            removed.extend(gone.into_iter().map(|c| Removed::Deleted(c.clone())));
            index.save(&self.inner.index_path)?;
        }
        let reclaimed = self.collect_garbage()?;
        Ok((removed, reclaimed))
    }

    /// After a failed pull or load (the write lock held): removes the verified blobs and
    /// layers it stored before failing, so a refused image leaves nothing behind.
    fn forget_partial(&self) {
        if let Err(error) = self.collect_garbage() {
            tracing::warn!(%error, "cannot remove what a failed pull or load left in the image store");
        }
    }

    /// Removes blobs and unpacked layers no image refers to; returns the bytes freed.
    fn collect_garbage(&self) -> Result<u64, ImageError> {
        let index = self.index().clone();
        let mut live_blobs = BTreeSet::new();
        let mut live_layers = BTreeSet::new();
        for record in index.images.values() {
            live_blobs.insert(record.manifest.clone());
            live_blobs.insert(record.config.clone());
            if let Some(i) = &record.index {
                live_blobs.insert(i.clone());
            }
            for layer in &record.layers {
                live_blobs.insert(layer.blob.clone());
                live_layers.insert(layer.diff_id.hex().to_owned());
            }
        }
        let mut freed = 0;
        for blob in self.blobs().list()? {
            if !live_blobs.contains(&blob) {
                freed += self.blobs().size(&blob);
                self.blobs().remove(&blob)?;
            }
        }
        let layers = &self.inner.layers;
        for entry in std::fs::read_dir(layers)
            .map_err(io("list", layers))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live_layers.contains(&name) {
                std::fs::remove_dir_all(entry.path()).map_err(io("remove", entry.path()))?;
            }
        }
        Ok(freed)
    }
}

/// `docker.io/library/nginx:1` → `nginx:1`, as docker prints names.
pub fn familiar(full: &str) -> String {
    let split = full.find('@').or_else(|| {
        let slash = full.rfind('/').unwrap_or(0);
        full[slash..].find(':').map(|i| slash + i)
    });
    let (name, rest) = match split {
        Some(i) => full.split_at(i),
        None => (full, ""),
    };
    let short = match name.strip_prefix("docker.io/") {
        Some(path) => path
            .strip_prefix("library/")
            .filter(|p| !p.contains('/'))
            .unwrap_or(path),
        None => name,
    };
    format!("{short}{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_names() {
        assert_eq!(familiar("docker.io/library/nginx:1"), "nginx:1");
        assert_eq!(familiar("docker.io/user/app:1"), "user/app:1");
        assert_eq!(familiar("localhost:5000/app:1"), "localhost:5000/app:1");
        assert_eq!(
            familiar("docker.io/library/nginx@sha256:abc"),
            "nginx@sha256:abc"
        );
    }
}

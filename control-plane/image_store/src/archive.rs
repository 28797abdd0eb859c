//! `image load`: images from a `docker save` tar (docker-archive: `manifest.json`, a
//! configuration and one tar per layer) or an OCI image layout tar (`oci-layout`,
//! `index.json`, `blobs/sha256/…`), plain or gzip-compressed, from a file or stdin.
//!
//! The archive is read once, front to back (stdin cannot seek): every file is spooled into the
//! store's temporary directory and hashed on the way. Then the manifests are read, every blob
//! an image names is checked against its digest (OCI) or the configuration's `diff_ids`
//! (docker-archive, whose layers are the uncompressed tars), and only verified blobs are
//! moved into the store. The spool is removed whatever happens.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{ImageIndex, ImageManifest};
use serde::Deserialize;
use tempfile::NamedTempFile;

use super::ImageStore;
use super::digest::Digest;
use super::error::ImageError;
use super::index::ImageRecord;
use super::reference::ImageReference;

/// The docker v2 schema 2 media types a docker-archive's synthesized manifest uses.
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Annotations an OCI layout names its images with.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One loaded image and the fully qualified tags it brought.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub record: ImageRecord,
    pub tags: Vec<String>,
}

/// A spooled file: its digest and the temporary file holding it.
struct Spooled {
    digest: Digest,
    file: NamedTempFile,
}

fn bad(reason: impl Into<String>) -> ImageError {
    ImageError::Archive(reason.into())
}

/// Reads the archive and stores its images (blocking).
pub fn load(store: &ImageStore, archive: impl Read) -> Result<Vec<Loaded>, ImageError> {
    let (files, links) = spool(store, archive)?;
    let archive = Spool { files, links };
    if archive.get("manifest.json").is_some() {
        load_docker_archive(store, &archive)
    } else if archive.get("index.json").is_some() {
        load_oci_layout(store, &archive)
    } else {
        Err(bad(
            "it has neither a manifest.json (docker save) nor an index.json (OCI layout)",
        ))
    }
}

struct Spool {
    files: BTreeMap<PathBuf, Spooled>,
    /// Symbolic links inside the archive (docker save links repeated layers).
    links: BTreeMap<PathBuf, PathBuf>,
}

impl Spool {
    fn get(&self, name: &str) -> Option<&Spooled> {
        let mut path = clean(Path::new(name))?;
        for _ in 0..16 {
            if let Some(file) = self.files.get(&path) {
                return Some(file);
            }
            path = self.links.get(&path)?.clone();
        }
        None
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let file = self
            .get(name)
            .ok_or_else(|| bad(format!("it names {name}, which it does not contain")))?;
        std::fs::read(file.file.path()).map_err(super::error::io("read", file.file.path()))
    }

    /// Moves the spooled `name` into the blob store, checking it is `expected` if given.
    fn store_blob(
        &self,
        store: &ImageStore,
        name: &str,
        expected: Option<&Digest>,
    ) -> Result<Digest, ImageError> {
        let file = self
            .get(name)
            .ok_or_else(|| bad(format!("it names {name}, which it does not contain")))?;
        if let Some(expected) = expected
            && expected != &file.digest
        {
            return Err(ImageError::DigestMismatch {
                expected: expected.clone(),
                actual: file.digest.clone(),
            });
        }
        if !store.blobs().contains(&file.digest) {
            // Verified above (or named by its hash): linked into place, the spool keeps its
            // own name until it is dropped.
            let target = store.blobs().path(&file.digest);
            file.file
                .as_file()
                .sync_all()
                .map_err(super::error::io("sync", file.file.path()))?;
            std::fs::hard_link(file.file.path(), &target)
                .map_err(super::error::io("store the blob", &target))?;
        }
        Ok(file.digest.clone())
    }
}

/// `./a/b` → `a/b`; `None` for paths leaving the archive.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            _ => return None,
        }
    }
    Some(out)
}

type Spooled2 = (BTreeMap<PathBuf, Spooled>, BTreeMap<PathBuf, PathBuf>);

fn spool(store: &ImageStore, archive: impl Read) -> Result<Spooled2, ImageError> {
    let mut reader = BufReader::new(archive);
    let head = std::io::BufRead::fill_buf(&mut reader).map_err(|e| bad(e.to_string()))?;
    let input: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let mut tar = tar::Archive::new(input);
    let mut files = BTreeMap::new();
    let mut links = BTreeMap::new();
    let entries = tar
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("not a valid tar archive: {e}")))?;
        let raw = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let Some(path) = clean(&raw) else {
            return Err(bad(format!("the entry {raw:?} leaves the archive")));
        };
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let Some(target) = entry.link_name().map_err(|e| bad(e.to_string()))? else {
                continue;
            };
            let base = if kind.is_symlink() {
                path.parent().map(Path::to_owned).unwrap_or_default()
            } else {
                PathBuf::new()
            };
            let mut resolved = base;
            for c in target.components() {
                match c {
                    Component::ParentDir => {
                        resolved.pop();
                    }
                    Component::Normal(p) => resolved.push(p),
                    _ => {}
                }
            }
            links.insert(path, resolved);
        } else if kind.is_file() {
            let mut writer = store.blobs().writer()?;
            writer
                .copy_from(&mut entry)
                .map_err(|e| bad(format!("reading {}: {e}", path.display())))?;
            let (digest, file) = writer.finish();
            files.insert(path, Spooled { digest, file });
        }
    }
    Ok((files, links))
}

#[derive(Debug, Deserialize)]
struct DockerArchiveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn load_docker_archive(store: &ImageStore, archive: &Spool) -> Result<Vec<Loaded>, ImageError> {
    let manifest: Vec<DockerArchiveEntry> = serde_json::from_slice(&archive.read("manifest.json")?)
        .map_err(|e| bad(format!("manifest.json is not docker's: {e}")))?;
    let mut loaded = Vec::new();
    for entry in manifest {
        // A config named after its digest (`<hex>.json`, `blobs/sha256/<hex>`) must match it.
        let named = Path::new(&entry.config).file_stem().and_then(|s| {
            format!("sha256:{}", s.to_string_lossy())
                .parse::<Digest>()
                .ok()
        });
        let config_digest = archive.store_blob(store, &entry.config, named.as_ref())?;
        let config_bytes = store.blobs().read(&config_digest)?;
        let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| {
                bad(format!(
                    "the configuration {} is not valid: {e}",
                    entry.config
                ))
            })?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != entry.layers.len() {
            return Err(bad(format!(
                "the image {} has {} layers but its configuration {} diff_ids",
                entry.config,
                entry.layers.len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        let mut descriptors = Vec::new();
        for (name, diff_id) in entry.layers.iter().zip(diff_ids) {
            let diff_id: Digest = diff_id
                .parse()
                .map_err(|e| bad(format!("the diff_id {diff_id}: {e}")))?;
            let blob = archive.store_blob(store, name, None)?;
            descriptors.push(serde_json::json!({
                "mediaType": DOCKER_LAYER_TAR,
                "size": store.blobs().size(&blob),
                "digest": blob.to_string(),
            }));
            layers.push((blob, Some(diff_id)));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": DOCKER_CONFIG,
                "size": config_bytes.len(),
                "digest": config_digest.to_string(),
            },
            "layers": descriptors,
        });
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| bad(format!("encoding a manifest: {e}")))?;
        let image = entry
            .repo_tags
            .as_ref()
            .and_then(|t| t.first().cloned())
            .unwrap_or_else(|| config_digest.to_string());
        let layers = store.unpack_layers(&image, &layers)?;
        let manifest_digest = Digest::of(&manifest_bytes);
        store.blobs().put(&manifest_bytes, &manifest_digest)?;
        let mut tags = Vec::new();
        for tag in entry.repo_tags.unwrap_or_default() {
            let reference: ImageReference = tag.parse()?;
            if let Some(tagged) = reference.tagged() {
                tags.push(tagged);
            }
        }
        loaded.push(Loaded {
            record: ImageRecord {
                manifest: manifest_digest,
                config: config_digest,
                layers,
                index: None,
                repo_digests: Vec::new(),
            },
            tags,
        });
    }
    Ok(loaded)
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn load_oci_layout(store: &ImageStore, archive: &Spool) -> Result<Vec<Loaded>, ImageError> {
    let index: ImageIndex = serde_json::from_slice(&archive.read("index.json")?)
        .map_err(|e| bad(format!("index.json is not an OCI image index: {e}")))?;
    let mut loaded = Vec::new();
    for descriptor in index.manifests() {
        let annotations = descriptor.annotations().clone().unwrap_or_default();
        let mut digest: Digest = descriptor
            .digest()
            .as_ref()
            .parse()
            .map_err(|e| bad(format!("index.json: {e}")))?;
        let mut bytes = read_verified(archive, &digest)?;
        let mut index_digest = None;
        if descriptor.media_type().to_string() == oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE {
            let nested: ImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| bad(format!("{}: not an image index: {e}", blob_name(&digest))))?;
            let chosen =
                super::pull::choose_platform(&nested).ok_or_else(|| ImageError::NoPlatform {
                    image: digest.to_string(),
                })?;
            archive.store_blob(store, &blob_name(&digest), Some(&digest))?;
            index_digest = Some(digest);
            digest = chosen
                .digest()
                .as_ref()
                .parse()
                .map_err(|e| bad(format!("image index: {e}")))?;
            bytes = read_verified(archive, &digest)?;
        }
        let manifest: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| {
            bad(format!(
                "{}: not an image manifest: {e}",
                blob_name(&digest)
            ))
        })?;
        let config_digest: Digest = manifest
            .config()
            .digest()
            .as_ref()
            .parse()
            .map_err(|e| bad(format!("manifest config: {e}")))?;
        archive.store_blob(store, &blob_name(&config_digest), Some(&config_digest))?;
        let config_bytes = store.blobs().read(&config_digest)?;
        let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| {
                bad(format!(
                    "the configuration {config_digest} is not valid: {e}"
                ))
            })?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(bad(format!(
                "the manifest {digest} has {} layers but its configuration {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let blob: Digest = layer
                .digest()
                .as_ref()
                .parse()
                .map_err(|e| bad(format!("layer: {e}")))?;
            let diff_id: Digest = diff_id
                .parse()
                .map_err(|e| bad(format!("the diff_id {diff_id}: {e}")))?;
            archive.store_blob(store, &blob_name(&blob), Some(&blob))?;
            layers.push((blob, Some(diff_id)));
        }
        let name = annotations
            .get(CONTAINERD_NAME)
            .or_else(|| annotations.get(OCI_REF_NAME))
            .cloned();
        let image = name.clone().unwrap_or_else(|| digest.to_string());
        let layers = store.unpack_layers(&image, &layers)?;
        archive.store_blob(store, &blob_name(&digest), Some(&digest))?;
        // A bare tag (`1`) names no repository: such an image is loaded untagged, as docker.
        let tags = name
            .filter(|n| n.contains('/') || n.contains(':'))
            .map(|n| n.parse::<ImageReference>())
            .transpose()?
            .and_then(|r| r.tagged())
            .into_iter()
            .collect();
        loaded.push(Loaded {
            record: ImageRecord {
                manifest: digest,
                config: config_digest,
                layers,
                index: index_digest,
                repo_digests: Vec::new(),
            },
            tags,
        });
    }
    Ok(loaded)
}

/// The bytes of the blob `digest`, checked against it.
fn read_verified(archive: &Spool, digest: &Digest) -> Result<Vec<u8>, ImageError> {
    let name = blob_name(digest);
    let file = archive
        .get(&name)
        .ok_or_else(|| bad(format!("it names {name}, which it does not contain")))?;
    if &file.digest != digest {
        return Err(ImageError::DigestMismatch {
            expected: digest.clone(),
            actual: file.digest.clone(),
        });
    }
    archive.read(&name)
}

//! What can go wrong with an image, each error naming the image or blob and the cause.

use std::path::PathBuf;

use super::digest::{Digest, DigestError};
use super::reference::ReferenceError;
use super::unpack::LayerError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// docker's text for an image the node does not have.
    #[error("No such image: {image}")]
    NotFound { image: String },
    #[error("image {image}: {source}")]
    Digest {
        image: String,
        #[source]
        source: DigestError,
    },
    #[error(
        "blob {expected} is corrupt: its content hashes to {actual}; nothing was stored (pull or load the image again)"
    )]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("image {image}: layer {layer}: {source}")]
    Layer {
        image: String,
        layer: Digest,
        #[source]
        source: LayerError,
    },
    #[error("image {image}: {reason}")]
    Manifest { image: String, reason: String },
    #[error("no matching manifest for linux/amd64 in the manifest list entries of {image}")]
    NoPlatform { image: String },
    /// The registry's own words (`unauthorized: ...`, `manifest unknown`), as docker shows them.
    #[error("{0}")]
    Registry(String),
    #[error("invalid image archive: {0}")]
    Archive(String),
    #[error("reading the registry credentials in {}: {reason}", path.display())]
    Credentials { path: PathBuf, reason: String },
    #[error(
        "conflict: unable to remove {image} (cannot be forced) - image is being used by task {holder}"
    )]
    InUse { image: String, holder: String },
    #[error(
        "conflict: unable to delete {id} (must be forced) - image is referenced in multiple repositories; remove it by name"
    )]
    MultipleReferences { id: String },
    #[error("image ID prefix {prefix} names more than one image; give more of it")]
    Ambiguous { prefix: String },
    #[error("{image} is one of hive's built-in images; it needs no pull")]
    Builtin { image: String },
    #[error("the image store cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the image store's index {} is unreadable: {reason}; move it away to start with an empty store", path.display())]
    Index { path: PathBuf, reason: String },
}

/// `map_err` helper: an I/O error with what was being done and where.
pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.into();
    move |source| ImageError::Io {
        action,
        path,
        source,
    }
}

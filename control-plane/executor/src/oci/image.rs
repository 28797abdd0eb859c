//! The executor's view of an OCI image: its unpacked layers and its
//! configuration ([`ContainerImage`]), obtained by reference from an
//! [`ImageSource`] (the node's image store implements it).

use std::{
    fmt::Debug,
    path::{Path, PathBuf},
};

use futures::future::BoxFuture;
use oci_spec::image::{Config, ImageConfiguration};

/// An image ready to run: the layer directories the store unpacked (OCI
/// whiteouts already applied as overlayfs expects them), lowest first, and the
/// image's configuration (Entrypoint, Cmd, Env, WorkingDir, User, StopSignal).
///
/// The executor never writes into `layers`: they are the read-only lower
/// directories of each task's overlay root, shared by every task of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    /// Unpacked layer directories, lowest (base) first. At least one.
    pub layers: Vec<PathBuf>,
    pub config: ImageConfiguration,
    /// The image's `HEALTHCHECK` (docker's `config.Healthcheck`), if it has one.
    pub health_check: Option<hive_store::objects::HealthConfig>,
}

impl ContainerImage {
    /// The image's runtime configuration, if it has one.
    pub fn runtime_config(&self) -> Option<&Config> {
        self.config.config().as_ref()
    }

    /// The topmost layer's copy of `path` (relative to the root), never
    /// following a symbolic link (one could point outside the image). `None`
    /// when the topmost layer that has it does not have a plain file there
    /// (a whiteout, a link, a directory) or no layer has it.
    pub fn file(&self, path: &Path) -> Option<PathBuf> {
        for layer in self.layers.iter().rev() {
            let mut candidate = layer.clone();
            let mut present = true;
            for part in path.components() {
                if let std::path::Component::Normal(part) = part {
                    candidate.push(part);
                    match std::fs::symlink_metadata(&candidate) {
                        Ok(meta) if meta.file_type().is_symlink() => return None,
                        Ok(_) => {}
                        Err(_) => {
                            present = false;
                            break;
                        }
                    }
                }
            }
            if present {
                let regular = std::fs::symlink_metadata(&candidate).is_ok_and(|m| m.is_file());
                return regular.then_some(candidate);
            }
        }
        None
    }
}

/// Where the executor gets OCI images from. The node's image store
/// implements it; `image` is the task's image reference as the service
/// pinned it (`registry/name@sha256:...`). The node's store pulls an image it
/// does not have (as Docker's prepare does), with the service's registry
/// credentials when it has some (`auth`); a task whose image cannot be had is
/// rejected with the returned error.
pub trait ImageSource: Send + Sync + Debug {
    fn image<'a>(
        &'a self,
        reference: &'a str,
        auth: Option<&'a hive_store::objects::RegistryAuth>,
    ) -> BoxFuture<'a, Result<ContainerImage, ImageSourceError>>;
}

/// Why an image cannot be had; shown in `service ps` as the task's error.
#[derive(Debug, thiserror::Error)]
pub enum ImageSourceError {
    /// Docker's message for an image that is not on the node.
    #[error("No such image: {reference}")]
    NotFound { reference: String },
    /// Not on the node, and its registry could not give it: docker's message (dockerd logs
    /// the pull's failure and rejects the task with `No such image`), with the registry's
    /// cause after it.
    #[error("No such image: {reference}: {reason}")]
    NotPulled { reference: String, reason: String },
    #[error("image {reference:?}: {reason}")]
    Unusable { reference: String, reason: String },
}

//! Resolving a reference to the digest a service pins (issue 16 item 1), as dockerd's
//! `/distribution/{name}/json` and the docker CLI's `image@sha256:` do, so every node runs
//! the same bytes.
//!
//! - An image this node **loaded** from a file (no `RepoDigests`: it never came from a
//!   registry) is pinned from the store, without asking a registry: the air-gapped case.
//!   Every node must then have loaded the same bytes, which is what pinning means.
//! - Any other image is asked of its registry (the manifest's digest, an index's when the
//!   tag names one, as docker pins); if the registry cannot answer, the store's copy pinned
//!   from the same repository is used, else the reference stays unpinned and the caller warns.
//!   A registry that answered (unauthorized, unknown tag) is believed: no fallback then.

use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};

use super::ImageStore;
use super::auth::RegistryAuth;
use super::digest::Digest;
use super::error::ImageError;
use super::pull;
use super::reference::ImageReference;

/// What a reference resolved to: its digest, with the manifest's media type and size when a
/// registry answered (dockerd's `Descriptor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Where the digest came from.
    pub from: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Registry,
    Store,
}

const ACCEPTED: [&str; 4] = [
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

/// The pinned form docker writes in a service spec: `name:tag@sha256:...` (familiar name,
/// `:latest` implied), or the reference unchanged when it already names a digest.
pub fn pinned(text: &str, reference: &ImageReference, digest: &Digest) -> String {
    if reference.digest().is_some() {
        return text.to_owned();
    }
    let tagged = reference
        .tagged()
        .unwrap_or_else(|| format!("{}:latest", reference.repository()));
    format!("{}@{digest}", super::familiar(&tagged))
}

impl ImageStore {
    /// The digest `reference` names now (see the module's rules).
    pub async fn resolve(
        &self,
        reference: &ImageReference,
        auth: Option<&RegistryAuth>,
    ) -> Result<Resolved, ImageError> {
        if let Some(digest) = reference.digest() {
            return Ok(Resolved {
                digest: digest.clone(),
                media_type: String::new(),
                size: 0,
                from: Source::Store,
            });
        }
        let local = self.local_digest(reference);
        if let Some((digest, false)) = &local {
            return Ok(Resolved {
                digest: digest.clone(),
                media_type: String::new(),
                size: 0,
                from: Source::Store,
            });
        }
        match self.ask_registry(reference, auth).await {
            Ok(resolved) => Ok(resolved),
            Err(error) => match local {
                // Only a registry that cannot be reached falls back to the store: one that
                // answered (refused the credentials, does not know the tag) is believed.
                Some((digest, _)) if !answered(&error) => {
                    tracing::debug!(image = %reference, %error, "pinned from the store");
                    Ok(Resolved {
                        digest,
                        media_type: String::new(),
                        size: 0,
                        from: Source::Store,
                    })
                }
                _ => Err(error),
            },
        }
    }

    /// The store's digest for `reference` (its index's when it came from one) and whether
    /// it came from a registry.
    fn local_digest(&self, reference: &ImageReference) -> Option<(Digest, bool)> {
        let record = self
            .index()
            .resolve(reference.tagged().as_deref(), None)
            .cloned()?;
        let pulled = !record.repo_digests.is_empty();
        Some((record.index.unwrap_or(record.manifest), pulled))
    }

    async fn ask_registry(
        &self,
        reference: &ImageReference,
        auth: Option<&RegistryAuth>,
    ) -> Result<Resolved, ImageError> {
        let image = reference.to_string();
        let client = pull::client(self);
        let (bytes, named) = client
            .pull_manifest_raw(&reference.to_oci(), &super::auth::to_oci(auth), &ACCEPTED)
            .await
            .map_err(|e| pull::registry_error(&image, e))?;
        let digest = pull::verified(&image, &bytes, &named)?;
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(rename = "mediaType", default)]
            media_type: String,
        }
        let media_type = serde_json::from_slice::<Probe>(&bytes)
            .map(|p| p.media_type)
            .unwrap_or_default();
        Ok(Resolved {
            digest,
            media_type,
            size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            from: Source::Registry,
        })
    }
}

/// The registry answered with a refusal (rather than not being reachable).
fn answered(error: &ImageError) -> bool {
    match error {
        ImageError::Registry(text) => {
            text.starts_with("unauthorized") || text.contains("manifest unknown")
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_as_docker_writes_them() {
        let digest = Digest::of(b"x");
        let r: ImageReference = "nginx".parse().expect("ref");
        assert_eq!(
            pinned("nginx", &r, &digest),
            format!("nginx:latest@{digest}")
        );
        let r: ImageReference = "reg.example:5000/team/app:2".parse().expect("ref");
        assert_eq!(
            pinned("reg.example:5000/team/app:2", &r, &digest),
            format!("reg.example:5000/team/app:2@{digest}")
        );
        let text = format!("app@{digest}");
        let r: ImageReference = text.parse().expect("ref");
        assert_eq!(pinned(&text, &r, &digest), text);
    }
}

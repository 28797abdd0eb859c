//! Pulling over the OCI distribution protocol with `oci-client`: Docker v2 schema 2 and OCI
//! manifests, image indexes and manifest lists (linux/amd64 chosen), token and basic auth.
//! Plain HTTP only for the registries the daemon was started with `--insecure-registry`.
//!
//! Every byte is verified here, not only by the client: the manifest against the digest the
//! registry named (or the reference pinned), each blob against its descriptor while it is
//! written to a temporary file, each layer against the configuration's `diff_ids`.

use std::sync::Once;

use futures::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE, OciDescriptor,
};
use oci_spec::image::{Arch, ImageIndex, ImageManifest, Os};

use super::ImageStore;
use super::auth::RegistryAuth;
use super::digest::Digest;
use super::error::ImageError;
use super::index::ImageRecord;
use super::reference::ImageReference;

const ACCEPTED: [&str; 4] = [
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// oci-client is built on rustls without a bundled provider (Cargo.toml): hive's one
/// provider, ring, becomes the process default before the first client is made.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub(crate) fn client(store: &ImageStore) -> oci_client::Client {
    install_crypto_provider();
    let insecure = store.registries().insecure.clone();
    oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(insecure),
        platform_resolver: Some(Box::new(oci_client::client::linux_amd64_resolver)),
        ..ClientConfig::default()
    })
}

/// Pulls `reference` into the store and returns its record (not yet in the index).
pub(crate) async fn pull(
    store: &ImageStore,
    reference: &ImageReference,
    auth: Option<&RegistryAuth>,
) -> Result<ImageRecord, ImageError> {
    let image = reference.to_string();
    let client = client(store);
    let oci_auth = RegistryAuth::to_oci(auth);
    let oci_ref = reference.to_oci();
    let (bytes, digest) = client
        .pull_manifest_raw(&oci_ref, &oci_auth, &ACCEPTED)
        .await
        .map_err(|e| registry_error(&image, e))?;
    let digest = verified(&image, &bytes, &digest)?;
    let (manifest_bytes, manifest_digest, index_digest) = if is_index(&bytes) {
        store.blobs().put(&bytes, &digest)?;
        let index: ImageIndex =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::Manifest {
                image: image.clone(),
                reason: format!("the registry answered an invalid image index: {e}"),
            })?;
        let chosen = choose_platform(&index).ok_or_else(|| ImageError::NoPlatform {
            image: image.clone(),
        })?;
        let chosen_digest = parse_digest(&image, chosen.digest().as_ref())?;
        let platform_ref = reference.with_digest(chosen_digest.clone()).to_oci();
        let (bytes, got) = client
            .pull_manifest_raw(&platform_ref, &oci_auth, &ACCEPTED)
            .await
            .map_err(|e| registry_error(&image, e))?;
        let got = verified(&image, &bytes, &got)?;
        if got != chosen_digest {
            return Err(ImageError::DigestMismatch {
                expected: chosen_digest,
                actual: got,
            });
        }
        (bytes, got, Some(digest))
    } else {
        (bytes, digest, None)
    };
    let manifest: ImageManifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| ImageError::Manifest {
            image: image.clone(),
            reason: format!("the registry answered an invalid image manifest: {e}"),
        })?;
    let config_digest = parse_digest(&image, manifest.config().digest().as_ref())?;
    fetch_blob(
        store,
        &client,
        &oci_ref,
        &image,
        &config_digest,
        manifest.config().media_type().to_string(),
    )
    .await?;
    let config_bytes = store.blobs().read(&config_digest)?;
    let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&config_bytes)
        .map_err(|e| ImageError::Manifest {
            image: image.clone(),
            reason: format!("its configuration is not valid: {e}"),
        })?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(ImageError::Manifest {
            image,
            reason: format!(
                "the manifest has {} layers but the configuration {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        });
    }
    let mut layers = Vec::new();
    for (descriptor, diff_id) in manifest.layers().iter().zip(diff_ids) {
        let blob = parse_digest(&image, descriptor.digest().as_ref())?;
        let diff_id = parse_digest(&image, diff_id)?;
        if !store.has_layer(&diff_id) {
            fetch_blob(
                store,
                &client,
                &oci_ref,
                &image,
                &blob,
                descriptor.media_type().to_string(),
            )
            .await?;
        }
        layers.push((blob, Some(diff_id)));
    }
    store.blobs().put(&manifest_bytes, &manifest_digest)?;
    let unpacking = store.clone();
    let name = image.clone();
    let layers = tokio::task::spawn_blocking(move || unpacking.unpack_layers(&name, &layers))
        .await
        .map_err(|e| ImageError::Manifest {
            image: image.clone(),
            reason: format!("unpacking stopped: {e}"),
        })??;
    Ok(ImageRecord {
        manifest: manifest_digest,
        config: config_digest,
        layers,
        index: index_digest,
        repo_digests: Vec::new(),
    })
}

/// Streams one blob into the store through a verifying temporary file.
async fn fetch_blob(
    store: &ImageStore,
    client: &oci_client::Client,
    reference: &oci_client::Reference,
    image: &str,
    digest: &Digest,
    media_type: String,
) -> Result<(), ImageError> {
    if store.blobs().contains(digest) {
        return Ok(());
    }
    let descriptor = OciDescriptor {
        digest: digest.to_string(),
        media_type,
        ..OciDescriptor::default()
    };
    let mut stream = client
        .pull_blob_stream(reference, &descriptor)
        .await
        .map_err(|e| registry_error(image, e))?;
    let mut writer = store.blobs().writer()?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ImageError::Registry(format!("error pulling {image}: reading blob {digest}: {e}"))
        })?;
        writer.write(&chunk)?;
    }
    writer.commit(store.blobs(), digest)
}

fn is_index(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Probe>(bytes).is_ok_and(|p| {
        matches!(
            p.media_type.as_deref(),
            Some(OCI_IMAGE_INDEX_MEDIA_TYPE | IMAGE_MANIFEST_LIST_MEDIA_TYPE)
        ) || (p.media_type.is_none() && p.manifests.is_some())
    })
}

/// linux/amd64, as a node of this architecture runs it.
pub(crate) fn choose_platform(index: &ImageIndex) -> Option<&oci_spec::image::Descriptor> {
    index.manifests().iter().find(|m| {
        m.platform()
            .as_ref()
            .is_some_and(|p| *p.os() == Os::Linux && *p.architecture() == Arch::Amd64)
    })
}

fn parse_digest(image: &str, text: &str) -> Result<Digest, ImageError> {
    text.parse().map_err(|source| ImageError::Digest {
        image: image.to_owned(),
        source,
    })
}

/// The digest of `bytes`, which must be the one the registry named.
pub(crate) fn verified(image: &str, bytes: &[u8], named: &str) -> Result<Digest, ImageError> {
    let named = parse_digest(image, named)?;
    let actual = Digest::of(bytes);
    if actual != named {
        return Err(ImageError::DigestMismatch {
            expected: named,
            actual,
        });
    }
    Ok(actual)
}

/// The registry's answer in docker's words.
pub(crate) fn registry_error(image: &str, error: OciDistributionError) -> ImageError {
    use OciDistributionError as E;
    let text = match &error {
        E::AuthenticationFailure(reason) => format!("unauthorized: {reason}"),
        E::UnauthorizedError { .. } => "unauthorized: authentication required".to_owned(),
        E::ImageManifestNotFoundError(_) => {
            format!("manifest for {image} not found: manifest unknown: manifest unknown")
        }
        E::RegistryError { envelope, .. } => {
            let errors: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| format!("{}: {}", code_words(&format!("{:?}", e.code)), e.message))
                .collect();
            let text = errors.join("; ");
            if text.starts_with("manifest unknown") || text.starts_with("name unknown") {
                format!("manifest for {image} not found: {text}")
            } else {
                text
            }
        }
        E::ServerError { code, message, .. } if *code == 401 => {
            format!("unauthorized: {message}")
        }
        E::ServerError { code, message, .. } if *code == 404 => {
            format!("manifest for {image} not found: manifest unknown: {message}")
        }
        E::DigestError(e) => format!("{image}: corrupt content from the registry: {e}"),
        other => format!("error pulling {image}: {other}"),
    };
    ImageError::Registry(text)
}

/// `ManifestUnknown` → `manifest unknown`, as docker prints a registry's error code.
fn code_words(code: &str) -> String {
    let mut words = String::new();
    for (i, c) in code.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            words.push(' ');
        }
        words.push(c.to_ascii_lowercase());
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_told_apart_and_linux_amd64_is_chosen() {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": IMAGE_MANIFEST_LIST_MEDIA_TYPE,
            "manifests": [
                {"mediaType": IMAGE_MANIFEST_MEDIA_TYPE, "size": 1,
                 "digest": format!("sha256:{}", "a".repeat(64)),
                 "platform": {"architecture": "arm64", "os": "linux"}},
                {"mediaType": IMAGE_MANIFEST_MEDIA_TYPE, "size": 1,
                 "digest": format!("sha256:{}", "b".repeat(64)),
                 "platform": {"architecture": "amd64", "os": "linux"}},
            ],
        });
        let bytes = serde_json::to_vec(&index).unwrap();
        assert!(is_index(&bytes));
        let parsed: ImageIndex = serde_json::from_slice(&bytes).unwrap();
        let chosen = choose_platform(&parsed).unwrap();
        assert!(chosen.digest().to_string().ends_with(&"b".repeat(64)));
        let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_IMAGE_MEDIA_TYPE, "layers": []});
        assert!(!is_index(&serde_json::to_vec(&manifest).unwrap()));
        let arm_only: ImageIndex = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "manifests": [index["manifests"][0].clone()],
        }))
        .unwrap();
        assert!(choose_platform(&arm_only).is_none());
    }

    #[test]
    fn registry_errors_read_like_dockers() {
        assert_eq!(code_words("ManifestUnknown"), "manifest unknown");
        let err = registry_error(
            "h:5000/a:1",
            OciDistributionError::UnauthorizedError { url: "u".into() },
        );
        assert_eq!(err.to_string(), "unauthorized: authentication required");
        let err = registry_error(
            "h:5000/a:1",
            OciDistributionError::ImageManifestNotFoundError("x".into()),
        );
        assert_eq!(
            err.to_string(),
            "manifest for h:5000/a:1 not found: manifest unknown: manifest unknown"
        );
    }
}

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
    let oci_auth = super::auth::to_oci(auth);
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

/// How many times a blob download is tried before the pull fails: dockerd's
/// `--max-download-attempts` default.
const DOWNLOAD_ATTEMPTS: u32 = 5;

/// dockerd waits 5 s before the second attempt, 10 s before the third, and so on.
const RETRY_STEP: std::time::Duration = if cfg!(test) {
    std::time::Duration::from_millis(10)
} else {
    std::time::Duration::from_secs(5)
};

/// Streams one blob into the store through a verifying temporary file. A download that breaks
/// on the way (connection refused or cut, the body ending early) is tried again, up to
/// [`DOWNLOAD_ATTEMPTS`] times, as dockerd retries a layer download; what the registry
/// answers (unauthorized, unknown, a status it should not send) and what the store refuses
/// (a wrong digest, a full disk) fail at once.
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
    let mut attempt = 1;
    loop {
        match fetch_once(store, client, reference, image, digest, &descriptor).await {
            Ok(()) => return Ok(()),
            Err(Fetch::Broken(err)) if attempt < DOWNLOAD_ATTEMPTS => {
                tracing::info!(%image, blob = %digest, attempt, %err, "download failed; retrying");
                tokio::time::sleep(RETRY_STEP * attempt).await;
                attempt += 1;
            }
            Err(Fetch::Broken(err) | Fetch::Refused(err)) => return Err(err),
        }
    }
}

/// Why one download attempt failed.
enum Fetch {
    /// On the way: worth another attempt.
    Broken(ImageError),
    Refused(ImageError),
}

async fn fetch_once(
    store: &ImageStore,
    client: &oci_client::Client,
    reference: &oci_client::Reference,
    image: &str,
    digest: &Digest,
    descriptor: &OciDescriptor,
) -> Result<(), Fetch> {
    let mut stream = client
        .pull_blob_stream(reference, descriptor)
        .await
        .map_err(|e| match e {
            OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => {
                Fetch::Broken(registry_error(image, e))
            }
            other => Fetch::Refused(registry_error(image, other)),
        })?;
    let mut writer = store.blobs().writer().map_err(Fetch::Refused)?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            let err =
                ImageError::Registry(format!("error pulling {image}: reading blob {digest}: {e}"));
            // The client's own digest check: the bytes arrived, wrong (dockerd does not retry
            // a layer that fails verification either).
            let corrupt = e
                .get_ref()
                .is_some_and(|inner| inner.is::<oci_client::errors::DigestError>());
            if corrupt {
                Fetch::Refused(err)
            } else {
                Fetch::Broken(err)
            }
        })?;
        writer.write(&chunk).map_err(Fetch::Refused)?;
    }
    writer.commit(store.blobs(), digest).map_err(Fetch::Refused)
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

    /// A registry on 127.0.0.1 serving one image `team/app:1` without layers, whose config
    /// download is cut short (a Content-Length, half the body, the connection closed) the
    /// first `breaks` times it is asked for. Returns its address and the number of config
    /// requests it saw.
    async fn flaky_registry(
        breaks: usize,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap();
        let config_digest = Digest::of(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest.to_string(), "size": config.len()},
            "layers": [],
        }))
        .unwrap();
        let manifest_digest = Digest::of(&manifest);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let asked = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&asked);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let (body, kind, cut): (&[u8], &str, bool) = if path.ends_with("/manifests/1") {
                    (&manifest, OCI_IMAGE_MEDIA_TYPE, false)
                } else if path.ends_with(&format!("/blobs/{config_digest}")) {
                    let n = counted.fetch_add(1, Ordering::SeqCst);
                    (&config, "application/octet-stream", n < breaks)
                } else {
                    (b"{}", "application/json", false)
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nDocker-Content-Digest: {}\r\nConnection: close\r\n\r\n",
                    body.len(),
                    if body == manifest.as_slice() {
                        manifest_digest.to_string()
                    } else {
                        Digest::of(body).to_string()
                    },
                );
                let sent = if cut { &body[..body.len() / 2] } else { body };
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.write_all(sent).await;
                let _ = socket.shutdown().await;
            }
        });
        (addr, asked)
    }

    fn store_for(dir: &std::path::Path, registry: &str) -> ImageStore {
        ImageStore::open(
            dir,
            super::super::RegistryOptions {
                insecure: vec![registry.to_owned()],
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_download_cut_short_is_tried_again_as_dockerd_does() {
        let (registry, asked) = flaky_registry(2).await;
        let dir = tempfile::tempdir().unwrap();
        let store = store_for(dir.path(), &registry);
        let reference: ImageReference = format!("{registry}/team/app:1").parse().unwrap();
        store.pull(&reference, None).await.unwrap();
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert!(store.get(&reference).is_ok());
    }

    #[tokio::test]
    async fn a_download_that_keeps_breaking_fails_after_five_attempts() {
        let (registry, asked) = flaky_registry(usize::MAX).await;
        let dir = tempfile::tempdir().unwrap();
        let store = store_for(dir.path(), &registry);
        let reference: ImageReference = format!("{registry}/team/app:1").parse().unwrap();
        let err = store.pull(&reference, None).await.unwrap_err();
        assert_eq!(
            asked.load(std::sync::atomic::Ordering::SeqCst),
            DOWNLOAD_ATTEMPTS as usize
        );
        assert!(
            err.to_string()
                .starts_with(&format!("error pulling {registry}/team/app:1")),
            "{err}"
        );
        // Nothing of it stayed.
        assert!(store.list().is_empty());
        assert!(store.blobs().list().unwrap().is_empty());
    }
}

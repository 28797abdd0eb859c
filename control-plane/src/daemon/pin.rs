//! Digest pinning at the door (issue 16 item 1): a service's image becomes
//! `name:tag@sha256:...` when it is created or updated, as dockerd and the docker CLI pin it,
//! so every node runs the same bytes. The manager the request enters resolves it with its
//! own image store (`image_store::resolve`): a loaded image from the store, any other from
//! its registry. hive's built-in images and references that already name a digest are left
//! as they are; an image that cannot be resolved stays unpinned (each node then resolves the
//! tag itself, as with docker's "could not be accessed on a registry" warning).
//!
//! A private image is resolved with the credentials the request carries
//! (`--with-registry-auth`), or on an update that carries none with those the service keeps
//! (dockerd pins with them too).

use std::time::Duration;

use crate::api::convert::registry_auth_of;
use crate::api::pb;
use crate::image_store::reference::is_builtin;
use crate::image_store::resolve::pinned;
use crate::image_store::{ImageReference, ImageStore, RegistryAuth};
use crate::manager::Manager;
use crate::store::ReadView as _;
use crate::store::objects::Service;

/// How long the door waits for a registry before it leaves the image unpinned.
const RESOLVE_PATIENCE: Duration = Duration::from_secs(15);

/// The credentials an update that carries none keeps (`registry_auth_from`), read from this
/// manager's copy of the store; none when the service cannot be read here.
pub fn kept_credentials(
    manager: &Manager,
    request: &pb::UpdateServiceRequest,
) -> Option<RegistryAuth> {
    let service = manager
        .store
        .view(|tx| tx.lookup::<Service>(&request.service))
        .ok()?;
    let spec = match request.registry_auth_from() {
        pb::RegistryAuthFrom::Spec => Some(&service.spec),
        pb::RegistryAuthFrom::PreviousSpec => service.previous_spec.as_ref(),
    }?;
    spec.task_template.container.registry_auth.clone()
}

/// Pins the image of `spec` in place, if it can be resolved: with the spec's own credentials,
/// else with `kept` (an update's).
pub async fn pin_image(
    store: &ImageStore,
    spec: Option<&mut pb::ServiceSpec>,
    kept: Option<RegistryAuth>,
) {
    let Some(container) = spec
        .and_then(|s| s.task_template.as_mut())
        .and_then(|t| t.container.as_mut())
    else {
        return;
    };
    let auth = container
        .registry_auth
        .clone()
        .and_then(registry_auth_of)
        .or(kept);
    let text = container.image.clone();
    if text.is_empty() || is_builtin(&text) {
        return;
    }
    // A malformed reference is the spec check's to refuse, with its own message.
    let Ok(reference) = text.parse::<ImageReference>() else {
        return;
    };
    if reference.digest().is_some() {
        return;
    }
    match tokio::time::timeout(RESOLVE_PATIENCE, store.resolve(&reference, auth.as_ref())).await {
        Ok(Ok(resolved)) => {
            container.image = pinned(&text, &reference, &resolved.digest);
            tracing::debug!(image = %text, pinned = %container.image, from = ?resolved.from, "image pinned");
        }
        Ok(Err(error)) => tracing::warn!(
            image = %text, %error,
            "image could not be accessed on a registry to record its digest; each node will \
             resolve it independently, possibly running different versions of the image"
        ),
        Err(_) => tracing::warn!(
            image = %text,
            "the registry did not answer in time to record the image's digest; each node will \
             resolve it independently"
        ),
    }
}

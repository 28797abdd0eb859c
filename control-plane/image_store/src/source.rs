//! The store as the executor's [`ImageSource`]: a task's image, pulled first when the node
//! does not have it (Docker's `prepare` pulls too; the task is `Preparing` meanwhile), and
//! marked in use by nothing yet (`mark_in_use` comes with the executor's task IDs).

use futures::future::BoxFuture;

use super::{ImageError, ImageReference, ImageStore, RegistryAuth};
use hive_executor::{ContainerImage, ImageSource, ImageSourceError};

impl ImageSource for ImageStore {
    fn image<'a>(
        &'a self,
        reference: &'a str,
        auth: Option<&'a RegistryAuth>,
    ) -> BoxFuture<'a, Result<ContainerImage, ImageSourceError>> {
        Box::pin(async move {
            let parsed: ImageReference =
                reference
                    .parse()
                    .map_err(|err: super::reference::ReferenceError| {
                        ImageSourceError::Unusable {
                            reference: reference.to_owned(),
                            reason: err.to_string(),
                        }
                    })?;
            match self.ensure(&parsed, auth).await {
                Ok(image) => Ok(ContainerImage {
                    layers: image.layers,
                    config: image.config,
                    health_check: image.health_check,
                }),
                Err(ImageError::NotFound { .. }) => Err(ImageSourceError::NotFound {
                    reference: reference.to_owned(),
                }),
                // The pull failed at the registry (refused, unknown, unreachable, no
                // linux/amd64): the node has no such image, as docker words it. Content that
                // arrived and was refused (corrupt, escaping, a full disk) keeps its own error.
                Err(err @ (ImageError::Registry(_) | ImageError::NoPlatform { .. })) => {
                    Err(ImageSourceError::NotPulled {
                        reference: reference.to_owned(),
                        reason: err.to_string(),
                    })
                }
                Err(err) => Err(ImageSourceError::Unusable {
                    reference: reference.to_owned(),
                    reason: err.to_string(),
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RegistryOptions;

    #[tokio::test]
    async fn a_failed_pull_reads_no_such_image_with_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        // A port nothing listens on: the pull cannot reach the registry.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let registry = format!("127.0.0.1:{port}");
        let store = ImageStore::open(
            dir.path(),
            RegistryOptions {
                insecure: vec![registry.clone()],
            },
        )
        .unwrap();
        let reference = format!("{registry}/team/app:1");
        let err = store.image(&reference, None).await.unwrap_err();
        assert!(matches!(err, ImageSourceError::NotPulled { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("No such image: {reference}: error pulling ")),
            "{text}"
        );
        // Nothing was stored.
        assert!(store.list().is_empty());
        assert!(store.blobs().list().unwrap().is_empty());
    }
}

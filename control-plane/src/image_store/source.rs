//! The store as the executor's [`ImageSource`]: a task's image, pulled first when the node
//! does not have it (Docker's `prepare` pulls too; the task is `Preparing` meanwhile), and
//! marked in use by nothing yet (`mark_in_use` comes with the executor's task IDs).

use futures::future::BoxFuture;

use super::{ImageError, ImageReference, ImageStore, RegistryAuth};
use crate::executor::{ContainerImage, ImageSource, ImageSourceError};

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
                Err(err) => Err(ImageSourceError::Unusable {
                    reference: reference.to_owned(),
                    reason: err.to_string(),
                }),
            }
        })
    }
}

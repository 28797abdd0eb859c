//! `--with-registry-auth` on `service create|update` and `stack deploy`: the credentials the
//! client's docker configuration holds for an image's registry (`image_store::auth`, the
//! lookup `docker login` and docker's credential helpers set up), sent with the service spec.
//! The manager stores them with the service and sends them only to the nodes that run one of
//! its tasks (docs/images.md, "Credentials").

use crate::cli::output::CliFailure;
use crate::image_store::auth::{credentials_for, docker_config_path};
use crate::image_store::reference::is_builtin;
use crate::image_store::{ImageError, ImageReference, RegistryAuth};
use crate::store::objects::ServiceSpec;

/// The credentials for `image`'s registry; none for hive's built-in images, a registry the
/// configuration has no entry for, or no configuration at all (docker then sends empty ones).
pub fn for_image(image: &str) -> Result<Option<RegistryAuth>, ImageError> {
    if image.is_empty() || is_builtin(image) {
        return Ok(None);
    }
    let reference: ImageReference = image.parse()?;
    let Some(path) = docker_config_path() else {
        return Ok(None);
    };
    credentials_for(&path, &reference)
}

/// Puts the credentials for `spec`'s image into it (`--with-registry-auth`).
pub fn attach(spec: &mut ServiceSpec) -> Result<(), ImageError> {
    let container = &mut spec.task_template.container;
    container.registry_auth = for_image(&container.image)?;
    Ok(())
}

impl From<ImageError> for CliFailure {
    fn from(error: ImageError) -> Self {
        Self::Usage(error.to_string())
    }
}

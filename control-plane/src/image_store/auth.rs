//! Registry credentials: a user name and password (or token) for one registry, read from the
//! client's docker configuration (`~/.docker/config.json`, as `docker login` writes it) and
//! sent to the local daemon with `hive image pull`. Never logged: `Debug` hides the secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::error::ImageError;
use super::reference::{DOCKER_HUB, ImageReference};

/// The key docker's configuration uses for Docker Hub.
const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl RegistryAuth {
    pub(crate) fn to_oci(auth: Option<&Self>) -> oci_client::secrets::RegistryAuth {
        match auth {
            Some(a) => {
                oci_client::secrets::RegistryAuth::Basic(a.username.clone(), a.password.clone())
            }
            None => oci_client::secrets::RegistryAuth::Anonymous,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

/// The credentials docker's configuration at `path` holds for `reference`'s registry; none
/// when the file or the entry is missing.
pub fn credentials_for(
    path: &Path,
    reference: &ImageReference,
) -> Result<Option<RegistryAuth>, ImageError> {
    let fail = |reason: String| ImageError::Credentials {
        path: path.to_owned(),
        reason,
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(e.to_string())),
    };
    let config: DockerConfig =
        serde_json::from_slice(&bytes).map_err(|e| fail(format!("not valid JSON: {e}")))?;
    let host = reference.registry_host();
    let entry = config.auths.iter().find(|(key, _)| {
        let key = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let key = key.split('/').next().unwrap_or(key);
        key == host
            || (host == DOCKER_HUB
                && (key
                    == DOCKER_HUB_AUTH_KEY
                        .trim_start_matches("https://")
                        .trim_end_matches("/v1/")
                    || key == "docker.io"))
    });
    let Some((_, entry)) = entry else {
        if let Some(store) = config.creds_store {
            return Err(fail(format!(
                "credentials for {host} are kept by the credential helper \"{store}\", which hive does not use; put them in \"auths\" (docker login with no credsStore)"
            )));
        }
        return Ok(None);
    };
    let Some(encoded) = &entry.auth else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| fail(format!("the \"auth\" of {host} is not base64: {e}")))?;
    let text = String::from_utf8(decoded)
        .map_err(|_| fail(format!("the \"auth\" of {host} is not UTF-8")))?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| fail(format!("the \"auth\" of {host} is not \"user:password\"")))?;
    Ok(Some(RegistryAuth {
        username: username.to_owned(),
        password: password.to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_docker_config_auths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths": {{"127.0.0.1:5000": {{"auth": "{encoded}"}}, "https://index.docker.io/v1/": {{"auth": "{encoded}"}}}}}}"#
            ),
        )
        .unwrap();
        let local: ImageReference = "127.0.0.1:5000/a:1".parse().unwrap();
        let auth = credentials_for(&path, &local).unwrap().unwrap();
        assert_eq!(auth.username, "alice");
        assert_eq!(auth.password, "s3cret");
        assert!(!format!("{auth:?}").contains("s3cret"));
        let hub: ImageReference = "nginx".parse().unwrap();
        assert!(credentials_for(&path, &hub).unwrap().is_some());
        let other: ImageReference = "other.example/a".parse().unwrap();
        assert_eq!(credentials_for(&path, &other).unwrap(), None);
        assert_eq!(
            credentials_for(&dir.path().join("missing.json"), &other).unwrap(),
            None
        );
    }
}

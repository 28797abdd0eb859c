//! Registry credentials: a user name and password (or token) for one registry, read from the
//! client's docker configuration (`~/.docker/config.json`, as `docker login` writes it) and
//! sent to the local daemon with `hive image pull`, or stored with a service by
//! `--with-registry-auth`. Never logged: `Debug` hides the secret.
//!
//! The lookup is docker's (`cli/config/configfile`): a `credHelpers` entry for the registry's
//! host, else the `credsStore`, names a helper `docker-credential-<name>` that is run as docker
//! runs it (`get`, the server address on stdin, JSON on stdout); without a helper the `auths`
//! entry's base64 `user:password` is used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::error::ImageError;
use super::reference::{DOCKER_HUB, ImageReference};

/// The key docker's configuration uses for Docker Hub.
const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// The credentials type is the store's (a service's `--with-registry-auth` keeps one).
pub use hive_store::objects::RegistryAuth;

/// `auth` as oci-client sends it: basic credentials, or anonymous without any.
pub(crate) fn to_oci(auth: Option<&RegistryAuth>) -> oci_client::secrets::RegistryAuth {
    match auth {
        Some(a) => oci_client::secrets::RegistryAuth::Basic(a.username.clone(), a.password.clone()),
        None => oci_client::secrets::RegistryAuth::Anonymous,
    }
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
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
    // The key docker looks the registry up with: Docker Hub's legacy URL, else the host.
    let server = if host == DOCKER_HUB {
        DOCKER_HUB_AUTH_KEY
    } else {
        host
    };
    let helper = config
        .cred_helpers
        .get(host)
        .or(config.creds_store.as_ref())
        .filter(|name| !name.is_empty());
    if let Some(helper) = helper {
        return helper_get(helper, server).map_err(fail);
    }
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

/// What a credential helper's `get` prints (docker-credential-helpers' `Credentials`).
#[derive(Deserialize)]
struct HelperCredentials {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// The user name docker's helpers store for an identity token: the secret is then the token,
/// which is sent as the password (as `engine_api::registry_auth` treats `identitytoken`).
const TOKEN_USERNAME: &str = "<token>";

/// Runs `docker-credential-<helper> get` with `server` on stdin, as docker does; a helper that
/// has nothing for `server` ("credentials not found") is no credentials.
fn helper_get(helper: &str, server: &str) -> Result<Option<RegistryAuth>, String> {
    run_helper(helper, &format!("docker-credential-{helper}"), server)
}

fn run_helper(helper: &str, program: &str, server: &str) -> Result<Option<RegistryAuth>, String> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "the credentials for {server} are kept by the credential helper \"{helper}\", but {program} is not installed (not found in PATH); install it, or remove \"{helper}\" from credsStore/credHelpers and run docker login again"
                )
            } else {
                format!("cannot run {program}: {e}")
            }
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| format!("cannot write to {program}: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = if stdout.trim().is_empty() {
            stderr.trim()
        } else {
            stdout.trim()
        };
        return Err(format!("{program} get failed ({}): {said}", output.status));
    }
    let found: HelperCredentials = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("{program} get did not print credentials as JSON: {e}"))?;
    if found.username.is_empty() && found.secret.is_empty() {
        return Ok(None);
    }
    let username = if found.username == TOKEN_USERNAME {
        String::new()
    } else {
        found.username
    };
    Ok(Some(RegistryAuth {
        username,
        password: found.secret,
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

    #[test]
    fn a_missing_credential_helper_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths": {"127.0.0.1:5000": {}}, "credHelpers": {"127.0.0.1:5000": "hive-test-absent"}}"#,
        )
        .unwrap();
        let local: ImageReference = "127.0.0.1:5000/a:1".parse().unwrap();
        let error = credentials_for(&path, &local).unwrap_err().to_string();
        assert!(
            error.contains("docker-credential-hive-test-absent is not installed"),
            "{error}"
        );
    }

    #[test]
    fn a_credential_helper_is_asked_as_docker_asks_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-fake");
        // Answers only for the server it is asked about on stdin, as a real helper.
        std::fs::write(
            &helper,
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\nif [ \"$server\" = reg:5000 ]; then\n  echo '{\"ServerURL\":\"reg:5000\",\"Username\":\"bob\",\"Secret\":\"pw\"}'\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n",
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let program = helper.to_str().unwrap();
        let auth = run_helper("fake", program, "reg:5000").unwrap().unwrap();
        assert_eq!(
            (auth.username.as_str(), auth.password.as_str()),
            ("bob", "pw")
        );
        assert_eq!(run_helper("fake", program, "other:5000").unwrap(), None);
    }
}

//! The `X-Registry-Auth` header: base64url of JSON `{"username", "password", ...}`, as the
//! docker CLI sends it with `--with-registry-auth` and for `/distribution`. dockerd accepts
//! it padded or not, and treats an empty or undecodable header as no credentials; so does
//! hive. The credentials are never logged (`RegistryAuth`'s `Debug` hides the password).

use axum::http::HeaderMap;
use base64::Engine as _;

use crate::image_store::RegistryAuth;

pub const HEADER: &str = "x-registry-auth";

#[derive(serde::Deserialize)]
struct AuthConfig {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// A token from an OAuth login: sent as the password, as docker's registry client does.
    #[serde(default, rename = "identitytoken")]
    identity_token: String,
}

/// The credentials `headers` carry, if any.
pub fn from_headers(headers: &HeaderMap) -> Option<RegistryAuth> {
    let raw = headers.get(HEADER)?.to_str().ok()?.trim();
    decode(raw)
}

pub fn decode(raw: &str) -> Option<RegistryAuth> {
    if raw.is_empty() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw.trim_end_matches('='))
        .ok()?;
    let config: AuthConfig = serde_json::from_slice(&bytes).ok()?;
    let password = if config.password.is_empty() {
        config.identity_token
    } else {
        config.password
    };
    (!config.username.is_empty() || !password.is_empty()).then_some(RegistryAuth {
        username: config.username,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clis_header_decodes() {
        let json = r#"{"username":"hive","password":"s3cret","serveraddress":"reg:5000"}"#;
        for engine in [
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let auth = decode(&engine.encode(json)).expect("auth");
            assert_eq!(
                (auth.username.as_str(), auth.password.as_str()),
                ("hive", "s3cret")
            );
        }
        assert!(decode("").is_none());
        assert!(decode("not base64 !").is_none());
        assert!(decode(&base64::engine::general_purpose::URL_SAFE.encode("{}")).is_none());
    }
}

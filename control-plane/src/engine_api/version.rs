//! API version negotiation as dockerd: paths may carry a `/vX.Y` prefix; versions from
//! [`MIN_VERSION`] to [`MAX_VERSION`] are served (hive answers every one the same way), others
//! are refused with dockerd's words.

use std::fmt;

use super::error::EngineError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

pub const MIN_VERSION: ApiVersion = ApiVersion {
    major: 1,
    minor: 24,
};
/// What docker 28.2 serves, and what `/_ping`'s `Api-Version` header announces.
pub const MAX_VERSION: ApiVersion = ApiVersion {
    major: 1,
    minor: 50,
};

impl ApiVersion {
    fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.split_once('.')?;
        Some(Self {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

/// Splits `/v1.44/services` into the version and `/services`. A path without a version
/// prefix is served as the newest version, as dockerd does. `Ok(None)` for no prefix.
pub fn strip_prefix(path: &str) -> Result<(Option<ApiVersion>, &str), EngineError> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok((None, path));
    };
    let (candidate, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Some(version) = ApiVersion::parse(candidate) else {
        return Ok((None, path));
    };
    if version > MAX_VERSION {
        return Err(EngineError::bad_request(format!(
            "client version {version} is too new. Maximum supported API version is {MAX_VERSION}"
        )));
    }
    if version < MIN_VERSION {
        return Err(EngineError::bad_request(format!(
            "client version {version} is too old. Minimum supported API version is {MIN_VERSION}, please upgrade your client to a newer version"
        )));
    }
    Ok((Some(version), if tail.is_empty() { "/" } else { tail }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_negotiated_as_dockerd() {
        let (v, path) = strip_prefix("/v1.44/services").expect("1.44");
        assert_eq!(
            v,
            Some(ApiVersion {
                major: 1,
                minor: 44
            })
        );
        assert_eq!(path, "/services");
        assert_eq!(
            strip_prefix("/services").expect("bare"),
            (None, "/services")
        );
        assert_eq!(
            strip_prefix("/version").expect("version"),
            (None, "/version")
        );
        let err = strip_prefix("/v1.51/info").unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(
            err.message,
            "client version 1.51 is too new. Maximum supported API version is 1.50"
        );
        assert!(
            strip_prefix("/v1.23/info")
                .unwrap_err()
                .message
                .contains("too old")
        );
    }
}

//! Image references as Docker parses them (distribution/reference `ParseNormalizedNamed`):
//! `nginx` is `docker.io/library/nginx:latest`, `registry.example:5000/team/app:tag` names
//! its registry, `name@sha256:<hex>` pins the bytes. The error texts are docker's.
//!
//! hive's own images (`hive/whoami`, `hive/echo`, `host`, `host:<program>`) are not
//! references to a registry: [`is_builtin`] tells them apart, and the executor keeps
//! running them as it always has (`executor/image.rs`).

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};

/// Docker Hub's canonical domain.
pub const DOCKER_HUB: &str = "docker.io";
/// The tag implied when a reference has neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
/// docker's limit on the length of a repository name (domain and path).
const NAME_MAX: usize = 255;
/// docker's limit on the length of a tag.
const TAG_MAX: usize = 128;

/// A fully qualified image reference: `domain/path` plus a tag, a digest or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageReference {
    /// `docker.io`, `registry.example:5000`, `localhost`, `[::1]:5000`.
    domain: String,
    /// `library/nginx`, `team/app`.
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format")]
    Format,
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    #[error("repository name must have at least one component")]
    Empty,
    #[error("repository name must not be more than 255 characters")]
    NameTooLong,
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexName(String),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// Whether `image` is one of hive's own images (built-in programs and host programs), which
/// are run without any registry or store.
pub fn is_builtin(image: &str) -> bool {
    hive_executor::image::Image::parse(image).is_ok()
}

impl ImageReference {
    /// `docker.io`, `registry.example:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry: `library/nginx`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `docker.io/library/nginx`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The name as docker shows it (`FamiliarName`): `nginx`, `user/app`,
    /// `registry.example:5000/team/app`.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DOCKER_HUB {
            match self.path.strip_prefix("library/") {
                Some(short) if !short.contains('/') => short.to_owned(),
                _ => self.path.clone(),
            }
        } else {
            self.repository()
        }
    }

    /// The same repository at `digest` (how a resolved image is pinned).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            tag: None,
            ..self.clone()
        }
    }

    /// `repository:tag` when the reference has a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|tag| format!("{}:{tag}", self.repository()))
    }

    /// The reference in `oci-client`'s terms; a digest wins over a tag, as in docker.
    pub fn to_oci(&self) -> oci_client::Reference {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => oci_client::Reference::with_digest(
                self.domain.clone(),
                self.path.clone(),
                digest.to_string(),
            ),
            (None, tag) => oci_client::Reference::with_tag(
                self.domain.clone(),
                self.path.clone(),
                tag.clone().unwrap_or_else(|| DEFAULT_TAG.to_owned()),
            ),
        }
    }

    /// The registry host a credential or `--insecure-registry` entry is keyed by: Docker
    /// Hub's credentials live under `https://index.docker.io/v1/` in docker's config.
    pub fn registry_host(&self) -> &str {
        &self.domain
    }
}

impl FromStr for ImageReference {
    type Err = ReferenceError;

    /// docker's `ParseNormalizedNamed` followed by `TagNameOnly` (`:latest` when neither a
    /// tag nor a digest is given).
    fn from_str(text: &str) -> Result<Self, ReferenceError> {
        if text.len() == 64
            && text
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            return Err(ReferenceError::HexName(text.to_owned()));
        }
        let (domain, remainder) = split_domain(text);
        let remote = remainder.split(':').next().unwrap_or(remainder);
        let remote = remote.split('@').next().unwrap_or(remote);
        if remote.to_lowercase() != remote {
            return Err(ReferenceError::Uppercase(remote.to_owned()));
        }
        let mut reference = parse(&domain, remainder, text)?;
        if reference.tag.is_none() && reference.digest.is_none() {
            reference.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(reference)
    }
}

impl fmt::Display for ImageReference {
    /// The fully qualified form: `docker.io/library/nginx:latest`, `host/app@sha256:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// docker's `splitDockerDomain`: the part before the first `/` is a registry only if it
/// looks like one (has a `.` or a `:`, is `localhost`, or has capitals); else Docker Hub.
fn split_domain(name: &str) -> (String, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            let domain = if first == "index.docker.io" {
                DOCKER_HUB
            } else {
                first
            };
            (domain.to_owned(), rest)
        }
        _ => (DOCKER_HUB.to_owned(), name),
    }
}

/// Checks `domain` and `remainder` (`path[:tag][@digest]`) against docker's grammar.
fn parse(domain: &str, remainder: &str, original: &str) -> Result<ImageReference, ReferenceError> {
    if original.is_empty() {
        return Err(ReferenceError::Empty);
    }
    let (name_and_tag, digest) = match remainder.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (remainder, None),
    };
    let (path, tag) = match name_and_tag.rsplit_once(':') {
        Some((path, tag)) => (path, Some(tag)),
        None => (name_and_tag, None),
    };
    let lowercase_original = original.to_lowercase();
    let grammar = |ok: bool| {
        if ok {
            Ok(())
        } else if lowercase_original != original && valid_lowercased(&lowercase_original) {
            Err(ReferenceError::Uppercase(path.to_owned()))
        } else {
            Err(ReferenceError::Format)
        }
    };
    grammar(valid_domain(domain))?;
    grammar(!path.is_empty() && path.split('/').all(valid_path_component))?;
    if let Some(tag) = tag {
        grammar(valid_tag(tag))?;
    }
    let digest = match digest {
        Some(text) => {
            grammar(digest_shape(text))?;
            Some(text.parse::<Digest>()?)
        }
        None => None,
    };
    let mut path = path.to_owned();
    if domain == DOCKER_HUB && !path.contains('/') {
        path = format!("library/{path}");
    }
    if domain.len() + 1 + path.len() > NAME_MAX {
        return Err(ReferenceError::NameTooLong);
    }
    Ok(ImageReference {
        domain: domain.to_owned(),
        path,
        tag: tag.map(str::to_owned),
        digest,
    })
}

/// Whether an all-lowercase copy would parse (docker then blames the capitals).
fn valid_lowercased(text: &str) -> bool {
    let (domain, remainder) = split_domain(text);
    let (name_and_tag, _) = remainder.split_once('@').unwrap_or((remainder, ""));
    let path = name_and_tag
        .rsplit_once(':')
        .map_or(name_and_tag, |(p, _)| p);
    valid_domain(&domain) && !path.is_empty() && path.split('/').all(valid_path_component)
}

/// `host[:port]`, host a DNS name, an IPv4 address or `[IPv6]`.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    if domain.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = separator == "."
            || separator == "_"
            || separator == "__"
            || separator.chars().all(|c| c == '-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    tag.len() <= TAG_MAX
        && chars.next().is_some_and(word)
        && chars.all(|c| word(c) || c == '.' || c == '-')
}

/// `algorithm:hex` in docker's reference grammar (`[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`);
/// the algorithm and length rules are [`Digest`]'s.
fn digest_shape(text: &str) -> bool {
    let Some((algorithm, hex)) = text.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric())
    });
    algorithm_ok && hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn full(text: &str) -> String {
        text.parse::<ImageReference>()
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .to_string()
    }

    fn error(text: &str) -> String {
        match text.parse::<ImageReference>() {
            Ok(r) => panic!("{text} parsed as {r}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn short_names_mean_docker_hub_and_latest() {
        assert_eq!(full("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(full("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(full("library/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(full("user/app"), "docker.io/user/app:latest");
        assert_eq!(full("docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            full("index.docker.io/library/nginx:1"),
            "docker.io/library/nginx:1"
        );
        assert_eq!(full("a/b/c/d"), "docker.io/a/b/c/d:latest");
        assert_eq!(
            full("my_app-2.x__y"),
            "docker.io/library/my_app-2.x__y:latest"
        );
    }

    #[test]
    fn registries_are_recognised_as_docker_does() {
        let r: ImageReference = "registry.example:5000/team/app:tag".parse().unwrap();
        assert_eq!(r.domain(), "registry.example:5000");
        assert_eq!(r.path(), "team/app");
        assert_eq!(r.tag(), Some("tag"));
        assert_eq!(r.familiar_repository(), "registry.example:5000/team/app");
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(full("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(full("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000/a/b:1");
        assert_eq!(full("[::1]:5000/app"), "[::1]:5000/app:latest");
        assert_eq!(full("example.com/app"), "example.com/app:latest");
        // Without a dot, a colon or `localhost`, the first component is a Hub namespace.
        assert_eq!(full("registry/app"), "docker.io/registry/app:latest");
        // A registry's single-component path gets no `library/`.
        assert_eq!(full("localhost:5000/nginx"), "localhost:5000/nginx:latest");
    }

    #[test]
    fn digests_pin_the_bytes() {
        let text = format!("nginx@sha256:{HEX}");
        let r: ImageReference = text.parse().unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().hex(), HEX);
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/nginx@sha256:{HEX}")
        );
        let both: ImageReference = format!("host:5000/a:1@sha256:{HEX}").parse().unwrap();
        assert_eq!(both.tag(), Some("1"));
        assert_eq!(
            both.to_oci().digest(),
            Some(format!("sha256:{HEX}").as_str())
        );
        let pinned = "nginx:1"
            .parse::<ImageReference>()
            .unwrap()
            .with_digest(r.digest().unwrap().clone());
        assert_eq!(pinned, r);
    }

    #[test]
    fn familiar_names_drop_docker_hub() {
        let name = |t: &str| t.parse::<ImageReference>().unwrap().familiar_repository();
        assert_eq!(name("nginx"), "nginx");
        assert_eq!(name("docker.io/library/nginx"), "nginx");
        assert_eq!(name("user/app"), "user/app");
        assert_eq!(name("library/a/b"), "library/a/b");
    }

    #[test]
    fn malformed_references_get_dockers_messages() {
        assert_eq!(
            error(""),
            "repository name must have at least one component"
        );
        assert_eq!(error("nginx:"), "invalid reference format");
        assert_eq!(error(":tag"), "invalid reference format");
        assert_eq!(error("nginx:a b"), "invalid reference format");
        assert_eq!(error("-nginx"), "invalid reference format");
        assert_eq!(error("nginx-"), "invalid reference format");
        assert_eq!(error("a//b"), "invalid reference format");
        assert_eq!(error("a/b/"), "invalid reference format");
        assert_eq!(error("nginx:-x"), "invalid reference format");
        assert_eq!(
            error(&format!("nginx:{}", "t".repeat(129))),
            "invalid reference format"
        );
        assert_eq!(error("host:port/app"), "invalid reference format");
        assert_eq!(error("nginx@sha256"), "invalid reference format");
        assert_eq!(error("nginx@sha256:abc"), "invalid reference format");
        assert_eq!(
            error("Nginx"),
            "invalid reference format: repository name (Nginx) must be lowercase"
        );
        assert_eq!(
            error("docker.io/Library/nginx"),
            "invalid reference format: repository name (Library/nginx) must be lowercase"
        );
        assert_eq!(
            error(&format!("nginx@sha256:{}", "a".repeat(63))),
            "invalid checksum digest length"
        );
        assert_eq!(
            error(&format!("nginx@sha512:{}", "a".repeat(128))),
            "unsupported digest algorithm"
        );
        assert_eq!(
            error(HEX),
            format!("invalid repository name ({HEX}), cannot specify 64-byte hexadecimal strings")
        );
        assert_eq!(
            error(&format!("a/{}", "b".repeat(260))),
            "repository name must not be more than 255 characters"
        );
        // Tags may have capitals; names may not.
        assert_eq!(full("nginx:Latest"), "docker.io/library/nginx:Latest");
    }

    #[test]
    fn hive_builtins_stay_builtins() {
        assert!(is_builtin("hive/whoami"));
        assert!(is_builtin("hive/echo:latest"));
        assert!(is_builtin("host"));
        assert!(is_builtin("host:/usr/sbin/nginx"));
        assert!(!is_builtin("nginx"));
        assert!(!is_builtin("hive/other"));
    }

    #[test]
    fn oci_client_sees_the_same_reference() {
        let r: ImageReference = "registry.example:5000/team/app:tag".parse().unwrap();
        let oci = r.to_oci();
        assert_eq!(oci.registry(), "registry.example:5000");
        assert_eq!(oci.repository(), "team/app");
        assert_eq!(oci.tag(), Some("tag"));
    }
}

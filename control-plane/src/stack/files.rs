//! A stack's secrets and configs, as `docker stack deploy` makes them (docker/cli
//! `cli/compose/convert/compose.go` and `service.go`): a top-level entry with `file:` becomes
//! an object named `STACK_key` (or its `name:`), labelled with the stack; an `external` one is
//! used by its name and never created. A service's reference names the object, and its file
//! target defaults to the Compose key, owner `0:0`, mode `0444`.
//!
//! Files are read here, before anything is created, so a missing file stops the deploy with
//! nothing half done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::compose::types::{FileObjectConfig, FileReference as ComposeReference};
use super::convert::{NAMESPACE_LABEL, scoped};
use crate::store::objects::{Annotations, FileReference, FileTarget};

/// Secrets or configs: the two are made and referenced alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    Secret,
    Config,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Config => "config",
        }
    }
}

/// One secret or config the stack owns: made from a file on the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileObject {
    pub kind: FileKind,
    pub annotations: Annotations,
    /// Absolute (the loader resolved it against the first file's directory).
    pub file: PathBuf,
}

impl FileObject {
    /// The file's bytes, with the path in the error as docker says it (`open PATH: ...`).
    pub fn read(&self) -> Result<Vec<u8>, ReadError> {
        std::fs::read(&self.file).map_err(|source| ReadError {
            path: self.file.clone(),
            source,
        })
    }
}

/// A stack's secret or config file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("open {}: {source}", path.display())]
pub struct ReadError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// A top-level secret or config, or a service's reference to one, that hive cannot make.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FileError {
    #[error(
        "{kind} {name}: {kind}.driver is not supported: hive keeps {kind}s in its own encrypted store; use `file:` or `external: true`"
    )]
    Driver { kind: &'static str, name: String },
    #[error(
        "config {0}: config.template_driver is not supported: hive does not template configs; remove the key"
    )]
    TemplateDriver(String),
    #[error("{kind} {name}: neither `file:` nor `external: true` is given")]
    NoSource { kind: &'static str, name: String },
    #[error(
        "services.{service}.{kind}s: {kind} \"{source_key}\" is not declared in the top-level {kind}s"
    )]
    Undeclared {
        service: String,
        kind: &'static str,
        source_key: String,
    },
}

/// The objects the stack makes for one top-level section (external ones are not made).
pub fn objects(
    stack: &str,
    kind: FileKind,
    section: &BTreeMap<String, FileObjectConfig>,
) -> Result<BTreeMap<String, FileObject>, FileError> {
    let mut out = BTreeMap::new();
    for (key, object) in section {
        if object.external.external {
            continue;
        }
        if !object.driver.is_empty() {
            return Err(FileError::Driver {
                kind: kind.as_str(),
                name: key.clone(),
            });
        }
        if !object.template_driver.is_empty() {
            return Err(FileError::TemplateDriver(key.clone()));
        }
        if object.file.is_empty() {
            return Err(FileError::NoSource {
                kind: kind.as_str(),
                name: key.clone(),
            });
        }
        let name = object_name(stack, key, object);
        let mut labels = object.labels.0.clone();
        labels.insert(NAMESPACE_LABEL.to_owned(), stack.to_owned());
        out.insert(
            name.clone(),
            FileObject {
                kind,
                annotations: Annotations { name, labels },
                file: Path::new(&object.file).to_path_buf(),
            },
        );
    }
    Ok(out)
}

/// The swarm name of a top-level entry: its `name:` (external ones always have one after
/// loading), else the key scoped by the stack.
fn object_name(stack: &str, key: &str, object: &FileObjectConfig) -> String {
    if object.name.is_empty() {
        scoped(stack, key)
    } else {
        object.name.clone()
    }
}

/// A service's references of one kind, by object name; the manager resolves the IDs.
pub fn references(
    stack: &str,
    service: &str,
    kind: FileKind,
    refs: &[ComposeReference],
    section: &BTreeMap<String, FileObjectConfig>,
) -> Result<Vec<FileReference>, FileError> {
    refs.iter()
        .map(|r| {
            let object = section
                .get(&r.source)
                .ok_or_else(|| FileError::Undeclared {
                    service: service.to_owned(),
                    kind: kind.as_str(),
                    source_key: r.source.clone(),
                })?;
            let defaults = FileTarget::default();
            Ok(FileReference {
                id: String::new(),
                name: object_name(stack, &r.source, object),
                target: FileTarget {
                    name: if r.target.is_empty() {
                        r.source.clone()
                    } else {
                        r.target.clone()
                    },
                    uid: if r.uid.is_empty() {
                        defaults.uid
                    } else {
                        r.uid.clone()
                    },
                    gid: if r.gid.is_empty() {
                        defaults.gid
                    } else {
                        r.gid.clone()
                    },
                    mode: r.mode.unwrap_or(defaults.mode),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::compose::types::{External, Mapping};

    fn file(path: &str) -> FileObjectConfig {
        FileObjectConfig {
            file: path.to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn objects_are_scoped_labelled_and_externals_are_not_made() {
        let mut section = BTreeMap::new();
        let mut pw = file("/tmp/pw");
        pw.labels = Mapping(BTreeMap::from([("tier".to_owned(), "db".to_owned())]));
        section.insert("pw".to_owned(), pw);
        let mut named = file("/tmp/cert");
        named.name = "shared_cert".to_owned();
        section.insert("cert".to_owned(), named);
        section.insert(
            "ext".to_owned(),
            FileObjectConfig {
                name: "ext".to_owned(),
                external: External {
                    name: String::new(),
                    external: true,
                },
                ..Default::default()
            },
        );
        let made = objects("app", FileKind::Secret, &section).unwrap();
        assert_eq!(made.keys().collect::<Vec<_>>(), ["app_pw", "shared_cert"]);
        let pw = &made["app_pw"];
        assert_eq!(pw.annotations.labels["tier"], "db");
        assert_eq!(pw.annotations.labels[NAMESPACE_LABEL], "app");
        assert_eq!(pw.file, Path::new("/tmp/pw"));
    }

    #[test]
    fn references_default_to_the_key_root_and_0444() {
        let section = BTreeMap::from([("pw".to_owned(), file("/tmp/pw"))]);
        let refs = [
            ComposeReference {
                source: "pw".to_owned(),
                ..Default::default()
            },
            ComposeReference {
                source: "pw".to_owned(),
                target: "/etc/pw".to_owned(),
                uid: "1000".to_owned(),
                gid: "1001".to_owned(),
                mode: Some(0o440),
            },
        ];
        let got = references("app", "web", FileKind::Secret, &refs, &section).unwrap();
        assert_eq!(got[0].name, "app_pw");
        assert_eq!(
            got[0].target,
            FileTarget {
                name: "pw".to_owned(),
                ..FileTarget::default()
            }
        );
        assert_eq!(got[1].target.name, "/etc/pw");
        assert_eq!(
            (got[1].target.uid.as_str(), got[1].target.mode),
            ("1000", 0o440)
        );
        let missing = [ComposeReference {
            source: "nope".to_owned(),
            ..Default::default()
        }];
        let err = references("app", "web", FileKind::Config, &missing, &section).unwrap_err();
        assert_eq!(
            err.to_string(),
            "services.web.configs: config \"nope\" is not declared in the top-level configs"
        );
    }

    #[test]
    fn drivers_and_templates_are_refused_with_what_to_do() {
        let mut with_driver = file("");
        with_driver.driver = "vault".to_owned();
        let section = BTreeMap::from([("pw".to_owned(), with_driver)]);
        let err = objects("app", FileKind::Secret, &section).unwrap_err();
        assert!(
            err.to_string().contains("use `file:` or `external: true`"),
            "{err}"
        );
        let mut templated = file("/tmp/c");
        templated.template_driver = "golang".to_owned();
        let section = BTreeMap::from([("c".to_owned(), templated)]);
        let err = objects("app", FileKind::Config, &section).unwrap_err();
        assert!(err.to_string().contains("does not template"), "{err}");
    }
}

//! `--mount` for containers: named local volumes, binds and tmpfs, turned
//! into OCI runtime mounts. Volumes (their layout is [`crate::volume_store`]'s) are made on
//! first use and outlive their tasks.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use oci_spec::runtime::{Mount as OciMount, MountBuilder};
use serde::{Deserialize, Serialize};

/// One `--mount`, as the executor receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the container.
    pub target: PathBuf,
    pub readonly: bool,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// A named local volume (`type=volume,source=NAME`). `options` are the
    /// local driver's `volume-opt`s (`type`, `device`, `o`), used when the volume is made.
    Volume {
        name: String,
        #[serde(default)]
        options: std::collections::BTreeMap<String, String>,
    },
    /// A host path (`type=bind,source=/path`); it must exist.
    Bind { source: PathBuf },
    /// A fresh, empty tmpfs on each start (`type=tmpfs,tmpfs-size=BYTES`).
    Tmpfs { size_bytes: Option<u64> },
}

/// A mount the container cannot have; the task is rejected with it.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// Docker's text (`volume/mounts/linux_parser.go`).
    #[error("invalid mount config for type \"bind\": bind source path does not exist: {}", path.display())]
    BindSourceMissing { path: PathBuf },
    #[error("invalid mount config: mount path must be absolute: {}", target.display())]
    RelativeTarget { target: PathBuf },
    #[error("invalid mount config: the mount target cannot be the container's root \"/\"")]
    RootTarget,
    #[error("Duplicate mount point: {}", target.display())]
    Duplicate { target: PathBuf },
    #[error(
        "invalid volume name {name:?}: use at least 2 characters of [a-zA-Z0-9_.-], starting with a letter or digit"
    )]
    VolumeName { name: String },
    #[error("volume {name:?}: {source}")]
    VolumeOption {
        name: String,
        source: crate::volume_store::OptionError,
    },
    /// Boxed: the volume store's errors are large and this one travels in every executor
    /// result.
    #[error(transparent)]
    Volume(Box<crate::volume_store::VolumeError>),
}

/// Docker's volume name rule (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
pub fn validate_volume_name(name: &str) -> Result<(), MountError> {
    if crate::volume_store::valid_name(name) {
        Ok(())
    } else {
        Err(MountError::VolumeName {
            name: name.to_owned(),
        })
    }
}

/// The data directory of volume `name`.
pub fn volume_data_dir(volumes_dir: &Path, name: &str) -> PathBuf {
    crate::volume_store::data_dir(volumes_dir, name)
}

/// Check every mount (targets absolute, unique; volume names; bind sources
/// exist), make missing volumes, and return the OCI mounts in order.
/// Blocking: call off the async threads.
pub fn resolve(mounts: &[Mount], volumes_dir: &Path) -> Result<Vec<OciMount>, MountError> {
    let mut targets = BTreeSet::new();
    for mount in mounts {
        if !mount.target.is_absolute() {
            return Err(MountError::RelativeTarget {
                target: mount.target.clone(),
            });
        }
        if mount.target == Path::new("/") {
            return Err(MountError::RootTarget);
        }
        if !targets.insert(mount.target.clone()) {
            return Err(MountError::Duplicate {
                target: mount.target.clone(),
            });
        }
        match &mount.kind {
            MountKind::Volume { name, options } => {
                validate_volume_name(name)?;
                crate::volume_store::validate_options(options).map_err(|source| {
                    MountError::VolumeOption {
                        name: name.clone(),
                        source,
                    }
                })?;
            }
            MountKind::Bind { source } => {
                if !source.is_absolute() || std::fs::symlink_metadata(source).is_err() {
                    return Err(MountError::BindSourceMissing {
                        path: source.clone(),
                    });
                }
            }
            MountKind::Tmpfs { .. } => {}
        }
    }
    mounts
        .iter()
        .map(|mount| {
            let mut options = Vec::new();
            let (typ, source) = match &mount.kind {
                MountKind::Volume {
                    name,
                    options: driver_options,
                } => {
                    let data = crate::volume_store::ensure(volumes_dir, name, driver_options)
                        .map_err(|e| MountError::Volume(Box::new(e)))?;
                    options.extend(["rbind", "rprivate"].map(str::to_owned));
                    ("bind", data)
                }
                MountKind::Bind { source } => {
                    options.extend(["rbind", "rprivate"].map(str::to_owned));
                    ("bind", source.clone())
                }
                MountKind::Tmpfs { size_bytes } => {
                    // Docker's tmpfs defaults: nosuid, nodev, noexec, mode 1777.
                    options.extend(["nosuid", "nodev", "noexec", "mode=1777"].map(str::to_owned));
                    if let Some(size) = size_bytes {
                        options.push(format!("size={size}"));
                    }
                    ("tmpfs", PathBuf::from("tmpfs"))
                }
            };
            options.push(if mount.readonly { "ro" } else { "rw" }.to_owned());
            Ok(oci_mount(&mount.target, typ, &source, options))
        })
        .collect()
}

/// An OCI mount entry (the builder cannot fail with every field set).
pub fn oci_mount(target: &Path, typ: &str, source: &Path, options: Vec<String>) -> OciMount {
    let mut mount = MountBuilder::default()
        .build()
        .unwrap_or_else(|_| OciMount::default());
    mount.set_destination(target.to_path_buf());
    mount.set_typ(Some(typ.to_owned()));
    mount.set_source(Some(source.to_path_buf()));
    mount.set_options(Some(options));
    mount
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(target: &str, kind: MountKind) -> Mount {
        Mount {
            target: target.into(),
            readonly: false,
            kind,
        }
    }

    #[test]
    fn a_missing_bind_source_is_dockers_error() {
        let err = resolve(
            &[mount(
                "/data",
                MountKind::Bind {
                    source: "/no/such/hive/source".into(),
                },
            )],
            Path::new("/nonexistent"),
        )
        .expect_err("missing source");
        assert_eq!(
            err.to_string(),
            "invalid mount config for type \"bind\": bind source path does not exist: /no/such/hive/source"
        );
    }

    #[test]
    fn volumes_are_made_on_first_use_and_targets_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounts = resolve(
            &[
                mount(
                    "/data",
                    MountKind::Volume {
                        name: "db".into(),
                        options: Default::default(),
                    },
                ),
                Mount {
                    readonly: true,
                    ..mount(
                        "/scratch",
                        MountKind::Tmpfs {
                            size_bytes: Some(1 << 20),
                        },
                    )
                },
            ],
            dir.path(),
        )
        .expect("resolve");
        assert!(dir.path().join("db/_data").is_dir());
        let tmpfs = mounts[1].options().clone().expect("options");
        assert!(tmpfs.contains(&"size=1048576".to_owned()) && tmpfs.contains(&"ro".to_owned()));
        for bad in [
            vec![mount("data", MountKind::Tmpfs { size_bytes: None })],
            vec![mount("/", MountKind::Tmpfs { size_bytes: None })],
            vec![
                mount("/a", MountKind::Tmpfs { size_bytes: None }),
                mount("/a", MountKind::Tmpfs { size_bytes: None }),
            ],
            vec![mount(
                "/a",
                MountKind::Volume {
                    name: "-x".into(),
                    options: Default::default(),
                },
            )],
        ] {
            assert!(resolve(&bad, dir.path()).is_err(), "{bad:?}");
        }
    }
}

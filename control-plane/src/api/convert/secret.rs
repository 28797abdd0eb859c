//! Secrets, configs and the services' references to them, store ↔ wire. A secret's data goes
//! out only through [`secret_without_data`]'s opposite, the dispatcher's `FileData`.

use super::wire::{annotations, annotations_of, meta_of, timestamp};
use crate::api::pb;
use crate::store::objects::{Config, ConfigSpec, FileReference, FileTarget, Secret, SecretSpec};

pub fn reference(r: &FileReference) -> pb::FileReference {
    pb::FileReference {
        id: r.id.clone(),
        name: r.name.clone(),
        target: r.target.name.clone(),
        uid: r.target.uid.clone(),
        gid: r.target.gid.clone(),
        mode: r.target.mode,
    }
}

pub fn reference_of(r: pb::FileReference) -> FileReference {
    FileReference {
        id: r.id,
        name: r.name,
        target: FileTarget {
            name: r.target,
            uid: r.uid,
            gid: r.gid,
            mode: r.mode,
        },
    }
}

/// The wire form of a secret, without its data: the only form any reply carries.
pub fn secret_without_data(s: &Secret) -> pb::Secret {
    pb::Secret {
        id: s.id.clone(),
        version: s.meta.version,
        created_at: Some(timestamp(s.meta.created_at)),
        updated_at: Some(timestamp(s.meta.updated_at)),
        spec: Some(pb::SecretSpec {
            annotations: Some(annotations(&s.spec.annotations)),
            data: Vec::new(),
            driver: String::new(),
        }),
    }
}

impl From<pb::Secret> for Secret {
    fn from(s: pb::Secret) -> Self {
        Self {
            meta: meta_of(s.version, s.created_at.as_ref(), s.updated_at.as_ref()),
            id: s.id,
            spec: s.spec.map(SecretSpec::from).unwrap_or_default(),
        }
    }
}

/// The driver is checked before this conversion (`manager::secrets`).
impl From<pb::SecretSpec> for SecretSpec {
    fn from(s: pb::SecretSpec) -> Self {
        Self {
            annotations: annotations_of(s.annotations),
            data: s.data,
        }
    }
}

impl From<&Config> for pb::Config {
    fn from(c: &Config) -> Self {
        Self {
            id: c.id.clone(),
            version: c.meta.version,
            created_at: Some(timestamp(c.meta.created_at)),
            updated_at: Some(timestamp(c.meta.updated_at)),
            spec: Some(pb::ConfigSpec {
                annotations: Some(annotations(&c.spec.annotations)),
                data: c.spec.data.clone(),
                templating: String::new(),
            }),
        }
    }
}

impl From<pb::Config> for Config {
    fn from(c: pb::Config) -> Self {
        Self {
            meta: meta_of(c.version, c.created_at.as_ref(), c.updated_at.as_ref()),
            id: c.id,
            spec: c.spec.map(ConfigSpec::from).unwrap_or_default(),
        }
    }
}

impl From<pb::ConfigSpec> for ConfigSpec {
    fn from(c: pb::ConfigSpec) -> Self {
        Self {
            annotations: annotations_of(c.annotations),
            data: c.data,
        }
    }
}

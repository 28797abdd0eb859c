//! Secrets and configs (Swarm's `Secret` and `Config`): named blobs of at most 500 KiB that
//! tasks get as files (docs/secrets.md). Their data lives in the store (the Raft log and its
//! snapshots) and travels to a worker only with a task that names it.

use serde::{Deserialize, Serialize};

use super::common::{Annotations, Meta};

/// A secret. Its data is never shown by any command or API; only the dispatcher reads it, to
/// send it to a node that runs a task naming it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Secret {
    pub id: String,
    pub meta: Meta,
    pub spec: SecretSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretSpec {
    /// The name, unique among secrets (the store enforces it), and labels.
    pub annotations: Annotations,
    /// The bytes, base64 in the store's JSON.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

/// A config: a secret whose data may be shown (`config inspect`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub id: String,
    pub meta: Meta,
    pub spec: ConfigSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigSpec {
    pub annotations: Annotations,
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

/// Where a task gets one secret or config: the file's name (relative: under `/run/secrets`
/// for a secret, under `/` for a config; or absolute) and its owner and mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileTarget {
    pub name: String,
    pub uid: String,
    pub gid: String,
    pub mode: u32,
}

impl Default for FileTarget {
    fn default() -> Self {
        Self {
            name: String::new(),
            uid: "0".to_owned(),
            gid: "0".to_owned(),
            mode: 0o444,
        }
    }
}

/// A service's use of a secret (`--secret`) or config (`--config`). `id` is resolved from
/// the name when the service is created or updated, so the stored spec always holds IDs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileReference {
    pub id: String,
    pub name: String,
    pub target: FileTarget,
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_base64_in_the_stored_json() {
        let secret = Secret {
            id: "s1".into(),
            spec: SecretSpec {
                annotations: Annotations::named("db"),
                data: b"hunter2".to_vec(),
            },
            ..Secret::default()
        };
        let json = serde_json::to_string(&secret).unwrap();
        assert!(json.contains("aHVudGVyMg=="), "{json}");
        assert_eq!(serde_json::from_str::<Secret>(&json).unwrap(), secret);
    }
}

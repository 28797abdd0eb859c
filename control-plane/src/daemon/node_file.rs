//! What a node remembers about its swarm membership between restarts:
//! `<data-dir>/swarm-node.json` (identity, role, Raft member ID, addresses). The certificates
//! are in `<data-dir>/certificates` (pki::CertDir), a manager's store in `<data-dir>/raft`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::private_file;
use crate::pki;

pub const NODE_FILE: &str = "swarm-node.json";
pub const RAFT_DIR: &str = "raft";
const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFile {
    pub version: u32,
    pub node_id: String,
    pub cluster_id: String,
    pub role: pki::Role,
    /// This node's member ID in the Raft group, if it is a manager.
    pub raft_id: Option<u64>,
    /// `IP:port` other managers reach this node at.
    pub advertise_addr: String,
    /// The managers' addresses as last heard, where the agent reconnects after a restart.
    pub managers: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeFileError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} is damaged ({source}); restore it from a backup, or remove the data dir's swarm state with `hive swarm leave --force`",
        path.display()
    )]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Write(#[from] private_file::FileError),
}

impl NodeFile {
    pub fn new(
        node_id: String,
        cluster_id: String,
        role: pki::Role,
        raft_id: Option<u64>,
        advertise_addr: String,
        managers: Vec<String>,
    ) -> Self {
        Self {
            version: VERSION,
            node_id,
            cluster_id,
            role,
            raft_id,
            advertise_addr,
            managers,
        }
    }

    /// The node's file, or `None` if the node is in no swarm.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, NodeFileError> {
        let path = data_dir.join(NODE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(NodeFileError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| NodeFileError::Parse { path, source })
    }

    /// Writes the file atomically and privately ([`private_file::write`]).
    pub fn save(&self, data_dir: &Path) -> Result<(), NodeFileError> {
        let path = data_dir.join(NODE_FILE);
        let text = serde_json::to_vec_pretty(self).map_err(|source| NodeFileError::Parse {
            path: path.clone(),
            source,
        })?;
        Ok(private_file::write(&path, &text)?)
    }

    pub fn remove(data_dir: &Path) -> Result<(), NodeFileError> {
        Ok(private_file::remove(&data_dir.join(NODE_FILE))?)
    }
}

/// Removes a manager's store (after leaving, or before joining afresh).
pub fn remove_raft_dir(data_dir: &Path) -> Result<(), NodeFileError> {
    let path = data_dir.join(RAFT_DIR);
    match std::fs::remove_dir_all(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NodeFileError::Io {
            action: "remove",
            path,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_absent_before_joining() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(NodeFile::load(dir.path()).unwrap(), None);
        let file = NodeFile::new(
            "n".into(),
            "c".into(),
            pki::Role::Manager,
            Some(7),
            "192.168.77.1:2377".into(),
            vec!["192.168.77.1:2377".into()],
        );
        file.save(dir.path()).unwrap();
        assert_eq!(NodeFile::load(dir.path()).unwrap(), Some(file));
        NodeFile::remove(dir.path()).unwrap();
        assert_eq!(NodeFile::load(dir.path()).unwrap(), None);
    }
}

//! Which nodes' pinned maps a reader (`hive mesh trace`, `hive mesh stats`,
//! metrics) opens: every node of a lab, one node, or a pin directory given
//! by hand.
//!
//! * Lab: `/sys/fs/bpf/hive/lab-<lab>/<node>/` ([`lab_pin_root`]; the lab
//!   crate names its pins with it).
//! * A node outside a lab: `/sys/fs/bpf/hive/<node-id>/`
//!   ([`crate::loader::DEFAULT_PIN_ROOT`]).
//! * `--pin-dir DIR`: a node's directory (it holds `HIVE_NODE`), or a root
//!   whose subdirectories are nodes.

use std::path::{Path, PathBuf};

use hive_common::maps::NODE_CONFIG;

use crate::loader::DEFAULT_PIN_ROOT;

/// The pin root of a lab's nodes, `/sys/fs/bpf/hive/lab-<lab>`: each node pins
/// under `<root>/<node>/`. The data plane owns this rule (readers such as
/// [`PinsQuery::root`] find a lab's pins by it); the lab only calls it.
pub fn lab_pin_root(lab: &str) -> PathBuf {
    Path::new(DEFAULT_PIN_ROOT).join(format!("lab-{lab}"))
}

/// The pin directory of a node outside a lab: `/sys/fs/bpf/hive/<node-id>`.
pub fn node_pin_dir(node_id: &str) -> PathBuf {
    Path::new(DEFAULT_PIN_ROOT).join(node_id)
}

/// One node's pin directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePins {
    pub name: String,
    pub dir: PathBuf,
}

/// Which node(s) to open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NodeChoice {
    /// `--node N`.
    One(String),
    /// `--all-nodes`.
    All,
    /// Neither: `HIVE_NODE` (set by `hive lab exec`) if set, else every node.
    #[default]
    Default,
}

/// Where to look.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PinsQuery {
    /// `--lab L` (or `HIVE_LAB`); `None` and no `pin_dir`: the lab
    /// `default` if it has pins, else the nodes under the default root.
    pub lab: Option<String>,
    /// `--pin-dir DIR`.
    pub pin_dir: Option<PathBuf>,
    pub nodes: NodeChoice,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodePinsError {
    #[error("no data plane is pinned under {}; is the lab up (`hive lab up`) with hive's mesh on it, or the daemon running? Use --pin-dir to point elsewhere", root.display())]
    NoNodes { root: PathBuf },
    #[error("no node {node:?} under {}; nodes there: {known}", root.display())]
    UnknownNode {
        node: String,
        root: PathBuf,
        known: String,
    },
}

fn is_node_dir(dir: &Path) -> bool {
    dir.join(NODE_CONFIG).exists()
}

/// Node directories directly under `root`, by name (lab roots skipped).
fn nodes_under(root: &Path) -> Vec<NodePins> {
    let mut nodes: Vec<NodePins> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| is_node_dir(&e.path()))
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            (!name.starts_with("lab-")).then(|| NodePins {
                name,
                dir: e.path(),
            })
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes
}

impl PinsQuery {
    /// The pin root this query looks in.
    pub fn root(&self) -> PathBuf {
        if let Some(dir) = &self.pin_dir {
            return dir.clone();
        }
        match &self.lab {
            Some(lab) => lab_pin_root(lab),
            None => {
                let default_lab = lab_pin_root("default");
                if nodes_under(&default_lab).is_empty() {
                    PathBuf::from(DEFAULT_PIN_ROOT)
                } else {
                    default_lab
                }
            }
        }
    }

    /// The nodes to open, sorted by name.
    pub fn resolve(&self) -> Result<Vec<NodePins>, NodePinsError> {
        let root = self.root();
        if is_node_dir(&root) {
            let name = root
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("node")
                .to_owned();
            return Ok(vec![NodePins { name, dir: root }]);
        }
        let all = nodes_under(&root);
        if all.is_empty() {
            return Err(NodePinsError::NoNodes { root });
        }
        let wanted = match &self.nodes {
            NodeChoice::One(n) => Some(n.clone()),
            NodeChoice::All => None,
            NodeChoice::Default => std::env::var("HIVE_NODE").ok(),
        };
        match wanted {
            None => Ok(all),
            Some(node) => match all.iter().find(|n| n.name == node) {
                Some(n) => Ok(vec![n.clone()]),
                None => Err(NodePinsError::UnknownNode {
                    node,
                    root,
                    known: all
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(root: &Path, name: &str) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(NODE_CONFIG), b"").unwrap();
    }

    #[test]
    fn resolves_all_one_or_a_single_node_dir() {
        let tmp = tempfile::tempdir().unwrap();
        node(tmp.path(), "n2");
        node(tmp.path(), "n1");
        std::fs::create_dir_all(tmp.path().join("not-a-node")).unwrap();
        let q = |nodes| PinsQuery {
            lab: None,
            pin_dir: Some(tmp.path().to_path_buf()),
            nodes,
        };
        let names = |v: Vec<NodePins>| v.into_iter().map(|n| n.name).collect::<Vec<_>>();
        assert_eq!(names(q(NodeChoice::All).resolve().unwrap()), ["n1", "n2"]);
        assert_eq!(
            names(q(NodeChoice::One("n2".into())).resolve().unwrap()),
            ["n2"]
        );
        assert!(matches!(
            q(NodeChoice::One("n9".into())).resolve(),
            Err(NodePinsError::UnknownNode { .. })
        ));
        let single = PinsQuery {
            pin_dir: Some(tmp.path().join("n1")),
            ..PinsQuery::default()
        };
        assert_eq!(names(single.resolve().unwrap()), ["n1"]);
        let empty = tempfile::tempdir().unwrap();
        let none = PinsQuery {
            pin_dir: Some(empty.path().to_path_buf()),
            ..PinsQuery::default()
        };
        assert!(matches!(none.resolve(), Err(NodePinsError::NoNodes { .. })));
    }
}

//! `hive node ls --filter/--format`, as docker's (docker/cli `cli/command/node/list.go`,
//! `formatter.go`; SwarmKit's node filters).
//!
//! Filters: `id` (ID prefix), `name` (part of the hostname or node name), `role`
//! (`manager`|`worker`), `membership` (`accepted`|`pending`), `node.label` (`KEY` or
//! `KEY=VALUE`, node labels) and `label` (the same on engine labels). Values of one key are
//! ORed, different keys ANDed.
//!
//! `--format`: a Go template (`crate::cli::format`) over docker's fields `.ID`, `.Self`,
//! `.Hostname`, `.Status`, `.Availability`, `.ManagerStatus`, `.EngineVersion`, `.TLSStatus`.

use std::collections::BTreeMap;

use crate::api::pb;
use crate::cli::format::{Cells, Format, Listing};

/// One parsed `--filter` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFilter {
    by_key: BTreeMap<String, Vec<String>>,
}

const FILTER_KEYS: [&str; 6] = ["id", "label", "membership", "name", "node.label", "role"];

impl NodeFilter {
    /// Parses `KEY=VALUE` entries; an unknown key or a bad value is docker's error.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for entry in entries {
            let (key, value) = entry.split_once('=').ok_or_else(|| {
                format!("bad format of filter (expected name=value): \"{entry}\"")
            })?;
            let key = key.trim().to_ascii_lowercase();
            if !FILTER_KEYS.contains(&key.as_str()) {
                return Err(format!(
                    "invalid filter '{key}': use one of {}",
                    FILTER_KEYS.join(", ")
                ));
            }
            let value = value.trim().to_owned();
            match key.as_str() {
                "role" if !["manager", "worker"].contains(&value.to_ascii_lowercase().as_str()) => {
                    return Err(format!("invalid role '{value}': use manager or worker"));
                }
                "membership"
                    if !["accepted", "pending"].contains(&value.to_ascii_lowercase().as_str()) =>
                {
                    return Err(format!(
                        "invalid membership '{value}': use accepted or pending"
                    ));
                }
                _ => {}
            }
            by_key.entry(key).or_default().push(value);
        }
        Ok(Self { by_key })
    }

    /// Whether `node` passes every key (any of the key's values).
    pub fn keep(&self, node: &pb::Node) -> bool {
        self.by_key.iter().all(|(key, values)| {
            values.iter().any(|value| match key.as_str() {
                "id" => node.id.starts_with(value.as_str()),
                "name" => {
                    let name = node.spec.as_ref().map_or("", |s| s.name.as_str());
                    let host = node
                        .description
                        .as_ref()
                        .map_or("", |d| d.hostname.as_str());
                    name.contains(value.as_str()) || host.contains(value.as_str())
                }
                "role" => {
                    let manager = node.role() == pb::Role::Manager;
                    manager == value.eq_ignore_ascii_case("manager")
                }
                // hive admits every node that presents a valid token (no pending membership).
                "membership" => value.eq_ignore_ascii_case("accepted"),
                "node.label" => {
                    let labels = node.spec.as_ref().map(|s| &s.labels);
                    label_matches(labels, value)
                }
                // Engine labels are not reported by hive's agents yet: none match.
                "label" => false,
                _ => false,
            })
        })
    }
}

fn label_matches(labels: Option<&std::collections::HashMap<String, String>>, want: &str) -> bool {
    let Some(labels) = labels else { return false };
    match want.split_once('=') {
        Some((key, value)) => labels.get(key).is_some_and(|v| v == value),
        None => labels.contains_key(want),
    }
}

/// `node ls --format`'s fields and their headers, in docker's spelling.
pub const NODE_LISTING: Listing = Listing {
    headers: &[
        ("ID", "ID"),
        ("Self", "SELF"),
        ("Hostname", "HOSTNAME"),
        ("Status", "STATUS"),
        ("Availability", "AVAILABILITY"),
        ("ManagerStatus", "MANAGER STATUS"),
        ("EngineVersion", "ENGINE VERSION"),
        ("TLSStatus", "TLS STATUS"),
    ],
    default_table: "table {{.ID}}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}",
};

/// One node's fields as `--format` shows them.
pub fn cells(node: &pb::Node, self_id: &str, columns: &NodeColumns) -> Cells {
    Cells::from([
        ("ID", node.id.clone()),
        ("Self", (node.id == self_id).to_string()),
        ("Hostname", columns.hostname.clone()),
        ("Status", columns.status.clone()),
        ("Availability", columns.availability.clone()),
        ("ManagerStatus", columns.manager_status.clone()),
        ("EngineVersion", columns.engine_version.clone()),
        ("TLSStatus", "Ready".to_owned()),
    ])
}

/// The column values `node ls` computes for a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeColumns {
    pub hostname: String,
    pub status: String,
    pub availability: String,
    pub manager_status: String,
    pub engine_version: String,
}

/// Renders `nodes` (already filtered and sorted) with `format`.
pub fn render(
    format: &Format,
    nodes: &[(&pb::Node, NodeColumns)],
    self_id: &str,
) -> Result<String, String> {
    let rows: Vec<Cells> = nodes
        .iter()
        .map(|(node, columns)| cells(node, self_id, columns))
        .collect();
    format.render(&NODE_LISTING, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, host: &str, role: pb::Role, labels: &[(&str, &str)]) -> pb::Node {
        pb::Node {
            id: id.into(),
            role: role.into(),
            spec: Some(pb::NodeSpec {
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..Default::default()
            }),
            description: Some(pb::NodeDescription {
                hostname: host.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn filter(entries: &[&str]) -> NodeFilter {
        NodeFilter::parse(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>())
            .expect("a valid filter")
    }

    #[test]
    fn filters_match_as_dockers_do() {
        let m = node("abc123", "n1", pb::Role::Manager, &[("zone", "a")]);
        let w = node(
            "def456",
            "n2",
            pb::Role::Worker,
            &[("zone", "b"), ("ssd", "")],
        );
        assert!(filter(&["role=manager"]).keep(&m));
        assert!(!filter(&["role=manager"]).keep(&w));
        assert!(filter(&["id=abc"]).keep(&m) && !filter(&["id=bc"]).keep(&m));
        assert!(filter(&["name=n"]).keep(&m) && filter(&["name=2"]).keep(&w));
        assert!(
            filter(&["node.label=zone=b"]).keep(&w) && !filter(&["node.label=zone=b"]).keep(&m)
        );
        assert!(filter(&["node.label=ssd"]).keep(&w) && !filter(&["node.label=ssd"]).keep(&m));
        // One key: OR. Two keys: AND.
        assert!(filter(&["name=n1", "name=n2"]).keep(&w));
        assert!(!filter(&["name=n2", "role=manager"]).keep(&w));
        assert!(filter(&["membership=accepted"]).keep(&m));
        assert!(!filter(&["membership=pending"]).keep(&m));
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        let parse = |e: &str| NodeFilter::parse(&[e.to_owned()]).unwrap_err();
        assert_eq!(
            parse("colour=red"),
            "invalid filter 'colour': use one of id, label, membership, name, node.label, role"
        );
        assert_eq!(
            parse("role"),
            "bad format of filter (expected name=value): \"role\""
        );
        assert_eq!(
            parse("role=boss"),
            "invalid role 'boss': use manager or worker"
        );
    }

    #[test]
    fn formats_render_fields_tables_and_json() {
        let n = node("abc123", "n1", pb::Role::Manager, &[]);
        let columns = NodeColumns {
            hostname: "n1".into(),
            status: "Ready".into(),
            availability: "Active".into(),
            manager_status: "Leader".into(),
            engine_version: "0.1.0".into(),
        };
        let rows = [(&n, columns)];
        let lines = Format::parse("{{.ID}}: {{.Hostname}} {{.ManagerStatus}}").unwrap();
        assert_eq!(
            render(&lines, &rows, "abc123").unwrap(),
            "abc123: n1 Leader\n"
        );
        let table = Format::parse("table {{.Hostname}}\\t{{.Self}}").unwrap();
        assert_eq!(
            render(&table, &rows, "abc123").unwrap(),
            "HOSTNAME   SELF\nn1         true\n"
        );
        let json = render(&Format::parse("json").unwrap(), &rows, "other").unwrap();
        assert!(
            json.starts_with('{')
                && json.contains("\"Hostname\":\"n1\"")
                && json.contains("\"Self\":\"false\""),
            "{json}"
        );
        let err = render(&Format::parse("{{.Colour}}").unwrap(), &rows, "x").unwrap_err();
        assert!(
            err.contains("can't evaluate field Colour") && err.contains(".Hostname"),
            "{err}"
        );
        assert!(Format::parse("{{.ID").is_err());
    }
}

//! `hive node ls --filter/--format`, as docker's (docker/cli `cli/command/node/list.go`,
//! `formatter.go`; SwarmKit's node filters).
//!
//! Filters: `id` (ID prefix), `name` (part of the hostname or node name), `role`
//! (`manager`|`worker`), `membership` (`accepted`|`pending`), `node.label` (`KEY` or
//! `KEY=VALUE`, node labels) and `label` (the same on engine labels). Values of one key are
//! ORed, different keys ANDed.
//!
//! `--format`: docker's placeholders `{{.ID}}`, `{{.Self}}`, `{{.Hostname}}`, `{{.Status}}`,
//! `{{.Availability}}`, `{{.ManagerStatus}}`, `{{.EngineVersion}}`, `{{.TLSStatus}}`, with a
//! `table ` prefix for a header and aligned columns; `json` prints one JSON object per node.
//! Go's template language itself (`if`, `range`, functions) is not implemented: anything else
//! in braces is refused with the list of what is known.

use std::collections::BTreeMap;

use crate::api::pb;

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

/// The fields a format may name, in docker's spelling.
const FIELDS: [&str; 8] = [
    "ID",
    "Self",
    "Hostname",
    "Status",
    "Availability",
    "ManagerStatus",
    "EngineVersion",
    "TLSStatus",
];

/// A parsed `--format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeFormat {
    /// `table ...`: a header row, then aligned columns split on `\t`.
    Table(Vec<Piece>),
    /// A line per node.
    Lines(Vec<Piece>),
    /// `json`: one JSON object per node.
    Json,
}

/// Literal text or a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Field(&'static str),
}

impl NodeFormat {
    pub fn parse(format: &str) -> Result<Self, String> {
        let trimmed = format.trim();
        if trimmed == "json" || trimmed == "{{json .}}" {
            return Ok(Self::Json);
        }
        match trimmed.strip_prefix("table") {
            Some(rest) => Ok(Self::Table(pieces(rest.trim_start())?)),
            None => Ok(Self::Lines(pieces(format)?)),
        }
    }
}

fn pieces(template: &str) -> Result<Vec<Piece>, String> {
    let template = template.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = Vec::new();
    let mut rest = template.as_str();
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Piece::Text(rest[..start].to_owned()));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("template: unclosed action in \"{template}\""))?;
        let name = after[..end].trim();
        let field = name
            .strip_prefix('.')
            .and_then(|n| FIELDS.iter().find(|f| **f == n))
            .ok_or_else(|| {
                format!(
                    "template: can't evaluate \"{name}\": hive's --format knows {}",
                    FIELDS.map(|f| format!("{{{{.{f}}}}}")).join(" ")
                )
            })?;
        out.push(Piece::Field(field));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_owned()));
    }
    Ok(out)
}

/// One node's fields as `--format` shows them.
pub fn field(field: &str, node: &pb::Node, self_id: &str, columns: &NodeColumns) -> String {
    match field {
        "ID" => node.id.clone(),
        "Self" => (node.id == self_id).to_string(),
        "Hostname" => columns.hostname.clone(),
        "Status" => columns.status.clone(),
        "Availability" => columns.availability.clone(),
        "ManagerStatus" => columns.manager_status.clone(),
        "EngineVersion" => columns.engine_version.clone(),
        "TLSStatus" => "Ready".to_owned(),
        _ => String::new(),
    }
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

/// Docker's header of a field (`MANAGER STATUS`).
fn header(field: &str) -> &'static str {
    match field {
        "ID" => "ID",
        "Self" => "SELF",
        "Hostname" => "HOSTNAME",
        "Status" => "STATUS",
        "Availability" => "AVAILABILITY",
        "ManagerStatus" => "MANAGER STATUS",
        "EngineVersion" => "ENGINE VERSION",
        "TLSStatus" => "TLS STATUS",
        _ => "",
    }
}

/// Renders `nodes` (already filtered and sorted) with `format`.
pub fn render(format: &NodeFormat, nodes: &[(&pb::Node, NodeColumns)], self_id: &str) -> String {
    let line = |pieces: &[Piece], node: &pb::Node, columns: &NodeColumns| -> String {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Field(f) => field(f, node, self_id, columns),
            })
            .collect()
    };
    match format {
        NodeFormat::Json => nodes
            .iter()
            .map(|(node, columns)| {
                let object: BTreeMap<&str, String> = FIELDS
                    .iter()
                    .map(|f| (*f, field(f, node, self_id, columns)))
                    .collect();
                format!("{}\n", serde_json::to_string(&object).unwrap_or_default())
            })
            .collect(),
        NodeFormat::Lines(pieces) => nodes
            .iter()
            .map(|(node, columns)| format!("{}\n", line(pieces, node, columns)))
            .collect(),
        NodeFormat::Table(pieces) => {
            let head: String = pieces
                .iter()
                .map(|p| match p {
                    Piece::Text(t) => t.clone(),
                    Piece::Field(f) => header(f).to_owned(),
                })
                .collect();
            let mut rows: Vec<Vec<String>> = vec![split_columns(&head)];
            rows.extend(
                nodes
                    .iter()
                    .map(|(node, columns)| split_columns(&line(pieces, node, columns))),
            );
            super::output::table(&rows)
        }
    }
}

fn split_columns(line: &str) -> Vec<String> {
    line.split('\t').map(str::to_owned).collect()
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
        let lines = NodeFormat::parse("{{.ID}}: {{.Hostname}} {{.ManagerStatus}}").unwrap();
        assert_eq!(render(&lines, &rows, "abc123"), "abc123: n1 Leader\n");
        let table = NodeFormat::parse("table {{.Hostname}}\\t{{.Self}}").unwrap();
        assert_eq!(
            render(&table, &rows, "abc123"),
            "HOSTNAME   SELF\nn1         true\n"
        );
        let json = render(&NodeFormat::Json, &rows, "other");
        assert!(
            json.starts_with('{')
                && json.contains("\"Hostname\":\"n1\"")
                && json.contains("\"Self\":\"false\""),
            "{json}"
        );
        let err = NodeFormat::parse("{{.Colour}}").unwrap_err();
        assert!(
            err.contains("can't evaluate \".Colour\"") && err.contains("{{.Hostname}}"),
            "{err}"
        );
        assert!(NodeFormat::parse("{{.ID").unwrap_err().contains("unclosed"));
    }
}

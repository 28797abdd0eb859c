//! Placement constraints (`--constraint node.labels.zone==b`), after SwarmKit's
//! `manager/constraint`: `KEY==VALUE` or `KEY!=VALUE`, all of a service's constraints ANDed,
//! values compared case-insensitively as SwarmKit does.

use std::fmt;

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::Ipv4Network;

use crate::store::objects::{Node, NodeRole, parse_cidr};

/// What a constraint looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConstraintKey {
    NodeId,
    NodeHostname,
    /// `node.ip`: the address the node's session comes from, compared with an address or a
    /// CIDR (SwarmKit has it; Docker's docs do not list it).
    NodeIp,
    NodeRole,
    NodePlatformOs,
    NodePlatformArch,
    /// `node.labels.KEY`: a label set with `hive node update --label-add`.
    NodeLabel(String),
    /// `engine.labels.KEY`: a label of the node's daemon.
    EngineLabel(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Ne,
}

/// One parsed constraint expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub key: ConstraintKey,
    pub operator: Operator,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    #[error(
        "invalid constraint \"{expression}\": expected KEY==VALUE or KEY!=VALUE \
         (for example node.labels.zone==b)"
    )]
    MissingOperator { expression: String },
    #[error("invalid constraint \"{expression}\": the key is empty")]
    EmptyKey { expression: String },
    #[error("invalid constraint \"{expression}\": the value is empty")]
    EmptyValue { expression: String },
    #[error(
        "invalid constraint \"{expression}\": unknown key \"{key}\"; use node.id, \
         node.hostname, node.ip, node.role, node.platform.os, node.platform.arch, node.labels.KEY or \
         engine.labels.KEY"
    )]
    UnknownKey { expression: String, key: String },
    #[error(
        "invalid constraint \"{expression}\": node.ip takes an IPv4 address or CIDR (like \
         10.0.0.0/24), not \"{value}\""
    )]
    BadIp { expression: String, value: String },
    #[error(
        "invalid constraint \"{expression}\": node.role is \"manager\" or \"worker\", not \
         \"{value}\""
    )]
    BadRole { expression: String, value: String },
}

impl Constraint {
    /// Parses one expression as `--constraint` takes it; spaces around the parts are allowed.
    pub fn parse(expression: &str) -> Result<Constraint, ConstraintError> {
        let owned = || expression.to_owned();
        // `!=` first: `a!=b` also contains no `==`, but `a==!b` must stay a value.
        let (key, operator, value) = match (expression.find("=="), expression.find("!=")) {
            (Some(eq), Some(ne)) if ne < eq => split(expression, ne, Operator::Ne),
            (Some(eq), _) => split(expression, eq, Operator::Eq),
            (None, Some(ne)) => split(expression, ne, Operator::Ne),
            (None, None) => {
                return Err(ConstraintError::MissingOperator {
                    expression: owned(),
                });
            }
        };
        if key.is_empty() {
            return Err(ConstraintError::EmptyKey {
                expression: owned(),
            });
        }
        if value.is_empty() {
            return Err(ConstraintError::EmptyValue {
                expression: owned(),
            });
        }
        let lower = key.to_ascii_lowercase();
        let label = |prefix: &str| {
            key.get(prefix.len()..)
                .filter(|rest| lower.starts_with(prefix) && !rest.is_empty())
                .map(str::to_owned)
        };
        let key = match lower.as_str() {
            "node.id" => ConstraintKey::NodeId,
            "node.hostname" => ConstraintKey::NodeHostname,
            "node.ip" => ConstraintKey::NodeIp,
            "node.role" => ConstraintKey::NodeRole,
            "node.platform.os" => ConstraintKey::NodePlatformOs,
            "node.platform.arch" => ConstraintKey::NodePlatformArch,
            _ => {
                if let Some(name) = label("node.labels.") {
                    ConstraintKey::NodeLabel(name)
                } else if let Some(name) = label("engine.labels.") {
                    ConstraintKey::EngineLabel(name)
                } else {
                    return Err(ConstraintError::UnknownKey {
                        expression: owned(),
                        key: key.to_owned(),
                    });
                }
            }
        };
        if key == ConstraintKey::NodeRole
            && !["manager", "worker"]
                .iter()
                .any(|r| r.eq_ignore_ascii_case(value))
        {
            return Err(ConstraintError::BadRole {
                expression: owned(),
                value: value.to_owned(),
            });
        }
        if key == ConstraintKey::NodeIp && ip_matcher(value).is_none() {
            return Err(ConstraintError::BadIp {
                expression: owned(),
                value: value.to_owned(),
            });
        }
        Ok(Constraint {
            key,
            operator,
            value: value.to_owned(),
        })
    }

    /// Parses all of a service's constraints.
    pub fn parse_all(expressions: &[String]) -> Result<Vec<Constraint>, ConstraintError> {
        expressions.iter().map(|e| Constraint::parse(e)).collect()
    }

    /// Whether `node` satisfies this constraint. A missing label equals nothing, so `!=` holds.
    pub fn matches(&self, node: &Node) -> bool {
        if self.key == ConstraintKey::NodeIp {
            let inside = match (ip_matcher(&self.value), node.status.addr) {
                (Some(subnet), Some(IpAddr::V4(addr))) => subnet.contains(addr),
                _ => false,
            };
            return match self.operator {
                Operator::Eq => inside,
                Operator::Ne => !inside,
            };
        }
        let description = node.description.as_ref();
        let actual: Option<&str> = match &self.key {
            ConstraintKey::NodeId => Some(&node.id),
            ConstraintKey::NodeHostname => description.map(|d| d.hostname.as_str()),
            ConstraintKey::NodeIp => None,
            ConstraintKey::NodeRole => Some(match node.role {
                NodeRole::Manager => "manager",
                NodeRole::Worker => "worker",
            }),
            ConstraintKey::NodePlatformOs => description.map(|d| d.platform.os.as_str()),
            ConstraintKey::NodePlatformArch => {
                description.map(|d| d.platform.architecture.as_str())
            }
            ConstraintKey::NodeLabel(name) => {
                node.spec.annotations.labels.get(name).map(String::as_str)
            }
            ConstraintKey::EngineLabel(name) => {
                description.and_then(|d| d.engine.labels.get(name).map(String::as_str))
            }
        };
        let equal = actual.is_some_and(|a| a.eq_ignore_ascii_case(&self.value));
        match self.operator {
            Operator::Eq => equal,
            Operator::Ne => !equal,
        }
    }
}

/// Whether `node` satisfies all of `constraints`.
pub fn all_match(constraints: &[Constraint], node: &Node) -> bool {
    constraints.iter().all(|c| c.matches(node))
}

/// `10.0.0.7` (as a /32) or `10.0.0.0/24`.
fn ip_matcher(value: &str) -> Option<Ipv4Network> {
    if value.contains('/') {
        parse_cidr(value)
    } else {
        value.trim().parse::<Ipv4Addr>().ok().map(Ipv4Network::from)
    }
}

fn split(expression: &str, at: usize, operator: Operator) -> (&str, Operator, &str) {
    let key = expression[..at].trim();
    let value = expression[at + 2..].trim();
    (key, operator, value)
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match &self.key {
            ConstraintKey::NodeId => "node.id".to_owned(),
            ConstraintKey::NodeHostname => "node.hostname".to_owned(),
            ConstraintKey::NodeIp => "node.ip".to_owned(),
            ConstraintKey::NodeRole => "node.role".to_owned(),
            ConstraintKey::NodePlatformOs => "node.platform.os".to_owned(),
            ConstraintKey::NodePlatformArch => "node.platform.arch".to_owned(),
            ConstraintKey::NodeLabel(name) => format!("node.labels.{name}"),
            ConstraintKey::EngineLabel(name) => format!("engine.labels.{name}"),
        };
        let op = match self.operator {
            Operator::Eq => "==",
            Operator::Ne => "!=",
        };
        write!(f, "{key}{op}{}", self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::objects::NodeDescription;

    fn node() -> Node {
        let mut node = Node {
            id: "n1".into(),
            description: Some(NodeDescription {
                hostname: "node-1".into(),
                ..NodeDescription::default()
            }),
            ..Node::default()
        };
        node.spec
            .annotations
            .labels
            .insert("zone".into(), "a".into());
        node
    }

    #[test]
    fn parses_swarm_expressions() {
        let c = Constraint::parse(" node.labels.zone == b ").unwrap();
        assert_eq!(c.key, ConstraintKey::NodeLabel("zone".into()));
        assert_eq!(c.operator, Operator::Eq);
        assert_eq!(c.value, "b");
        assert_eq!(c.to_string(), "node.labels.zone==b");
        let c = Constraint::parse("node.hostname!=node-2").unwrap();
        assert_eq!(c.operator, Operator::Ne);
        assert!(Constraint::parse("node.role==manager").is_ok());
    }

    #[test]
    fn refuses_bad_expressions_with_a_reason() {
        let err = Constraint::parse("node.labels.zone=b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid constraint \"node.labels.zone=b\": expected KEY==VALUE or KEY!=VALUE \
             (for example node.labels.zone==b)"
        );
        assert!(matches!(
            Constraint::parse("node.colour==red"),
            Err(ConstraintError::UnknownKey { .. })
        ));
        assert!(matches!(
            Constraint::parse("node.labels.==x"),
            Err(ConstraintError::UnknownKey { .. })
        ));
        assert!(matches!(
            Constraint::parse("node.role==boss"),
            Err(ConstraintError::BadRole { .. })
        ));
        assert!(matches!(
            Constraint::parse("==x"),
            Err(ConstraintError::EmptyKey { .. })
        ));
        assert!(matches!(
            Constraint::parse("node.id=="),
            Err(ConstraintError::EmptyValue { .. })
        ));
    }

    #[test]
    fn matches_nodes() {
        let node = node();
        let check = |e: &str| Constraint::parse(e).unwrap().matches(&node);
        assert!(check("node.labels.zone==a"));
        assert!(check("node.labels.zone==A"));
        assert!(!check("node.labels.zone==b"));
        assert!(check("node.labels.rack!=r1"));
        assert!(!check("node.labels.rack==r1"));
        assert!(check("node.hostname==node-1"));
        assert!(check("node.id!=n2"));
        assert!(check("node.role==worker"));
        assert!(
            check("node.ip!=192.168.77.0/24"),
            "a node without an address is outside"
        );
        let mut node = node.clone();
        node.status.addr = Some("192.168.77.3".parse().unwrap());
        let check = |e: &str| Constraint::parse(e).unwrap().matches(&node);
        assert!(check("node.ip==192.168.77.0/24"));
        assert!(check("node.ip==192.168.77.3"));
        assert!(check("node.ip!=192.168.78.0/24"));
        assert!(matches!(
            Constraint::parse("node.ip==somewhere"),
            Err(ConstraintError::BadIp { .. })
        ));
        assert!(!check("node.role==manager"));
    }
}

//! Variable interpolation as `docker stack deploy` does it (docker/cli
//! `cli/compose/template` and `loader/interpolate.go`): `${VAR}`, `$VAR`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?error}`, `${VAR?error}` and `$$` in every string of the file,
//! then the strings at the keys that take numbers or booleans are read as such (so that
//! `replicas: ${N}` works).

use std::collections::BTreeMap;

use super::decode::join;
use super::error::DecodeError;
use super::node::{Node, Value};

/// The variables a file sees: the process environment, then `.env` for what it lacks.
pub type Environment = BTreeMap<String, String>;

/// Interpolates every string of `node` (a whole file) in place.
pub fn interpolate(node: &mut Node, env: &Environment) -> Result<(), DecodeError> {
    walk(node, "", &mut Vec::new(), env)
}

fn walk(
    node: &mut Node,
    path: &str,
    parts: &mut Vec<String>,
    env: &Environment,
) -> Result<(), DecodeError> {
    match &mut node.value {
        Value::Str(text) => {
            let replaced = substitute(text, env).map_err(|problem| {
                let message = match problem {
                    Problem::Invalid => format!(
                        "invalid interpolation format: \"{text}\"; you may need to escape any $ with another $"
                    ),
                    Problem::Required { name, message } => {
                        format!("required variable {name} is missing a value: {message}")
                    }
                };
                DecodeError::at(path, node.at, message)
            })?;
            node.value = match cast_for(parts) {
                None => Value::Str(replaced),
                Some(cast) => cast
                    .apply(&replaced)
                    .map_err(|m| DecodeError::at(path, node.at, m))?,
            };
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                parts.push("[]".to_owned());
                let result = walk(item, &format!("{path}[{i}]"), parts, env);
                parts.pop();
                result?;
            }
        }
        Value::Map(entries) => {
            for (key, value) in entries.iter_mut() {
                parts.push(key.name.clone());
                let result = walk(value, &join(path, &key.name), parts, env);
                parts.pop();
                result?;
            }
        }
        Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {}
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cast {
    Int,
    Float,
    Bool,
}

impl Cast {
    fn apply(self, text: &str) -> Result<Value, String> {
        match self {
            Cast::Int => text
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|_| format!("expected an integer, found the string \"{text}\"")),
            Cast::Float => text
                .parse::<f64>()
                .map(Value::Float)
                .map_err(|_| format!("expected a number, found the string \"{text}\"")),
            Cast::Bool => match text.to_ascii_lowercase().as_str() {
                "y" | "yes" | "true" | "on" => Ok(Value::Bool(true)),
                "n" | "no" | "false" | "off" => Ok(Value::Bool(false)),
                _ => Err(format!("invalid boolean: {text}")),
            },
        }
    }
}

/// docker/cli `interpolateTypeCastMapping`: `*` is any key, `[]` any list item.
const CASTS: &[(&[&str], Cast)] = &[
    (&["services", "*", "configs", "[]", "mode"], Cast::Int),
    (&["services", "*", "secrets", "[]", "mode"], Cast::Int),
    (&["services", "*", "healthcheck", "retries"], Cast::Int),
    (&["services", "*", "healthcheck", "disable"], Cast::Bool),
    (&["services", "*", "deploy", "replicas"], Cast::Int),
    (
        &["services", "*", "deploy", "update_config", "parallelism"],
        Cast::Int,
    ),
    (
        &[
            "services",
            "*",
            "deploy",
            "update_config",
            "max_failure_ratio",
        ],
        Cast::Float,
    ),
    (
        &["services", "*", "deploy", "rollback_config", "parallelism"],
        Cast::Int,
    ),
    (
        &[
            "services",
            "*",
            "deploy",
            "rollback_config",
            "max_failure_ratio",
        ],
        Cast::Float,
    ),
    (
        &["services", "*", "deploy", "restart_policy", "max_attempts"],
        Cast::Int,
    ),
    (
        &[
            "services",
            "*",
            "deploy",
            "placement",
            "max_replicas_per_node",
        ],
        Cast::Int,
    ),
    (&["services", "*", "ports", "[]", "target"], Cast::Int),
    (&["services", "*", "ports", "[]", "published"], Cast::Int),
    (&["services", "*", "ulimits", "*"], Cast::Int),
    (&["services", "*", "ulimits", "*", "hard"], Cast::Int),
    (&["services", "*", "ulimits", "*", "soft"], Cast::Int),
    (&["services", "*", "privileged"], Cast::Bool),
    (&["services", "*", "oom_score_adj"], Cast::Int),
    (&["services", "*", "read_only"], Cast::Bool),
    (&["services", "*", "stdin_open"], Cast::Bool),
    (&["services", "*", "tty"], Cast::Bool),
    (&["services", "*", "volumes", "[]", "read_only"], Cast::Bool),
    (
        &["services", "*", "volumes", "[]", "volume", "nocopy"],
        Cast::Bool,
    ),
    (&["networks", "*", "external"], Cast::Bool),
    (&["networks", "*", "internal"], Cast::Bool),
    (&["networks", "*", "attachable"], Cast::Bool),
    (&["volumes", "*", "external"], Cast::Bool),
    (&["secrets", "*", "external"], Cast::Bool),
    (&["configs", "*", "external"], Cast::Bool),
];

fn cast_for(parts: &[String]) -> Option<Cast> {
    CASTS.iter().find_map(|(pattern, cast)| {
        let matches = pattern.len() == parts.len()
            && pattern
                .iter()
                .zip(parts)
                .all(|(p, part)| *p == "*" || *p == part);
        matches.then_some(*cast)
    })
}

#[derive(Debug, PartialEq)]
pub enum Problem {
    Invalid,
    Required { name: String, message: String },
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

/// Replaces every `$...` of `text` (docker/cli `template.Substitute`).
pub fn substitute(text: &str, env: &Environment) -> Result<String, Problem> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let next = after.chars().next();
        match next {
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('{') => {
                let body = &after[1..];
                let end = substitution_len(body).ok_or(Problem::Invalid)?;
                if !body[end..].starts_with('}') {
                    return Err(Problem::Invalid);
                }
                out.push_str(&resolve(&body[..end], env)?);
                rest = &body[end + 1..];
            }
            Some(c) if is_name_start(c) => {
                let end = substitution_len(after).ok_or(Problem::Invalid)?;
                out.push_str(&resolve(&after[..end], env)?);
                rest = &after[end..];
            }
            _ => return Err(Problem::Invalid),
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Length of `[_a-z][_a-z0-9]*(?::?[-?][^}]*)?` at the start of `text`.
fn substitution_len(text: &str) -> Option<usize> {
    let mut chars = text.char_indices();
    match chars.next() {
        Some((_, c)) if is_name_start(c) => {}
        _ => return None,
    }
    let name_end = text
        .char_indices()
        .skip(1)
        .find(|(_, c)| !is_name_char(*c))
        .map_or(text.len(), |(i, _)| i);
    let tail = &text[name_end..];
    let operator = if tail.starts_with(":-") || tail.starts_with(":?") {
        2
    } else if tail.starts_with('-') || tail.starts_with('?') {
        1
    } else {
        return Some(name_end);
    };
    let argument = &tail[operator..];
    let argument_len = argument.find('}').unwrap_or(argument.len());
    Some(name_end + operator + argument_len)
}

/// One substitution; the operators are tried in docker's order.
fn resolve(substitution: &str, env: &Environment) -> Result<String, Problem> {
    let lookup = |name: &str| env.get(name).cloned();
    if let Some((name, default)) = substitution.split_once(":-") {
        return Ok(lookup(name)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned()));
    }
    if let Some((name, default)) = substitution.split_once('-') {
        return Ok(lookup(name).unwrap_or_else(|| default.to_owned()));
    }
    if let Some((name, message)) = substitution.split_once(":?") {
        return lookup(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Problem::Required {
                name: name.to_owned(),
                message: message.to_owned(),
            });
    }
    if let Some((name, message)) = substitution.split_once('?') {
        return lookup(name).ok_or_else(|| Problem::Required {
            name: name.to_owned(),
            message: message.to_owned(),
        });
    }
    Ok(lookup(substitution).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        [("SET", "v"), ("EMPTY", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn every_form_of_docker() {
        let e = env();
        let s = |t: &str| substitute(t, &e);
        assert_eq!(s("a ${SET} $SET b").unwrap(), "a v v b");
        assert_eq!(s("${UNSET}").unwrap(), "");
        assert_eq!(s("${UNSET:-d} ${EMPTY:-d} ${SET:-d}").unwrap(), "d d v");
        assert_eq!(s("${UNSET-d} ${EMPTY-d}").unwrap(), "d ");
        assert_eq!(s("$$SET costs $$5").unwrap(), "$SET costs $5");
        assert_eq!(
            s("${EMPTY:?need it}"),
            Err(Problem::Required {
                name: "EMPTY".into(),
                message: "need it".into()
            })
        );
        assert_eq!(s("${EMPTY?x}").unwrap(), "");
        assert!(s("${UNSET?x}").is_err());
        assert_eq!(s("cost $5"), Err(Problem::Invalid));
        assert_eq!(s("${SET"), Err(Problem::Invalid));
        assert_eq!(s("trailing $"), Err(Problem::Invalid));
    }
}

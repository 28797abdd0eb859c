//! Errors of a Compose file: each names the file, the line and column, the key path and
//! what was expected.

use std::fmt;

/// A place in a file, 1-based as editors count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("no Compose file given: use -c FILE (or -c - for standard input)")]
    NoFile,
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{at}: YAML syntax error: {message}")]
    Syntax {
        file: String,
        at: Position,
        message: String,
    },
    /// A value at a key path is wrong (type, range, unknown key, bad syntax of its own).
    #[error("{file}:{at}: {path}: {message}")]
    Invalid {
        file: String,
        at: Position,
        path: String,
        message: String,
    },
    #[error(
        "version mismatched between two Compose files: {first} in {first_file} and {second} in {second_file}"
    )]
    VersionMismatch {
        first: String,
        first_file: String,
        second: String,
        second_file: String,
    },
    #[error("{file}: cannot read env_file {path}: {source}")]
    EnvFile {
        file: String,
        path: String,
        source: std::io::Error,
    },
    /// A service names a network, secret, config or volume the file does not declare.
    #[error("{file}:{at}: {path}: {message}")]
    Undeclared {
        file: String,
        at: Position,
        path: String,
        message: String,
    },
}

/// An error while decoding a tree into Compose types, before the file name is known.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    pub located: Option<(String, Position)>,
    pub message: String,
}

impl DecodeError {
    pub fn at(path: &str, at: Position, message: impl Into<String>) -> Self {
        Self {
            located: Some((path.to_owned(), at)),
            message: message.into(),
        }
    }

    /// Attaches the innermost location only: the first one set wins.
    pub fn locate(mut self, path: &str, at: Position) -> Self {
        if self.located.is_none() {
            self.located = Some((path.to_owned(), at));
        }
        self
    }

    pub fn in_file(self, file: &str) -> ComposeError {
        let (path, at) = self.located.unwrap_or_default();
        ComposeError::Invalid {
            file: file.to_owned(),
            at,
            path: if path.is_empty() {
                "(top level)".to_owned()
            } else {
                path
            },
            message: self.message,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.located {
            Some((path, at)) => write!(f, "{at}: {path}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DecodeError {}

/// serde's words for Rust types, in a Compose user's words.
fn plain_expected(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "i32" | "i64" | "usize" => "an integer".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" | "bool" => "a boolean (true or false)".to_owned(),
        "a string" | "string" => "a string".to_owned(),
        other => other.to_owned(),
    }
}

fn plain_unexpected(unexp: &serde::de::Unexpected<'_>) -> String {
    use serde::de::Unexpected;
    match unexp {
        Unexpected::Str(s) => format!("the string \"{s}\""),
        Unexpected::Signed(i) => format!("the integer {i}"),
        Unexpected::Unsigned(i) => format!("the integer {i}"),
        Unexpected::Float(x) => format!("the number {x}"),
        Unexpected::Bool(b) => format!("the boolean {b}"),
        Unexpected::Unit | Unexpected::Option => "null".to_owned(),
        Unexpected::Seq => "a list".to_owned(),
        Unexpected::Map => "a mapping".to_owned(),
        other => other.to_string(),
    }
}

impl serde::de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            located: None,
            message: msg.to_string(),
        }
    }

    fn invalid_type(unexp: serde::de::Unexpected<'_>, exp: &dyn serde::de::Expected) -> Self {
        Self::custom(format!(
            "expected {}, found {}",
            plain_expected(&exp.to_string()),
            plain_unexpected(&unexp)
        ))
    }

    fn invalid_value(unexp: serde::de::Unexpected<'_>, exp: &dyn serde::de::Expected) -> Self {
        Self::custom(format!(
            "{} is out of range: expected {}",
            plain_unexpected(&unexp),
            plain_expected(&exp.to_string())
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format!(
            "unknown key \"{field}\": allowed here are {} (and extension keys starting with x-)",
            expected.join(", ")
        ))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format!(
            "\"{variant}\" is not allowed: use one of {}",
            expected.join(", ")
        ))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format!("the key \"{field}\" is required here"))
    }
}

//! The normalised document printed as `docker stack config` prints it.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::node::{Node, Value};
use super::types::Config;

/// The YAML of `config`.
pub fn to_yaml(config: &Config) -> Result<String, String> {
    // yaml.v3 with `SetIndent(2)` indents list items under their key.
    let mut options = serde_saphyr::SerializerOptions::default();
    options.compact_list_indent = false;
    serde_saphyr::to_string_with_options(config, options).map_err(|e| e.to_string())
}

/// Extension fields are printed as written, mapping keys sorted (as Go prints a map).
impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.value {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(text) => s.serialize_str(text),
            Value::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Map(entries) => {
                let mut sorted: Vec<_> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.name.cmp(&b.0.name));
                let mut map = s.serialize_map(Some(sorted.len()))?;
                for (k, v) in sorted {
                    map.serialize_entry(&k.name, v)?;
                }
                map.end()
            }
        }
    }
}

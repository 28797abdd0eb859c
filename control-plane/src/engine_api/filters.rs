//! The `filters` query parameter: JSON of `{"key": {"value": true}}` (what the docker CLI
//! sends) or `{"key": ["value"]}` (docker-py and API versions before 1.22), as dockerd's
//! `filters.FromJSON` accepts both. Unknown keys are refused with dockerd's words.

use std::collections::{BTreeMap, BTreeSet};

use super::error::EngineError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, BTreeSet<String>>);

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Values {
    Map(BTreeMap<String, bool>),
    List(Vec<String>),
}

impl Filters {
    /// Parses `raw` (absent or empty: no filters) and checks every key is one of `accepted`.
    pub fn parse(raw: Option<&str>, accepted: &[&str]) -> Result<Self, EngineError> {
        let raw = raw.unwrap_or("").trim();
        if raw.is_empty() {
            return Ok(Self::default());
        }
        let parsed: BTreeMap<String, Values> = serde_json::from_str(raw)
            .map_err(|e| EngineError::bad_request(format!("invalid filter: {e}")))?;
        let mut filters = BTreeMap::new();
        for (key, values) in parsed {
            if !accepted.contains(&key.as_str()) {
                return Err(EngineError::bad_request(format!("invalid filter '{key}'")));
            }
            let values: BTreeSet<String> = match values {
                Values::Map(map) => map
                    .into_iter()
                    .filter(|(_, on)| *on)
                    .map(|(v, _)| v)
                    .collect(),
                Values::List(list) => list.into_iter().collect(),
            };
            filters.insert(key, values);
        }
        Ok(Self(filters))
    }

    pub fn values(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0.get(key).into_iter().flatten().map(String::as_str)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|v| !v.is_empty())
    }

    /// No values for `key`, or `matches` accepts one of them.
    pub fn any(&self, key: &str, matches: impl Fn(&str) -> bool) -> bool {
        !self.contains(key) || self.values(key).any(matches)
    }

    /// Every `label` filter (`key` or `key=value`) holds for `labels`.
    pub fn labels_match(&self, labels: &BTreeMap<String, String>) -> bool {
        self.values("label")
            .all(|filter| match filter.split_once('=') {
                Some((key, value)) => labels.get(key).is_some_and(|v| v == value),
                None => labels.contains_key(filter),
            })
    }

    /// A boolean filter such as `_up-to-date`: set with `true` or `1`.
    pub fn is_true(&self, key: &str) -> bool {
        self.values(key).any(|v| v == "true" || v == "1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_json_shapes_parse() {
        let cli = Filters::parse(
            Some(r#"{"name":{"web":true},"label":{"a=b":true}}"#),
            &["name", "label"],
        )
        .expect("cli");
        let py = Filters::parse(
            Some(r#"{"name":["web"],"label":["a=b"]}"#),
            &["name", "label"],
        )
        .expect("py");
        assert_eq!(cli, py);
        let mut labels = BTreeMap::new();
        assert!(!cli.labels_match(&labels));
        labels.insert("a".to_owned(), "b".to_owned());
        assert!(cli.labels_match(&labels));
        assert!(cli.any("name", |n| n == "web"));
        assert!(cli.any("id", |_| false));
    }

    #[test]
    fn unknown_keys_and_bad_json_are_400() {
        let err = Filters::parse(Some(r#"{"colour":{"red":true}}"#), &["name"]).unwrap_err();
        assert_eq!(err.message, "invalid filter 'colour'");
        assert_eq!(err.status, 400);
        assert!(Filters::parse(Some("{"), &["name"]).is_err());
    }
}

//! `/events?filters=`: dockerd's event filter (`daemon/events/filter.go`). `type`, `event`
//! and `scope` match exactly; an object key (`service`, `node`, `network`, `secret`, `config`,
//! and the engine's `container`, `image`, `volume`, `plugin`, `daemon`) matches a message
//! whose actor ID or `name` starts with one of its values, and excludes every message that is
//! not of that object (a `container` filter shows no swarm events); `label` matches the
//! actor's attributes.

use std::collections::BTreeMap;

use bollard_stubs::models as m;

use crate::engine_api::error::EngineError;
use crate::engine_api::filters::Filters;

/// The keys dockerd's event filter knows; others are refused (dockerd ignores them).
const KEYS: [&str; 14] = [
    "type",
    "event",
    "scope",
    "label",
    "container",
    "image",
    "volume",
    "plugin",
    "daemon",
    "network",
    "node",
    "service",
    "secret",
    "config",
];

/// Object keys, matched by prefix of the actor's ID or name when the message is of that type.
const OBJECT_KEYS: [&str; 10] = [
    "container",
    "image",
    "volume",
    "plugin",
    "daemon",
    "network",
    "node",
    "service",
    "secret",
    "config",
];

#[derive(Debug, Clone, Default)]
pub struct EventFilter(Filters);

impl EventFilter {
    pub fn parse(raw: Option<&str>) -> Result<Self, EngineError> {
        Filters::parse(raw, &KEYS).map(Self)
    }

    pub fn includes(&self, message: &m::EventMessage) -> bool {
        let typ = message.typ.map(|t| t.to_string()).unwrap_or_default();
        let action = message.action.as_deref().unwrap_or("");
        let scope = message.scope.map(|s| s.to_string()).unwrap_or_default();
        let id = message
            .actor
            .as_ref()
            .and_then(|a| a.id.as_deref())
            .unwrap_or("");
        let attributes: BTreeMap<String, String> = message
            .actor
            .as_ref()
            .and_then(|a| a.attributes.clone())
            .unwrap_or_default()
            .into_iter()
            .collect();
        let name = attributes.get("name").map_or("", String::as_str);
        self.0.any("type", |t| t == typ)
            && self.0.any("event", |e| e == action)
            && self.0.any("scope", |s| s == scope)
            && OBJECT_KEYS.iter().all(|key| {
                self.0.any(key, |value| {
                    *key == typ && (id.starts_with(value) || name.starts_with(value))
                })
            })
            && self.0.labels_match(&attributes)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn service_event(action: &str) -> m::EventMessage {
        m::EventMessage {
            typ: Some(m::EventMessageTypeEnum::SERVICE),
            action: Some(action.to_owned()),
            actor: Some(m::EventActor {
                id: Some("abc123".to_owned()),
                attributes: Some(HashMap::from([("name".to_owned(), "web".to_owned())])),
            }),
            scope: Some(m::EventMessageScopeEnum::SWARM),
            time: Some(1),
            time_nano: Some(1),
        }
    }

    fn includes(filters: &str, message: &m::EventMessage) -> bool {
        EventFilter::parse(Some(filters))
            .expect("filters")
            .includes(message)
    }

    #[test]
    fn filters_match_as_dockerds() {
        let event = service_event("update");
        assert!(EventFilter::default().includes(&event));
        assert!(includes(r#"{"type":{"service":true}}"#, &event));
        assert!(!includes(r#"{"type":{"node":true}}"#, &event));
        assert!(includes(
            r#"{"event":{"update":true,"create":true}}"#,
            &event
        ));
        assert!(!includes(r#"{"event":{"remove":true}}"#, &event));
        assert!(includes(r#"{"scope":{"swarm":true}}"#, &event));
        assert!(!includes(r#"{"scope":{"local":true}}"#, &event));
        assert!(includes(r#"{"service":{"we":true}}"#, &event));
        assert!(includes(r#"{"service":{"abc":true}}"#, &event));
        assert!(!includes(r#"{"service":{"db":true}}"#, &event));
        assert!(!includes(r#"{"container":{"abc":true}}"#, &event));
        assert!(!includes(r#"{"node":{"web":true}}"#, &event));
        assert!(includes(r#"{"label":{"name=web":true}}"#, &event));
        assert!(!includes(r#"{"label":{"com.example":true}}"#, &event));
        assert!(EventFilter::parse(Some(r#"{"colour":{"red":true}}"#)).is_err());
    }
}

//! One committed change (`pb::WatchEvent`) as the `/events` message dockerd makes of a
//! SwarmKit watch event: `Type`, `Action` (`create`, `update`, `remove`), `Actor{ID,
//! Attributes}` with the object's `name` and, on updates, `*.old`/`*.new` pairs for what
//! changed (dockerd's `daemon/cluster` event translation), `scope: "swarm"`, `time` and
//! `timeNano`.

use std::collections::HashMap;

use bollard_stubs::models as m;

use crate::api::convert::WireError;
use crate::api::pb;
use crate::store::objects::{Service, ServiceMode};

/// Why a watch event cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("a watch event without its object")]
    NoObject,
    #[error("a watch event with an unknown action {0}")]
    Action(i32),
    #[error("a watch event's service: {0}")]
    Service(#[from] WireError),
}

/// The `/events` message of `event`.
pub fn message(event: pb::WatchEvent) -> Result<m::EventMessage, MessageError> {
    use pb::watch_object::Object as O;
    let action =
        pb::WatchAction::try_from(event.action).map_err(|_| MessageError::Action(event.action))?;
    let object = event
        .object
        .and_then(|o| o.object)
        .ok_or(MessageError::NoObject)?;
    let old = match action {
        pb::WatchAction::Update => event.old.and_then(|o| o.object),
        pb::WatchAction::Create | pb::WatchAction::Remove => None,
    };
    let (typ, id, attributes) = match object {
        O::Service(service) => {
            let service = Service::try_from(service)?;
            let old = match old {
                Some(O::Service(old)) => Some(Service::try_from(old)?),
                _ => None,
            };
            let attributes = service_attributes(&service, old.as_ref());
            (m::EventMessageTypeEnum::SERVICE, service.id, attributes)
        }
        O::Node(node) => {
            let old = match old {
                Some(O::Node(old)) => Some(old),
                _ => None,
            };
            let attributes = node_attributes(&node, old.as_ref());
            (m::EventMessageTypeEnum::NODE, node.id, attributes)
        }
        O::Network(network) => {
            let name = network
                .spec
                .and_then(|s| s.annotations)
                .map(|a| a.name)
                .unwrap_or_default();
            (m::EventMessageTypeEnum::NETWORK, network.id, named(name))
        }
        O::Secret(secret) => {
            let name = secret
                .spec
                .and_then(|s| s.annotations)
                .map(|a| a.name)
                .unwrap_or_default();
            (m::EventMessageTypeEnum::SECRET, secret.id, named(name))
        }
        O::Config(config) => {
            let name = config
                .spec
                .and_then(|s| s.annotations)
                .map(|a| a.name)
                .unwrap_or_default();
            (m::EventMessageTypeEnum::CONFIG, config.id, named(name))
        }
    };
    let time = event.time.unwrap_or_default();
    Ok(m::EventMessage {
        typ: Some(typ),
        action: Some(action_name(action).to_owned()),
        actor: Some(m::EventActor {
            id: Some(id),
            attributes: Some(attributes),
        }),
        scope: Some(m::EventMessageScopeEnum::SWARM),
        time: Some(time.seconds),
        time_nano: Some(
            time.seconds
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::from(time.nanos)),
        ),
    })
}

/// dockerd's `clusterEventAction`.
fn action_name(action: pb::WatchAction) -> &'static str {
    match action {
        pb::WatchAction::Create => "create",
        pb::WatchAction::Update => "update",
        pb::WatchAction::Remove => "remove",
    }
}

fn named(name: String) -> HashMap<String, String> {
    HashMap::from([("name".to_owned(), name)])
}

/// Records `key.old`/`key.new` when the two differ.
fn changed(attributes: &mut HashMap<String, String>, key: &str, old: &str, new: &str) {
    if old != new {
        attributes.insert(format!("{key}.old"), old.to_owned());
        attributes.insert(format!("{key}.new"), new.to_owned());
    }
}

/// The name, and on an update the image, replica count and update state that changed.
fn service_attributes(service: &Service, old: Option<&Service>) -> HashMap<String, String> {
    let mut attributes = named(service.spec.annotations.name.clone());
    let Some(old) = old else {
        return attributes;
    };
    changed(
        &mut attributes,
        "image",
        &old.spec.task_template.container.image,
        &service.spec.task_template.container.image,
    );
    if let (
        ServiceMode::Replicated { replicas: before },
        ServiceMode::Replicated { replicas: now },
    ) = (&old.spec.mode, &service.spec.mode)
    {
        changed(
            &mut attributes,
            "replicas",
            &before.to_string(),
            &now.to_string(),
        );
    }
    match (&old.update_status, &service.update_status) {
        (None, Some(now)) => {
            attributes.insert("updatestate.new".to_owned(), now.state.as_str().to_owned());
        }
        (Some(before), Some(now)) => changed(
            &mut attributes,
            "updatestate",
            before.state.as_str(),
            now.state.as_str(),
        ),
        (_, None) => {}
    }
    attributes
}

/// The name (else the hostname), and on an update the availability, role and state that
/// changed, in SwarmKit's lower-case spelling.
fn node_attributes(node: &pb::Node, old: Option<&pb::Node>) -> HashMap<String, String> {
    let name = node
        .spec
        .as_ref()
        .map(|s| s.name.clone())
        .filter(|name| !name.is_empty())
        .or_else(|| node.description.as_ref().map(|d| d.hostname.clone()))
        .unwrap_or_default();
    let mut attributes = named(name);
    let Some(old) = old else {
        return attributes;
    };
    let availability = |n: &pb::Node| n.spec.as_ref().map(|s| s.availability());
    if let (Some(before), Some(now)) = (availability(old), availability(node)) {
        changed(
            &mut attributes,
            "availability",
            availability_name(before),
            availability_name(now),
        );
    }
    changed(
        &mut attributes,
        "role",
        role_name(old.role()),
        role_name(node.role()),
    );
    let state = |n: &pb::Node| n.status.as_ref().map(|s| s.state());
    if let (Some(before), Some(now)) = (state(old), state(node)) {
        changed(
            &mut attributes,
            "state",
            state_name(before),
            state_name(now),
        );
    }
    attributes
}

fn availability_name(a: pb::Availability) -> &'static str {
    match a {
        pb::Availability::Active => "active",
        pb::Availability::Pause => "pause",
        pb::Availability::Drain => "drain",
    }
}

fn role_name(r: pb::Role) -> &'static str {
    match r {
        pb::Role::Worker => "worker",
        pb::Role::Manager => "manager",
    }
}

fn state_name(s: pb::NodeState) -> &'static str {
    match s {
        pb::NodeState::Unknown => "unknown",
        pb::NodeState::Down => "down",
        pb::NodeState::Ready => "ready",
        pb::NodeState::Disconnected => "disconnected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::objects::{UpdateState, UpdateStatus};

    fn service(image: &str, replicas: u64, update: Option<UpdateState>) -> Service {
        let mut service = Service {
            id: "svc1".to_owned(),
            ..Service::default()
        };
        service.spec.annotations.name = "web".to_owned();
        service.spec.task_template.container.image = image.to_owned();
        service.spec.mode = ServiceMode::Replicated { replicas };
        service.update_status = update.map(|state| UpdateStatus {
            state,
            ..UpdateStatus::default()
        });
        service
    }

    fn watch(action: pb::WatchAction, new: &Service, old: Option<&Service>) -> pb::WatchEvent {
        let object = |s: &Service| pb::WatchObject {
            object: Some(pb::watch_object::Object::Service(s.into())),
        };
        pb::WatchEvent {
            action: action.into(),
            object: Some(object(new)),
            old: old.map(object),
            time: Some(pb::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            position: None,
        }
    }

    #[test]
    fn a_create_names_the_service_in_the_swarm_scope() {
        let created = service("nginx", 1, None);
        let create = message(watch(pb::WatchAction::Create, &created, None)).expect("message");
        let json = serde_json::to_value(&create).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "Type": "service",
                "Action": "create",
                "Actor": {"ID": "svc1", "Attributes": {"name": "web"}},
                "scope": "swarm",
                "time": 1_700_000_000,
                "timeNano": 1_700_000_000_000_000_005_i64,
            })
        );
    }

    #[test]
    fn an_update_shows_what_changed_as_old_and_new() {
        let before = service("nginx:1", 1, Some(UpdateState::Updating));
        let after = service("nginx:2", 3, Some(UpdateState::Completed));
        let update =
            message(watch(pb::WatchAction::Update, &after, Some(&before))).expect("message");
        let attributes = update.actor.and_then(|a| a.attributes).expect("attributes");
        let expected: HashMap<String, String> = [
            ("name", "web"),
            ("image.old", "nginx:1"),
            ("image.new", "nginx:2"),
            ("replicas.old", "1"),
            ("replicas.new", "3"),
            ("updatestate.old", "updating"),
            ("updatestate.new", "completed"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(attributes, expected);

        let first = service("nginx:1", 1, None);
        let started = service("nginx:1", 1, Some(UpdateState::Updating));
        let first_update =
            message(watch(pb::WatchAction::Update, &started, Some(&first))).expect("message");
        let attributes = first_update
            .actor
            .and_then(|a| a.attributes)
            .expect("attributes");
        assert_eq!(
            attributes.get("updatestate.new").map(String::as_str),
            Some("updating")
        );
        assert!(!attributes.contains_key("updatestate.old"));
        assert!(!attributes.contains_key("image.old"));
    }

    #[test]
    fn a_node_update_shows_availability_and_state() {
        let node = |availability: pb::Availability, state: pb::NodeState| pb::Node {
            id: "n1".to_owned(),
            spec: Some(pb::NodeSpec {
                availability: availability.into(),
                ..pb::NodeSpec::default()
            }),
            description: Some(pb::NodeDescription {
                hostname: "host1".to_owned(),
                ..pb::NodeDescription::default()
            }),
            status: Some(pb::NodeStatus {
                state: state.into(),
                ..pb::NodeStatus::default()
            }),
            ..pb::Node::default()
        };
        let object = |n: pb::Node| pb::WatchObject {
            object: Some(pb::watch_object::Object::Node(n)),
        };
        let event = pb::WatchEvent {
            action: pb::WatchAction::Update.into(),
            object: Some(object(node(pb::Availability::Drain, pb::NodeState::Ready))),
            old: Some(object(node(pb::Availability::Active, pb::NodeState::Ready))),
            time: None,
            position: None,
        };
        let update = message(event).expect("message");
        assert_eq!(update.typ, Some(m::EventMessageTypeEnum::NODE));
        let attributes = update.actor.and_then(|a| a.attributes).expect("attributes");
        assert_eq!(attributes.get("name").map(String::as_str), Some("host1"));
        assert_eq!(
            attributes.get("availability.old").map(String::as_str),
            Some("active")
        );
        assert_eq!(
            attributes.get("availability.new").map(String::as_str),
            Some("drain")
        );
        assert!(!attributes.contains_key("state.old"));
    }
}

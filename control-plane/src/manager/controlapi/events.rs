//! The `Events` service's watch: this manager's committed changes to the objects Docker emits
//! swarm events for (services, nodes, networks, secrets, configs), as SwarmKit's watch API
//! serves dockerd. Answered by this manager from its own store (every manager applies every
//! entry), never forwarded. The Engine API turns them into `/events` messages
//! (`engine_api::events`).

use futures::StreamExt as _;

use crate::api::convert::{self, secret_without_data, timestamp};
use crate::api::{ReplyStream, pb};
use crate::manager::Manager;
use crate::store::objects::{Object, ObjectKind, Reachability, Timestamp};
use crate::store::{Event, Filter, WatchError};

/// The kinds `/events` reports; tasks and the cluster object are not swarm events in Docker.
const WATCHED: [ObjectKind; 5] = [
    ObjectKind::Service,
    ObjectKind::Node,
    ObjectKind::Network,
    ObjectKind::Secret,
    ObjectKind::Config,
];

/// Changes committed from now on. The store's watch is bounded: a caller that reads too slowly
/// gets `ABORTED` and the stream ends, so it never holds more than the store's buffer.
pub fn watch(manager: &Manager) -> ReplyStream<pb::WatchEvent> {
    let filter = WATCHED
        .into_iter()
        .fold(Filter::all(), |filter, kind| filter.kind(kind));
    let events = manager.store.watch(filter).into_stream();
    let stream = events
        .filter_map(|event| async move {
            match event {
                Ok(event) => watch_event(&event).map(Ok),
                Err(lost) => Some(Err(lost_events(&lost))),
            }
        })
        // After the first error the watch has nothing more to say.
        .scan(false, |ended, item| {
            if *ended {
                return futures::future::ready(None);
            }
            *ended = item.is_err();
            futures::future::ready(Some(item))
        });
    Box::pin(stream)
}

fn lost_events(error: &WatchError) -> tonic::Status {
    tonic::Status::aborted(error.to_string())
}

/// The wire form of one committed change; `None` for kinds `/events` does not report.
pub fn watch_event(event: &Event) -> Option<pb::WatchEvent> {
    let (action, old, time) = match event {
        Event::Created { object, .. } => (
            pb::WatchAction::Create,
            None,
            meta_time(object, |meta| meta.created_at),
        ),
        Event::Updated { old, object, .. } => (
            pb::WatchAction::Update,
            Some(old),
            meta_time(object, |meta| meta.updated_at),
        ),
        Event::Deleted { .. } => (pb::WatchAction::Remove, None, Some(Timestamp::now())),
    };
    Some(pb::WatchEvent {
        action: action.into(),
        object: Some(watch_object(event.object())?),
        old: old.and_then(watch_object),
        time: Some(timestamp(time?)),
    })
}

fn meta_time(
    object: &Object,
    pick: impl Fn(&crate::store::objects::Meta) -> Timestamp,
) -> Option<Timestamp> {
    Some(match object {
        Object::Service(o) => pick(&o.meta),
        Object::Node(o) => pick(&o.meta),
        Object::Network(o) => pick(&o.meta),
        Object::Secret(o) => pick(&o.meta),
        Object::Config(o) => pick(&o.meta),
        Object::Task(_) | Object::Cluster(_) => return None,
    })
}

/// Secrets travel without their data, configs without theirs too (an event names the object,
/// it does not copy it).
fn watch_object(object: &Object) -> Option<pb::WatchObject> {
    use pb::watch_object::Object as O;
    let object = match object {
        Object::Service(service) => O::Service(service.as_ref().into()),
        // Leadership and reachability are this manager's live view, not stored: an event
        // compares stored states only (dockerd's `leader.*` attributes are not produced).
        Object::Node(node) => O::Node(convert::node(node, |_| (false, Reachability::Unknown))),
        Object::Network(network) => O::Network(network.as_ref().into()),
        Object::Secret(secret) => O::Secret(secret_without_data(secret)),
        Object::Config(config) => {
            let mut config = pb::Config::from(config.as_ref());
            if let Some(spec) = config.spec.as_mut() {
                spec.data.clear();
            }
            O::Config(config)
        }
        Object::Task(_) | Object::Cluster(_) => return None,
    };
    Some(pb::WatchObject {
        object: Some(object),
    })
}

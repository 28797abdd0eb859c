//! The `Events` service's watch: this manager's committed changes to the objects Docker emits
//! swarm events for (services, nodes, networks, secrets, configs), as SwarmKit's watch API
//! serves dockerd. Answered by this manager from its own store (every manager applies every
//! entry), never forwarded. The Engine API turns them into `/events` messages
//! (`engine_api::events`).
//!
//! Each manager keeps the last [`KEPT`] of them from the moment it starts ([`History`], fed by
//! [`record`] from a watch taken before the manager serves anything), and a watch begins with
//! the kept ones after the position the caller names. So a watcher that comes late (the Engine
//! API's follower finds the manager only on its next poll, up to a second after `swarm init`)
//! or that was cut off for falling behind still gets every change, up to [`KEPT`].

use std::sync::Arc;

use futures::StreamExt as _;
use tokio::sync::{broadcast, watch};

use crate::api::convert::{self, secret_without_data, timestamp};
use crate::api::{ReplyStream, pb};
use crate::manager::Manager;
use crate::replay::Replay;
use crate::store::objects::{Object, ObjectKind, Reachability, Timestamp};
use crate::store::{Event, Filter, Store, Watch, new_id};

/// The kinds `/events` reports; tasks and the cluster object are not swarm events in Docker.
const WATCHED: [ObjectKind; 5] = [
    ObjectKind::Service,
    ObjectKind::Node,
    ObjectKind::Network,
    ObjectKind::Secret,
    ObjectKind::Config,
];

/// Events a manager keeps for watchers that resume (dockerd keeps as many for `since`).
pub const KEPT: usize = 256;
/// Events a watcher may fall behind the live ones before its watch ends with `ABORTED`.
const LIVE_BUFFER: usize = 1024;

/// The store changes [`record`] follows.
pub fn filter() -> Filter {
    WATCHED
        .into_iter()
        .fold(Filter::all(), |filter, kind| filter.kind(kind))
}

/// One manager's event history: its last [`KEPT`] events, numbered from 1, and the live ones.
#[derive(Debug)]
pub struct History {
    /// New for each manager start, so that a position from another history is never taken
    /// for one of this one.
    id: String,
    replay: Replay<pb::WatchEvent>,
}

impl Default for History {
    fn default() -> Self {
        Self {
            id: new_id(),
            replay: Replay::new(KEPT, LIVE_BUFFER),
        }
    }
}

impl History {
    /// The kept events after `resume_after` (all of them when it is absent or from another
    /// history), and the live feed from exactly after them.
    fn subscribe(
        &self,
        resume_after: Option<&pb::EventPosition>,
    ) -> (
        Vec<Arc<pb::WatchEvent>>,
        broadcast::Receiver<Arc<pb::WatchEvent>>,
    ) {
        let after = resume_after
            .filter(|position| position.history == self.id)
            .map_or(0, |position| position.sequence);
        let (past, live) = self.replay.subscribe(|event| sequence(event) > after);
        if let Some(first) = past.first()
            && after > 0
            && sequence(first) > after + 1
        {
            tracing::warn!(
                missed = sequence(first) - after - 1,
                "an event watcher resumed after events this manager no longer keeps"
            );
        }
        (past, live)
    }
}

fn sequence(event: &pb::WatchEvent) -> u64 {
    event
        .position
        .as_ref()
        .map_or(0, |position| position.sequence)
}

/// Keeps `history` from `changes` (a watch with [`filter`], taken when the manager started)
/// until `stopping` or the store stops.
pub async fn record(
    store: Store,
    mut changes: Watch,
    history: Arc<History>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut sequence = 0;
    loop {
        let change = tokio::select! {
            change = changes.next() => change,
            _ = stopping.wait_for(|stop| *stop) => return,
        };
        match change {
            Some(Ok(change)) => {
                let Some(mut event) = watch_event(&change) else {
                    continue;
                };
                sequence += 1;
                event.position = Some(pb::EventPosition {
                    history: history.id.clone(),
                    sequence,
                });
                history.replay.publish(event);
            }
            Some(Err(lost)) => {
                tracing::warn!(%lost, "the event history misses changes: /events will not show them");
                changes = store.watch(filter());
            }
            None => return,
        }
    }
}

/// The kept events after `resume_after`, then the changes committed from now on, until the
/// manager stops. A caller that reads too slowly gets `ABORTED` and the stream ends, so it
/// never holds more than [`LIVE_BUFFER`] events.
pub fn watch(
    manager: &Manager,
    resume_after: Option<&pb::EventPosition>,
) -> ReplyStream<pb::WatchEvent> {
    let (past, live) = manager.events.subscribe(resume_after);
    let stopping = manager.stopping();
    let live = futures::stream::unfold(Some((live, stopping)), |state| async move {
        let (mut live, mut stopping) = state?;
        let received = tokio::select! {
            received = live.recv() => received,
            _ = stopping.wait_for(|stop| *stop) => return None,
        };
        match received {
            Ok(event) => Some((Ok(event), Some((live, stopping)))),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                Some((Err(lost_events(missed)), None))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    });
    let stream = futures::stream::iter(past)
        .map(Ok)
        .chain(live)
        .map(|event| event.map(|event| event.as_ref().clone()));
    Box::pin(stream)
}

fn lost_events(missed: u64) -> tonic::Status {
    tonic::Status::aborted(format!(
        "the watcher fell {missed} events behind; watch again after the last event it got"
    ))
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
        position: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::objects::{Annotations, Config, ConfigSpec};
    use crate::store::test_support::single_manager;

    async fn create_config(store: &Store, name: &str) {
        let config = Config {
            spec: ConfigSpec {
                annotations: Annotations::named(name),
                data: b"x".to_vec(),
            },
            ..Config::default()
        };
        store.update(|tx| tx.create(config)).await.unwrap();
    }

    fn name(event: &pb::WatchEvent) -> String {
        match event.object.as_ref().and_then(|o| o.object.as_ref()) {
            Some(pb::watch_object::Object::Config(config)) => config
                .spec
                .as_ref()
                .and_then(|s| s.annotations.as_ref())
                .map(|a| a.name.clone())
                .unwrap_or_default(),
            other => panic!("not a config: {other:?}"),
        }
    }

    fn names(events: &[Arc<pb::WatchEvent>]) -> Vec<String> {
        events.iter().map(|e| name(e)).collect()
    }

    /// Waits until the history holds `count` events, all of them from its start.
    async fn kept(history: &History, count: usize) -> Vec<Arc<pb::WatchEvent>> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (past, _) = history.subscribe(None);
            if past.len() >= count {
                return past;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the history kept {:?}",
                names(&past)
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_watch_that_starts_late_or_resumes_misses_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = single_manager(dir.path()).await;
        let history = Arc::new(History::default());
        let (stop, stopping) = watch::channel(false);
        let recorder = tokio::spawn(record(
            store.clone(),
            store.watch(filter()),
            history.clone(),
            stopping,
        ));

        // Made before anyone watches: a watch without a position still gets them, in order.
        create_config(&store, "first").await;
        create_config(&store, "second").await;
        let past = kept(&history, 2).await;
        assert_eq!(names(&past), ["first", "second"]);
        let sequences: Vec<u64> = past.iter().map(|e| sequence(e)).collect();
        assert_eq!(sequences, [1, 2]);

        // Resuming after the first gets the second, then the live ones.
        let (after_first, mut live) = history.subscribe(past[0].position.as_ref());
        assert_eq!(names(&after_first), ["second"]);
        create_config(&store, "third").await;
        assert_eq!(name(&live.recv().await.unwrap()), "third");

        // A position from another history (a manager started anew) replays all that is kept.
        let elsewhere = pb::EventPosition {
            history: "another".to_owned(),
            sequence: 3,
        };
        let (all, _) = history.subscribe(Some(&elsewhere));
        assert_eq!(names(&all), ["first", "second", "third"]);

        stop.send(true).unwrap();
        recorder.await.unwrap();
        store.shutdown().await.unwrap();
    }
}

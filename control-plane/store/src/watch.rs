//! Watching committed changes: the events the state machine emits after it applied an entry,
//! and the filtered streams manager loops read them from.
//!
//! Events go out on a tokio broadcast channel *after* the entry's write transaction committed,
//! so a watcher that reacts to an event and then calls `Store::view` sees at least that state.
//! A watcher that falls more than [`WATCH_BUFFER`] batches behind loses events and is told so
//! ([`WatchError::Lagged`]); it must re-read the state with `view` and watch again, as SwarmKit
//! loops do after a watch queue overflow.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::objects::{Object, ObjectKind};

/// Committed batches a watcher may fall behind before it loses events.
pub const WATCH_BUFFER: usize = 4096;

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Delete,
}

/// One committed change to one object. `index` is the Raft log index of the entry that made
/// it, which is also the object's new `meta.version` for creates and updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Created {
        index: u64,
        object: Object,
    },
    Updated {
        index: u64,
        old: Object,
        object: Object,
    },
    /// `object` is the object as it was when deleted.
    Deleted {
        index: u64,
        object: Object,
    },
}

impl Event {
    pub fn index(&self) -> u64 {
        match self {
            Self::Created { index, .. }
            | Self::Updated { index, .. }
            | Self::Deleted { index, .. } => *index,
        }
    }

    pub fn action(&self) -> Action {
        match self {
            Self::Created { .. } => Action::Create,
            Self::Updated { .. } => Action::Update,
            Self::Deleted { .. } => Action::Delete,
        }
    }

    /// The object after the change (before it, for a delete).
    pub fn object(&self) -> &Object {
        match self {
            Self::Created { object, .. }
            | Self::Updated { object, .. }
            | Self::Deleted { object, .. } => object,
        }
    }

    pub fn kind(&self) -> ObjectKind {
        self.object().kind()
    }
}

/// Which events a watch delivers. The default delivers everything; each `kind`/`action` call
/// narrows it to the kinds/actions named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    kinds: Option<BTreeSet<ObjectKind>>,
    actions: Option<BTreeSet<Action>>,
}

impl Filter {
    pub fn all() -> Self {
        Self::default()
    }

    /// Also deliver events about objects of `kind` (the first call restricts to that kind).
    pub fn kind(mut self, kind: ObjectKind) -> Self {
        self.kinds.get_or_insert_with(BTreeSet::new).insert(kind);
        self
    }

    /// Also deliver `action` events (the first call restricts to that action).
    pub fn action(mut self, action: Action) -> Self {
        self.actions
            .get_or_insert_with(BTreeSet::new)
            .insert(action);
        self
    }

    pub fn matches(&self, event: &Event) -> bool {
        self.kinds
            .as_ref()
            .is_none_or(|kinds| kinds.contains(&event.kind()))
            && self
                .actions
                .as_ref()
                .is_none_or(|actions| actions.contains(&event.action()))
    }
}

/// Why a watch cannot go on delivering a complete sequence of events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    #[error(
        "the watcher fell behind and {missed} committed batches were dropped; re-read the \
         state with view and watch again"
    )]
    Lagged { missed: u64 },
    #[error(
        "the whole state was replaced by a snapshot from the leader (up to log index {index}); \
         re-read the state with view and watch again"
    )]
    Replaced { index: u64 },
}

/// What the state machine broadcasts.
#[derive(Debug)]
pub(crate) enum Notification {
    /// One applied entry's changes.
    Committed { index: u64, events: Vec<Event> },
    /// A snapshot replaced the state; per-object events for it are not produced.
    Replaced { index: u64 },
}

pub(crate) type Notifier = broadcast::Sender<Arc<Notification>>;

pub(crate) fn notifier() -> Notifier {
    broadcast::channel(WATCH_BUFFER).0
}

/// A stream of committed events matching a [`Filter`]. Ends (`None`) when the store's state
/// machine has stopped.
#[derive(Debug)]
pub struct Watch {
    receiver: broadcast::Receiver<Arc<Notification>>,
    filter: Filter,
    /// Entries at or below this index were applied before the watch started (and are in the
    /// view of `Store::view_and_watch`), so their notifications are skipped.
    seen_through: u64,
    ready: VecDeque<Event>,
}

impl Watch {
    pub(crate) fn new(
        receiver: broadcast::Receiver<Arc<Notification>>,
        filter: Filter,
        seen_through: u64,
    ) -> Self {
        Self {
            receiver,
            filter,
            seen_through,
            ready: VecDeque::new(),
        }
    }

    /// The next matching event, an error if events were lost, or `None` once the store stopped.
    pub async fn next(&mut self) -> Option<Result<Event, WatchError>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            let notification = match self.receiver.recv().await {
                Ok(notification) => notification,
                Err(broadcast::error::RecvError::Closed) => return None,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    return Some(Err(WatchError::Lagged { missed }));
                }
            };
            match notification.as_ref() {
                Notification::Committed { index, events } => {
                    if *index <= self.seen_through {
                        continue;
                    }
                    self.ready
                        .extend(events.iter().filter(|e| self.filter.matches(e)).cloned());
                }
                // A snapshot the watcher's starting point already includes changes nothing.
                Notification::Replaced { index } if *index <= self.seen_through => continue,
                Notification::Replaced { index } => {
                    return Some(Err(WatchError::Replaced { index: *index }));
                }
            }
        }
    }

    /// The watch as a `futures` stream.
    pub fn into_stream(self) -> impl Stream<Item = Result<Event, WatchError>> + Send {
        futures::stream::unfold(self, |mut watch| async move {
            watch.next().await.map(|item| (item, watch))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{Service, StoreObject, Task};

    fn created(index: u64, object: Object) -> Event {
        Event::Created { index, object }
    }

    fn committed(index: u64, events: Vec<Event>) -> Arc<Notification> {
        Arc::new(Notification::Committed { index, events })
    }

    #[tokio::test]
    async fn skips_what_the_starting_point_includes_and_filters_the_rest() {
        let sender = notifier();
        let mut watch = Watch::new(sender.subscribe(), Filter::all().kind(ObjectKind::Task), 5);
        let task = Task::default().into_object();
        let service = Service::default().into_object();
        sender
            .send(committed(5, vec![created(5, task.clone())]))
            .unwrap();
        sender
            .send(Arc::new(Notification::Replaced { index: 5 }))
            .unwrap();
        sender
            .send(committed(
                6,
                vec![created(6, service), created(6, task.clone())],
            ))
            .unwrap();
        sender
            .send(Arc::new(Notification::Replaced { index: 9 }))
            .unwrap();
        drop(sender);

        assert_eq!(watch.next().await, Some(Ok(created(6, task))));
        assert_eq!(
            watch.next().await,
            Some(Err(WatchError::Replaced { index: 9 }))
        );
        assert_eq!(watch.next().await, None);
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_told_how_much_it_lost() {
        let sender = notifier();
        let mut watch = Watch::new(sender.subscribe(), Filter::all(), 0);
        let extra = 3;
        for index in 1..=(WATCH_BUFFER as u64 + extra) {
            sender.send(committed(index, Vec::new())).unwrap();
        }
        assert_eq!(
            watch.next().await,
            Some(Err(WatchError::Lagged { missed: extra }))
        );
    }
}

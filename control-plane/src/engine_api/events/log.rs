//! The daemon's event log, as dockerd's `daemon/events`: the last [`HISTORY`] messages (what
//! `since`/`until` replay) and a bounded live feed for every subscriber.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use bollard_stubs::models as m;
use tokio::sync::broadcast;

/// Messages kept for `since`/`until`, dockerd's `eventsLimit`.
pub const HISTORY: usize = 256;
/// Messages a subscriber may fall behind before it is disconnected (dockerd's `bufferSize`).
pub const SUBSCRIBER_BUFFER: usize = 1024;

/// The time window of a subscription, in nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Window {
    fn contains(&self, time_nano: i64) -> bool {
        self.since.is_none_or(|since| time_nano >= since)
            && self.until.is_none_or(|until| time_nano <= until)
    }
}

#[derive(Debug)]
pub struct EventLog {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    history: VecDeque<Arc<m::EventMessage>>,
    live: broadcast::Sender<Arc<m::EventMessage>>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                history: VecDeque::with_capacity(HISTORY),
                live: broadcast::channel(SUBSCRIBER_BUFFER).0,
            }),
        }
    }
}

impl EventLog {
    pub fn publish(&self, message: m::EventMessage) {
        let message = Arc::new(message);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.history.len() == HISTORY {
            inner.history.pop_front();
        }
        inner.history.push_back(message.clone());
        // No subscriber is not an error: the message stays in the history.
        let _ = inner.live.send(message);
    }

    /// The kept messages in `window` (none when the window is open on both ends, as dockerd)
    /// and the live feed from exactly after them.
    pub fn subscribe(
        &self,
        window: Window,
    ) -> (
        Vec<Arc<m::EventMessage>>,
        broadcast::Receiver<Arc<m::EventMessage>>,
    ) {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let past = if window == Window::default() {
            Vec::new()
        } else {
            inner
                .history
                .iter()
                .filter(|m| window.contains(m.time_nano.unwrap_or_default()))
                .cloned()
                .collect()
        };
        (past, inner.live.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time_nano: i64) -> m::EventMessage {
        m::EventMessage {
            time_nano: Some(time_nano),
            ..m::EventMessage::default()
        }
    }

    #[tokio::test]
    async fn history_is_bounded_and_windowed_and_live_follows_it() {
        let log = EventLog::default();
        for t in 0..(HISTORY as i64 + 10) {
            log.publish(at(t));
        }
        let (all, _) = log.subscribe(Window {
            since: Some(0),
            until: None,
        });
        assert_eq!(all.len(), HISTORY);
        assert_eq!(all[0].time_nano, Some(10));
        let (none, mut live) = log.subscribe(Window::default());
        assert!(none.is_empty());
        let (some, _) = log.subscribe(Window {
            since: Some(100),
            until: Some(102),
        });
        let times: Vec<_> = some.iter().map(|m| m.time_nano).collect();
        assert_eq!(times, [Some(100), Some(101), Some(102)]);
        log.publish(at(999));
        assert_eq!(live.recv().await.expect("live").time_nano, Some(999));
    }
}

//! The daemon's event log, as dockerd's `daemon/events`: the last [`HISTORY`] messages (what
//! `since`/`until` replay) and a bounded live feed for every subscriber.

use std::sync::Arc;

use bollard_stubs::models as m;
use tokio::sync::broadcast;

use crate::replay::Replay;

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
    replay: Replay<m::EventMessage>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self {
            replay: Replay::new(HISTORY, SUBSCRIBER_BUFFER),
        }
    }
}

impl EventLog {
    pub fn publish(&self, message: m::EventMessage) {
        self.replay.publish(message);
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
        let open = window == Window::default();
        self.replay
            .subscribe(|m| !open && window.contains(m.time_nano.unwrap_or_default()))
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

//! `GET /events` for the swarm event types (docs/engine-api.md, "Events").
//!
//! ```text
//! manager store ── committed change ──▶ manager's event history (last 256 since it started)
//!     ──▶ Events.Watch (gRPC, local socket; resumes after the last event the follower got)
//!     ──▶ follow(): message() ──▶ EventLog (last 256 + live feed of 1024 per subscriber)
//!     ──▶ GET /events: the kept messages in since..until, then live ones until `until`
//! ```
//!
//! As dockerd, every manager reports the changes its own store applies; workers have none. A
//! subscriber that falls [`log::SUBSCRIBER_BUFFER`] messages behind is disconnected, so a slow
//! client costs the daemon a bounded buffer and never a silently incomplete stream.

pub mod filter;
pub mod log;
pub mod message;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard_stubs::models as m;
use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use tokio::sync::{broadcast, watch};

use self::filter::EventFilter;
use self::log::{EventLog, Window};
use super::backend::Backend;
use crate::api::pb;

/// How long to wait before watching again after the watch ended or could not start (a worker,
/// a node outside a swarm, a watch that fell behind). Nothing is lost meanwhile: the next watch
/// begins with what the manager kept.
const REWATCH_DELAY: Duration = Duration::from_secs(1);

/// Feeds `log` from the local manager's watch until `stopping`. Each watch resumes after the
/// last event the one before it got, so the manager's kept events fill the time between two
/// watches (before a manager exists, or after a watch ended).
pub async fn follow(
    backend: Arc<Backend>,
    log: Arc<EventLog>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut position = None;
    loop {
        tokio::select! {
            () = watch_once(&backend, &log, &mut position) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        tokio::select! {
            () = tokio::time::sleep(REWATCH_DELAY) => {}
            () = backend.wait_joined() => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

/// One watch, from after `position`; `position` follows the events it gets.
async fn watch_once(backend: &Backend, log: &EventLog, position: &mut Option<pb::EventPosition>) {
    let mut stream = match backend.watch_events(position.clone()).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::trace!(%e, "no cluster events to follow here");
            return;
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(mut event)) => {
                if let Some(next) = event.position.take() {
                    *position = Some(next);
                }
                match message::message(event) {
                    Ok(message) => log.publish(message),
                    Err(e) => tracing::warn!(%e, "a cluster event cannot be shown on /events"),
                }
            }
            Ok(None) => return,
            Err(status) => {
                tracing::warn!(
                    reason = status.message(),
                    "the cluster event watch ended; watching again from the last event received"
                );
                return;
            }
        }
    }
}

/// A subscription's answer: the kept messages, then (unless `until` is past) the live ones
/// until `until`, each one JSON line; ends when the subscriber falls too far behind.
pub fn stream(
    log: &EventLog,
    window: Window,
    filter: EventFilter,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let (past, live) = log.subscribe(window);
    let now = now_nanos();
    let until = window.until;
    let only_past = until.is_some_and(|until| until < now);
    let deadline = until.map(|until| {
        tokio::time::Instant::now()
            + Duration::from_nanos(u64::try_from(until.saturating_sub(now)).unwrap_or(0))
    });
    let filter = Arc::new(filter);
    let past = futures::stream::iter(past).filter({
        let filter = filter.clone();
        move |m| std::future::ready(filter.includes(m))
    });
    let live = futures::stream::unfold(
        (live, filter, deadline),
        |(mut live, filter, deadline)| async move {
            loop {
                let received = match deadline {
                    Some(deadline) => match tokio::time::timeout_at(deadline, live.recv()).await {
                        Ok(received) => received,
                        Err(_) => return None,
                    },
                    None => live.recv().await,
                };
                match received {
                    Ok(message) if filter.includes(&message) => {
                        return Some((message, (live, filter, deadline)));
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            missed,
                            "an /events client reads too slowly and is disconnected"
                        );
                        return None;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    let live = if only_past {
        live.take(0).left_stream()
    } else {
        live.right_stream()
    };
    past.chain(live).map(|message| Ok(json_line(&message)))
}

fn json_line(message: &m::EventMessage) -> Bytes {
    // A model of strings and integers always serialises.
    let mut line = serde_json::to_vec(message).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

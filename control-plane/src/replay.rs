//! A bounded history with a live feed behind it, without a gap between the two: what dockerd's
//! event log is for `/events` (`engine_api::events::log`) and what a manager keeps of its
//! committed changes so that a watcher can resume where it stopped
//! (`manager::controlapi::events`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

#[derive(Debug)]
pub struct Replay<T> {
    kept: usize,
    inner: Mutex<Inner<T>>,
}

#[derive(Debug)]
struct Inner<T> {
    history: VecDeque<Arc<T>>,
    live: broadcast::Sender<Arc<T>>,
}

impl<T> Replay<T> {
    /// Keeps the last `kept` items; a subscriber may fall `live_buffer` items behind the live
    /// feed before it is told it lagged.
    pub fn new(kept: usize, live_buffer: usize) -> Self {
        Self {
            kept,
            inner: Mutex::new(Inner {
                history: VecDeque::with_capacity(kept),
                live: broadcast::channel(live_buffer).0,
            }),
        }
    }

    pub fn publish(&self, item: T) {
        let item = Arc::new(item);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.history.len() == self.kept {
            inner.history.pop_front();
        }
        inner.history.push_back(item.clone());
        // No subscriber is not an error: the item stays in the history.
        let _ = inner.live.send(item);
    }

    /// The kept items `replayed` accepts, oldest first, and the live feed from exactly after
    /// the last kept one.
    pub fn subscribe(
        &self,
        replayed: impl Fn(&T) -> bool,
    ) -> (Vec<Arc<T>>, broadcast::Receiver<Arc<T>>) {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let past = inner
            .history
            .iter()
            .filter(|item| replayed(item))
            .cloned()
            .collect();
        (past, inner.live.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_last_items_and_the_live_feed_follows_them() {
        let replay = Replay::new(4, 8);
        for n in 0..6 {
            replay.publish(n);
        }
        let (all, mut live) = replay.subscribe(|_| true);
        let all: Vec<i32> = all.iter().map(|n| **n).collect();
        assert_eq!(all, [2, 3, 4, 5]);
        let (odd, _) = replay.subscribe(|n| n % 2 == 1);
        let odd: Vec<i32> = odd.iter().map(|n| **n).collect();
        assert_eq!(odd, [3, 5]);
        replay.publish(6);
        assert_eq!(*live.recv().await.expect("live"), 6);
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_the_live_feed_is_told() {
        let replay = Replay::new(1, 2);
        let (_, mut live) = replay.subscribe(|_| false);
        for n in 0..3 {
            replay.publish(n);
        }
        assert!(matches!(
            live.recv().await,
            Err(broadcast::error::RecvError::Lagged(1))
        ));
    }
}

//! Running a manager loop (allocator, scheduler, orchestrator) only while this manager leads,
//! as SwarmKit's manager starts its loops on becoming leader and stops them on losing it. A
//! loop starts only once the new leader's state is current ([`Store::confirm_current`]): it
//! has applied every entry committed before its term, so its first pass sees what the last
//! leader did.
//!
//! Every loop here is level-triggered: one *pass* reads the whole state it cares about from a
//! store transaction, decides, and writes what changed. A pass runs when a watched object
//! changes and on a periodic resync (timers such as the restart delay, and robustness against
//! lost events), so a loop never depends on having seen every event — a lagged or replaced
//! watch is simply followed by another pass.

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::watch;

use crate::store::objects::ObjectKind;
use crate::store::types::{NodeId, RaftMetrics};
use crate::store::{Filter, Store, StoreError, Watch, WatchError};

/// How often a loop runs a pass even when nothing changed.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(1);

/// One manager loop, reduced to its pass.
pub trait Reconciler: Send + 'static {
    /// For logs.
    const NAME: &'static str;

    /// The object kinds whose changes should trigger a pass.
    fn kinds(&self) -> &'static [ObjectKind];

    /// Reads the state, decides and writes. Returns whether it wrote anything.
    fn pass(&mut self, store: &Store) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// This manager stopped leading: forget in-memory state (a later term rebuilds it from the
    /// store, as SwarmKit's loops do).
    fn reset(&mut self) {}
}

/// Runs `reconciler` while `metrics` says `raft_id` leads; until `stop` or the store stops.
pub async fn run<R: Reconciler>(
    mut reconciler: R,
    store: Store,
    mut metrics: watch::Receiver<RaftMetrics>,
    raft_id: NodeId,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(RESYNC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events: Option<Watch> = None;
    loop {
        let leading = metrics.borrow().current_leader == Some(raft_id);
        if !leading && events.take().is_some() {
            tracing::info!(loop_name = R::NAME, "no longer the leader; loop stopped");
            reconciler.reset();
        }
        if leading && events.is_none() {
            // Subscribe first so that nothing applied while catching up is missed, then start
            // only on current state: a new leader may not have applied what its predecessor
            // committed, and a pass on that state would undo or repeat acknowledged work.
            let watch = store.watch(filter(reconciler.kinds()));
            match store.confirm_current().await {
                Ok(()) => {
                    tracing::info!(loop_name = R::NAME, "leading; loop started");
                    events = Some(watch);
                    run_pass(&mut reconciler, &store).await;
                }
                // Not confirmed (leadership lost, no quorum yet): tried again at the next
                // tick or leader change.
                Err(err) => {
                    tracing::debug!(loop_name = R::NAME, %err, "leading, but the state is not confirmed current");
                }
            }
        }
        let pass = tokio::select! {
            _ = tick.tick() => true,
            // Raft metrics change with every commit and heartbeat; only a change of leader
            // matters here, and the top of the loop looks at that.
            changed = metrics.changed() => if changed.is_err() { return } else { false },
            _ = stop.wait_for(|s| *s) => return,
            event = next_event(&mut events) => match event {
                // The store stopped.
                None => return,
                // Lost events are harmless: the pass reads the whole state.
                Some(Err(err)) => {
                    tracing::debug!(loop_name = R::NAME, %err, "watch restarted");
                    true
                }
                Some(Ok(())) => true,
            },
        };
        if pass && events.is_some() && metrics.borrow().current_leader == Some(raft_id) {
            run_pass(&mut reconciler, &store).await;
        }
    }
}

async fn run_pass<R: Reconciler>(reconciler: &mut R, store: &Store) {
    if let Err(err) = reconciler.pass(store).await {
        tracing::warn!(loop_name = R::NAME, %err, "pass failed; retrying at the next change or resync");
    }
}

fn filter(kinds: &[ObjectKind]) -> Filter {
    kinds
        .iter()
        .fold(Filter::all(), |filter, kind| filter.kind(*kind))
}

/// Waits for the next event (any number of them coalesce into one pass); pends forever while
/// not leading.
async fn next_event(events: &mut Option<Watch>) -> Option<Result<(), WatchError>> {
    let Some(watch) = events.as_mut() else {
        return std::future::pending().await;
    };
    let first = watch.next().await?;
    // Whatever else has arrived already is covered by the same pass.
    while let Some(Some(Ok(_))) = watch.next().now_or_never() {}
    Some(first.map(drop))
}

//! Running a manager loop (allocator, scheduler, orchestrator) only while this manager leads,
//! as SwarmKit's manager starts its loops on becoming leader and stops them on losing it. A
//! loop starts only once the new leader's state is current ([`Store::confirm_current`]): it
//! has applied every entry committed before its term, so its first pass sees what the last
//! leader did.
//!
//! A *pass* reads what it needs from a store transaction, decides, and writes what changed.
//! What it looks at is its [`Scope`]: everything on the first pass of a term and whenever
//! events may have been lost (a lagged or replaced watch, a failed pass); otherwise only the
//! objects the committed changes since the last pass touched, so that one change costs the
//! same however many services and tasks the cluster holds (docs/control-plane.md, "What a
//! change costs the leader"). A periodic tick lets loops act on timers (the restart delay);
//! a loop with no timer pending does nothing on it.

#[cfg(test)]
mod cost_tests;
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
use crate::store::{Event, Filter, Store, StoreError, Watch, WatchError};

/// How often a loop is offered a [`Scope::Tick`] pass (timers such as the restart delay).
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(1);

/// What a pass must look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole state: the loop just started leading, or it may have missed changes.
    Full,
    /// The committed changes of the watched kinds since the last pass, in commit order.
    Changed(Vec<Event>),
    /// Nothing changed; time passed. Only timers are due.
    Tick,
}

/// One manager loop, reduced to its pass.
pub trait Reconciler: Send + 'static {
    /// For logs.
    const NAME: &'static str;

    /// The object kinds whose changes should trigger a pass.
    fn kinds(&self) -> &'static [ObjectKind];

    /// Reads what `scope` covers, decides and writes. Returns whether it wrote anything. A
    /// failed pass is followed by a [`Scope::Full`] one.
    fn pass(
        &mut self,
        store: &Store,
        scope: Scope,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

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
    // Whether the next pass must read everything (a failed pass lost its events).
    let mut full = true;
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
                    full = !run_pass(&mut reconciler, &store, Scope::Full).await;
                }
                // Not confirmed (leadership lost, no quorum yet): tried again at the next
                // tick or leader change.
                Err(err) => {
                    tracing::debug!(loop_name = R::NAME, %err, "leading, but the state is not confirmed current");
                }
            }
        }
        let scope = tokio::select! {
            _ = tick.tick() => Some(Scope::Tick),
            // Raft metrics change with every commit and heartbeat; only a change of leader
            // matters here, and the top of the loop looks at that.
            changed = metrics.changed() => if changed.is_err() { return } else { None },
            _ = stop.wait_for(|s| *s) => return,
            event = next_events(&mut events) => match event {
                // The store stopped.
                None => return,
                // Lost events: the pass reads the whole state.
                Some(Err(err)) => {
                    tracing::debug!(loop_name = R::NAME, %err, "watch restarted");
                    Some(Scope::Full)
                }
                Some(Ok(changed)) => Some(Scope::Changed(changed)),
            },
        };
        if let Some(scope) = scope
            && events.is_some()
            && metrics.borrow().current_leader == Some(raft_id)
        {
            let scope = if full { Scope::Full } else { scope };
            full = !run_pass(&mut reconciler, &store, scope).await;
        }
    }
}

/// Runs one pass; returns whether it succeeded.
async fn run_pass<R: Reconciler>(reconciler: &mut R, store: &Store, scope: Scope) -> bool {
    match reconciler.pass(store, scope).await {
        Ok(_) => true,
        Err(err) => {
            tracing::warn!(loop_name = R::NAME, %err, "pass failed; a full pass follows at the next change or tick");
            false
        }
    }
}

pub(crate) fn filter(kinds: &[ObjectKind]) -> Filter {
    kinds
        .iter()
        .fold(Filter::all(), |filter, kind| filter.kind(*kind))
}

/// Waits for the next event and takes whatever else has arrived already (they coalesce into
/// one pass); pends forever while not leading.
async fn next_events(events: &mut Option<Watch>) -> Option<Result<Vec<Event>, WatchError>> {
    let Some(watch) = events.as_mut() else {
        return std::future::pending().await;
    };
    let mut changed = vec![watch.next().await?];
    while let Some(Some(next)) = watch.next().now_or_never() {
        changed.push(next);
    }
    Some(changed.into_iter().collect())
}

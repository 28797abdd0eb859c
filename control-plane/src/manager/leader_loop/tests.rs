//! The loops as `Manager::open` runs them: spawned, woken by store changes, on the leader.

use tokio::sync::watch;

use super::{RESYNC_INTERVAL, run};
use crate::manager::allocator::Allocator;
use crate::manager::leader_loop::testing::*;
use crate::manager::orchestrator::Orchestrator;
use crate::manager::scheduler::Scheduler;
use crate::store::objects::TaskState;

#[tokio::test]
async fn the_loops_place_a_new_service_on_their_own_while_leading() {
    let swarm = Swarm::new().await;
    for host in ["n1", "n2", "n3"] {
        swarm.add_node(host).await;
    }
    let (stop, stop_rx) = watch::channel(false);
    let store = swarm.store.clone();
    let handles = vec![
        tokio::spawn(run(
            Orchestrator::default(),
            store.clone(),
            store.metrics(),
            1,
            stop_rx.clone(),
        )),
        tokio::spawn(run(
            Allocator::default(),
            store.clone(),
            store.metrics(),
            1,
            stop_rx.clone(),
        )),
        tokio::spawn(run(
            Scheduler::default(),
            store.clone(),
            store.metrics(),
            1,
            stop_rx,
        )),
    ];
    let web = swarm.create_service(replicated("web", 3)).await;

    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let tasks = swarm.live_tasks(&web);
        if tasks.len() == 3 && tasks.iter().all(|t| t.status.state == TaskState::Assigned) {
            assert_eq!(per_node(&tasks).len(), 3);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tasks not assigned: {tasks:?}"
        );
        tokio::time::sleep(RESYNC_INTERVAL / 10).await;
    }
    stop.send(true).unwrap();
    for handle in handles {
        handle.await.unwrap();
    }
}

/// Counts what the runner asks of it.
struct Probe {
    passes: tokio::sync::mpsc::UnboundedSender<&'static str>,
}

impl super::Reconciler for Probe {
    const NAME: &'static str = "probe";

    fn kinds(&self) -> &'static [crate::store::objects::ObjectKind] {
        &[crate::store::objects::ObjectKind::Service]
    }

    async fn pass(
        &mut self,
        _store: &crate::store::Store,
        _scope: super::Scope,
    ) -> Result<bool, crate::store::StoreError> {
        let _ = self.passes.send("pass");
        Ok(false)
    }

    fn reset(&mut self) {
        let _ = self.passes.send("reset");
    }
}

#[tokio::test]
async fn a_loop_starts_on_gaining_leadership_and_stops_on_losing_it() {
    let swarm = Swarm::new().await;
    let (passes, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let mut metrics = crate::store::types::RaftMetrics::new_initial(1);
    metrics.current_leader = Some(2);
    let (leadership, leadership_rx) = watch::channel(metrics.clone());
    let (stop, stop_rx) = watch::channel(false);
    let handle = tokio::spawn(run(
        Probe { passes },
        swarm.store.clone(),
        leadership_rx,
        1,
        stop_rx,
    ));

    // Another manager leads: the first thing the loop does is its pass after taking over.
    metrics.current_leader = Some(1);
    leadership.send(metrics.clone()).unwrap();
    assert_eq!(next(&mut seen).await, Some("pass"));

    // Leadership lost: state is dropped before anything else happens.
    metrics.current_leader = Some(2);
    leadership.send(metrics.clone()).unwrap();
    loop {
        match next(&mut seen).await {
            Some("reset") => break,
            Some("pass") => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    // Leading again starts with a pass.
    swarm.create_service(replicated("web", 1)).await;
    metrics.current_leader = Some(1);
    leadership.send(metrics).unwrap();
    assert_eq!(next(&mut seen).await, Some("pass"));

    stop.send(true).unwrap();
    handle.await.unwrap();
}

async fn next(
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<&'static str>,
) -> Option<&'static str> {
    tokio::time::timeout(PATIENCE, seen.recv())
        .await
        .expect("the loop answered in time")
}

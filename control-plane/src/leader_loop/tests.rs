//! The loops as `Manager::open` runs them: spawned, woken by store changes, on the leader.

use tokio::sync::watch;

use super::{RESYNC_INTERVAL, run};
use crate::allocator::Allocator;
use crate::leader_loop::testing::*;
use crate::orchestrator::Orchestrator;
use crate::scheduler::Scheduler;
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
            Allocator,
            store.clone(),
            store.metrics(),
            1,
            stop_rx.clone(),
        )),
        tokio::spawn(run(Scheduler, store.clone(), store.metrics(), 1, stop_rx)),
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

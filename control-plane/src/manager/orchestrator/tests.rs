//! The orchestrator with the allocator and scheduler behind it, on a real store, with fake
//! agents writing task states: what `hive service ps` would show.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::manager::leader_loop::testing::*;
use crate::store::objects::{
    Cluster, NodeAvailability, NodeState, RestartCondition, RestartPolicy, Task, TaskState,
};

fn slots(tasks: &[Task]) -> Vec<u64> {
    tasks.iter().map(|t| t.slot).collect()
}

#[tokio::test]
async fn replicas_fill_slots_and_spread_evenly_over_nodes() {
    let mut swarm = Swarm::new().await;
    for host in ["n1", "n2", "n3"] {
        swarm.add_node(host).await;
    }
    let web = swarm.create_service(replicated("web", 6)).await;
    swarm.converge().await;

    let tasks = swarm.live_tasks(&web);
    assert_eq!(slots(&tasks), [1, 2, 3, 4, 5, 6]);
    assert!(tasks.iter().all(|t| t.status.state == TaskState::Assigned));
    let spread: Vec<usize> = per_node(&tasks).into_values().collect();
    assert_eq!(spread, [2, 2, 2]);

    swarm.settle().await;
    assert!(
        swarm
            .live_tasks(&web)
            .iter()
            .all(|t| t.status.state == TaskState::Running)
    );
}

#[tokio::test]
async fn scale_down_removes_the_highest_slots_and_reaps_them() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    swarm.add_node("n2").await;
    let web = swarm.create_service(replicated("web", 5)).await;
    swarm.settle().await;

    swarm
        .update_service(&web, |s| {
            s.spec.mode = crate::store::objects::ServiceMode::Replicated { replicas: 2 }
        })
        .await;
    swarm.converge().await;
    let removed: Vec<u64> = swarm
        .tasks(&web)
        .iter()
        .filter(|t| t.desired_state == TaskState::Remove)
        .map(|t| t.slot)
        .collect();
    assert_eq!(
        removed.into_iter().collect::<BTreeSet<_>>(),
        [3, 4, 5].into()
    );

    swarm.settle().await;
    let left = swarm.tasks(&web);
    assert_eq!(
        slots(&left).into_iter().collect::<BTreeSet<_>>(),
        [1, 2].into()
    );
    assert!(left.iter().all(|t| t.status.state == TaskState::Running));
}

#[tokio::test]
async fn an_unsatisfiable_constraint_keeps_the_task_pending_with_the_reason() {
    let mut swarm = Swarm::new().await;
    let mut nodes = Vec::new();
    for host in ["n1", "n2", "n3"] {
        nodes.push(
            swarm
                .add_node_with(host, |n| {
                    n.spec.annotations.labels.insert("zone".into(), "a".into());
                })
                .await,
        );
    }
    let mut service = replicated("db", 1);
    service.spec.task_template.placement.constraints = vec!["node.labels.zone==b".into()];
    let db = swarm.create_service(service).await;
    swarm.settle().await;

    let tasks = swarm.live_tasks(&db);
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].status.state, TaskState::Pending);
    assert_eq!(
        tasks[0].status.err,
        "no suitable node (scheduling constraints not satisfied on 3 nodes)"
    );

    // A node that gets the label takes it on the next pass.
    swarm
        .update_node(&nodes[1], |n| {
            n.spec.annotations.labels.insert("zone".into(), "b".into());
        })
        .await;
    swarm.settle().await;
    let tasks = swarm.live_tasks(&db);
    assert_eq!(tasks[0].node_id.as_deref(), Some(nodes[1].as_str()));
    assert_eq!(tasks[0].status.state, TaskState::Running);
    assert!(tasks[0].status.err.is_empty());
}

#[tokio::test]
async fn draining_a_node_moves_its_tasks_elsewhere() {
    let mut swarm = Swarm::new().await;
    let n1 = swarm.add_node("n1").await;
    swarm.add_node("n2").await;
    swarm.add_node("n3").await;
    let web = swarm.create_service(replicated("web", 3)).await;
    swarm.settle().await;
    let before: Vec<Task> = swarm
        .live_tasks(&web)
        .into_iter()
        .filter(|t| t.node_id.as_deref() == Some(n1.as_str()))
        .collect();
    assert_eq!(before.len(), 1);

    swarm
        .update_node(&n1, |n| n.spec.availability = NodeAvailability::Drain)
        .await;
    swarm.settle().await;

    let live = swarm.live_tasks(&web);
    assert_eq!(slots(&live), [1, 2, 3]);
    assert!(
        live.iter()
            .all(|t| t.node_id.as_deref() != Some(n1.as_str()))
    );
    assert!(live.iter().all(|t| t.status.state == TaskState::Running));
    let old: Task = swarm.get(&before[0].id);
    assert_eq!(old.desired_state, TaskState::Shutdown);
    assert_eq!(old.status.state, TaskState::Shutdown);
}

#[tokio::test]
async fn a_paused_node_keeps_its_tasks_but_takes_no_new_ones() {
    let mut swarm = Swarm::new().await;
    let n1 = swarm.add_node("n1").await;
    swarm.add_node("n2").await;
    swarm.add_node("n3").await;
    let web = swarm.create_service(replicated("web", 3)).await;
    swarm.settle().await;
    let on_n1 = |tasks: &[Task]| {
        tasks
            .iter()
            .filter(|t| t.node_id.as_deref() == Some(n1.as_str()))
            .count()
    };
    assert_eq!(on_n1(&swarm.live_tasks(&web)), 1);

    swarm
        .update_node(&n1, |n| n.spec.availability = NodeAvailability::Pause)
        .await;
    swarm
        .update_service(&web, |s| {
            s.spec.mode = crate::store::objects::ServiceMode::Replicated { replicas: 7 }
        })
        .await;
    swarm.settle().await;

    let live = swarm.live_tasks(&web);
    assert_eq!(live.len(), 7);
    assert_eq!(on_n1(&live), 1, "the paused node got a new task");
    assert!(live.iter().all(|t| t.status.state == TaskState::Running));
}

#[tokio::test]
async fn tasks_of_a_node_that_went_down_are_replaced_and_not_moved_back() {
    let mut swarm = Swarm::new().await;
    let n1 = swarm.add_node("n1").await;
    swarm.add_node("n2").await;
    swarm.add_node("n3").await;
    let web = swarm.create_service(replicated("web", 3)).await;
    swarm.settle().await;

    swarm
        .update_node(&n1, |n| n.status.state = NodeState::Down)
        .await;
    swarm.settle().await;
    let live = swarm.live_tasks(&web);
    assert_eq!(slots(&live), [1, 2, 3]);
    assert!(
        live.iter()
            .all(|t| t.node_id.as_deref() != Some(n1.as_str()))
    );
    assert!(live.iter().all(|t| t.status.state == TaskState::Running));

    swarm
        .update_node(&n1, |n| n.status.state = NodeState::Ready)
        .await;
    swarm.settle().await;
    let after = swarm.live_tasks(&web);
    assert_eq!(
        after.iter().map(|t| &t.id).collect::<Vec<_>>(),
        live.iter().map(|t| &t.id).collect::<Vec<_>>()
    );
}

fn on_failure(max_attempts: u64, delay: Duration) -> RestartPolicy {
    RestartPolicy {
        condition: RestartCondition::OnFailure,
        delay,
        max_attempts,
        window: Duration::ZERO,
    }
}

#[tokio::test]
async fn on_failure_with_two_attempts_restarts_exactly_twice() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    let mut service = replicated("job", 1);
    service.spec.task_template.restart_policy = on_failure(2, Duration::ZERO);
    let job = swarm.create_service(service).await;
    swarm.settle().await;

    for _ in 0..3 {
        let live = swarm.live_tasks(&job);
        assert_eq!(live.len(), 1);
        swarm.report(&live[0].id, TaskState::Failed).await;
        swarm.settle().await;
    }
    let tasks = swarm.tasks(&job);
    assert_eq!(tasks.len(), 3, "the first task and exactly 2 replacements");
    assert!(tasks.iter().all(|t| t.status.state == TaskState::Failed));
    let live = swarm.live_tasks(&job);
    assert_eq!(live.len(), 1, "the last failure stays, wanting to run");
    assert_eq!(live[0].status.state, TaskState::Failed);
}

#[tokio::test]
async fn max_attempts_sets_how_much_history_is_kept() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    let mut service = replicated("job", 1);
    service.spec.task_template.restart_policy = RestartPolicy {
        condition: RestartCondition::Any,
        delay: Duration::ZERO,
        max_attempts: 6,
        window: Duration::ZERO,
    };
    let job = swarm.create_service(service).await;
    swarm.settle().await;
    for _ in 0..7 {
        let live = swarm.live_tasks(&job);
        swarm.report(&live[0].id, TaskState::Failed).await;
        swarm.settle().await;
    }
    assert_eq!(
        swarm.tasks(&job).len(),
        7,
        "max_attempts + 1, above the default 5"
    );
}

#[tokio::test]
async fn on_failure_does_not_restart_a_task_that_completed() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    let mut service = replicated("job", 1);
    service.spec.task_template.restart_policy = on_failure(0, Duration::ZERO);
    let job = swarm.create_service(service).await;
    swarm.settle().await;
    let first = swarm.live_tasks(&job)[0].id.clone();
    swarm.report(&first, TaskState::Complete).await;
    swarm.settle().await;
    assert_eq!(swarm.tasks(&job).len(), 1);
}

#[tokio::test]
async fn a_restart_delay_holds_the_replacement_at_ready() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    let mut service = replicated("web", 1);
    service.spec.task_template.restart_policy.delay = Duration::from_secs(3600);
    let web = swarm.create_service(service).await;
    swarm.settle().await;
    let first = swarm.live_tasks(&web)[0].id.clone();
    swarm.report(&first, TaskState::Failed).await;
    swarm.settle().await;

    let old: Task = swarm.get(&first);
    assert_eq!(old.desired_state, TaskState::Shutdown);
    let live = swarm.live_tasks(&web);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].desired_state, TaskState::Ready);
    assert_eq!(live[0].status.state, TaskState::Assigned);
}

#[tokio::test]
async fn the_task_history_limit_is_kept_per_slot() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    let mut service = replicated("web", 1);
    service.spec.task_template.restart_policy.delay = Duration::ZERO;
    let web = swarm.create_service(service).await;
    swarm.settle().await;
    let mut seen = Vec::new();
    for _ in 0..8 {
        let live = swarm.live_tasks(&web);
        seen.push(live[0].id.clone());
        swarm.report(&live[0].id, TaskState::Failed).await;
        swarm.settle().await;
    }
    let tasks = swarm.tasks(&web);
    assert_eq!(tasks.len(), 5, "Swarm's default history limit");
    let kept: BTreeSet<&String> = tasks.iter().map(|t| &t.id).collect();
    // The newest four failures and the running replacement are kept.
    assert!(seen[4..].iter().all(|id| kept.contains(id)));
    assert_eq!(swarm.live_tasks(&web)[0].status.state, TaskState::Running);

    // A lower cluster setting applies at the next pass.
    let mut cluster = Cluster::default();
    cluster.spec.orchestration.task_history_retention_limit = 2;
    swarm.store.update(|tx| tx.create(cluster)).await.unwrap();
    swarm.settle().await;
    assert_eq!(swarm.tasks(&web).len(), 2);
}

#[tokio::test]
async fn removing_a_service_removes_and_reaps_its_tasks() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    let web = swarm.create_service(replicated("web", 3)).await;
    swarm.settle().await;
    swarm.delete_service(&web).await;
    swarm.converge().await;
    let tasks = swarm.tasks(&web);
    assert_eq!(tasks.len(), 3);
    assert!(tasks.iter().all(|t| t.desired_state == TaskState::Remove));
    swarm.settle().await;
    assert!(swarm.tasks(&web).is_empty());
}

#[tokio::test]
async fn a_spec_change_rolls_one_slot_at_a_time() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    swarm.add_node("n2").await;
    let web = swarm.create_service(replicated("web", 3)).await;
    swarm.settle().await;

    swarm
        .update_service(&web, |s| {
            s.spec.task_template.container.image = "hive/echo".into()
        })
        .await;
    swarm.converge().await;
    let tasks = swarm.tasks(&web);
    let new: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.spec.container.image == "hive/echo")
        .collect();
    assert_eq!(new.len(), 1, "parallelism 1");
    let stopping = tasks
        .iter()
        .filter(|t| t.desired_state == TaskState::Shutdown)
        .count();
    assert_eq!(
        stopping, 1,
        "stop-first: the old task of that slot is stopped"
    );

    swarm.settle().await;
    let live = swarm.live_tasks(&web);
    assert_eq!(slots(&live), [1, 2, 3]);
    assert!(live.iter().all(|t| t.spec.container.image == "hive/echo"));
    assert!(live.iter().all(|t| t.status.state == TaskState::Running));
    assert_eq!(swarm.tasks(&web).len(), 6);

    // `--force` replaces every task again, even with nothing else changed.
    swarm
        .update_service(&web, |s| s.spec.task_template.force_update += 1)
        .await;
    swarm.settle().await;
    assert_eq!(swarm.tasks(&web).len(), 9);
    // Scaling is not a template change: nothing is replaced.
    swarm
        .update_service(&web, |s| {
            s.spec.mode = crate::store::objects::ServiceMode::Replicated { replicas: 4 }
        })
        .await;
    swarm.settle().await;
    assert_eq!(swarm.tasks(&web).len(), 10);
}

/// `--update-failure-action rollback` with a new task that fails before it ran (a check
/// that never passes): in one pass the restart supervisor replaces it with a task held at
/// `ready` (the restart delay) and the updater rolls back; the next pass replaces that held
/// task, which has the failed spec. When that pass comes before the allocator and the
/// scheduler saw the held task (they run concurrently in a manager), it is never placed: it
/// stays `new` with desired `shutdown` and nothing ever reports it stopped. The progress
/// display once waited for it forever (docs/lifecycle.md).
#[tokio::test]
async fn a_replacement_stopped_before_it_was_placed_does_not_hold_the_progress_display() {
    use crate::store::objects::{FailureAction, Service};
    let mut swarm = Swarm::new().await;
    let node = swarm.add_node("n1").await;
    let mut service = replicated("web", 1);
    service.spec.update_config.failure_action = FailureAction::Rollback;
    let web = swarm.create_service(service).await;
    swarm.settle().await;

    swarm
        .update_service(&web, |s| {
            let mut spec = s.spec.clone();
            spec.task_template.container.env.push("STEP=1".into());
            s.previous_spec = Some(std::mem::replace(&mut s.spec, spec));
            s.update_status = Some(crate::manager::orchestrator::update::started(false));
        })
        .await;
    swarm.converge().await;
    let updated = |t: &Task| t.spec.container.env.iter().any(|e| e == "STEP=1");
    let new = swarm
        .live_tasks(&web)
        .into_iter()
        .find(|t| updated(t))
        .expect("the update's new task");
    swarm.report(&new.id, TaskState::Failed).await;
    assert!(swarm.orchestrate().await, "restart and rollback");
    assert!(swarm.orchestrate().await, "the held replacement replaced");
    swarm.settle().await;

    let service: Service = swarm.get(&web);
    assert!(
        service
            .update_status
            .as_ref()
            .is_some_and(|s| s.state.is_rollback()),
        "{:?}",
        service.update_status
    );
    let tasks = swarm.tasks(&web);
    let never_placed = tasks
        .iter()
        .filter(|t| t.desired_state == TaskState::Shutdown && t.status.state < TaskState::Assigned)
        .count();
    assert_eq!(never_placed, 1, "{tasks:#?}");
    let live = swarm.live_tasks(&web);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].status.state, TaskState::Running);
    assert!(!updated(&live[0]), "rolled back");

    let shown = crate::cli::service::progress::snapshot(&service, &tasks, &[node].into(), true);
    assert!(shown.converged, "{:?}", shown.lines);
}

#[tokio::test]
async fn a_global_service_runs_once_on_every_eligible_node() {
    let mut swarm = Swarm::new().await;
    let n1 = swarm.add_node("n1").await;
    let n2 = swarm.add_node("n2").await;
    let drained = swarm
        .add_node_with("n3", |n| n.spec.availability = NodeAvailability::Drain)
        .await;
    let agent = swarm.create_service(global("agent")).await;
    swarm.settle().await;

    let live = swarm.live_tasks(&agent);
    let nodes: BTreeSet<String> = live.iter().filter_map(|t| t.node_id.clone()).collect();
    assert_eq!(nodes, [n1.clone(), n2.clone()].into());
    assert!(live.iter().all(|t| t.slot == 0));
    assert!(live.iter().all(|t| t.status.state == TaskState::Running));

    let n4 = swarm.add_node("n4").await;
    swarm.settle().await;
    let nodes: BTreeSet<String> = swarm
        .live_tasks(&agent)
        .iter()
        .filter_map(|t| t.node_id.clone())
        .collect();
    assert_eq!(nodes, [n1.clone(), n2.clone(), n4].into());
    assert!(!nodes.contains(&drained));

    swarm
        .update_node(&n1, |n| n.spec.availability = NodeAvailability::Drain)
        .await;
    swarm.settle().await;
    let on_n1: Vec<Task> = swarm
        .tasks(&agent)
        .into_iter()
        .filter(|t| t.node_id.as_deref() == Some(n1.as_str()))
        .collect();
    assert_eq!(on_n1.len(), 1);
    assert_eq!(on_n1[0].desired_state, TaskState::Shutdown);
    assert_eq!(on_n1[0].status.state, TaskState::Shutdown);
}

#[tokio::test]
async fn a_global_service_honours_constraints() {
    let mut swarm = Swarm::new().await;
    let n1 = swarm
        .add_node_with("n1", |n| {
            n.spec
                .annotations
                .labels
                .insert("edge".into(), "yes".into());
        })
        .await;
    swarm.add_node("n2").await;
    let mut service = global("lb");
    service.spec.task_template.placement.constraints = vec!["node.labels.edge==yes".into()];
    let lb = swarm.create_service(service).await;
    swarm.settle().await;
    let live = swarm.live_tasks(&lb);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].node_id.as_deref(), Some(n1.as_str()));
}

#[tokio::test]
async fn tasks_of_a_removed_node_are_replaced() {
    let mut swarm = Swarm::new().await;
    let n1 = swarm.add_node("n1").await;
    swarm.add_node("n2").await;
    let web = swarm.create_service(replicated("web", 2)).await;
    swarm.settle().await;
    swarm
        .store
        .update(|tx| tx.delete::<crate::store::objects::Node>(&n1))
        .await
        .unwrap();
    swarm.settle().await;
    let live = swarm.live_tasks(&web);
    assert_eq!(slots(&live), [1, 2]);
    assert!(
        live.iter()
            .all(|t| t.node_id.as_deref() != Some(n1.as_str()))
    );
    assert!(live.iter().all(|t| t.status.state == TaskState::Running));
}

#[tokio::test]
async fn a_global_service_updates_node_by_node_and_restarts_in_place() {
    let mut swarm = Swarm::new().await;
    for host in ["n1", "n2", "n3"] {
        swarm.add_node(host).await;
    }
    let mut service = global("agent");
    service.spec.task_template.restart_policy.delay = Duration::ZERO;
    let agent = swarm.create_service(service).await;
    swarm.settle().await;

    // A failed global task is replaced on the same node.
    let first = swarm.live_tasks(&agent)[0].clone();
    swarm.report(&first.id, TaskState::Failed).await;
    swarm.settle().await;
    let replacement: Vec<Task> = swarm
        .live_tasks(&agent)
        .into_iter()
        .filter(|t| t.node_id == first.node_id)
        .collect();
    assert_eq!(replacement.len(), 1);
    assert_ne!(replacement[0].id, first.id);
    assert_eq!(replacement[0].status.state, TaskState::Running);

    swarm
        .update_service(&agent, |s| {
            s.spec.task_template.container.image = "hive/echo".into()
        })
        .await;
    swarm.converge().await;
    let updated = swarm
        .tasks(&agent)
        .iter()
        .filter(|t| t.spec.container.image == "hive/echo")
        .count();
    assert_eq!(updated, 1, "one node at a time");
    swarm.settle().await;
    let live = swarm.live_tasks(&agent);
    assert_eq!(live.len(), 3);
    assert!(
        live.iter()
            .all(|t| t.spec.container.image == "hive/echo" && t.status.state == TaskState::Running)
    );
    assert_eq!(per_node(&live).len(), 3);
}

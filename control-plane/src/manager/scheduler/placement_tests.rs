//! Spread preferences and the per-node replica limit, through the loops on a real store.

use std::collections::BTreeMap;

use crate::manager::leader_loop::testing::*;
use crate::store::objects::{PlacementPreference, TaskState};

fn zone(zone: &str) -> impl FnOnce(&mut crate::store::objects::Node) + '_ {
    move |n| {
        n.spec
            .annotations
            .labels
            .insert("zone".to_owned(), zone.to_owned());
    }
}

#[tokio::test]
async fn spread_over_a_label_balances_its_values_not_the_nodes() {
    let mut swarm = Swarm::new().await;
    // Zone a has three nodes, zone b one: node spreading would put 3 of 4 tasks in a.
    let mut zone_of = BTreeMap::new();
    for (host, z) in [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b")] {
        let id = swarm.add_node_with(host, zone(z)).await;
        zone_of.insert(id, z);
    }
    let mut service = replicated("web", 4);
    service.spec.task_template.placement.preferences = vec![PlacementPreference {
        spread: "node.labels.zone".to_owned(),
    }];
    let web = swarm.create_service(service).await;
    swarm.settle().await;
    let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
    for task in swarm.live_tasks(&web) {
        assert_eq!(task.status.state, TaskState::Running);
        let node = task.node_id.as_deref().expect("placed");
        *per_zone.entry(zone_of[node]).or_default() += 1;
    }
    assert_eq!(per_zone, BTreeMap::from([("a", 2), ("b", 2)]));
}

#[tokio::test]
async fn a_task_beyond_the_per_node_limit_stays_pending_and_says_why() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    swarm.add_node("n2").await;
    let mut service = replicated("capped", 3);
    service.spec.task_template.placement.max_replicas = 1;
    let capped = swarm.create_service(service).await;
    swarm.settle().await;
    let tasks = swarm.live_tasks(&capped);
    let running: Vec<_> = tasks
        .iter()
        .filter(|t| t.status.state == TaskState::Running)
        .collect();
    assert_eq!(running.len(), 2);
    assert_ne!(running[0].node_id, running[1].node_id);
    let pending: Vec<_> = tasks
        .iter()
        .filter(|t| t.status.state == TaskState::Pending)
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].status.err,
        "no suitable node (max replicas per node limit exceed)"
    );
}

#[tokio::test]
async fn a_rolling_update_at_the_per_node_limit_places_each_replacement_once_its_old_task_stops() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    swarm.add_node("n2").await;
    let mut service = replicated("capped", 2);
    service.spec.task_template.placement.max_replicas = 1;
    let capped = swarm.create_service(service).await;
    swarm.settle().await;
    swarm
        .update_service(&capped, |s| {
            s.spec.task_template.container.image = "hive/echo".to_owned();
        })
        .await;
    swarm.settle().await;
    let tasks = swarm.live_tasks(&capped);
    let running: Vec<_> = tasks
        .iter()
        .filter(|t| t.status.state == TaskState::Running)
        .collect();
    assert_eq!(running.len(), 2, "{tasks:#?}");
    assert!(
        running
            .iter()
            .all(|t| t.spec.container.image == "hive/echo"),
        "{running:#?}"
    );
    assert_ne!(running[0].node_id, running[1].node_id);
}

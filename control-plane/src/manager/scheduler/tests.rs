//! The scheduler's filters and explanations, through the whole pipeline of loops on a real
//! store.

use crate::manager::leader_loop::testing::*;
use crate::store::objects::{NodeAvailability, PortConfig, PublishMode, Resources, TaskState};

#[tokio::test]
async fn insufficient_resources_and_unavailable_nodes_are_explained() {
    let mut swarm = Swarm::new().await;
    for host in ["n1", "n2"] {
        swarm
            .add_node_with(host, |n| {
                if let Some(d) = n.description.as_mut() {
                    d.resources = Resources {
                        nano_cpus: 1_000_000_000,
                        memory_bytes: 1 << 30,
                    };
                }
            })
            .await;
    }
    swarm
        .add_node_with("n3", |n| n.spec.availability = NodeAvailability::Pause)
        .await;
    let mut service = replicated("big", 3);
    service.spec.task_template.resources.reservations = Resources {
        nano_cpus: 600_000_000,
        memory_bytes: 0,
    };
    let big = swarm.create_service(service).await;
    swarm.settle().await;

    let tasks = swarm.live_tasks(&big);
    let running: Vec<_> = tasks
        .iter()
        .filter(|t| t.status.state == TaskState::Running)
        .collect();
    assert_eq!(running.len(), 2, "one 0.6-CPU task fits on each 1-CPU node");
    assert_ne!(running[0].node_id, running[1].node_id);
    let pending: Vec<_> = tasks
        .iter()
        .filter(|t| t.status.state == TaskState::Pending)
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].status.err,
        "no suitable node (insufficient resources on 2 nodes; 1 node not available for new tasks)"
    );

    // The pending task is tried again when the nodes change.
    swarm.add_node("n4").await;
    swarm.settle().await;
    assert!(
        swarm
            .live_tasks(&big)
            .iter()
            .all(|t| t.status.state == TaskState::Running && t.status.err.is_empty())
    );
}

#[tokio::test]
async fn a_host_mode_port_is_used_once_per_node() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    swarm.add_node("n2").await;
    let mut service = replicated("web", 3);
    service.spec.endpoint_spec.ports.push(PortConfig {
        target_port: 80,
        published_port: 8080,
        publish_mode: PublishMode::Host,
        ..PortConfig::default()
    });
    let web = swarm.create_service(service).await;
    swarm.settle().await;
    let tasks = swarm.live_tasks(&web);
    let per = per_node(
        &tasks
            .iter()
            .filter(|t| t.status.state == TaskState::Running)
            .cloned()
            .collect::<Vec<_>>(),
    );
    assert_eq!(per.values().copied().collect::<Vec<_>>(), [1, 1]);
    let pending: Vec<_> = tasks
        .iter()
        .filter(|t| t.status.state == TaskState::Pending)
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].status.err,
        "no suitable node (host-mode port already in use on 2 nodes)"
    );
}

#[tokio::test]
async fn constraints_on_role_hostname_and_id_all_apply() {
    let mut swarm = Swarm::new().await;
    let n1 = swarm.add_node("n1").await;
    let n2 = swarm
        .add_node_with("n2", |n| n.role = crate::store::objects::NodeRole::Manager)
        .await;
    swarm.add_node("n3").await;
    let mut service = replicated("web", 2);
    service.spec.task_template.placement.constraints = vec![
        "node.role==worker".into(),
        "node.hostname!=n3".into(),
        format!("node.id!={n2}"),
    ];
    let web = swarm.create_service(service).await;
    swarm.settle().await;
    let tasks = swarm.live_tasks(&web);
    assert!(
        tasks
            .iter()
            .all(|t| t.node_id.as_deref() == Some(n1.as_str())
                && t.status.state == TaskState::Running)
    );
}

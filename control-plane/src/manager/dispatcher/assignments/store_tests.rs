//! The dispatcher's assignment stream and status updates against a real one-manager store.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use openraft::SnapshotPolicy;

use super::*;
use crate::api::assignments::mesh_changes_of;
use crate::api::pb;
use crate::manager::dispatcher::Dispatcher;
use crate::store::local_network::LocalRouter;
use crate::store::objects::{Node, NodeDescription, NodeStatus};
use crate::store::{Store, StoreConfig};

const PATIENCE: Duration = Duration::from_secs(20);

async fn leading_store(dir: &std::path::Path) -> Store {
    let mut config = StoreConfig::new(dir, 1);
    config.raft.heartbeat_interval = 50;
    config.raft.election_timeout_min = 300;
    config.raft.election_timeout_max = 600;
    config.raft.snapshot_policy = SnapshotPolicy::Never;
    config.request_timeout = PATIENCE;
    let router = LocalRouter::new();
    let store = Store::open(config, router.clone()).await.unwrap();
    router.register(1, store.raft().clone());
    store.bootstrap("10.0.0.1:2377").await.unwrap();
    store
        .raft()
        .wait(Some(PATIENCE))
        .current_leader(1, "leads")
        .await
        .unwrap();
    store
}

async fn create_node(store: &Store, id: &str) {
    let node = Node {
        id: id.to_owned(),
        description: Some(NodeDescription::default()),
        status: NodeStatus::default(),
        ..Node::default()
    };
    store
        .update(|tx| tx.create(node.clone()).map(drop))
        .await
        .unwrap();
}

async fn create_task(store: &Store, id: &str, node: &str, state: TaskState) {
    let mut task = Task {
        id: id.to_owned(),
        node_id: Some(node.to_owned()),
        desired_state: TaskState::Running,
        ..Task::default()
    };
    task.status.state = state;
    store
        .update(|tx| tx.create(task.clone()).map(drop))
        .await
        .unwrap();
}

/// What a node holds of its stream: its tasks by ID and the mesh view.
#[derive(Default)]
struct Held {
    tasks: BTreeMap<String, Task>,
    mesh: MeshView,
}

/// The next message of `stream`, applied to what the node holds (`held`) as the agent
/// applies it (a complete view replaces it, a delta changes what it names): what the node
/// holds then, and whether the message was a complete view.
async fn next(
    stream: &mut mpsc::Receiver<Result<pb::AssignmentsMessage, tonic::Status>>,
    held: &mut Held,
) -> (Vec<Task>, MeshView, bool) {
    let message = tokio::time::timeout(PATIENCE, stream.recv())
        .await
        .expect("a message in time")
        .expect("the stream goes on")
        .expect("a message, not an error");
    let complete = message.kind() == pb::assignments_message::Kind::Complete;
    if complete {
        *held = Held::default();
    }
    for id in &message.remove_tasks {
        held.tasks.remove(id);
    }
    for task in message.update_tasks {
        let task = Task::try_from(task).expect("a task decodes");
        held.tasks.insert(task.id.clone(), task);
    }
    held.mesh
        .apply(mesh_changes_of(message.mesh.unwrap_or_default()).expect("the mesh decodes"));
    (
        held.tasks.values().cloned().collect(),
        held.mesh.clone(),
        complete,
    )
}

fn status(state: TaskState) -> TaskStatus {
    TaskStatus {
        state,
        message: state.to_string(),
        ..TaskStatus::default()
    }
}

#[tokio::test]
async fn a_node_gets_its_tasks_and_the_mesh_and_statuses_only_move_forward() {
    let dir = tempfile::tempdir().unwrap();
    let store = leading_store(dir.path()).await;
    create_node(&store, "n1").await;
    create_node(&store, "n2").await;
    let dispatcher = Dispatcher::new(store.clone(), Default::default());
    let ip = IpAddr::V4(Ipv4Addr::new(192, 168, 77, 1));
    let description = pb::NodeDescription {
        underlay_mac: "02:00:00:00:00:01".into(),
        ..pb::NodeDescription::default()
    };
    let session = dispatcher
        .register(
            "n1",
            Some(&description),
            ip,
            Some("192.168.77.1:2377".parse().unwrap()),
            Vec::new(),
        )
        .await
        .unwrap()
        .session_id;
    let node: Node = store.view(|tx| tx.get("n1")).unwrap().unwrap();
    assert_eq!(
        node.status.agent_addr,
        Some("192.168.77.1:2377".parse().unwrap())
    );
    assert_eq!(
        node.description.unwrap().underlay_mac,
        Some("02:00:00:00:00:01".parse().unwrap())
    );

    assert!(dispatcher.assignments("n1", "not-the-session").is_err());
    let mut stream = dispatcher.assignments("n1", &session).unwrap();
    let mut held = Held::default();
    let (tasks, mesh, complete) = next(&mut stream, &mut held).await;
    assert!(complete, "a stream starts with a complete view");
    assert!(tasks.is_empty());
    let me = mesh.nodes.iter().find(|n| n.id == "n1").unwrap();
    assert_eq!(
        (me.addr, me.mac),
        (
            Some(Ipv4Addr::new(192, 168, 77, 1)),
            Some("02:00:00:00:00:01".parse().unwrap())
        )
    );

    // Another node's task that does not serve yet changes nothing for n1; n1's own does.
    create_task(&store, "other", "n2", TaskState::Assigned).await;
    create_task(&store, "mine", "n1", TaskState::Assigned).await;
    let (tasks, mesh, complete) = next(&mut stream, &mut held).await;
    assert!(!complete, "then changes");
    assert_eq!(
        tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec!["mine"]
    );
    assert!(mesh.tasks.is_empty());

    // Forward moves apply, in one batch; backward ones and other nodes' tasks do not. The
    // answer is the version that reflects the write (what the agent waits for every node's
    // mesh to apply before stopping an unhealthy task); a write that changes nothing answers
    // the version it read.
    let before = store
        .view(|tx| Ok::<_, crate::store::StoreError>(tx.applied_index()))
        .unwrap();
    let written = dispatcher
        .update_task_status(
            "n1",
            &session,
            vec![
                ("mine".into(), status(TaskState::Running)),
                ("other".into(), status(TaskState::Failed)),
            ],
        )
        .await
        .unwrap();
    assert!(written > before, "{written} after {before}");
    let unchanged = dispatcher
        .update_task_status(
            "n1",
            &session,
            vec![("mine".into(), status(TaskState::Preparing))],
        )
        .await
        .unwrap();
    assert_eq!(unchanged, written);
    let read = |id: &str| -> Task { store.view(|tx| tx.get(id)).unwrap().unwrap() };
    assert_eq!(read("mine").status.state, TaskState::Running);
    assert_ne!(read("mine").status.timestamp, Timestamp::default());
    assert_eq!(read("other").status.state, TaskState::Assigned);
    assert!(
        dispatcher
            .update_task_status(
                "n1",
                "stale",
                vec![("mine".into(), status(TaskState::Failed))]
            )
            .await
            .is_err()
    );

    // The running task is now in every node's mesh view.
    let (tasks, mesh, _) = next(&mut stream, &mut held).await;
    assert_eq!(tasks[0].status.state, TaskState::Running);
    assert_eq!(mesh.tasks.len(), 1);
    assert_eq!(mesh.tasks[0].node_id, "n1");

    // A new session ends the old stream.
    let new = dispatcher
        .register(
            "n1",
            None,
            ip,
            Some("192.168.77.1:2377".parse().unwrap()),
            Vec::new(),
        )
        .await
        .unwrap();
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.recv().await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(ended, Some(Err(_)) | None), "{ended:?}");

    // The reconnected agent starts again from a complete view, whatever it held.
    let mut stream = dispatcher.assignments("n1", &new.session_id).unwrap();
    let mut stale = Held {
        tasks: BTreeMap::from([(
            "gone-meanwhile".into(),
            Task {
                id: "gone-meanwhile".into(),
                ..Task::default()
            },
        )]),
        ..Held::default()
    };
    let (tasks, mesh, complete) = next(&mut stream, &mut stale).await;
    assert!(complete);
    assert_eq!(
        tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec!["mine"]
    );
    assert_eq!(mesh.tasks.len(), 1);
    drop(Arc::clone(&dispatcher));
    store.shutdown().await.unwrap();
}

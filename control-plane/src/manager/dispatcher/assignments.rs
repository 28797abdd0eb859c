//! The leader's side of the agents' work: the `Assignments` stream (a node's tasks and the
//! cluster's [`MeshView`]) and `UpdateTaskStatus` (what agents observed of their tasks,
//! applied only when it moves a task forward).
//!
//! A stream starts with a complete view ([`complete`]), then follows the store's watch: each
//! committed change is turned into what it changes for the node ([`Changes::record`]: one of
//! its own tasks added, changed or gone; a mesh network, service, running task or node added,
//! changed or gone; the cluster's mesh settings), by comparing the object's mesh form before
//! and after, so the cost of a change is that of the objects it touched, never that of the
//! cluster. Whatever else is already committed is folded in (the latest form of each object
//! wins), and one incremental message goes out with the store version it brings the node to;
//! changes that alter nothing the node holds send nothing. The channel to the gRPC stream is
//! bounded: a slow agent holds the stream back and changes pile up in the watch; if the
//! watch overflows, the events are lost, so the next message is a complete view again (the
//! agent replaces what it holds). The stream ends when the session does (a new register, a
//! lost leadership) or the agent goes away; a reconnecting agent opens a new stream and
//! starts from a complete view.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::FutureExt as _;
use tokio::sync::mpsc;

use super::Dispatcher;
use super::files::HeldFiles;
use crate::api::assignments as wire;
use crate::api::mesh_view::{
    MeshChanges, MeshNetwork, MeshNode, MeshService, MeshSettings, MeshTask, MeshView,
};
use crate::api::{ApiError, pb};
use crate::store::objects::{Object, Task, TaskState, TaskStatus, Timestamp};
use crate::store::{Event, Filter, ReadView};

/// Messages buffered between the watch and the gRPC stream.
const STREAM_BUFFER: usize = 2;
/// How often an idle stream checks that its session is still current.
const SESSION_CHECK: Duration = Duration::from_secs(1);

/// The tasks a node must know about: assigned to it by the scheduler and not yet removed
/// for good.
///
/// A node ID alone does not make a task the node's: a global service's tasks are created
/// with their node already set (SwarmKit does the same), while they are still `NEW` and
/// have neither networks nor an endpoint. Only once the allocator and the scheduler are done
/// (`ASSIGNED` or later, SwarmKit's dispatcher rule) is the task complete enough to run;
/// handing it over earlier let the agent start it with no network at all.
pub fn is_assigned(task: &Task, node_id: &str) -> bool {
    task.node_id.as_deref() == Some(node_id)
        && task.status.state >= TaskState::Assigned
        && (task.desired_state != TaskState::Remove || !task.status.state.is_terminal())
}

/// The complete view of `node_id`: every task assigned to it and the whole mesh view.
pub fn complete(
    tx: &impl ReadView,
    node_id: &str,
) -> Result<pb::AssignmentsMessage, crate::store::StoreError> {
    let tasks = tx.find::<Task>(|t| is_assigned(t, node_id))?;
    let mesh = MeshView::read(tx)?;
    Ok(pb::AssignmentsMessage {
        kind: pb::assignments_message::Kind::Complete.into(),
        version: tx.applied_index(),
        update_tasks: tasks.iter().map(pb::Task::from).collect(),
        remove_tasks: Vec::new(),
        mesh: Some(mesh_changes(&mesh.into_changes())),
        ..pb::AssignmentsMessage::default()
    })
}

/// The wire form of mesh changes.
pub fn mesh_changes(changes: &MeshChanges) -> pb::MeshChanges {
    let MeshChanges {
        settings,
        update_networks,
        remove_networks,
        update_services,
        remove_services,
        update_tasks,
        remove_tasks,
        update_nodes,
        remove_nodes,
    } = changes;
    pb::MeshChanges {
        settings: settings.map(|s| pb::MeshSettings {
            hash_seed: s.hash_seed,
            vxlan_port: u32::from(s.vxlan_port),
            mesh_mode: s.mesh_mode.as_str().to_owned(),
        }),
        update_networks: update_networks.iter().map(wire::mesh_network).collect(),
        remove_networks: remove_networks.clone(),
        update_services: update_services.iter().map(wire::mesh_service).collect(),
        remove_services: remove_services.clone(),
        update_tasks: update_tasks.iter().map(wire::mesh_task).collect(),
        remove_tasks: remove_tasks.clone(),
        update_nodes: update_nodes.iter().map(wire::mesh_node).collect(),
        remove_nodes: remove_nodes.clone(),
    }
}

/// What committed changes change for one node, folded: per object ID its latest form
/// (`None`: gone from the node's view).
#[derive(Debug)]
pub struct Changes {
    node_id: String,
    version: u64,
    tasks: BTreeMap<String, Option<Task>>,
    settings: Option<MeshSettings>,
    networks: BTreeMap<String, Option<MeshNetwork>>,
    services: BTreeMap<String, Option<MeshService>>,
    mesh_tasks: BTreeMap<String, Option<MeshTask>>,
    nodes: BTreeMap<String, Option<MeshNode>>,
}

/// Records the change of one object's form (`before` → `after`) under `id`, if any.
fn fold<T: PartialEq>(
    into: &mut BTreeMap<String, Option<T>>,
    id: &str,
    before: Option<T>,
    after: Option<T>,
) {
    if before != after {
        into.insert(id.to_owned(), after);
    }
}

impl Changes {
    pub fn new(node_id: &str) -> Self {
        Self {
            node_id: node_id.to_owned(),
            version: 0,
            tasks: BTreeMap::new(),
            settings: None,
            networks: BTreeMap::new(),
            services: BTreeMap::new(),
            mesh_tasks: BTreeMap::new(),
            nodes: BTreeMap::new(),
        }
    }

    /// Folds in one committed change.
    pub fn record(&mut self, event: &Event) {
        self.version = self.version.max(event.index());
        let (before, after) = match event {
            Event::Created { object, .. } => (None, Some(object)),
            Event::Updated { old, object, .. } => (Some(old), Some(object)),
            Event::Deleted { object, .. } => (Some(object), None),
        };
        let Some(object) = after.or(before) else {
            return;
        };
        match object {
            Object::Task(task) => {
                fn of(o: Option<&Object>) -> Option<&Task> {
                    match o {
                        Some(Object::Task(t)) => Some(t),
                        _ => None,
                    }
                }
                let (old, new) = (of(before), of(after));
                let mine = |t: Option<&Task>| t.filter(|t| is_assigned(t, &self.node_id)).cloned();
                fold(&mut self.tasks, &task.id, mine(old), mine(new));
                let mesh = |t: Option<&Task>| t.and_then(MeshTask::of);
                fold(&mut self.mesh_tasks, &task.id, mesh(old), mesh(new));
            }
            Object::Service(service) => {
                let of = |o: Option<&Object>| match o {
                    Some(Object::Service(s)) => MeshService::of(s),
                    _ => None,
                };
                fold(&mut self.services, &service.id, of(before), of(after));
            }
            Object::Network(network) => {
                let of = |o: Option<&Object>| match o {
                    Some(Object::Network(n)) => MeshNetwork::of(n),
                    _ => None,
                };
                fold(&mut self.networks, &network.id, of(before), of(after));
            }
            Object::Node(node) => {
                let of = |o: Option<&Object>| match o {
                    Some(Object::Node(n)) => Some(MeshNode::of(n)),
                    _ => None,
                };
                fold(&mut self.nodes, &node.id, of(before), of(after));
            }
            Object::Cluster(_) => {
                let of = |o: Option<&Object>| match o {
                    Some(Object::Cluster(c)) => Some(MeshSettings::of(Some(c))),
                    _ => None,
                };
                if let (old, Some(new)) = (of(before), of(after))
                    && old != Some(new)
                {
                    self.settings = Some(new);
                }
            }
            // Their data goes out with the tasks that name them (`follow`).
            Object::Secret(_) | Object::Config(_) => {}
        }
    }

    /// The message of what was folded in since the last one, if anything changed for the
    /// node (and starts afresh).
    pub fn take(&mut self) -> Option<pb::AssignmentsMessage> {
        fn split<T>(map: BTreeMap<String, Option<T>>) -> (Vec<T>, Vec<String>) {
            let mut update = Vec::new();
            let mut remove = Vec::new();
            for (id, object) in map {
                match object {
                    Some(object) => update.push(object),
                    None => remove.push(id),
                }
            }
            (update, remove)
        }
        let (update_tasks, remove_tasks) = split(std::mem::take(&mut self.tasks));
        let (update_networks, remove_networks) = split(std::mem::take(&mut self.networks));
        let (update_services, remove_services) = split(std::mem::take(&mut self.services));
        let (update_mesh_tasks, remove_mesh_tasks) = split(std::mem::take(&mut self.mesh_tasks));
        let (update_nodes, remove_nodes) = split(std::mem::take(&mut self.nodes));
        let mesh = MeshChanges {
            settings: self.settings.take(),
            update_networks,
            remove_networks,
            update_services,
            remove_services,
            update_tasks: update_mesh_tasks,
            remove_tasks: remove_mesh_tasks,
            update_nodes,
            remove_nodes,
        };
        if update_tasks.is_empty() && remove_tasks.is_empty() && mesh.is_empty() {
            return None;
        }
        Some(pb::AssignmentsMessage {
            kind: pb::assignments_message::Kind::Incremental.into(),
            version: self.version,
            update_tasks: update_tasks.iter().map(pb::Task::from).collect(),
            remove_tasks,
            mesh: Some(mesh_changes(&mesh)),
            ..pb::AssignmentsMessage::default()
        })
    }
}

/// Whether `next` moves a task whose current status is `current` forward (Swarm's order;
/// the same state again is accepted only if it says something new).
pub fn moves_forward(current: &TaskStatus, next: &TaskStatus) -> bool {
    match next.state.cmp(&current.state) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => {
            next.message != current.message
                || next.err != current.err
                || next.runtime != current.runtime
                || next.port_status != current.port_status
                || next.health != current.health
        }
    }
}

/// Ends a stream's record in [`MeshAcks`](super::mesh_acks::MeshAcks) however the stream ends.
struct CloseAcks<'a> {
    acks: &'a super::mesh_acks::MeshAcks,
    node_id: &'a str,
    stream: u64,
}

impl Drop for CloseAcks<'_> {
    fn drop(&mut self) {
        self.acks.close(self.node_id, self.stream);
    }
}

impl Dispatcher {
    /// Fails unless `session_id` is `node_id`'s current session with this leader.
    pub fn check_session(&self, node_id: &str, session_id: &str) -> Result<(), ApiError> {
        let known = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node_id)
            .is_some_and(|s| s == session_id);
        if known {
            Ok(())
        } else {
            Err(ApiError::Precondition(format!(
                "session {session_id} of node {node_id} is not known to this leader; register again"
            )))
        }
    }

    /// The assignment stream of `node_id`'s session `session_id`.
    pub fn assignments(
        self: &std::sync::Arc<Self>,
        node_id: &str,
        session_id: &str,
    ) -> Result<mpsc::Receiver<Result<pb::AssignmentsMessage, tonic::Status>>, ApiError> {
        self.check_session(node_id, session_id)?;
        let (first, watch) = self.store.view_and_watch(Filter::all(), |tx| {
            Ok::<_, ApiError>(complete(tx, node_id)?)
        })?;
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let dispatcher = self.clone();
        let node_id = node_id.to_owned();
        let session_id = session_id.to_owned();
        tokio::spawn(async move {
            dispatcher
                .follow(node_id, session_id, first, watch, sender)
                .await;
        });
        Ok(receiver)
    }

    async fn follow(
        &self,
        node_id: String,
        session_id: String,
        mut first: pb::AssignmentsMessage,
        mut watch: crate::store::Watch,
        sender: mpsc::Sender<Result<pb::AssignmentsMessage, tonic::Status>>,
    ) {
        let stream = self.mesh_acks.open(&node_id, first.version);
        let _close = CloseAcks {
            acks: &self.mesh_acks,
            node_id: &node_id,
            stream,
        };
        let mut files = HeldFiles::default();
        if let Err(err) = files.attach(&self.store, &mut first) {
            let _ = sender.send(Err(ApiError::from(err).into())).await;
            return;
        }
        if sender.send(Ok(first)).await.is_err() {
            return;
        }
        let mut changes = Changes::new(&node_id);
        let mut tick = tokio::time::interval(SESSION_CHECK);
        loop {
            // Wait for a change; a lost event (the watch overflowed) means a complete view.
            let mut lost = false;
            tokio::select! {
                () = sender.closed() => return,
                _ = tick.tick() => {}
                event = watch.next() => match event {
                    None => return,
                    Some(Ok(event)) => changes.record(&event),
                    Some(Err(_lagged_or_replaced)) => lost = true,
                },
            }
            if let Err(err) = self.check_session(&node_id, &session_id) {
                let _ = sender.send(Err(err.into())).await;
                return;
            }
            // Fold in what is already committed.
            while !lost && let Some(Some(event)) = watch.next().now_or_never() {
                match event {
                    Ok(event) => changes.record(&event),
                    Err(_) => lost = true,
                }
            }
            let mut message = if lost {
                changes = Changes::new(&node_id);
                let (view, fresh) = match self
                    .store
                    .view_and_watch(Filter::all(), |tx| complete(tx, &node_id))
                {
                    Ok(read) => read,
                    Err(err) => {
                        // The agent keeps what it has and reconnects for a complete view.
                        tracing::warn!(node = %node_id, %err, "dispatcher: reading assignments");
                        let _ = sender.send(Err(ApiError::from(err).into())).await;
                        return;
                    }
                };
                watch = fresh;
                view
            } else {
                match changes.take() {
                    Some(message) => message,
                    None => {
                        self.mesh_acks.seen(&node_id, stream, changes.version);
                        continue;
                    }
                }
            };
            // The secrets and configs the node's tasks now name, or no longer do.
            if let Err(err) = files.attach(&self.store, &mut message) {
                let _ = sender.send(Err(ApiError::from(err).into())).await;
                return;
            }
            self.mesh_acks.sent(&node_id, stream, message.version);
            if sender.send(Ok(message)).await.is_err() {
                return;
            }
        }
    }

    /// Applies what `node_id` reports of its tasks, in one write. Updates for tasks no longer
    /// assigned to it, or that would move a task backwards, are ignored. Returns the store
    /// version that reflects them: once every node's mesh applied it, the mesh reflects these
    /// statuses everywhere (an unhealthy task is out of it; docs/lifecycle.md).
    pub async fn update_task_status(
        &self,
        node_id: &str,
        session_id: &str,
        updates: Vec<(String, TaskStatus)>,
    ) -> Result<u64, ApiError> {
        self.check_session(node_id, session_id)?;
        let ((), version) = self
            .store
            .update_versioned_retrying(|tx| {
                for (task_id, status) in &updates {
                    let Some(task) = tx.get::<Task>(task_id)? else {
                        continue;
                    };
                    if task.node_id.as_deref() != Some(node_id)
                        || !moves_forward(&task.status, status)
                    {
                        tracing::debug!(task = %task_id, node = %node_id, state = %status.state,
                        "dispatcher: ignoring a stale task status");
                        continue;
                    }
                    let mut status = status.clone();
                    if status.timestamp == Timestamp::default() {
                        status.timestamp = Timestamp::now();
                    }
                    tx.modify::<Task>(task_id, |t| {
                        if status.state == TaskState::Running && t.started_at.is_none() {
                            t.started_at = Some(status.timestamp);
                        }
                        t.status = status;
                    })?;
                }
                Ok::<_, ApiError>(())
            })
            .await?;
        Ok(version)
    }
}

#[cfg(test)]
mod store_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: TaskState, message: &str) -> TaskStatus {
        TaskStatus {
            state,
            message: message.to_owned(),
            ..TaskStatus::default()
        }
    }

    #[test]
    fn statuses_only_move_forward() {
        let running = status(TaskState::Running, "started");
        assert!(moves_forward(
            &status(TaskState::Assigned, ""),
            &status(TaskState::Preparing, "preparing")
        ));
        assert!(moves_forward(&running, &status(TaskState::Failed, "x")));
        assert!(!moves_forward(&running, &status(TaskState::Starting, "")));
        assert!(!moves_forward(&running, &running.clone()));
        assert!(moves_forward(
            &running,
            &status(TaskState::Running, "other")
        ));
        // A terminal state never goes back to running.
        assert!(!moves_forward(
            &status(TaskState::Shutdown, ""),
            &status(TaskState::Running, "started")
        ));
        assert!(moves_forward(
            &status(TaskState::Complete, ""),
            &status(TaskState::Rejected, "late")
        ));
    }

    #[test]
    fn a_task_reaches_its_node_only_once_allocated_and_scheduled() {
        // A global task: its node is set when it is made, before any allocation.
        let mut task = Task {
            node_id: Some("n1".into()),
            desired_state: TaskState::Running,
            ..Task::default()
        };
        for state in [TaskState::New, TaskState::Pending] {
            task.status.state = state;
            assert!(!is_assigned(&task, "n1"), "{state}");
        }
        task.status.state = TaskState::Assigned;
        assert!(is_assigned(&task, "n1"));
    }

    #[test]
    fn removed_tasks_leave_the_set_once_stopped() {
        let mut task = Task {
            node_id: Some("n1".into()),
            desired_state: TaskState::Remove,
            ..Task::default()
        };
        task.status.state = TaskState::Running;
        assert!(is_assigned(&task, "n1"));
        assert!(!is_assigned(&task, "n2"));
        task.status.state = TaskState::Shutdown;
        assert!(!is_assigned(&task, "n1"));
        task.desired_state = TaskState::Shutdown;
        assert!(is_assigned(&task, "n1"));
    }

    fn running(id: &str, node: &str) -> Task {
        let mut task = Task {
            id: id.into(),
            node_id: Some(node.into()),
            desired_state: TaskState::Running,
            ..Task::default()
        };
        task.status.state = TaskState::Running;
        task
    }

    fn updated(index: u64, old: &Task, new: &Task) -> Event {
        Event::Updated {
            index,
            old: Object::Task(Box::new(old.clone())),
            object: Object::Task(Box::new(new.clone())),
        }
    }

    #[test]
    fn another_nodes_task_reaches_a_node_only_when_it_changes_the_mesh() {
        let mut preparing = running("t", "n2");
        preparing.status.state = TaskState::Preparing;
        let mut starting = preparing.clone();
        starting.status.state = TaskState::Starting;
        let mut changes = Changes::new("n1");
        changes.record(&updated(5, &preparing, &starting));
        assert_eq!(changes.take(), None, "nothing n1 holds changed");

        changes.record(&updated(6, &starting, &running("t", "n2")));
        let message = changes.take().expect("the task runs: a mesh change");
        assert_eq!(message.kind(), pb::assignments_message::Kind::Incremental);
        assert_eq!(message.version, 6);
        assert!(message.update_tasks.is_empty(), "not n1's task");
        let mesh = message.mesh.expect("mesh changes");
        assert_eq!(mesh.update_tasks.len(), 1);
        assert_eq!(mesh.update_tasks[0].id, "t");
        assert!(mesh.update_services.is_empty() && mesh.update_nodes.is_empty());
    }

    #[test]
    fn changes_fold_to_the_latest_form_of_each_object() {
        let mut changes = Changes::new("n1");
        let mut stopping = running("mine", "n1");
        stopping.desired_state = TaskState::Shutdown;
        changes.record(&Event::Created {
            index: 3,
            object: Object::Task(Box::new(running("mine", "n1"))),
        });
        changes.record(&updated(4, &running("mine", "n1"), &stopping));
        let message = changes.take().expect("changes");
        assert_eq!(message.version, 4);
        assert_eq!(message.update_tasks.len(), 1);
        assert_eq!(
            message.update_tasks[0].desired_state(),
            pb::TaskState::Shutdown
        );
        let mesh = message.mesh.expect("mesh changes");
        assert!(mesh.update_tasks[0].draining, "the last form: draining");

        changes.record(&Event::Deleted {
            index: 9,
            object: Object::Task(Box::new(stopping.clone())),
        });
        let message = changes.take().expect("changes");
        assert_eq!(message.remove_tasks, ["mine"]);
        assert_eq!(message.mesh.expect("mesh").remove_tasks, ["mine"]);
        assert_eq!(changes.take(), None, "taken once");
    }

    /// A running task of service `s{i}` on node `n{i % 3}`.
    fn serving(i: u32) -> Task {
        let mut task = running(&format!("t{i}"), &format!("n{}", i % 3));
        task.service_id = format!("s{i}");
        task.networks = vec![crate::store::objects::NetworkAttachment {
            network_id: "ingress".into(),
            addresses: vec![
                format!("10.0.{}.{}/16", i / 250, 2 + i % 250)
                    .parse()
                    .unwrap(),
            ],
            aliases: Vec::new(),
        }];
        task
    }

    #[test]
    fn what_one_change_sends_does_not_grow_with_the_cluster() {
        let sizes = [10, 1000].map(|services| {
            // The complete view of a cluster of `services` one-task services.
            let view = MeshView {
                tasks: (0..services)
                    .filter_map(|i| MeshTask::of(&serving(i)))
                    .collect(),
                ..MeshView::default()
            };
            // What every change cost before the stream carried deltas: the view as JSON.
            let json = serde_json::to_vec(&view).map_or(0, |v| v.len());
            let complete = pb::AssignmentsMessage {
                mesh: Some(mesh_changes(&view.into_changes())),
                ..pb::AssignmentsMessage::default()
            };
            // One more task starts running.
            let mut changes = Changes::new("n1");
            let mut starting = serving(services);
            starting.status.state = TaskState::Starting;
            changes.record(&updated(7, &starting, &serving(services)));
            let delta = changes.take().expect("a mesh change");
            (
                json,
                prost::Message::encoded_len(&complete),
                prost::Message::encoded_len(&delta),
            )
        });
        eprintln!("(JSON view, complete message, one change) in bytes at 10 and 1000: {sizes:?}");
        let [
            (_, complete_small, delta_small),
            (_, complete_large, delta_large),
        ] = sizes;
        assert!(complete_large > 50 * complete_small, "{sizes:?}");
        assert!(
            delta_large <= delta_small + 8,
            "one change costs the same at 10 and 1000 tasks: {sizes:?}"
        );
    }
}

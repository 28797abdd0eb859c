//! The leader's side of the agents' work: the `Assignments` stream (a node's tasks and the
//! cluster's [`MeshView`], as complete snapshots) and `UpdateTaskStatus` (what agents observed
//! of their tasks, applied only when it moves a task forward).
//!
//! A stream starts with a snapshot, then follows the store's watch: after every committed
//! change that concerns the node (its own tasks, or anything the mesh view holds), it drains
//! whatever else is already committed and sends one new snapshot — unless it is the same as
//! the last one sent. The channel to the gRPC stream is bounded: a slow agent holds the
//! stream back, changes pile up in the watch and are coalesced into the next snapshot (if the
//! watch overflows, the next snapshot is simply re-read). The stream ends when the session
//! does (a new register, a lost leadership) or the agent goes away. A snapshot that fails to
//! encode ends the stream with the cause: an empty one would tell the agent to stop all it runs.

use std::time::Duration;

use futures::FutureExt as _;
use tokio::sync::mpsc;

use super::Dispatcher;
use crate::agent::mesh_view::{MeshView, is_draining, is_serving};
use crate::api::{ApiError, pb};
use crate::manager::retry::update;
use crate::store::objects::{Object, Task, TaskState, TaskStatus, Timestamp};
use crate::store::{Event, Filter, ReadView, StoreError};

/// Snapshots buffered between the watch and the gRPC stream.
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

/// Whether a task is in every node's [`MeshView`]: serving, or draining.
fn in_mesh(task: &Task) -> bool {
    is_serving(task) || is_draining(task)
}

/// Whether a committed change can change `node_id`'s assignment set.
fn concerns(event: &Event, node_id: &str) -> bool {
    fn task(object: &Object) -> Option<&Task> {
        match object {
            Object::Task(task) => Some(task),
            _ => None,
        }
    }
    match event {
        Event::Created { object, .. } | Event::Deleted { object, .. } => match task(object) {
            Some(t) => t.node_id.as_deref() == Some(node_id) || in_mesh(t),
            None => true,
        },
        Event::Updated { old, object, .. } => match (task(old), task(object)) {
            (Some(old), Some(new)) => {
                old.node_id.as_deref() == Some(node_id)
                    || new.node_id.as_deref() == Some(node_id)
                    || is_serving(old) != is_serving(new)
                    || is_draining(old) != is_draining(new)
                    || (in_mesh(new)
                        && (old.networks != new.networks || old.node_id != new.node_id))
            }
            _ => true,
        },
    }
}

/// Why a node's snapshot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Never sent as an empty list: an agent would take it as "no tasks, no mesh" and stop
    /// everything it runs.
    #[error("encoding the {what} of node {node_id}: {source}")]
    Encode {
        what: &'static str,
        node_id: String,
        #[source]
        source: serde_json::Error,
    },
}

impl From<SnapshotError> for ApiError {
    fn from(err: SnapshotError) -> Self {
        match err {
            SnapshotError::Store(err) => err.into(),
            err @ SnapshotError::Encode { .. } => ApiError::internal("assignments", err),
        }
    }
}

/// One snapshot for `node_id`.
pub fn snapshot(tx: &impl ReadView, node_id: &str) -> Result<pb::AssignmentSet, SnapshotError> {
    let tasks = tx.find::<Task>(|t| is_assigned(t, node_id))?;
    let mesh = MeshView::read(tx)?;
    let encode = |what, value: Result<Vec<u8>, serde_json::Error>| {
        value.map_err(|source| SnapshotError::Encode {
            what,
            node_id: node_id.to_owned(),
            source,
        })
    };
    Ok(pb::AssignmentSet {
        tasks_json: encode("tasks", serde_json::to_vec(&tasks))?,
        mesh_json: encode("mesh view", serde_json::to_vec(&mesh))?,
        version: tx.applied_index(),
    })
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
        }
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
    ) -> Result<mpsc::Receiver<Result<pb::AssignmentSet, tonic::Status>>, ApiError> {
        self.check_session(node_id, session_id)?;
        let (first, watch) = self.store.view_and_watch(Filter::all(), |tx| {
            Ok::<_, ApiError>(snapshot(tx, node_id)?)
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
        first: pb::AssignmentSet,
        mut watch: crate::store::Watch,
        sender: mpsc::Sender<Result<pb::AssignmentSet, tonic::Status>>,
    ) {
        let mut last = (first.tasks_json.clone(), first.mesh_json.clone());
        if sender.send(Ok(first)).await.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(SESSION_CHECK);
        loop {
            // Wait for a change that concerns the node.
            let mut changed = false;
            tokio::select! {
                () = sender.closed() => return,
                _ = tick.tick() => {}
                event = watch.next() => match event {
                    None => return,
                    Some(Ok(event)) => changed = concerns(&event, &node_id),
                    Some(Err(_lagged_or_replaced)) => {
                        changed = true;
                        watch = self.store.watch(Filter::all());
                    }
                },
            }
            if let Err(err) = self.check_session(&node_id, &session_id) {
                let _ = sender.send(Err(err.into())).await;
                return;
            }
            if !changed {
                continue;
            }
            // Coalesce what is already committed.
            while let Some(Some(event)) = watch.next().now_or_never() {
                if event.is_err() {
                    watch = self.store.watch(Filter::all());
                    break;
                }
            }
            let set = match self.store.view(|tx| snapshot(tx, &node_id)) {
                Ok(set) => set,
                Err(SnapshotError::Store(err)) => {
                    tracing::warn!(node = %node_id, %err, "dispatcher: reading assignments");
                    continue;
                }
                Err(err @ SnapshotError::Encode { .. }) => {
                    // The agent keeps what it has and sees the stream fail with the cause.
                    tracing::error!(node = %node_id, %err, "dispatcher: assignments not sent");
                    let _ = sender.send(Err(ApiError::from(err).into())).await;
                    return;
                }
            };
            let now = (set.tasks_json.clone(), set.mesh_json.clone());
            if now == last {
                continue;
            }
            last = now;
            if sender.send(Ok(set)).await.is_err() {
                return;
            }
        }
    }

    /// Applies what `node_id` reports of its tasks, in one write. Updates for tasks no longer
    /// assigned to it, or that would move a task backwards, are ignored.
    pub async fn update_task_status(
        &self,
        node_id: &str,
        session_id: &str,
        updates: Vec<(String, TaskStatus)>,
    ) -> Result<(), ApiError> {
        self.check_session(node_id, session_id)?;
        update(&self.store, |tx| {
            for (task_id, status) in &updates {
                let Some(task) = tx.get::<Task>(task_id)? else {
                    continue;
                };
                if task.node_id.as_deref() != Some(node_id) || !moves_forward(&task.status, status)
                {
                    tracing::debug!(task = %task_id, node = %node_id, state = %status.state,
                        "dispatcher: ignoring a stale task status");
                    continue;
                }
                let mut status = status.clone();
                if status.timestamp == Timestamp::default() {
                    status.timestamp = Timestamp::now();
                }
                tx.modify::<Task>(task_id, |t| t.status = status)?;
            }
            Ok::<_, ApiError>(())
        })
        .await
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
    fn a_snapshot_that_fails_to_encode_is_an_internal_error_naming_the_node() {
        let source = serde_json::from_str::<u8>("x").expect_err("not a number");
        let err = ApiError::from(SnapshotError::Encode {
            what: "mesh view",
            node_id: "n1".into(),
            source,
        });
        assert!(matches!(err, ApiError::Internal { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("assignments failed: encoding the mesh view of node n1: "),
            "{err}"
        );
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

    #[test]
    fn changes_to_other_nodes_tasks_concern_a_node_only_when_they_change_the_mesh() {
        let mut task = Task {
            node_id: Some("n2".into()),
            desired_state: TaskState::Running,
            ..Task::default()
        };
        task.status.state = TaskState::Starting;
        let mut running = task.clone();
        running.status.state = TaskState::Running;
        let event = |old: &Task, new: &Task| Event::Updated {
            index: 1,
            old: Object::Task(Box::new(old.clone())),
            object: Object::Task(Box::new(new.clone())),
        };
        assert!(concerns(&event(&task, &running), "n1"));
        let mut preparing = task.clone();
        preparing.status.state = TaskState::Preparing;
        assert!(!concerns(&event(&preparing, &task), "n1"));
        assert!(concerns(&event(&preparing, &task), "n2"));
    }
}

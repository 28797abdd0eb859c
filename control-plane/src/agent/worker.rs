//! The worker: turns each assignment snapshot into task runners (one per task, see
//! [`super::task_runner`]) and hands the mesh view to the node's mesh (if it has a data
//! plane). Tasks that leave the set are shut down and removed by their runner.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::assignment::Assignment;
use super::status::StatusQueue;
use super::task_runner::{Desired, PreparedRecord, PreparedStore, TaskRunner};
use crate::api::mesh_view::MeshView;
use crate::executor::{
    Executor, ExecutorError, ExitStatus, LogOptions, LogReader, PreparedTask, StartedTask, TaskSpec,
};

/// Where the worker sends the mesh view of every snapshot.
pub trait MeshSink: Send + Sync + std::fmt::Debug {
    /// The cluster's mesh view (`assignment.mesh`, with the journal of what changed in it),
    /// and the tasks of this node that may hold a veth in it: those
    /// assigned here and not stopped. A stopped task's veth stays until its task is removed
    /// (its logs are kept), but its address may already belong to a new task.
    /// `assignment.version` is its store version: once the view is programmed, the sink
    /// says so on [`MeshSink::applied`].
    fn set_view(&self, assignment: &Assignment, live_tasks: std::collections::BTreeSet<String>);

    /// The versions of the views the data plane has programmed (`None`: the sink programs
    /// nothing, a view counts as applied once handed over).
    fn applied(&self) -> Option<watch::Receiver<u64>> {
        None
    }

    /// Takes back the veths of a task an earlier daemon attached (before the first view is
    /// applied, so its endpoints never leave the mesh).
    fn adopt<'a>(&'a self, _task: &'a PreparedTask, _view: &'a MeshView) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// The services this node's data plane refuses to program, as they change (`None`: the
    /// sink never refuses one). Each running task of such a service says so in its status.
    fn refusals(&self) -> Option<watch::Receiver<MeshRefusals>> {
        None
    }
}

/// Services the node's data plane refuses to program: Swarm service ID → why.
pub type MeshRefusals = Arc<std::collections::BTreeMap<String, String>>;

/// How long the worker waits for its runners when it stops (each one stops its task within
/// the task's stop grace period).
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug)]
pub struct Worker {
    pub executor: Arc<dyn Executor>,
    pub statuses: StatusQueue,
    pub prepared: PreparedStore,
    pub mesh: Option<Arc<dyn MeshSink>>,
    /// Set before `stop` for a daemon restart: tasks keep running for the next daemon to
    /// adopt, instead of being stopped and removed.
    pub keep_tasks: Arc<AtomicBool>,
    /// Mesh versions applied here; runners wait on it before stopping a task.
    pub mesh_link: Arc<super::mesh_link::MeshLink>,
}

struct Runner {
    desired: watch::Sender<Desired>,
    join: JoinHandle<()>,
}

impl Worker {
    /// Follows `assignments` until `stop`; then stops and removes every task.
    pub async fn run(
        self,
        mut assignments: watch::Receiver<Option<Arc<Assignment>>>,
        mut stop: watch::Receiver<bool>,
    ) {
        // What an earlier daemon left: adopted by the runners of tasks still assigned, removed
        // once the first assignment shows they are not.
        let mut leftovers: HashMap<String, PreparedRecord> = self
            .prepared
            .list()
            .into_iter()
            .map(|r| (r.task.task_id.clone(), r))
            .collect();
        let mut first = true;
        let mut runners: HashMap<String, Runner> = HashMap::new();
        let sink_applied = self.mesh.as_ref().and_then(|m| m.applied());
        if let Some(mut applied) = sink_applied.clone() {
            let link = self.mesh_link.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        changed = applied.changed() => if changed.is_err() { return },
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    let version = *applied.borrow_and_update();
                    link.set_applied(version);
                }
            });
        }
        loop {
            tokio::select! {
                changed = assignments.changed() => if changed.is_err() { break },
                _ = stop.wait_for(|s| *s) => break,
            }
            let Some(assignment) = assignments.borrow_and_update().clone() else {
                continue;
            };
            let mut adopt: HashMap<String, PreparedRecord> = HashMap::new();
            for task in &assignment.tasks {
                if let Some(record) = leftovers.remove(&task.id) {
                    adopt.insert(task.id.clone(), record);
                }
            }
            if first {
                first = false;
                self.clean_up(std::mem::take(&mut leftovers)).await;
            }
            if let Some(mesh) = &self.mesh {
                if !adopt.is_empty() {
                    // Once, after a daemon restart: a copy, as the adoptions wait on netlink.
                    let view = assignment.mesh.read().clone();
                    for record in adopt.values() {
                        mesh.adopt(&record.task, &view).await;
                    }
                }
                let live = assignment
                    .tasks
                    .iter()
                    .filter(|t| !t.status.state.is_terminal())
                    .map(|t| t.id.clone())
                    .collect();
                mesh.set_view(&assignment, live);
            }
            if sink_applied.is_none() {
                self.mesh_link.set_applied(assignment.version);
            }
            self.statuses.retain_assigned(&assignment);
            runners.retain(|_, r| !r.join.is_finished());
            for task in &assignment.tasks {
                let desired = Desired::new(task.desired_state);
                match runners.get(&task.id) {
                    Some(runner) => {
                        runner.desired.send_if_modified(|d| {
                            let changed = *d != desired;
                            *d = desired;
                            changed
                        });
                    }
                    None => {
                        let (sender, receiver) = watch::channel(desired);
                        let mut runner = TaskRunner::new(
                            task.clone(),
                            self.executor.clone(),
                            self.statuses.clone(),
                            self.prepared.clone(),
                        );
                        runner.adopt = adopt.remove(&task.id);
                        runner.files = super::task_runner::task_files(task, &assignment.files);
                        runner.mesh_refusals = self.mesh.as_ref().and_then(|m| m.refusals());
                        runner.mesh_link = Some(self.mesh_link.clone());
                        runners.insert(
                            task.id.clone(),
                            Runner {
                                desired: sender,
                                join: tokio::spawn(runner.run(receiver)),
                            },
                        );
                    }
                }
            }
            for (id, runner) in &runners {
                if !assignment.tasks.iter().any(|t| t.id == *id) {
                    runner.desired.send_modify(|d| d.gone = true);
                }
            }
        }
        let keep = self.keep_tasks.load(Ordering::Acquire);
        for runner in runners.values() {
            runner.desired.send_modify(|d| {
                if keep {
                    d.detach = true;
                } else {
                    d.gone = true;
                }
            });
        }
        let all = futures::future::join_all(runners.into_values().map(|r| r.join));
        if tokio::time::timeout(STOP_WAIT, all).await.is_err() {
            tracing::warn!("agent: tasks still stopping after {STOP_WAIT:?}; leaving them");
        }
    }

    /// Removes what an earlier daemon left of tasks no longer assigned here.
    async fn clean_up(&self, leftovers: HashMap<String, PreparedRecord>) {
        for task in leftovers.into_values().map(|r| r.task) {
            tracing::info!(task = %task.task_id, "agent: removing a task an earlier daemon left");
            if let Err(err) = self.executor.remove(&task).await {
                tracing::warn!(task = %task.task_id, %err, "agent: removing a left-over task");
            }
            self.prepared.forget(&task.task_id);
        }
    }
}

/// The executor of a node that cannot run tasks (no cgroups, not root): every task is
/// rejected with the reason.
#[derive(Debug)]
pub struct NoExecutor {
    pub reason: String,
}

impl NoExecutor {
    fn error(&self) -> ExecutorError {
        ExecutorError::Config {
            reason: self.reason.clone(),
        }
    }
}

impl Executor for NoExecutor {
    fn prepare<'a>(
        &'a self,
        _spec: &'a TaskSpec,
    ) -> BoxFuture<'a, Result<PreparedTask, ExecutorError>> {
        Box::pin(async { Err(self.error()) })
    }

    fn start<'a>(
        &'a self,
        _task: &'a PreparedTask,
    ) -> BoxFuture<'a, Result<StartedTask, ExecutorError>> {
        Box::pin(async { Err(self.error()) })
    }

    fn wait<'a>(
        &'a self,
        _task: &'a PreparedTask,
    ) -> BoxFuture<'a, Result<ExitStatus, ExecutorError>> {
        Box::pin(async { Err(self.error()) })
    }

    fn shutdown<'a>(&'a self, _task: &'a PreparedTask) -> BoxFuture<'a, Result<(), ExecutorError>> {
        Box::pin(async { Ok(()) })
    }

    fn remove<'a>(&'a self, _task: &'a PreparedTask) -> BoxFuture<'a, Result<(), ExecutorError>> {
        Box::pin(async { Ok(()) })
    }

    fn logs<'a>(
        &'a self,
        _task: &'a PreparedTask,
        _options: LogOptions,
    ) -> BoxFuture<'a, Result<LogReader, ExecutorError>> {
        Box::pin(async { Err(self.error()) })
    }
}

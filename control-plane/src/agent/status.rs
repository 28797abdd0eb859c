//! The agent's outbox of task statuses: the latest status of each task until the leader took
//! it. Task runners put statuses in; the session sends them with `UpdateTaskStatus` and takes
//! out only what was sent and not replaced meanwhile, so a failed call or a leader change
//! never loses the latest status of a task (older ones may be skipped: only the latest
//! matters, and the leader accepts forward moves only). It also keeps, for each task, the
//! latest status the leader took and the store version that reflects it, for a runner that
//! must wait until every node's mesh applied its status (docs/lifecycle.md).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};

use super::assignment::Assignment;
use crate::store::objects::TaskStatus;

/// The latest status of each task the leader took, with the store version that reflects it.
type Written = BTreeMap<String, (TaskStatus, u64)>;

#[derive(Debug, Clone, Default)]
pub struct StatusQueue {
    pending: Arc<Mutex<BTreeMap<String, TaskStatus>>>,
    notify: Arc<Notify>,
    written: Arc<watch::Sender<Written>>,
}

impl StatusQueue {
    /// Records `status` as the latest of `task_id` and wakes the sender.
    pub fn report(&self, task_id: &str, status: TaskStatus) {
        self.lock().insert(task_id.to_owned(), status);
        self.notify.notify_one();
    }

    /// What waits to be sent.
    pub fn pending(&self) -> Vec<(String, TaskStatus)> {
        self.lock()
            .iter()
            .map(|(id, status)| (id.clone(), status.clone()))
            .collect()
    }

    /// Forgets what was sent, unless a newer status came in meanwhile. `version`: the store
    /// version the leader answered (`None` if it refused the batch).
    pub fn sent(&self, sent: &[(String, TaskStatus)], version: Option<u64>) {
        let mut pending = self.lock();
        for (id, status) in sent {
            if pending.get(id) == Some(status) {
                pending.remove(id);
            }
        }
        drop(pending);
        if let Some(version) = version {
            self.written.send_modify(|written| {
                for (id, status) in sent {
                    written.insert(id.clone(), (status.clone(), version));
                }
            });
        }
    }

    /// Once the leader took `status` of `task_id`: the store version that reflects it.
    pub async fn written(&self, task_id: &str, status: &TaskStatus) -> u64 {
        let mut written = self.written.subscribe();
        let taken = written
            .wait_for(|w| w.get(task_id).is_some_and(|(s, _)| s == status))
            .await;
        match taken {
            Ok(w) => w.get(task_id).map_or(0, |(_, version)| *version),
            // The sender lives in `self`: it cannot close while we borrow it.
            Err(_) => 0,
        }
    }

    /// Forgets tasks no longer assigned (the leader would ignore their statuses).
    pub fn retain_assigned(&self, assignment: &Assignment) {
        let assigned = |id: &String| assignment.tasks.iter().any(|t| t.id == *id);
        self.lock().retain(|id, _| assigned(id));
        self.written.send_if_modified(|written| {
            let before = written.len();
            written.retain(|id, _| assigned(id));
            written.len() != before
        });
    }

    /// Until something is reported (at once if something was since the last wait).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TaskStatus>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::objects::TaskState;

    fn status(state: TaskState) -> TaskStatus {
        TaskStatus {
            state,
            ..TaskStatus::default()
        }
    }

    #[tokio::test]
    async fn the_latest_status_survives_a_send_that_raced_with_it() {
        let queue = StatusQueue::default();
        queue.report("t1", status(TaskState::Preparing));
        queue.changed().await;
        let batch = queue.pending();
        // While the batch is on its way, the task moves on.
        queue.report("t1", status(TaskState::Running));
        queue.sent(&batch, Some(4));
        assert_eq!(
            queue.pending(),
            vec![("t1".to_owned(), status(TaskState::Running))]
        );
        let batch = queue.pending();
        queue.sent(&batch, Some(7));
        assert!(queue.pending().is_empty());
    }

    #[tokio::test]
    async fn a_runner_learns_the_version_that_reflects_its_status() {
        let queue = StatusQueue::default();
        let running = status(TaskState::Running);
        queue.report("t1", running.clone());
        let waiter = {
            let (queue, running) = (queue.clone(), running.clone());
            tokio::spawn(async move { queue.written("t1", &running).await })
        };
        let batch = queue.pending();
        // A refused batch is not taken.
        queue.sent(&batch, None);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        queue.sent(&batch, Some(9));
        assert_eq!(waiter.await.expect("joins"), 9);
    }
}

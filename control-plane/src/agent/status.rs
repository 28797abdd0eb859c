//! The agent's outbox of task statuses: the latest status of each task until the leader took
//! it. Task runners put statuses in; the session sends them with `UpdateTaskStatus` and takes
//! out only what was sent and not replaced meanwhile, so a failed call or a leader change
//! never loses the latest status of a task (older ones may be skipped: only the latest
//! matters, and the leader accepts forward moves only).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::assignment::Assignment;
use crate::store::objects::TaskStatus;

#[derive(Debug, Clone, Default)]
pub struct StatusQueue {
    pending: Arc<Mutex<BTreeMap<String, TaskStatus>>>,
    notify: Arc<Notify>,
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

    /// Forgets what was sent, unless a newer status came in meanwhile.
    pub fn sent(&self, sent: &[(String, TaskStatus)]) {
        let mut pending = self.lock();
        for (id, status) in sent {
            if pending.get(id) == Some(status) {
                pending.remove(id);
            }
        }
    }

    /// Forgets tasks no longer assigned (the leader would ignore their statuses).
    pub fn retain_assigned(&self, assignment: &Assignment) {
        self.lock()
            .retain(|id, _| assignment.tasks.iter().any(|t| t.id == *id));
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
        queue.sent(&batch);
        assert_eq!(
            queue.pending(),
            vec![("t1".to_owned(), status(TaskState::Running))]
        );
        let batch = queue.pending();
        queue.sent(&batch);
        assert!(queue.pending().is_empty());
    }
}

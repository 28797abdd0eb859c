//! Slots: where a service's tasks live. A replicated service has slots `1..=replicas`; a global
//! service has one slot per node. A slot holds one *live* task (desired state `RUNNING` or
//! `READY`) and the history of the tasks it replaced.

use std::collections::BTreeMap;
use std::fmt;

use crate::store::objects::{
    Node, NodeAvailability, NodeState, Service, Task, TaskState, TaskStatus, Timestamp,
};

/// A slot of a service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SlotKey {
    /// Replica number of a replicated service (1-based).
    Replica(u64),
    /// The node of a global service's task.
    Node(String),
}

impl SlotKey {
    pub fn of(task: &Task) -> Self {
        if task.slot > 0 {
            Self::Replica(task.slot)
        } else {
            Self::Node(task.node_id.clone().unwrap_or_default())
        }
    }
}

impl fmt::Display for SlotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Replica(slot) => write!(f, "slot {slot}"),
            Self::Node(node) => write!(f, "node {node}"),
        }
    }
}

/// Whether the manager still wants the task to run.
pub fn is_live(task: &Task) -> bool {
    task.desired_state <= TaskState::Running
}

/// Oldest first, for history and for picking the newest live task.
pub fn by_age(tasks: &mut [Task]) {
    tasks.sort_by(|a, b| {
        (a.meta.created_at, a.meta.version, &a.id).cmp(&(b.meta.created_at, b.meta.version, &b.id))
    });
}

/// A service's tasks per slot, oldest first within each.
pub fn group(tasks: Vec<Task>) -> BTreeMap<SlotKey, Vec<Task>> {
    let mut slots: BTreeMap<SlotKey, Vec<Task>> = BTreeMap::new();
    for task in tasks {
        slots.entry(SlotKey::of(&task)).or_default().push(task);
    }
    for tasks in slots.values_mut() {
        by_age(tasks);
    }
    slots
}

/// Whether a replicated task on this node must move: the node is gone, down or drained
/// (SwarmKit `orchestrator.InvalidNode`).
pub fn node_invalid(node: Option<&Node>) -> bool {
    node.is_none_or(|n| {
        n.status.state == NodeState::Down || n.spec.availability == NodeAvailability::Drain
    })
}

/// A new task for `key` of `service`, made from the service's current template.
pub fn new_task(service: &Service, key: &SlotKey, desired_state: TaskState) -> Task {
    let (slot, node_id) = match key {
        SlotKey::Replica(slot) => (*slot, None),
        SlotKey::Node(node) => (0, Some(node.clone())),
    };
    Task {
        service_id: service.id.clone(),
        slot,
        node_id,
        spec: service.spec.task_template.clone(),
        spec_version: service.spec_version,
        desired_state,
        status: TaskStatus {
            timestamp: Timestamp::now(),
            state: TaskState::New,
            message: "created".to_owned(),
            ..TaskStatus::default()
        },
        ..Task::default()
    }
}

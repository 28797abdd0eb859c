//! The replicated orchestrator: slots `1..=replicas` each hold one live task. Scaling down
//! removes the highest slots (every task in them gets desired `REMOVE`); tasks on nodes that
//! are down, drained or gone are replaced in the same slot, to be scheduled elsewhere; a node
//! that comes back gets no tasks moved back.

use std::collections::BTreeMap;

use super::Plan;
use super::slots::{SlotKey, new_task};
use crate::store::StoreError;
use crate::store::objects::{Node, Service, Task, TaskState};

pub fn reconcile(
    plan: &mut Plan<'_>,
    service: &Service,
    replicas: u64,
    slots: &BTreeMap<SlotKey, Vec<Task>>,
    nodes: &BTreeMap<String, Node>,
) -> Result<(), StoreError> {
    for (key, tasks) in slots {
        if matches!(key, SlotKey::Replica(slot) if *slot <= replicas) {
            continue;
        }
        for task in tasks.iter().filter(|t| t.desired_state < TaskState::Remove) {
            plan.set_desired(task, TaskState::Remove)?;
        }
    }
    let mut live = BTreeMap::new();
    for slot in 1..=replicas {
        let key = SlotKey::Replica(slot);
        let tasks = slots.get(&key).map_or(&[][..], Vec::as_slice);
        let current = match plan.supervise(service, &key, tasks, true, nodes)? {
            Some(task) => task,
            None => plan.create(new_task(service, &key, TaskState::Running))?,
        };
        live.insert(key, current);
    }
    plan.update_step(service, &live, slots)
}

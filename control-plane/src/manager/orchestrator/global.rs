//! The global orchestrator: one live task on every node that is not drained and meets the
//! service's constraints, made with its node set (slot 0). A drained node's task, or one whose
//! node no longer meets the constraints, gets desired `SHUTDOWN`; a removed node's tasks get
//! `REMOVE`. A node that is down keeps its task (nothing to move it to) and gets no new one.

use std::collections::BTreeMap;

use super::Plan;
use super::slots::{SlotKey, new_task};
use crate::manager::scheduler::constraint::{Constraint, all_match};
use crate::store::StoreError;
use crate::store::objects::{Node, NodeAvailability, NodeState, Service, Task, TaskState};

pub fn reconcile(
    plan: &mut Plan<'_>,
    service: &Service,
    slots: &BTreeMap<SlotKey, Vec<Task>>,
    nodes: &BTreeMap<String, Node>,
) -> Result<(), StoreError> {
    let constraints = match Constraint::parse_all(&service.spec.task_template.placement.constraints)
    {
        Ok(constraints) => constraints,
        Err(err) => {
            tracing::warn!(service = %service.spec.annotations.name, %err, "global service not reconciled");
            return Ok(());
        }
    };
    let eligible = |node: &Node| {
        node.spec.availability != NodeAvailability::Drain && all_match(&constraints, node)
    };
    for (key, tasks) in slots {
        let node = match key {
            SlotKey::Node(id) => nodes.get(id),
            SlotKey::Replica(_) => None,
        };
        let wanted = match node {
            None => TaskState::Remove,
            Some(node) if !eligible(node) => TaskState::Shutdown,
            Some(_) => continue,
        };
        for task in tasks.iter().filter(|t| t.desired_state < wanted) {
            plan.set_desired(task, wanted)?;
        }
    }
    let mut live = BTreeMap::new();
    for node in nodes.values().filter(|n| eligible(n)) {
        let key = SlotKey::Node(node.id.clone());
        let tasks = slots.get(&key).map_or(&[][..], Vec::as_slice);
        if node.status.state == NodeState::Down {
            continue;
        }
        let current = match plan.supervise(service, &key, tasks, false, nodes)? {
            Some(task) => task,
            None => plan.create(new_task(service, &key, TaskState::Running))?,
        };
        live.insert(key, current);
    }
    plan.update_step(service, &live, slots)
}

//! Spread placement preferences (SwarmKit `manager/scheduler/topology.md`): with
//! `spread=node.labels.zone`, tasks of a service go evenly to every value of the label
//! among the nodes that can take them (nodes without the label are a group of their own);
//! several preferences nest, each within the groups of the one before.

use super::filter::NodeInfo;
use crate::store::objects::PlacementPreference;

/// The value of a preference's label on a node (`None`: the node lacks it).
fn group_value<'a>(preference: &PlacementPreference, info: &'a NodeInfo) -> Option<&'a str> {
    let descriptor = preference.spread.as_str();
    if let Some(label) = descriptor.strip_prefix("node.labels.") {
        return info
            .node
            .spec
            .annotations
            .labels
            .get(label)
            .map(String::as_str);
    }
    if let Some(label) = descriptor.strip_prefix("engine.labels.") {
        return info
            .node
            .description
            .as_ref()
            .and_then(|d| d.engine.labels.get(label))
            .map(String::as_str);
    }
    None
}

/// Whether `descriptor` names a label the scheduler can spread over.
pub fn valid_descriptor(descriptor: &str) -> bool {
    ["node.labels.", "engine.labels."]
        .iter()
        .any(|p| descriptor.strip_prefix(p).is_some_and(|l| !l.is_empty()))
}

/// For `candidate`, the service's tasks in its group at each level of the preferences,
/// counted over the `eligible` nodes: the lowest key is the emptiest branch.
pub fn key(
    preferences: &[PlacementPreference],
    candidate: &NodeInfo,
    eligible: &[&NodeInfo],
    service_id: &str,
) -> Vec<usize> {
    (1..=preferences.len())
        .map(|depth| {
            let levels = &preferences[..depth];
            eligible
                .iter()
                .filter(|other| {
                    levels
                        .iter()
                        .all(|p| group_value(p, other) == group_value(p, candidate))
                })
                .map(|other| other.service_tasks(service_id))
                .sum()
        })
        .collect()
}

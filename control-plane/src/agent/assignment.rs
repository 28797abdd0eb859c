//! One decoded `AssignmentSet`: this node's tasks and the cluster's mesh view.

use super::mesh_view::MeshView;
use crate::api::pb;
use crate::store::objects::Task;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    pub tasks: Vec<Task>,
    pub mesh: MeshView,
    /// Store version the leader took the snapshot at.
    pub version: u64,
}

impl Assignment {
    pub fn decode(set: &pb::AssignmentSet) -> Result<Self, serde_json::Error> {
        Ok(Self {
            tasks: serde_json::from_slice(&set.tasks_json)?,
            mesh: if set.mesh_json.is_empty() {
                MeshView::default()
            } else {
                serde_json::from_slice(&set.mesh_json)?
            },
            version: set.version,
        })
    }
}

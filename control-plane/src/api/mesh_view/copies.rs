//! Copies of a whole [`MeshView`], counted: a node holds one view and changes it in place
//! (`agent::assignment::SharedView`), so a message of the stream costs what it changes.
//! A copy in the path of every message would cost every node the size of the cluster per
//! change; the agent's cost tests count them.

use std::cell::Cell;

use super::MeshView;

thread_local! {
    /// Entries of the views copied on this thread.
    static ENTRIES_COPIED: Cell<u64> = const { Cell::new(0) };
}

/// Entries (networks, services, tasks, nodes) of whole views copied on this thread so far.
pub fn view_entries_copied() -> u64 {
    ENTRIES_COPIED.with(Cell::get)
}

impl Clone for MeshView {
    fn clone(&self) -> Self {
        let entries =
            self.networks.len() + self.services.len() + self.tasks.len() + self.nodes.len();
        ENTRIES_COPIED.with(|c| c.set(c.get() + entries as u64));
        Self {
            hash_seed: self.hash_seed,
            vxlan_port: self.vxlan_port,
            mesh_mode: self.mesh_mode,
            networks: self.networks.clone(),
            services: self.services.clone(),
            tasks: self.tasks.clone(),
            nodes: self.nodes.clone(),
        }
    }
}

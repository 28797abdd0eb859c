//! Promotion and demotion as the node carries them out: `hive node promote/demote` changes the
//! node's desired role in the store; the node's agent sees it in the next heartbeat answer,
//! and this module renews the certificate (the new role is in its OU) and starts or stops the
//! manager. A promoted node then asks the leader to add it to the Raft group.

use std::sync::Arc;

use super::node::SwarmNode;
use super::node_file::remove_raft_dir;
use super::swarm::join_raft;
use crate::api::{ApiError, convert};
use crate::pki;

/// Brings this node to `desired` if it is not there yet.
pub async fn reconcile(node: &Arc<SwarmNode>, desired: pki::Role) -> Result<(), ApiError> {
    let _guard = node.lock().await;
    let Some(active) = node.active() else {
        return Ok(());
    };
    if active.role() == desired {
        return Ok(());
    }
    tracing::info!(from = %active.role(), to = %desired, "changing this node's role");
    let renewed = super::renew::request_certificate(&active).await?;
    let creds = renewed.creds;
    let role = creds.identity().role;
    let data_dir = node.config.data_dir.clone();
    let mut file = active.file.clone();
    file.role = role;
    file.raft_id = (role == pki::Role::Manager).then_some(renewed.raft_id);

    node.deactivate().await;
    // A manager that stops being one, or becomes one again, starts from an empty store: its
    // old log is not part of the group's history any more.
    remove_raft_dir(&data_dir).map_err(|e| ApiError::internal("removing the old store", e))?;
    // In the clear: a worker keeps no KEK, a new manager's is not wrapped yet (its
    // activation and the autolock follower seal the key if the swarm is locked).
    node.identity
        .save_in_the_clear(&creds)
        .map_err(|e| ApiError::internal("saving the renewed certificate", e))?;
    file.save(&data_dir)
        .map_err(|e| ApiError::internal("saving the swarm state", e))?;
    let managers = file.managers.clone();
    let active = node
        .activate(file, creds)
        .await
        .map_err(|e| ApiError::internal("restarting in the new role", e))?;
    if let Some(raft_id) = active.file.raft_id {
        join_raft(&active, &managers, raft_id).await?;
    }
    tracing::info!(role = %convert::role_of_pki(role).as_str_name(), "role changed");
    Ok(())
}

//! `swarm init --force-new-cluster`: a manager of a swarm that lost its quorum becomes the
//! only member of a new Raft group that keeps the whole cluster state (objects, CA, tokens).
//! The other managers are recorded as workers; they rejoin with a manager token, or are
//! promoted again once they are back.

use std::sync::Arc;
use std::time::Duration;

use super::node::SwarmNode;
use super::node_file::RAFT_DIR;
use crate::api::{ApiError, pb};
use crate::encryption::{KeyFile, KeyFileError, StoreKeys, UnlockKey};
use crate::store::ReadView;
use crate::store::objects::{Cluster, Network, Node, NodeRole, Service, Task};

const ELECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the old state is written again after a leader loop's write, committed between
/// our snapshot and our batch, made the state machine reject it.
const REPLACE_ATTEMPTS: usize = 5;

/// The caller holds the node's transition lock.
pub async fn force_new_cluster(
    node: &Arc<SwarmNode>,
    request: &pb::InitRequest,
) -> Result<pb::InitResponse, ApiError> {
    let Some(active) = node.active() else {
        return Err(ApiError::Refused(
            "--force-new-cluster needs a node that was a manager of a swarm; this node is in no swarm (run `hive swarm init` without it)".to_owned(),
        ));
    };
    let Some(manager) = active.manager.clone() else {
        return Err(ApiError::Refused(
            "--force-new-cluster must run on a manager; this node is a worker".to_owned(),
        ));
    };
    if !request.advertise_addr.is_empty() {
        tracing::warn!(
            "--advertise-addr is ignored with --force-new-cluster: the manager keeps its address"
        );
    }
    let read = |tx: &crate::store::ReadTx| {
        Ok::<_, crate::store::StoreError>((
            tx.list::<Cluster>()?,
            tx.list::<Node>()?,
            tx.list::<Service>()?,
            tx.list::<Task>()?,
            tx.list::<Network>()?,
        ))
    };
    let (clusters, nodes, services, tasks, networks) = manager.store.view(read)?;
    let raft_id = manager.raft_id;
    let addr = manager.addr.clone();
    let data_dir = node.config.data_dir.clone();
    let mut file = active.file.clone();
    file.managers = vec![addr.clone()];
    let creds = node
        .identity
        .load(std::time::SystemTime::now())
        .map_err(|e| ApiError::internal("loading this node's certificates", e))?;
    let unlocked = unlocked_keys(&data_dir, clusters.first())?;

    node.deactivate().await;
    let old = data_dir.join(RAFT_DIR);
    let backup = data_dir.join(format!(
        "{RAFT_DIR}.before-force-new-cluster.{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    ));
    std::fs::rename(&old, &backup)
        .map_err(|e| ApiError::internal("moving the old store aside", e))?;
    file.save(&data_dir)
        .map_err(|e| ApiError::internal("saving the swarm state", e))?;
    let active = node
        .activate_with_keys(file, creds, unlocked)
        .await
        .map_err(|e| ApiError::internal("starting the new manager", e))?;
    let manager = active
        .manager
        .clone()
        .ok_or_else(|| ApiError::internal("starting the new manager", "no manager"))?;
    manager.store.bootstrap(addr.clone()).await?;
    manager
        .store
        .raft()
        .wait(Some(ELECTION_TIMEOUT))
        .current_leader(raft_id, "this manager leads the new cluster")
        .await
        .map_err(|e| ApiError::internal("electing the manager", e))?;
    let worker_token = clusters
        .first()
        .map(|c| c.root_ca.join_tokens.worker.clone())
        .unwrap_or_default();
    let old_state = OldState {
        clusters,
        nodes,
        services,
        tasks,
        networks,
    };
    replace_state(&manager.store, &old_state, &active.file.node_id).await?;
    tracing::warn!(old_store = %backup.display(), "forced a new cluster from this manager's state");
    Ok(pb::InitResponse {
        node_id: active.file.node_id.clone(),
        worker_token,
        manager_addr: addr,
    })
}

/// An autolocked manager's store keys, opened with the swarm's unlock key (the one its key file
/// is wrapped with once the manager has applied it), so that the new manager starts unlocked;
/// `None` if the key file is not locked.
fn unlocked_keys(
    data_dir: &std::path::Path,
    cluster: Option<&Cluster>,
) -> Result<Option<(StoreKeys, UnlockKey)>, ApiError> {
    let reading = |e: KeyFileError| ApiError::internal("reading this manager's keys", e);
    let Some(file) = KeyFile::load(data_dir).map_err(reading)? else {
        return Ok(None);
    };
    if !file.is_locked() {
        return Ok(None);
    }
    let not_yet = || {
        ApiError::Unavailable(
            "this manager's keys are not wrapped with the swarm's current unlock key yet; try again in a second".to_owned(),
        )
    };
    let key: UnlockKey = cluster
        .and_then(|c| c.unlock_key.parse().ok())
        .ok_or_else(not_yet)?;
    match file.unwrap_keys(Some(&key)) {
        Ok(keys) => Ok(Some((keys, key))),
        Err(KeyFileError::WrongKey) => Err(not_yet()),
        Err(err) => Err(reading(err)),
    }
}

/// The swarm's state as the old store held it.
struct OldState {
    clusters: Vec<Cluster>,
    nodes: Vec<Node>,
    services: Vec<Service>,
    tasks: Vec<Task>,
    networks: Vec<Network>,
}

/// Writes `old` over the new store in one batch. This manager leads the new group from the
/// moment it is elected, so its loops may already be writing (the allocator makes an `ingress`
/// network in an empty store). The old state is the swarm's: it replaces whatever they made.
/// A loop's write can also commit between the batch's snapshot and its apply, and the state
/// machine then rejects the batch (a name already taken); it is built again from a fresh
/// snapshot.
async fn replace_state(
    store: &crate::store::Store,
    old: &OldState,
    this_node: &str,
) -> Result<(), ApiError> {
    let mut attempt = 1;
    loop {
        let written = store
            .update(|tx| {
                for network in tx.list::<Network>()? {
                    tx.delete::<Network>(&network.id)?;
                }
                for task in tx.list::<Task>()? {
                    tx.delete::<Task>(&task.id)?;
                }
                for service in tx.list::<Service>()? {
                    tx.delete::<Service>(&service.id)?;
                }
                for cluster in &old.clusters {
                    tx.create(cluster.clone())?;
                }
                for other in &old.nodes {
                    let mut other = other.clone();
                    if other.id != this_node && other.spec.desired_role == NodeRole::Manager {
                        other.spec.desired_role = NodeRole::Worker;
                        other.role = NodeRole::Worker;
                        other.manager_status = None;
                    }
                    tx.create(other)?;
                }
                for service in &old.services {
                    tx.create(service.clone())?;
                }
                for task in &old.tasks {
                    tx.create(task.clone())?;
                }
                for network in &old.networks {
                    tx.create(network.clone())?;
                }
                Ok::<_, crate::store::StoreError>(())
            })
            .await;
        match written {
            Err(e) if e.rejection().is_some() && attempt < REPLACE_ATTEMPTS => {
                tracing::info!(attempt, error = %e, "a leader loop wrote meanwhile; writing the old state again");
                attempt += 1;
            }
            other => return other.map_err(ApiError::from),
        }
    }
}

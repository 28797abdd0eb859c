//! Who the swarm still trusts: the list of removed nodes, whose certificates every API refuses,
//! and the gossip keyring handed to nodes over their mutual-TLS session (docs/security.md,
//! "Removed nodes" and "Gossip authentication").

use crate::api::ApiError;
use crate::gossip::{GossipKey, generate_key};
use crate::manager::Manager;
use crate::store::ReadView;
use crate::store::objects::{Cluster, RemovedNode, StoredGossipKey, Timestamp};

/// Gossip keys the store keeps: the current one and the one before it, which nodes still
/// accept for `gossip::OLD_KEY_GRACE` after they learn the new one.
pub const GOSSIP_KEYS_KEPT: usize = 2;

impl Manager {
    /// Whether the swarm removed `node_id`. Read from this manager's store: a removal is
    /// refused here as soon as this manager applied it.
    pub fn is_removed(&self, node_id: &str) -> bool {
        let cluster_id = self.cluster_id.clone();
        self.store
            .view(|tx| tx.get::<Cluster>(&cluster_id))
            .ok()
            .flatten()
            .is_some_and(|c| c.removed_nodes.iter().any(|r| r.id == node_id))
    }
}

/// Records `node_id` as removed and rotates the gossip key, so the removed node, which knew
/// the old key, cannot speak for anyone once nodes stop accepting it.
pub fn revoke(cluster: &mut Cluster, node_id: &str) -> Result<(), ApiError> {
    if !cluster.removed_nodes.iter().any(|r| r.id == node_id) {
        cluster.removed_nodes.push(RemovedNode {
            id: node_id.to_owned(),
            removed_at: Timestamp::now(),
        });
    }
    rotate_gossip_key(cluster)
}

/// Adds a new gossip key (the one nodes sign with from their next heartbeat on) and forgets
/// all but the last [`GOSSIP_KEYS_KEPT`].
pub fn rotate_gossip_key(cluster: &mut Cluster) -> Result<(), ApiError> {
    let id = cluster.gossip_keys.iter().map(|k| k.id).max().unwrap_or(0) + 1;
    let key = generate_key(id).map_err(|e| ApiError::internal("making a gossip key", e))?;
    cluster.gossip_keys.push(StoredGossipKey {
        id: key.id,
        secret: key.secret,
    });
    cluster.gossip_keys.sort_by_key(|k| k.id);
    let excess = cluster.gossip_keys.len().saturating_sub(GOSSIP_KEYS_KEPT);
    cluster.gossip_keys.drain(..excess);
    Ok(())
}

/// The keyring as nodes receive it.
pub fn gossip_keys(cluster: &Cluster) -> Vec<GossipKey> {
    cluster
        .gossip_keys
        .iter()
        .map(|k| GossipKey {
            id: k.id,
            secret: k.secret.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoking_lists_the_node_once_and_rotates_the_key() {
        let mut cluster = Cluster::default();
        rotate_gossip_key(&mut cluster).unwrap();
        revoke(&mut cluster, "n1").unwrap();
        revoke(&mut cluster, "n1").unwrap();
        assert_eq!(cluster.removed_nodes.len(), 1);
        let ids: Vec<u64> = cluster.gossip_keys.iter().map(|k| k.id).collect();
        assert_eq!(ids, vec![2, 3], "the last two keys are kept");
        assert_ne!(cluster.gossip_keys[0].secret, cluster.gossip_keys[1].secret);
    }
}

//! Managers joining the Raft group, and the client side of calls that must reach the leader
//! itself (join, renewal, session): try the known managers, follow the leader they name.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use super::{Manager, timers};
use crate::api::{ApiError, is_retryable, leader_hint};
use crate::pki::NodeIdentity;
use crate::store::objects::{Node, NodeRole};
use crate::store::types::{NodeId, RaftNode};
use crate::store::{ReadView, StoreError};
use crate::transport::TransportError;

/// On the leader: adds the calling manager (`caller`, Raft member `raft_id`, reachable at
/// `addr`) to the Raft group, first as a learner that catches up, then as a voter; then records
/// it as a manager. Idempotent, so a joiner may retry.
pub async fn join_raft(
    manager: &Manager,
    caller: &NodeIdentity,
    raft_id: NodeId,
    addr: SocketAddr,
) -> Result<(), ApiError> {
    manager.require_leader()?;
    let node = manager
        .store
        .view(|tx| tx.get::<Node>(&caller.node_id))?
        .ok_or_else(|| ApiError::NotFound {
            kind: "node",
            query: caller.node_id.clone(),
        })?;
    if node.spec.desired_role != NodeRole::Manager {
        return Err(ApiError::Precondition(format!(
            "node {} is not to be a manager; promote it with `hive node promote {}` first",
            caller.node_id, caller.node_id
        )));
    }
    if node.manager_status.as_ref().map(|m| m.raft_id) != Some(raft_id) {
        return Err(ApiError::Precondition(format!(
            "node {} asked to join Raft as member {raft_id}, which the swarm did not allot to it; renew its certificate and retry",
            caller.node_id
        )));
    }
    if !manager.voters().contains(&raft_id) {
        tracing::info!(node = %caller.node_id, raft_id, %addr, "adding a manager to the Raft group");
        tokio::time::timeout(
            timers::JOIN_RAFT_TIMEOUT,
            manager
                .store
                .add_manager(raft_id, RaftNode::new(addr.to_string())),
        )
        .await
        .map_err(|_| {
            ApiError::Unavailable(format!(
                "manager {} did not catch up with the Raft log within {:?}",
                caller.node_id,
                timers::JOIN_RAFT_TIMEOUT
            ))
        })??;
    }
    manager
        .update(|tx| {
            Ok(tx.modify::<Node>(&caller.node_id, |node| {
                node.role = NodeRole::Manager;
                if let Some(status) = node.manager_status.as_mut() {
                    status.addr = addr;
                }
            })?)
        })
        .await?;
    Ok(())
}

/// A Raft member ID no node uses yet (never 0, which openraft tooling reads as "none").
pub fn allocate_raft_id(tx: &impl ReadView) -> Result<NodeId, StoreError> {
    let used: Vec<NodeId> = tx
        .list::<Node>()?
        .iter()
        .filter_map(|n| n.manager_status.as_ref().map(|m| m.raft_id))
        .collect();
    loop {
        let id: NodeId = rand::random();
        if id != 0 && !used.contains(&id) {
            return Ok(id);
        }
    }
}

/// Calls `call` on the managers at `addrs` until the leader answers: a manager that is not the
/// leader names it, and the call goes there next; unreachable managers are skipped. Gives up
/// after `patience` with the last refusal.
pub async fn call_leader<T, F, Fut>(
    addrs: &[String],
    channel: impl Fn(&str) -> Result<Channel, TransportError>,
    mut call: F,
    patience: Duration,
) -> Result<T, ApiError>
where
    F: FnMut(Channel) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + patience;
    let mut queue: VecDeque<String> = addrs.iter().cloned().collect();
    let mut last = ApiError::NoLeader;
    loop {
        if Instant::now() >= deadline {
            return Err(last);
        }
        let Some(addr) = queue.pop_front() else {
            tokio::time::sleep(timers::LEADER_RETRY * 2).await;
            queue.extend(addrs.iter().cloned());
            continue;
        };
        let ch = match channel(&addr) {
            Ok(ch) => ch,
            Err(err) => {
                last = ApiError::Unavailable(err.to_string());
                continue;
            }
        };
        match call(ch).await {
            Ok(value) => return Ok(value),
            Err(status) if is_retryable(&status) => {
                if let Some(leader) = leader_hint(&status).filter(|l| *l != addr) {
                    queue.push_front(leader);
                } else {
                    tokio::time::sleep(timers::LEADER_RETRY).await;
                }
                last = ApiError::Remote(status);
            }
            Err(status) => return Err(ApiError::Remote(status)),
        }
    }
}

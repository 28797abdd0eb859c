//! The server half of the peer Raft transport: the `Raft` gRPC service. Every call needs a
//! manager certificate of this swarm; a worker's call is refused before openraft sees it.

use std::sync::Arc;

use super::{decode, encode};
use crate::api::{ApiError, convert, pb};
use crate::manager::{ManagerSlot, membership};
use crate::pki::Role;
use crate::store::types::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};

/// Largest message on the Raft service: snapshot chunks and entry batches (openraft's default
/// chunk is 3 MiB; JSON may double it).
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct RaftService {
    managers: Arc<ManagerSlot>,
}

impl RaftService {
    pub fn new(managers: Arc<ManagerSlot>) -> Self {
        Self { managers }
    }
}

type Reply<T> = Result<tonic::Response<T>, tonic::Status>;

fn payload<T: serde::Serialize>(value: &T) -> Reply<pb::RaftPayload> {
    let json =
        encode("response", value).map_err(|e| ApiError::internal("encoding a Raft reply", e))?;
    Ok(tonic::Response::new(pb::RaftPayload { json }))
}

fn invalid(e: super::PayloadError) -> tonic::Status {
    ApiError::Invalid(e.to_string()).into()
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: tonic::Request<pb::RaftPayload>,
    ) -> Reply<pb::RaftPayload> {
        let (manager, _) = self.managers.authorize(&request, Role::Manager)?;
        let rpc: AppendEntriesRequest =
            decode("append entries", &request.get_ref().json).map_err(invalid)?;
        let reply = manager.store.raft().append_entries(rpc).await;
        if matches!(&reply, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            manager.campaign.leader_heard();
        }
        payload(&reply)
    }

    async fn vote(&self, request: tonic::Request<pb::RaftPayload>) -> Reply<pb::RaftPayload> {
        let (manager, _) = self.managers.authorize(&request, Role::Manager)?;
        let rpc: VoteRequest = decode("vote", &request.get_ref().json).map_err(invalid)?;
        payload(&manager.store.raft().vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<pb::RaftPayload>,
    ) -> Reply<pb::RaftPayload> {
        let (manager, _) = self.managers.authorize(&request, Role::Manager)?;
        let rpc: InstallSnapshotRequest =
            decode("install snapshot", &request.get_ref().json).map_err(invalid)?;
        let sender = rpc.vote;
        let reply = manager.store.raft().install_snapshot(rpc).await;
        // A sender with a lower vote is answered Ok too, with this manager's vote.
        if matches!(&reply, Ok(r) if r.vote == sender) {
            manager.campaign.leader_heard();
        }
        payload(&reply)
    }

    async fn join_raft(
        &self,
        request: tonic::Request<pb::JoinRaftRequest>,
    ) -> Reply<pb::JoinRaftResponse> {
        let (manager, caller) = self.managers.authorize(&request, Role::Manager)?;
        let pb::JoinRaftRequest { raft_id, addr } = request.into_inner();
        let addr = convert::socket_addr("JoinRaftRequest.addr", &addr).map_err(ApiError::from)?;
        membership::join_raft(&manager, &caller, raft_id, addr).await?;
        Ok(tonic::Response::new(pb::JoinRaftResponse {}))
    }

    async fn ping(&self, request: tonic::Request<pb::PingRequest>) -> Reply<pb::PingResponse> {
        let (manager, _) = self.managers.authorize(&request, Role::Manager)?;
        let would_vote = manager
            .campaign
            .would_vote(&manager.store.metrics().borrow());
        Ok(tonic::Response::new(pb::PingResponse {
            raft_id: manager.raft_id,
            would_vote,
        }))
    }
}

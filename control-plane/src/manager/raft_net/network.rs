//! The client half of the peer Raft transport: openraft's `RaftNetworkFactory` over the
//! `Raft` gRPC service of the other managers.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{NetworkError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::append;
use super::peers::Peers;
use super::{decode, encode};
use crate::api::pb;
use crate::store::types::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotError, InstallSnapshotRequest,
    InstallSnapshotResponse, NodeId, RaftError, RaftNode, RpcError, TypeConfig, VoteRequest,
    VoteResponse,
};

/// Creates one [`PeerConnection`] per target for openraft.
#[derive(Debug, Clone)]
pub struct GrpcRaftNetwork {
    peers: Arc<Peers>,
}

impl GrpcRaftNetwork {
    pub fn new(peers: Arc<Peers>) -> Self {
        Self { peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcRaftNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &RaftNode) -> PeerConnection {
        PeerConnection {
            target,
            addr: node.api_addr.clone(),
            peers: self.peers.clone(),
        }
    }
}

/// openraft's connection to one peer manager.
#[derive(Debug)]
pub struct PeerConnection {
    target: NodeId,
    addr: String,
    peers: Arc<Peers>,
}

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &self,
        rpc: Rpc,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, RpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let json =
            encode("request", request).map_err(|e| RpcError::Network(NetworkError::new(&e)))?;
        // Transport failures are `Unreachable`: openraft then backs off (500 ms) instead of
        // retrying in a tight loop against a dead peer.
        let channel = self
            .peers
            .channel(&self.addr)
            .map_err(|e| RpcError::Unreachable(Unreachable::new(&e)))?;
        let mut client = pb::raft_client::RaftClient::new(channel)
            .max_decoding_message_size(crate::manager::raft_net::service::MAX_MESSAGE)
            .max_encoding_message_size(crate::manager::raft_net::service::MAX_MESSAGE);
        let mut grpc = tonic::Request::new(pb::RaftPayload { json });
        grpc.set_timeout(ttl);
        let reply = match rpc {
            Rpc::AppendEntries => client.append_entries(grpc).await,
            Rpc::Vote => client.vote(grpc).await,
            Rpc::InstallSnapshot => client.install_snapshot(grpc).await,
        }
        .map_err(|status| RpcError::Unreachable(Unreachable::new(&status)))?;
        self.peers.mark_seen(self.target);
        let result: Result<Resp, RaftError<E>> = decode("response", &reply.get_ref().json)
            .map_err(|e| RpcError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RpcError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RpcError> {
        let cut = append::cut_to_size(&mut rpc, append::MAX_APPEND_BYTES);
        let response = self
            .call(Rpc::AppendEntries, &rpc, option.hard_ttl())
            .await?;
        Ok(match (response, cut) {
            // The follower has everything up to the last entry sent; openraft sends the rest.
            (AppendEntriesResponse::Success, Some(last)) => {
                AppendEntriesResponse::PartialSuccess(Some(last))
            }
            (response, _) => response,
        })
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse, RpcError<InstallSnapshotError>> {
        self.call(Rpc::InstallSnapshot, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RpcError> {
        self.call(Rpc::Vote, &rpc, option.hard_ttl()).await
    }
}

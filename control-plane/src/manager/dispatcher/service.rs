//! The `Dispatcher` gRPC service: any node of the swarm, answered by the leader only (the
//! caller's identity is the session's, so the call cannot be forwarded; a follower names the
//! leader instead).

use std::sync::Arc;

use crate::api::{ApiError, convert, pb};
use crate::manager::ManagerSlot;
use crate::pki::Role;
use crate::transport::PeerInfo;

#[derive(Debug, Clone)]
pub struct DispatcherService {
    managers: Arc<ManagerSlot>,
}

impl DispatcherService {
    pub fn new(managers: Arc<ManagerSlot>) -> Self {
        Self { managers }
    }
}

#[tonic::async_trait]
impl pb::dispatcher_server::Dispatcher for DispatcherService {
    async fn register(
        &self,
        request: tonic::Request<pb::RegisterRequest>,
    ) -> Result<tonic::Response<pb::SessionResponse>, tonic::Status> {
        let (manager, caller) = self.managers.authorize(&request, Role::Worker)?;
        manager.require_leader()?;
        let addr = PeerInfo::of(&request)
            .map(|p| p.remote.ip())
            .ok_or_else(|| ApiError::internal("reading the caller's address", "no peer info"))?;
        let agent_addr = convert::optional_socket_addr(
            "RegisterRequest.agent_addr",
            &request.get_ref().agent_addr,
        )
        .map_err(ApiError::from)?;
        let response = manager
            .dispatcher
            .register(
                &caller.node_id,
                request.get_ref().description.as_ref(),
                addr,
                agent_addr,
                manager.manager_addrs()?,
            )
            .await?;
        record_tls_info(
            &manager,
            &caller.node_id,
            request.get_ref().tls_info.as_ref(),
        )
        .await;
        Ok(tonic::Response::new(response))
    }

    async fn heartbeat(
        &self,
        request: tonic::Request<pb::HeartbeatRequest>,
    ) -> Result<tonic::Response<pb::SessionResponse>, tonic::Status> {
        let (manager, caller) = self.managers.authorize(&request, Role::Worker)?;
        manager.require_leader()?;
        let response = manager
            .dispatcher
            .heartbeat(
                &caller.node_id,
                &request.get_ref().session_id,
                manager.manager_addrs()?,
            )
            .await?;
        record_tls_info(
            &manager,
            &caller.node_id,
            request.get_ref().tls_info.as_ref(),
        )
        .await;
        Ok(tonic::Response::new(response))
    }

    type AssignmentsStream = crate::api::ReplyStream<pb::AssignmentsMessage>;

    async fn assignments(
        &self,
        request: tonic::Request<pb::AssignmentsRequest>,
    ) -> Result<tonic::Response<Self::AssignmentsStream>, tonic::Status> {
        let (manager, caller) = self.managers.authorize(&request, Role::Worker)?;
        manager.require_leader()?;
        let receiver = manager
            .dispatcher
            .assignments(&caller.node_id, &request.get_ref().session_id)?;
        Ok(tonic::Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }

    async fn update_task_status(
        &self,
        request: tonic::Request<pb::UpdateTaskStatusRequest>,
    ) -> Result<tonic::Response<pb::UpdateTaskStatusResponse>, tonic::Status> {
        let (manager, caller) = self.managers.authorize(&request, Role::Worker)?;
        manager.require_leader()?;
        let request = request.into_inner();
        let updates = request
            .updates
            .into_iter()
            .map(|u| {
                let status = u.status.ok_or_else(|| {
                    ApiError::Invalid(format!("task {}: the update has no status", u.task_id))
                })?;
                crate::store::objects::TaskStatus::try_from(status)
                    .map(|status| (u.task_id.clone(), status))
                    .map_err(|e| ApiError::Invalid(format!("task {}: {e}", u.task_id)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let version = manager
            .dispatcher
            .update_task_status(&caller.node_id, &request.session_id, updates)
            .await?;
        Ok(tonic::Response::new(pb::UpdateTaskStatusResponse {
            version,
        }))
    }

    async fn report_mesh_applied(
        &self,
        request: tonic::Request<pb::ReportMeshAppliedRequest>,
    ) -> Result<tonic::Response<pb::ReportMeshAppliedResponse>, tonic::Status> {
        let (manager, caller) = self.managers.authorize(&request, Role::Worker)?;
        manager.require_leader()?;
        let request = request.into_inner();
        manager
            .dispatcher
            .check_session(&caller.node_id, &request.session_id)?;
        manager
            .dispatcher
            .mesh_acks
            .acked(&caller.node_id, request.version);
        Ok(tonic::Response::new(pb::ReportMeshAppliedResponse {}))
    }

    async fn wait_mesh_applied(
        &self,
        request: tonic::Request<pb::WaitMeshAppliedRequest>,
    ) -> Result<tonic::Response<pb::WaitMeshAppliedResponse>, tonic::Status> {
        let (manager, caller) = self.managers.authorize(&request, Role::Worker)?;
        manager.require_leader()?;
        let request = request.into_inner();
        manager
            .dispatcher
            .check_session(&caller.node_id, &request.session_id)?;
        let laggards = manager
            .dispatcher
            .mesh_acks
            .wait(
                request.version,
                crate::manager::dispatcher::mesh_acks::WAIT_BOUND,
            )
            .await;
        if !laggards.is_empty() {
            tracing::warn!(
                version = request.version,
                ?laggards,
                "dispatcher: nodes did not apply a drained mesh within the bound; stopping anyway"
            );
        }
        Ok(tonic::Response::new(pb::WaitMeshAppliedResponse {
            laggards,
        }))
    }
}

/// Records a node's TLS state for the root rotation (`manager::ca::rotation::record`). A failed
/// write is logged, not returned: the next heartbeat reports it again.
async fn record_tls_info(
    manager: &crate::manager::Manager,
    node_id: &str,
    info: Option<&pb::NodeTlsInfo>,
) {
    if let Err(err) = crate::manager::ca::rotation::record(&manager.store, node_id, info).await {
        tracing::warn!(%err, node = node_id, "cannot record the node's TLS state");
    }
}

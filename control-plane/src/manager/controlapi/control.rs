//! The `Control` service on the node port (a manager certificate needed), and the routing that
//! both it and the local daemon use: answer here if this manager leads, else forward to the
//! leader.

use std::sync::Arc;

use super::{cluster, logs, networks, nodes, secrets, services, tasks};
use crate::api::{ApiError, pb};
use crate::manager::{CallKind, Manager, ManagerSlot, request_with_timeout, timers};
use crate::pki::Role;

/// Routes one Control call: runs `$op(&manager, request)` on the leader, forwarding it with
/// `ControlClient::$method` when another manager leads. `$kind` (a [`CallKind`]) says
/// whether the call may be sent again after a failure on its way (`forwarding`).
macro_rules! leader_call {
    ($kind:expr, $manager:expr, $request:expr, $op:path, $method:ident) => {{
        let manager: &Arc<Manager> = $manager;
        let request = $request;
        manager
            .with_leader($kind, |channel| {
                let (manager, request) = (manager.clone(), request.clone());
                async move {
                    match channel {
                        None => $op(&manager, request).await,
                        Some(channel) => pb::control_client::ControlClient::new(channel)
                            .$method(request_with_timeout(request, timers::PEER_CALL_TIMEOUT))
                            .await
                            .map(tonic::Response::into_inner)
                            .map_err(ApiError::Remote),
                    }
                }
            })
            .await
    }};
}

async fn list_nodes(
    manager: &Manager,
    _: pb::ListNodesRequest,
) -> Result<pb::ListNodesResponse, ApiError> {
    nodes::list(manager).await
}

async fn inspect_swarm(
    manager: &Manager,
    _: pb::InspectSwarmRequest,
) -> Result<pb::InspectSwarmResponse, ApiError> {
    cluster::inspect(manager).await
}

/// The cluster API of one manager, routed to the leader.
impl Manager {
    pub async fn inspect_swarm(
        self: &Arc<Self>,
        r: pb::InspectSwarmRequest,
    ) -> Result<pb::InspectSwarmResponse, ApiError> {
        leader_call!(CallKind::Read, self, r, inspect_swarm, inspect_swarm)
    }

    pub async fn update_swarm(
        self: &Arc<Self>,
        r: pb::UpdateSwarmRequest,
    ) -> Result<pb::InspectSwarmResponse, ApiError> {
        leader_call!(CallKind::Write, self, r, cluster::update, update_swarm)
    }

    pub async fn join_token(
        self: &Arc<Self>,
        r: pb::JoinTokenRequest,
    ) -> Result<pb::JoinTokenResponse, ApiError> {
        // `join-token --rotate` writes; a plain query reads.
        let kind = if r.rotate {
            CallKind::Write
        } else {
            CallKind::Read
        };
        leader_call!(kind, self, r, cluster::join_token, join_token)
    }

    pub async fn unlock_key(
        self: &Arc<Self>,
        r: pb::UnlockKeyRequest,
    ) -> Result<pb::UnlockKeyResponse, ApiError> {
        let kind = if r.rotate {
            CallKind::Write
        } else {
            CallKind::Read
        };
        leader_call!(kind, self, r, cluster::unlock_key, unlock_key)
    }

    pub async fn list_nodes(
        self: &Arc<Self>,
        r: pb::ListNodesRequest,
    ) -> Result<pb::ListNodesResponse, ApiError> {
        leader_call!(CallKind::Read, self, r, list_nodes, list_nodes)
    }

    pub async fn inspect_node(
        self: &Arc<Self>,
        r: pb::InspectNodeRequest,
    ) -> Result<pb::Node, ApiError> {
        leader_call!(CallKind::Read, self, r, nodes::inspect, inspect_node)
    }

    pub async fn update_node(
        self: &Arc<Self>,
        r: pb::UpdateNodeRequest,
    ) -> Result<pb::Node, ApiError> {
        leader_call!(CallKind::Write, self, r, nodes::update, update_node)
    }

    pub async fn remove_node(
        self: &Arc<Self>,
        r: pb::RemoveNodeRequest,
    ) -> Result<pb::RemoveNodeResponse, ApiError> {
        leader_call!(CallKind::Write, self, r, nodes::remove, remove_node)
    }

    pub async fn create_service(
        self: &Arc<Self>,
        r: pb::CreateServiceRequest,
    ) -> Result<pb::ServiceReply, ApiError> {
        leader_call!(CallKind::Write, self, r, services::create, create_service)
    }

    pub async fn update_service(
        self: &Arc<Self>,
        r: pb::UpdateServiceRequest,
    ) -> Result<pb::ServiceReply, ApiError> {
        leader_call!(CallKind::Write, self, r, services::update, update_service)
    }

    pub async fn remove_service(
        self: &Arc<Self>,
        r: pb::RemoveServiceRequest,
    ) -> Result<pb::RemoveServiceResponse, ApiError> {
        leader_call!(CallKind::Write, self, r, services::remove, remove_service)
    }

    pub async fn inspect_service(
        self: &Arc<Self>,
        r: pb::InspectServiceRequest,
    ) -> Result<pb::ServiceReply, ApiError> {
        leader_call!(CallKind::Read, self, r, services::inspect, inspect_service)
    }

    pub async fn list_services(
        self: &Arc<Self>,
        r: pb::ListServicesRequest,
    ) -> Result<pb::ListServicesResponse, ApiError> {
        leader_call!(CallKind::Read, self, r, services::list, list_services)
    }

    pub async fn list_tasks(
        self: &Arc<Self>,
        r: pb::ListTasksRequest,
    ) -> Result<pb::ListTasksResponse, ApiError> {
        leader_call!(CallKind::Read, self, r, tasks::list, list_tasks)
    }

    pub async fn create_network(
        self: &Arc<Self>,
        r: pb::CreateNetworkRequest,
    ) -> Result<pb::NetworkReply, ApiError> {
        leader_call!(CallKind::Write, self, r, networks::create, create_network)
    }

    pub async fn list_networks(
        self: &Arc<Self>,
        r: pb::ListNetworksRequest,
    ) -> Result<pb::ListNetworksResponse, ApiError> {
        leader_call!(CallKind::Read, self, r, networks::list, list_networks)
    }

    pub async fn inspect_network(
        self: &Arc<Self>,
        r: pb::InspectNetworkRequest,
    ) -> Result<pb::NetworkReply, ApiError> {
        leader_call!(CallKind::Read, self, r, networks::inspect, inspect_network)
    }

    pub async fn remove_network(
        self: &Arc<Self>,
        r: pb::RemoveNetworkRequest,
    ) -> Result<pb::RemoveNetworkResponse, ApiError> {
        leader_call!(CallKind::Write, self, r, networks::remove, remove_network)
    }

    pub async fn create_secret(
        self: &Arc<Self>,
        r: pb::CreateSecretRequest,
    ) -> Result<pb::SecretReply, ApiError> {
        leader_call!(
            CallKind::Write,
            self,
            r,
            secrets::create_secret,
            create_secret
        )
    }

    pub async fn list_secrets(
        self: &Arc<Self>,
        r: pb::ListSecretsRequest,
    ) -> Result<pb::ListSecretsResponse, ApiError> {
        leader_call!(CallKind::Read, self, r, secrets::list_secrets, list_secrets)
    }

    pub async fn inspect_secret(
        self: &Arc<Self>,
        r: pb::InspectSecretRequest,
    ) -> Result<pb::SecretReply, ApiError> {
        leader_call!(
            CallKind::Read,
            self,
            r,
            secrets::inspect_secret,
            inspect_secret
        )
    }

    pub async fn remove_secret(
        self: &Arc<Self>,
        r: pb::RemoveSecretRequest,
    ) -> Result<pb::RemoveSecretResponse, ApiError> {
        leader_call!(
            CallKind::Write,
            self,
            r,
            secrets::remove_secret,
            remove_secret
        )
    }

    pub async fn update_secret(
        self: &Arc<Self>,
        r: pb::UpdateSecretRequest,
    ) -> Result<pb::SecretReply, ApiError> {
        leader_call!(
            CallKind::Write,
            self,
            r,
            secrets::update_secret,
            update_secret
        )
    }

    pub async fn create_config(
        self: &Arc<Self>,
        r: pb::CreateConfigRequest,
    ) -> Result<pb::ConfigReply, ApiError> {
        leader_call!(
            CallKind::Write,
            self,
            r,
            secrets::create_config,
            create_config
        )
    }

    pub async fn list_configs(
        self: &Arc<Self>,
        r: pb::ListConfigsRequest,
    ) -> Result<pb::ListConfigsResponse, ApiError> {
        leader_call!(CallKind::Read, self, r, secrets::list_configs, list_configs)
    }

    pub async fn inspect_config(
        self: &Arc<Self>,
        r: pb::InspectConfigRequest,
    ) -> Result<pb::ConfigReply, ApiError> {
        leader_call!(
            CallKind::Read,
            self,
            r,
            secrets::inspect_config,
            inspect_config
        )
    }

    pub async fn remove_config(
        self: &Arc<Self>,
        r: pb::RemoveConfigRequest,
    ) -> Result<pb::RemoveConfigResponse, ApiError> {
        leader_call!(
            CallKind::Write,
            self,
            r,
            secrets::remove_config,
            remove_config
        )
    }

    pub async fn update_config(
        self: &Arc<Self>,
        r: pb::UpdateConfigRequest,
    ) -> Result<pb::ConfigReply, ApiError> {
        leader_call!(
            CallKind::Write,
            self,
            r,
            secrets::update_config,
            update_config
        )
    }

    /// Answered here, not at the leader (see `manager::logs`).
    pub async fn service_logs(
        self: &Arc<Self>,
        r: pb::ServiceLogsRequest,
    ) -> Result<crate::api::ReplyStream<pb::LogLine>, ApiError> {
        logs::stream(self, r).await
    }
}

/// `Control` on the node port: managers only (a worker's certificate is refused with
/// `PermissionDenied`), then routed like a local call.
#[derive(Debug, Clone)]
pub struct ControlService {
    managers: Arc<ManagerSlot>,
}

impl ControlService {
    pub fn new(managers: Arc<ManagerSlot>) -> Self {
        Self { managers }
    }

    fn manager<T>(&self, request: &tonic::Request<T>) -> Result<Arc<Manager>, ApiError> {
        Ok(self.managers.authorize(request, Role::Manager)?.0)
    }
}

type Reply<T> = Result<tonic::Response<T>, tonic::Status>;

fn reply<T>(result: Result<T, ApiError>) -> Reply<T> {
    result
        .map(tonic::Response::new)
        .map_err(tonic::Status::from)
}

#[tonic::async_trait]
impl pb::control_server::Control for ControlService {
    async fn inspect_swarm(
        &self,
        r: tonic::Request<pb::InspectSwarmRequest>,
    ) -> Reply<pb::InspectSwarmResponse> {
        let m = self.manager(&r)?;
        reply(m.inspect_swarm(r.into_inner()).await)
    }

    async fn update_swarm(
        &self,
        r: tonic::Request<pb::UpdateSwarmRequest>,
    ) -> Reply<pb::InspectSwarmResponse> {
        let m = self.manager(&r)?;
        reply(m.update_swarm(r.into_inner()).await)
    }

    async fn join_token(
        &self,
        r: tonic::Request<pb::JoinTokenRequest>,
    ) -> Reply<pb::JoinTokenResponse> {
        let m = self.manager(&r)?;
        reply(m.join_token(r.into_inner()).await)
    }

    async fn unlock_key(
        &self,
        r: tonic::Request<pb::UnlockKeyRequest>,
    ) -> Reply<pb::UnlockKeyResponse> {
        let m = self.manager(&r)?;
        reply(m.unlock_key(r.into_inner()).await)
    }

    async fn list_nodes(
        &self,
        r: tonic::Request<pb::ListNodesRequest>,
    ) -> Reply<pb::ListNodesResponse> {
        let m = self.manager(&r)?;
        reply(m.list_nodes(r.into_inner()).await)
    }

    async fn inspect_node(&self, r: tonic::Request<pb::InspectNodeRequest>) -> Reply<pb::Node> {
        let m = self.manager(&r)?;
        reply(m.inspect_node(r.into_inner()).await)
    }

    async fn update_node(&self, r: tonic::Request<pb::UpdateNodeRequest>) -> Reply<pb::Node> {
        let m = self.manager(&r)?;
        reply(m.update_node(r.into_inner()).await)
    }

    async fn remove_node(
        &self,
        r: tonic::Request<pb::RemoveNodeRequest>,
    ) -> Reply<pb::RemoveNodeResponse> {
        let m = self.manager(&r)?;
        reply(m.remove_node(r.into_inner()).await)
    }

    type ServiceLogsStream = crate::api::ReplyStream<pb::LogLine>;

    async fn create_service(
        &self,
        r: tonic::Request<pb::CreateServiceRequest>,
    ) -> Reply<pb::ServiceReply> {
        let m = self.manager(&r)?;
        reply(m.create_service(r.into_inner()).await)
    }

    async fn update_service(
        &self,
        r: tonic::Request<pb::UpdateServiceRequest>,
    ) -> Reply<pb::ServiceReply> {
        let m = self.manager(&r)?;
        reply(m.update_service(r.into_inner()).await)
    }

    async fn remove_service(
        &self,
        r: tonic::Request<pb::RemoveServiceRequest>,
    ) -> Reply<pb::RemoveServiceResponse> {
        let m = self.manager(&r)?;
        reply(m.remove_service(r.into_inner()).await)
    }

    async fn inspect_service(
        &self,
        r: tonic::Request<pb::InspectServiceRequest>,
    ) -> Reply<pb::ServiceReply> {
        let m = self.manager(&r)?;
        reply(m.inspect_service(r.into_inner()).await)
    }

    async fn list_services(
        &self,
        r: tonic::Request<pb::ListServicesRequest>,
    ) -> Reply<pb::ListServicesResponse> {
        let m = self.manager(&r)?;
        reply(m.list_services(r.into_inner()).await)
    }

    async fn list_tasks(
        &self,
        r: tonic::Request<pb::ListTasksRequest>,
    ) -> Reply<pb::ListTasksResponse> {
        let m = self.manager(&r)?;
        reply(m.list_tasks(r.into_inner()).await)
    }

    async fn service_logs(
        &self,
        r: tonic::Request<pb::ServiceLogsRequest>,
    ) -> Reply<Self::ServiceLogsStream> {
        let m = self.manager(&r)?;
        reply(m.service_logs(r.into_inner()).await)
    }
    async fn create_network(
        &self,
        r: tonic::Request<pb::CreateNetworkRequest>,
    ) -> Reply<pb::NetworkReply> {
        let m = self.manager(&r)?;
        reply(m.create_network(r.into_inner()).await)
    }

    async fn list_networks(
        &self,
        r: tonic::Request<pb::ListNetworksRequest>,
    ) -> Reply<pb::ListNetworksResponse> {
        let m = self.manager(&r)?;
        reply(m.list_networks(r.into_inner()).await)
    }

    async fn inspect_network(
        &self,
        r: tonic::Request<pb::InspectNetworkRequest>,
    ) -> Reply<pb::NetworkReply> {
        let m = self.manager(&r)?;
        reply(m.inspect_network(r.into_inner()).await)
    }

    async fn remove_network(
        &self,
        r: tonic::Request<pb::RemoveNetworkRequest>,
    ) -> Reply<pb::RemoveNetworkResponse> {
        let m = self.manager(&r)?;
        reply(m.remove_network(r.into_inner()).await)
    }

    async fn create_secret(
        &self,
        r: tonic::Request<pb::CreateSecretRequest>,
    ) -> Reply<pb::SecretReply> {
        let m = self.manager(&r)?;
        reply(m.create_secret(r.into_inner()).await)
    }

    async fn list_secrets(
        &self,
        r: tonic::Request<pb::ListSecretsRequest>,
    ) -> Reply<pb::ListSecretsResponse> {
        let m = self.manager(&r)?;
        reply(m.list_secrets(r.into_inner()).await)
    }

    async fn inspect_secret(
        &self,
        r: tonic::Request<pb::InspectSecretRequest>,
    ) -> Reply<pb::SecretReply> {
        let m = self.manager(&r)?;
        reply(m.inspect_secret(r.into_inner()).await)
    }

    async fn remove_secret(
        &self,
        r: tonic::Request<pb::RemoveSecretRequest>,
    ) -> Reply<pb::RemoveSecretResponse> {
        let m = self.manager(&r)?;
        reply(m.remove_secret(r.into_inner()).await)
    }

    async fn update_secret(
        &self,
        r: tonic::Request<pb::UpdateSecretRequest>,
    ) -> Reply<pb::SecretReply> {
        let m = self.manager(&r)?;
        reply(m.update_secret(r.into_inner()).await)
    }

    async fn create_config(
        &self,
        r: tonic::Request<pb::CreateConfigRequest>,
    ) -> Reply<pb::ConfigReply> {
        let m = self.manager(&r)?;
        reply(m.create_config(r.into_inner()).await)
    }

    async fn list_configs(
        &self,
        r: tonic::Request<pb::ListConfigsRequest>,
    ) -> Reply<pb::ListConfigsResponse> {
        let m = self.manager(&r)?;
        reply(m.list_configs(r.into_inner()).await)
    }

    async fn inspect_config(
        &self,
        r: tonic::Request<pb::InspectConfigRequest>,
    ) -> Reply<pb::ConfigReply> {
        let m = self.manager(&r)?;
        reply(m.inspect_config(r.into_inner()).await)
    }

    async fn remove_config(
        &self,
        r: tonic::Request<pb::RemoveConfigRequest>,
    ) -> Reply<pb::RemoveConfigResponse> {
        let m = self.manager(&r)?;
        reply(m.remove_config(r.into_inner()).await)
    }

    async fn update_config(
        &self,
        r: tonic::Request<pb::UpdateConfigRequest>,
    ) -> Reply<pb::ConfigReply> {
        let m = self.manager(&r)?;
        reply(m.update_config(r.into_inner()).await)
    }
}

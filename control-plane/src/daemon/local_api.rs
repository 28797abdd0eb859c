//! The local socket's services: `Swarm` (this node's membership) and `Control` (the cluster
//! API, which the daemon answers through its manager — forwarded to the leader — and refuses
//! with docker's texts on workers and nodes outside a swarm).

use std::sync::Arc;

use super::node::SwarmNode;
use super::{pin, swarm};
use crate::api::{ApiError, pb};
use crate::manager::Manager;

type Reply<T> = Result<tonic::Response<T>, tonic::Status>;

fn reply<T>(result: Result<T, ApiError>) -> Reply<T> {
    result
        .map(tonic::Response::new)
        .map_err(tonic::Status::from)
}

#[derive(Debug, Clone)]
pub struct LocalSwarm {
    node: Arc<SwarmNode>,
}

impl LocalSwarm {
    pub fn new(node: Arc<SwarmNode>) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl pb::swarm_server::Swarm for LocalSwarm {
    async fn init(&self, r: tonic::Request<pb::InitRequest>) -> Reply<pb::InitResponse> {
        reply(swarm::init(&self.node, r.into_inner()).await)
    }

    async fn join(&self, r: tonic::Request<pb::JoinRequest>) -> Reply<pb::JoinResponse> {
        reply(swarm::join(&self.node, r.into_inner()).await)
    }

    async fn leave(&self, r: tonic::Request<pb::LeaveRequest>) -> Reply<pb::LeaveResponse> {
        reply(swarm::leave(&self.node, r.into_inner()).await)
    }

    async fn info(&self, _: tonic::Request<pb::InfoRequest>) -> Reply<pb::InfoResponse> {
        reply(swarm::info(&self.node).await)
    }

    async fn unlock(&self, r: tonic::Request<pb::UnlockRequest>) -> Reply<pb::UnlockResponse> {
        reply(super::lock::unlock(&self.node, r.into_inner()).await)
    }
}

#[derive(Debug, Clone)]
pub struct LocalControl {
    node: Arc<SwarmNode>,
}

impl LocalControl {
    pub fn new(node: Arc<SwarmNode>) -> Self {
        Self { node }
    }

    fn manager(&self) -> Result<Arc<Manager>, ApiError> {
        if self.node.locked_file().is_some() {
            return Err(ApiError::Locked);
        }
        let active = self.node.active().ok_or(ApiError::NoSwarmForCluster)?;
        active.manager.clone().ok_or(ApiError::NotManager)
    }
}

#[tonic::async_trait]
impl pb::control_server::Control for LocalControl {
    async fn inspect_swarm(
        &self,
        r: tonic::Request<pb::InspectSwarmRequest>,
    ) -> Reply<pb::InspectSwarmResponse> {
        let m = self.manager()?;
        reply(m.inspect_swarm(r.into_inner()).await)
    }

    async fn update_swarm(
        &self,
        r: tonic::Request<pb::UpdateSwarmRequest>,
    ) -> Reply<pb::InspectSwarmResponse> {
        let m = self.manager()?;
        reply(m.update_swarm(r.into_inner()).await)
    }

    async fn join_token(
        &self,
        r: tonic::Request<pb::JoinTokenRequest>,
    ) -> Reply<pb::JoinTokenResponse> {
        let m = self.manager()?;
        let mut response = m.join_token(r.into_inner()).await?;
        // `hive swarm join --token T ADDR` should name the manager the user is on.
        response.manager_addr = m.addr.clone();
        Ok(tonic::Response::new(response))
    }

    async fn unlock_key(
        &self,
        r: tonic::Request<pb::UnlockKeyRequest>,
    ) -> Reply<pb::UnlockKeyResponse> {
        let m = self.manager()?;
        reply(m.unlock_key(r.into_inner()).await)
    }

    async fn list_nodes(
        &self,
        r: tonic::Request<pb::ListNodesRequest>,
    ) -> Reply<pb::ListNodesResponse> {
        let m = self.manager()?;
        let mut response = m.list_nodes(r.into_inner()).await?;
        response.self_node_id = m.node_id.clone();
        Ok(tonic::Response::new(response))
    }

    async fn inspect_node(&self, r: tonic::Request<pb::InspectNodeRequest>) -> Reply<pb::Node> {
        let m = self.manager()?;
        let mut request = r.into_inner();
        if request.node == "self" {
            request.node = m.node_id.clone();
        }
        reply(m.inspect_node(request).await)
    }

    async fn update_node(&self, r: tonic::Request<pb::UpdateNodeRequest>) -> Reply<pb::Node> {
        let m = self.manager()?;
        reply(m.update_node(r.into_inner()).await)
    }

    async fn remove_node(
        &self,
        r: tonic::Request<pb::RemoveNodeRequest>,
    ) -> Reply<pb::RemoveNodeResponse> {
        let m = self.manager()?;
        reply(m.remove_node(r.into_inner()).await)
    }

    type ServiceLogsStream = crate::api::ReplyStream<pb::LogLine>;

    async fn create_service(
        &self,
        r: tonic::Request<pb::CreateServiceRequest>,
    ) -> Reply<pb::ServiceReply> {
        let m = self.manager()?;
        let mut request = r.into_inner();
        if !request.no_resolve_image {
            pin::pin_image(self.node.images(), request.spec.as_mut(), None).await;
        }
        reply(m.create_service(request).await)
    }

    async fn update_service(
        &self,
        r: tonic::Request<pb::UpdateServiceRequest>,
    ) -> Reply<pb::ServiceReply> {
        let m = self.manager()?;
        let mut request = r.into_inner();
        if !request.no_resolve_image {
            let kept = pin::kept_credentials(&m, &request);
            pin::pin_image(self.node.images(), request.spec.as_mut(), kept).await;
        }
        reply(m.update_service(request).await)
    }

    async fn remove_service(
        &self,
        r: tonic::Request<pb::RemoveServiceRequest>,
    ) -> Reply<pb::RemoveServiceResponse> {
        let m = self.manager()?;
        reply(m.remove_service(r.into_inner()).await)
    }

    async fn inspect_service(
        &self,
        r: tonic::Request<pb::InspectServiceRequest>,
    ) -> Reply<pb::ServiceReply> {
        let m = self.manager()?;
        reply(m.inspect_service(r.into_inner()).await)
    }

    async fn list_services(
        &self,
        r: tonic::Request<pb::ListServicesRequest>,
    ) -> Reply<pb::ListServicesResponse> {
        let m = self.manager()?;
        reply(m.list_services(r.into_inner()).await)
    }

    async fn list_tasks(
        &self,
        r: tonic::Request<pb::ListTasksRequest>,
    ) -> Reply<pb::ListTasksResponse> {
        let m = self.manager()?;
        let mut request = r.into_inner();
        if request.node == "self" {
            request.node = m.node_id.clone();
        }
        reply(m.list_tasks(request).await)
    }

    async fn service_logs(
        &self,
        r: tonic::Request<pb::ServiceLogsRequest>,
    ) -> Reply<Self::ServiceLogsStream> {
        let m = self.manager()?;
        reply(m.service_logs(r.into_inner()).await)
    }
    async fn create_network(
        &self,
        r: tonic::Request<pb::CreateNetworkRequest>,
    ) -> Reply<pb::NetworkReply> {
        let m = self.manager()?;
        reply(m.create_network(r.into_inner()).await)
    }

    async fn list_networks(
        &self,
        r: tonic::Request<pb::ListNetworksRequest>,
    ) -> Reply<pb::ListNetworksResponse> {
        let m = self.manager()?;
        reply(m.list_networks(r.into_inner()).await)
    }

    async fn inspect_network(
        &self,
        r: tonic::Request<pb::InspectNetworkRequest>,
    ) -> Reply<pb::NetworkReply> {
        let m = self.manager()?;
        reply(m.inspect_network(r.into_inner()).await)
    }

    async fn remove_network(
        &self,
        r: tonic::Request<pb::RemoveNetworkRequest>,
    ) -> Reply<pb::RemoveNetworkResponse> {
        let m = self.manager()?;
        reply(m.remove_network(r.into_inner()).await)
    }

    async fn create_secret(
        &self,
        r: tonic::Request<pb::CreateSecretRequest>,
    ) -> Reply<pb::SecretReply> {
        let m = self.manager()?;
        reply(m.create_secret(r.into_inner()).await)
    }

    async fn list_secrets(
        &self,
        r: tonic::Request<pb::ListSecretsRequest>,
    ) -> Reply<pb::ListSecretsResponse> {
        let m = self.manager()?;
        reply(m.list_secrets(r.into_inner()).await)
    }

    async fn inspect_secret(
        &self,
        r: tonic::Request<pb::InspectSecretRequest>,
    ) -> Reply<pb::SecretReply> {
        let m = self.manager()?;
        reply(m.inspect_secret(r.into_inner()).await)
    }

    async fn remove_secret(
        &self,
        r: tonic::Request<pb::RemoveSecretRequest>,
    ) -> Reply<pb::RemoveSecretResponse> {
        let m = self.manager()?;
        reply(m.remove_secret(r.into_inner()).await)
    }

    async fn update_secret(
        &self,
        r: tonic::Request<pb::UpdateSecretRequest>,
    ) -> Reply<pb::SecretReply> {
        let m = self.manager()?;
        reply(m.update_secret(r.into_inner()).await)
    }

    async fn create_config(
        &self,
        r: tonic::Request<pb::CreateConfigRequest>,
    ) -> Reply<pb::ConfigReply> {
        let m = self.manager()?;
        reply(m.create_config(r.into_inner()).await)
    }

    async fn list_configs(
        &self,
        r: tonic::Request<pb::ListConfigsRequest>,
    ) -> Reply<pb::ListConfigsResponse> {
        let m = self.manager()?;
        reply(m.list_configs(r.into_inner()).await)
    }

    async fn inspect_config(
        &self,
        r: tonic::Request<pb::InspectConfigRequest>,
    ) -> Reply<pb::ConfigReply> {
        let m = self.manager()?;
        reply(m.inspect_config(r.into_inner()).await)
    }

    async fn remove_config(
        &self,
        r: tonic::Request<pb::RemoveConfigRequest>,
    ) -> Reply<pb::RemoveConfigResponse> {
        let m = self.manager()?;
        reply(m.remove_config(r.into_inner()).await)
    }

    async fn update_config(
        &self,
        r: tonic::Request<pb::UpdateConfigRequest>,
    ) -> Reply<pb::ConfigReply> {
        let m = self.manager()?;
        reply(m.update_config(r.into_inner()).await)
    }
}

/// `Events` on the local socket: this manager's committed changes (the Engine API's
/// `/events`); refused like `Control` on workers and outside a swarm.
#[derive(Debug, Clone)]
pub struct LocalEvents {
    control: LocalControl,
}

impl LocalEvents {
    pub fn new(node: Arc<SwarmNode>) -> Self {
        Self {
            control: LocalControl::new(node),
        }
    }
}

#[tonic::async_trait]
impl pb::events_server::Events for LocalEvents {
    type WatchStream = crate::api::ReplyStream<pb::WatchEvent>;

    async fn watch(&self, r: tonic::Request<pb::WatchRequest>) -> Reply<Self::WatchStream> {
        let manager = self.control.manager()?;
        Ok(tonic::Response::new(
            crate::manager::controlapi::events::watch(&manager, r.get_ref().resume_after.as_ref()),
        ))
    }
}

//! The one place the Engine API reaches the cluster: hive's own gRPC `Swarm` and `Control`
//! services of the local daemon, as dockerd's cluster package calls SwarmKit's control API.
//! Every gRPC call and every decoding of its payloads is here; the routes see store objects
//! (`store::objects`) and the API's node and swarm messages.

use std::path::PathBuf;

use futures::StreamExt as _;
use tokio::sync::Mutex;
use tonic::transport::Channel;

use super::error::EngineError;
use crate::api::pb;
use crate::store::objects::{Network, NetworkSpec, Service, ServiceSpec, Task};
use crate::transport::unix_channel;

/// A service with the task counts `service ls` shows.
#[derive(Debug, Clone)]
pub struct ServiceWithCounts {
    pub service: Service,
    pub running: u64,
    pub desired: u64,
}

/// The local daemon's cluster API, connected on first use (the daemon's own socket is served
/// by the same process, which may not accept yet when the Engine API starts).
#[derive(Debug)]
pub struct Backend {
    socket: PathBuf,
    channel: Mutex<Option<Channel>>,
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, json: &[u8]) -> Result<T, EngineError> {
    serde_json::from_slice(json)
        .map_err(|e| EngineError::internal(format!("decoding the daemon's {what}: {e}")))
}

fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>, EngineError> {
    serde_json::to_vec(value)
        .map_err(|e| EngineError::internal(format!("encoding the {what}: {e}")))
}

impl Backend {
    pub fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            channel: Mutex::new(None),
        }
    }

    async fn channel(&self) -> Result<Channel, EngineError> {
        let mut cached = self.channel.lock().await;
        if let Some(channel) = cached.as_ref() {
            return Ok(channel.clone());
        }
        let channel = unix_channel(&self.socket).await.map_err(|e| {
            EngineError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!("the hive daemon's own API is not reachable: {e}"),
            )
        })?;
        *cached = Some(channel.clone());
        Ok(channel)
    }

    async fn control(&self) -> Result<pb::control_client::ControlClient<Channel>, EngineError> {
        Ok(pb::control_client::ControlClient::new(
            self.channel().await?,
        ))
    }

    async fn swarm(&self) -> Result<pb::swarm_client::SwarmClient<Channel>, EngineError> {
        Ok(pb::swarm_client::SwarmClient::new(self.channel().await?))
    }

    pub async fn info(&self) -> Result<pb::InfoResponse, EngineError> {
        Ok(self
            .swarm()
            .await?
            .info(pb::InfoRequest {})
            .await?
            .into_inner())
    }

    pub async fn inspect_swarm(&self) -> Result<pb::InspectSwarmResponse, EngineError> {
        Ok(self
            .control()
            .await?
            .inspect_swarm(pb::InspectSwarmRequest {})
            .await?
            .into_inner())
    }

    pub async fn rotate_join_token(&self, role: pb::Role) -> Result<(), EngineError> {
        self.control()
            .await?
            .join_token(pb::JoinTokenRequest {
                role: role.into(),
                rotate: true,
            })
            .await?;
        Ok(())
    }

    pub async fn list_nodes(&self) -> Result<pb::ListNodesResponse, EngineError> {
        Ok(self
            .control()
            .await?
            .list_nodes(pb::ListNodesRequest {})
            .await?
            .into_inner())
    }

    pub async fn inspect_node(&self, node: &str) -> Result<pb::Node, EngineError> {
        Ok(self
            .control()
            .await?
            .inspect_node(pb::InspectNodeRequest {
                node: node.to_owned(),
            })
            .await?
            .into_inner())
    }

    pub async fn update_node(
        &self,
        request: pb::UpdateNodeRequest,
    ) -> Result<pb::Node, EngineError> {
        Ok(self
            .control()
            .await?
            .update_node(request)
            .await?
            .into_inner())
    }

    pub async fn remove_node(&self, node: &str, force: bool) -> Result<(), EngineError> {
        self.control()
            .await?
            .remove_node(pb::RemoveNodeRequest {
                node: node.to_owned(),
                force,
            })
            .await?;
        Ok(())
    }

    pub async fn create_service(&self, spec: &ServiceSpec) -> Result<Service, EngineError> {
        let reply = self
            .control()
            .await?
            .create_service(pb::CreateServiceRequest {
                spec_json: encode("service spec", spec)?,
            })
            .await?
            .into_inner();
        decode("service", &reply.service_json)
    }

    pub async fn update_service(
        &self,
        service: &str,
        spec: &ServiceSpec,
        version: u64,
    ) -> Result<Service, EngineError> {
        let reply = self
            .control()
            .await?
            .update_service(pb::UpdateServiceRequest {
                service: service.to_owned(),
                spec_json: encode("service spec", spec)?,
                version,
            })
            .await?
            .into_inner();
        decode("service", &reply.service_json)
    }

    pub async fn remove_service(&self, service: &str) -> Result<(), EngineError> {
        self.control()
            .await?
            .remove_service(pb::RemoveServiceRequest {
                service: service.to_owned(),
            })
            .await?;
        Ok(())
    }

    pub async fn inspect_service(&self, service: &str) -> Result<Service, EngineError> {
        let reply = self
            .control()
            .await?
            .inspect_service(pb::InspectServiceRequest {
                service: service.to_owned(),
            })
            .await?
            .into_inner();
        decode("service", &reply.service_json)
    }

    pub async fn list_services(&self) -> Result<Vec<ServiceWithCounts>, EngineError> {
        let reply = self
            .control()
            .await?
            .list_services(pb::ListServicesRequest {})
            .await?
            .into_inner();
        reply
            .services
            .iter()
            .map(|s| {
                Ok(ServiceWithCounts {
                    service: decode("service", &s.service_json)?,
                    running: s.running,
                    desired: s.desired,
                })
            })
            .collect()
    }

    /// Tasks, history included, of one service and/or node (empty for any).
    pub async fn list_tasks(&self, service: &str, node: &str) -> Result<Vec<Task>, EngineError> {
        let reply = self
            .control()
            .await?
            .list_tasks(pb::ListTasksRequest {
                service: service.to_owned(),
                node: node.to_owned(),
            })
            .await?
            .into_inner();
        decode("tasks", &reply.tasks_json)
    }

    pub async fn create_network(&self, spec: &NetworkSpec) -> Result<Network, EngineError> {
        let reply = self
            .control()
            .await?
            .create_network(pb::CreateNetworkRequest {
                spec_json: encode("network spec", spec)?,
            })
            .await?
            .into_inner();
        decode("network", &reply.network_json)
    }

    pub async fn list_networks(&self) -> Result<Vec<Network>, EngineError> {
        let reply = self
            .control()
            .await?
            .list_networks(pb::ListNetworksRequest {})
            .await?
            .into_inner();
        decode("networks", &reply.networks_json)
    }

    pub async fn inspect_network(&self, network: &str) -> Result<Network, EngineError> {
        let reply = self
            .control()
            .await?
            .inspect_network(pb::InspectNetworkRequest {
                network: network.to_owned(),
            })
            .await?
            .into_inner();
        decode("network", &reply.network_json)
    }

    pub async fn remove_network(&self, network: &str) -> Result<(), EngineError> {
        self.control()
            .await?
            .remove_network(pb::RemoveNetworkRequest {
                network: network.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// The merged log lines of a service or task; ends with the first error.
    pub async fn service_logs(
        &self,
        request: pb::ServiceLogsRequest,
    ) -> Result<
        impl futures::Stream<Item = Result<pb::LogLine, EngineError>> + Send + 'static,
        EngineError,
    > {
        let stream = self
            .control()
            .await?
            .service_logs(request)
            .await?
            .into_inner();
        Ok(stream.map(|line| line.map_err(EngineError::from)))
    }
}

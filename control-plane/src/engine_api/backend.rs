//! The one place the Engine API reaches the cluster: hive's own gRPC `Swarm` and `Control`
//! services of the local daemon, as dockerd's cluster package calls SwarmKit's control API.
//! Every call goes through the typed client (`client::Control`) here; the routes see store
//! objects (`store::objects`) and the API's node and swarm messages.

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt as _;
use tokio::sync::{Mutex, Notify};
use tonic::transport::Channel;

use super::error::EngineError;
use super::events::log::EventLog;
use crate::api::pb;
use crate::client::{Control, ImageResolution, LogsRequest, ServiceWithStatus, TaskFilter};
use crate::image_store::resolve::Resolved;
use crate::image_store::{ImageReference, ImageStore, RegistryAuth};
use crate::store::objects::{Network, NetworkSpec, NodeRole, Service, ServiceSpec, Task};
use crate::transport::unix_channel;

/// The local daemon's cluster API, connected on first use (the daemon's own socket is served
/// by the same process, which may not accept yet when the Engine API starts).
#[derive(Debug)]
pub struct Backend {
    socket: PathBuf,
    channel: Mutex<Option<Channel>>,
    /// This node's image store, which answers `/distribution` (digests a service pins).
    images: ImageStore,
    /// The cluster events `/events` serves, fed by `events::follow`.
    events: Arc<EventLog>,
    /// Woken when this node became a swarm member through this API, so that `events::follow`
    /// watches the new manager at once rather than at its next poll.
    joined: Notify,
}

impl Backend {
    pub fn new(socket: PathBuf, images: ImageStore) -> Self {
        Self {
            socket,
            channel: Mutex::new(None),
            images,
            events: Arc::new(EventLog::default()),
            joined: Notify::new(),
        }
    }

    /// The digest `reference` names now: its registry's, or the store's for a loaded image.
    pub async fn resolve_image(
        &self,
        reference: &ImageReference,
        auth: Option<&RegistryAuth>,
    ) -> Result<Resolved, EngineError> {
        self.images.resolve(reference, auth).await.map_err(|e| {
            let text = e.to_string();
            // dockerd: a registry's refusal is 401, anything else it cannot resolve 404.
            if text.contains("unauthorized") {
                EngineError::new(axum::http::StatusCode::UNAUTHORIZED, text)
            } else {
                EngineError::not_found(text)
            }
        })
    }

    /// The events this node has seen, for `/events`.
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    pub fn event_log(&self) -> Arc<EventLog> {
        self.events.clone()
    }

    /// Tells `events::follow` that this node may be a manager now (`swarm init`, `join`,
    /// `unlock` succeeded).
    pub fn joined(&self) {
        self.joined.notify_one();
    }

    /// Waits for the next [`Self::joined`] (or returns at once if one came meanwhile).
    pub async fn wait_joined(&self) {
        self.joined.notified().await;
    }

    /// The local manager's events after `resume_after` (every kept one without it), then its
    /// committed changes from now on; fails on workers and outside a swarm.
    pub async fn watch_events(
        &self,
        resume_after: Option<pb::EventPosition>,
    ) -> Result<tonic::Streaming<pb::WatchEvent>, EngineError> {
        Ok(pb::events_client::EventsClient::new(self.channel().await?)
            .watch(pb::WatchRequest { resume_after })
            .await?
            .into_inner())
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

    async fn control(&self) -> Result<Control, EngineError> {
        Ok(Control::new(self.channel().await?))
    }

    async fn swarm(&self) -> Result<pb::swarm_client::SwarmClient<Channel>, EngineError> {
        Ok(pb::swarm_client::SwarmClient::new(self.channel().await?))
    }

    /// The daemon's own `Swarm` service (init, join, leave), whose refusals the caller words.
    pub async fn swarm_client(
        &self,
    ) -> Result<pb::swarm_client::SwarmClient<Channel>, EngineError> {
        self.swarm().await
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
        Ok(self.control().await?.inspect_swarm().await?)
    }

    /// `swarm unlock` of this (locked) manager.
    pub async fn unlock(&self, key: String) -> Result<(), EngineError> {
        self.swarm()
            .await?
            .unlock(pb::UnlockRequest { key })
            .await?;
        self.joined();
        Ok(())
    }

    /// The managers' unlock key, a new one if `rotate` (empty without autolock).
    pub async fn unlock_key(&self, rotate: bool) -> Result<String, EngineError> {
        Ok(self.control().await?.unlock_key(rotate).await?)
    }

    /// `docker swarm update`: the settings that changed.
    pub async fn update_swarm(&self, settings: pb::ClusterSettings) -> Result<(), EngineError> {
        self.control().await?.update_swarm(settings).await?;
        Ok(())
    }

    /// `docker swarm ca --rotate`: the same manager call as `hive swarm ca --rotate`.
    pub async fn rotate_root_ca(
        &self,
        settings: pb::ClusterSettings,
        rotation: pb::RootRotationRequest,
    ) -> Result<(), EngineError> {
        self.control()
            .await?
            .rotate_root_ca(settings, rotation)
            .await?;
        Ok(())
    }

    pub async fn rotate_join_token(&self, role: NodeRole) -> Result<(), EngineError> {
        self.control().await?.join_token(role, true).await?;
        Ok(())
    }

    pub async fn list_nodes(&self) -> Result<pb::ListNodesResponse, EngineError> {
        Ok(self.control().await?.list_nodes().await?)
    }

    pub async fn inspect_node(&self, node: &str) -> Result<pb::Node, EngineError> {
        Ok(self.control().await?.inspect_node(node).await?)
    }

    pub async fn update_node(
        &self,
        request: pb::UpdateNodeRequest,
    ) -> Result<pb::Node, EngineError> {
        Ok(self.control().await?.update_node(request).await?)
    }

    pub async fn remove_node(&self, node: &str, force: bool) -> Result<(), EngineError> {
        self.control().await?.remove_node(node, force).await?;
        Ok(())
    }

    /// The docker CLI resolves the image itself (`/distribution`) unless told not to, so the
    /// manager stores the image as sent, as dockerd does for API 1.30 and later.
    pub async fn create_service(&self, spec: &ServiceSpec) -> Result<Service, EngineError> {
        Ok(self
            .control()
            .await?
            .create_service_with(spec, ImageResolution::AsWritten)
            .await?)
    }

    pub async fn update_service(
        &self,
        service: &str,
        spec: &ServiceSpec,
        version: u64,
        registry_auth_from: pb::RegistryAuthFrom,
    ) -> Result<Service, EngineError> {
        Ok(self
            .control()
            .await?
            .update_service_with(
                service,
                version,
                spec,
                registry_auth_from,
                ImageResolution::AsWritten,
            )
            .await?)
    }

    pub async fn remove_service(&self, service: &str) -> Result<(), EngineError> {
        self.control().await?.remove_service(service).await?;
        Ok(())
    }

    pub async fn inspect_service(&self, service: &str) -> Result<Service, EngineError> {
        Ok(self.control().await?.inspect_service(service).await?)
    }

    pub async fn list_services(&self) -> Result<Vec<ServiceWithStatus>, EngineError> {
        Ok(self.control().await?.list_services().await?)
    }

    /// Tasks, history included, of one service and/or node (empty for any).
    pub async fn list_tasks(&self, service: &str, node: &str) -> Result<Vec<Task>, EngineError> {
        let filter = TaskFilter {
            service: (!service.is_empty()).then_some(service),
            node: (!node.is_empty()).then_some(node),
        };
        Ok(self.control().await?.list_tasks(filter).await?.tasks)
    }

    /// The typed client, for the secrets and configs routes.
    pub async fn control_client(&self) -> Result<Control, EngineError> {
        self.control().await
    }

    pub async fn create_network(&self, spec: &NetworkSpec) -> Result<Network, EngineError> {
        Ok(self.control().await?.create_network(spec).await?)
    }

    pub async fn list_networks(&self) -> Result<Vec<Network>, EngineError> {
        Ok(self.control().await?.list_networks().await?)
    }

    pub async fn inspect_network(&self, network: &str) -> Result<Network, EngineError> {
        Ok(self.control().await?.inspect_network(network).await?)
    }

    pub async fn remove_network(&self, network: &str) -> Result<(), EngineError> {
        self.control().await?.remove_network(network).await?;
        Ok(())
    }

    /// The merged log lines of a service or task; ends with the first error.
    pub async fn service_logs(
        &self,
        request: LogsRequest,
    ) -> Result<
        impl futures::Stream<Item = Result<pb::LogLine, EngineError>> + Send + 'static,
        EngineError,
    > {
        let stream = self.control().await?.service_logs(request).await?;
        Ok(stream.map(|line| line.map_err(EngineError::from)))
    }
}

//! The cluster API as its callers use it: [`Control`] wraps the generated gRPC client and
//! speaks the store's types (`ServiceSpec`, `Service`, `Task`, `Network`...), converting them
//! with `api::convert` on the way. The CLI, `hive demo`, the tests and the benches call this,
//! never the generated client, so no caller sees a wire message for a service, a task or a
//! network (docs/control-plane.md, "The wire").
//!
//! Nodes and the swarm keep their API messages (`pb::Node`, `pb::InspectSwarmResponse`): they
//! carry what only the answering manager knows (which manager leads, which are reachable,
//! the join tokens), which the store's types do not.

use std::collections::HashMap;

use tonic::transport::Channel;

use super::ClientError;
use crate::api::convert::{WireError, role};
use crate::api::pb;
use crate::store::objects::{Network, NetworkSpec, NodeRole, Service, ServiceSpec, Task};

/// A typed client of one daemon's (or manager's) `Control` service.
#[derive(Debug, Clone)]
pub struct Control {
    rpc: pb::control_client::ControlClient<Channel>,
}

/// A service as `service ls` shows it: with its task counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceWithStatus {
    pub service: Service,
    /// Tasks running that should be running.
    pub running: u64,
    /// Replicas, or for a global service the tasks meant to run.
    pub desired: u64,
}

/// Which tasks `list_tasks` returns: of one service and/or on one node (ID, ID prefix or
/// name; `self` for the local node); `None` for any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskFilter<'a> {
    pub service: Option<&'a str>,
    pub node: Option<&'a str>,
}

/// Tasks, history included, with the names the NAME and NODE columns need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskList {
    pub tasks: Vec<Task>,
    /// Node ID → hostname (or name).
    pub node_names: HashMap<String, String>,
    /// Service ID → name.
    pub service_names: HashMap<String, String>,
}

/// What `service_logs` follows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogsRequest {
    /// Service (ID, prefix, name) or task ID.
    pub target: String,
    pub follow: bool,
    /// Lines from the end of each task's log; 0 = all.
    pub tail: u64,
    pub timestamps: bool,
}

/// Whether the manager a service create or update enters pins its image to a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageResolution {
    /// Resolve the tag and store `name:tag@sha256:…` (docker's default).
    Resolve,
    /// Store the image as written (`--no-resolve-image`, `--resolve-image never`).
    AsWritten,
}

fn service_of(reply: Option<pb::Service>) -> Result<Service, ClientError> {
    let service = reply.ok_or(WireError::Missing("service"))?;
    Ok(Service::try_from(service)?)
}

fn network_of(reply: Option<pb::Network>) -> Result<Network, ClientError> {
    Ok(Network::try_from(
        reply.ok_or(WireError::Missing("network"))?,
    )?)
}

impl Control {
    pub fn new(channel: Channel) -> Self {
        Self {
            rpc: pb::control_client::ControlClient::new(channel),
        }
    }

    // --- services -----------------------------------------------------------------------

    /// Stores a new service; the manager validates `spec` and answers with the service.
    pub async fn create_service(&mut self, spec: &ServiceSpec) -> Result<Service, ClientError> {
        self.create_service_with(spec, ImageResolution::Resolve)
            .await
    }

    /// [`Self::create_service`]; `resolution` says whether the entering manager pins the
    /// image to a digest (`--no-resolve-image` says not).
    pub async fn create_service_with(
        &mut self,
        spec: &ServiceSpec,
        resolution: ImageResolution,
    ) -> Result<Service, ClientError> {
        let reply = self
            .rpc
            .create_service(pb::CreateServiceRequest {
                spec: Some(spec.into()),
                no_resolve_image: resolution == ImageResolution::AsWritten,
            })
            .await?
            .into_inner();
        service_of(reply.service)
    }

    /// Replaces the spec of `service` (ID, prefix or name) if it is still at `version` (the
    /// `meta.version` the caller read); a newer service is refused with `Aborted`
    /// ([`ClientError::is_conflict`]).
    pub async fn update_service(
        &mut self,
        service: &str,
        version: u64,
        spec: &ServiceSpec,
    ) -> Result<Service, ClientError> {
        self.update_service_with(
            service,
            version,
            spec,
            pb::RegistryAuthFrom::Spec,
            ImageResolution::Resolve,
        )
        .await
    }

    /// [`Self::update_service`], with where the registry credentials come from when `spec`
    /// has none (dockerd's `registryAuthFrom`).
    pub async fn update_service_with(
        &mut self,
        service: &str,
        version: u64,
        spec: &ServiceSpec,
        registry_auth_from: pb::RegistryAuthFrom,
        resolution: ImageResolution,
    ) -> Result<Service, ClientError> {
        let reply = self
            .rpc
            .update_service(pb::UpdateServiceRequest {
                service: service.to_owned(),
                version,
                spec: Some(spec.into()),
                registry_auth_from: registry_auth_from.into(),
                no_resolve_image: resolution == ImageResolution::AsWritten,
            })
            .await?
            .into_inner();
        service_of(reply.service)
    }

    /// Removes `service`; answers its ID.
    pub async fn remove_service(&mut self, service: &str) -> Result<String, ClientError> {
        let reply = self
            .rpc
            .remove_service(pb::RemoveServiceRequest {
                service: service.to_owned(),
            })
            .await?
            .into_inner();
        Ok(reply.service_id)
    }

    pub async fn inspect_service(&mut self, service: &str) -> Result<Service, ClientError> {
        let reply = self
            .rpc
            .inspect_service(pb::InspectServiceRequest {
                service: service.to_owned(),
            })
            .await?
            .into_inner();
        service_of(reply.service)
    }

    pub async fn list_services(&mut self) -> Result<Vec<ServiceWithStatus>, ClientError> {
        let reply = self
            .rpc
            .list_services(pb::ListServicesRequest {})
            .await?
            .into_inner();
        reply
            .services
            .into_iter()
            .map(|s| {
                Ok(ServiceWithStatus {
                    service: service_of(s.service)?,
                    running: s.running,
                    desired: s.desired,
                })
            })
            .collect()
    }

    pub async fn list_tasks(&mut self, filter: TaskFilter<'_>) -> Result<TaskList, ClientError> {
        let reply = self
            .rpc
            .list_tasks(pb::ListTasksRequest {
                service: filter.service.unwrap_or_default().to_owned(),
                node: filter.node.unwrap_or_default().to_owned(),
            })
            .await?
            .into_inner();
        Ok(TaskList {
            tasks: reply
                .tasks
                .into_iter()
                .map(Task::try_from)
                .collect::<Result<_, _>>()?,
            node_names: reply.node_names,
            service_names: reply.service_names,
        })
    }

    /// The merged output of a service's (or a task's) tasks, line by line.
    pub async fn service_logs(
        &mut self,
        request: LogsRequest,
    ) -> Result<tonic::Streaming<pb::LogLine>, ClientError> {
        Ok(self
            .rpc
            .service_logs(pb::ServiceLogsRequest {
                target: request.target,
                follow: request.follow,
                tail: request.tail,
                timestamps: request.timestamps,
            })
            .await?
            .into_inner())
    }

    // --- networks -----------------------------------------------------------------------

    pub async fn create_network(&mut self, spec: &NetworkSpec) -> Result<Network, ClientError> {
        let reply = self
            .rpc
            .create_network(pb::CreateNetworkRequest {
                spec: Some(spec.into()),
            })
            .await?
            .into_inner();
        network_of(reply.network)
    }

    pub async fn list_networks(&mut self) -> Result<Vec<Network>, ClientError> {
        let reply = self
            .rpc
            .list_networks(pb::ListNetworksRequest {})
            .await?
            .into_inner();
        Ok(reply
            .networks
            .into_iter()
            .map(Network::try_from)
            .collect::<Result<_, _>>()?)
    }

    /// The network `network` names (ID, ID prefix or name).
    pub async fn inspect_network(&mut self, network: &str) -> Result<Network, ClientError> {
        let reply = self
            .rpc
            .inspect_network(pb::InspectNetworkRequest {
                network: network.to_owned(),
            })
            .await?
            .into_inner();
        network_of(reply.network)
    }

    /// Removes `network`; answers its ID.
    pub async fn remove_network(&mut self, network: &str) -> Result<String, ClientError> {
        let reply = self
            .rpc
            .remove_network(pb::RemoveNetworkRequest {
                network: network.to_owned(),
            })
            .await?
            .into_inner();
        Ok(reply.network_id)
    }

    // --- nodes --------------------------------------------------------------------------

    /// Every node, and which one the answering daemon runs on.
    pub async fn list_nodes(&mut self) -> Result<pb::ListNodesResponse, ClientError> {
        Ok(self
            .rpc
            .list_nodes(pb::ListNodesRequest {})
            .await?
            .into_inner())
    }

    /// The node `node` names (ID, ID prefix, hostname or `self`).
    pub async fn inspect_node(&mut self, node: &str) -> Result<pb::Node, ClientError> {
        Ok(self
            .rpc
            .inspect_node(pb::InspectNodeRequest {
                node: node.to_owned(),
            })
            .await?
            .into_inner())
    }

    pub async fn update_node(
        &mut self,
        update: pb::UpdateNodeRequest,
    ) -> Result<pb::Node, ClientError> {
        Ok(self.rpc.update_node(update).await?.into_inner())
    }

    /// Removes `node` from the swarm; answers its ID.
    pub async fn remove_node(&mut self, node: &str, force: bool) -> Result<String, ClientError> {
        let reply = self
            .rpc
            .remove_node(pb::RemoveNodeRequest {
                node: node.to_owned(),
                force,
            })
            .await?
            .into_inner();
        Ok(reply.node_id)
    }

    // --- the swarm ----------------------------------------------------------------------

    pub async fn inspect_swarm(&mut self) -> Result<pb::InspectSwarmResponse, ClientError> {
        Ok(self
            .rpc
            .inspect_swarm(pb::InspectSwarmRequest {})
            .await?
            .into_inner())
    }

    /// Changes the settings given in `settings` (unset ones stay).
    pub async fn update_swarm(
        &mut self,
        settings: pb::ClusterSettings,
    ) -> Result<pb::InspectSwarmResponse, ClientError> {
        Ok(self
            .rpc
            .update_swarm(pb::UpdateSwarmRequest {
                settings: Some(settings),
                root_rotation: None,
            })
            .await?
            .into_inner())
    }

    /// Starts a root CA rotation (`swarm ca --rotate`), with `settings` applied in the same
    /// write (`--cert-expiry`).
    pub async fn rotate_root_ca(
        &mut self,
        settings: pb::ClusterSettings,
        rotation: pb::RootRotationRequest,
    ) -> Result<pb::InspectSwarmResponse, ClientError> {
        Ok(self
            .rpc
            .update_swarm(pb::UpdateSwarmRequest {
                settings: Some(settings),
                root_rotation: Some(rotation),
            })
            .await?
            .into_inner())
    }

    /// The managers' unlock key (empty without autolock), a new one if `rotate`.
    pub async fn unlock_key(&mut self, rotate: bool) -> Result<String, ClientError> {
        Ok(self
            .rpc
            .unlock_key(pb::UnlockKeyRequest { rotate })
            .await?
            .into_inner()
            .key)
    }

    /// The join token of `role`, a new one if `rotate`.
    pub async fn join_token(
        &mut self,
        role_: NodeRole,
        rotate: bool,
    ) -> Result<pb::JoinTokenResponse, ClientError> {
        Ok(self
            .rpc
            .join_token(pb::JoinTokenRequest {
                role: role(role_).into(),
                rotate,
            })
            .await?
            .into_inner())
    }
}

/// Secrets and configs (docs/secrets.md): the store's types, a secret never with its data.
impl Control {
    pub async fn create_secret(
        &mut self,
        spec: &crate::store::objects::SecretSpec,
        driver: &str,
    ) -> Result<crate::store::objects::Secret, ClientError> {
        let reply = self
            .rpc
            .create_secret(pb::CreateSecretRequest {
                spec: Some(pb::SecretSpec {
                    annotations: Some(crate::api::convert::annotations(&spec.annotations)),
                    data: spec.data.clone(),
                    driver: driver.to_owned(),
                }),
            })
            .await?
            .into_inner();
        Ok(reply.secret.ok_or(WireError::Missing("secret"))?.into())
    }

    pub async fn list_secrets(
        &mut self,
    ) -> Result<Vec<crate::store::objects::Secret>, ClientError> {
        let reply = self
            .rpc
            .list_secrets(pb::ListSecretsRequest {})
            .await?
            .into_inner();
        Ok(reply.secrets.into_iter().map(Into::into).collect())
    }

    pub async fn inspect_secret(
        &mut self,
        secret: &str,
    ) -> Result<crate::store::objects::Secret, ClientError> {
        let reply = self
            .rpc
            .inspect_secret(pb::InspectSecretRequest {
                secret: secret.to_owned(),
            })
            .await?
            .into_inner();
        Ok(reply.secret.ok_or(WireError::Missing("secret"))?.into())
    }

    pub async fn remove_secret(&mut self, secret: &str) -> Result<String, ClientError> {
        let reply = self
            .rpc
            .remove_secret(pb::RemoveSecretRequest {
                secret: secret.to_owned(),
            })
            .await?
            .into_inner();
        Ok(reply.secret_id)
    }

    pub async fn create_config(
        &mut self,
        spec: &crate::store::objects::ConfigSpec,
        templating: &str,
    ) -> Result<crate::store::objects::Config, ClientError> {
        let reply = self
            .rpc
            .create_config(pb::CreateConfigRequest {
                spec: Some(pb::ConfigSpec {
                    annotations: Some(crate::api::convert::annotations(&spec.annotations)),
                    data: spec.data.clone(),
                    templating: templating.to_owned(),
                }),
            })
            .await?
            .into_inner();
        Ok(reply.config.ok_or(WireError::Missing("config"))?.into())
    }

    pub async fn list_configs(
        &mut self,
    ) -> Result<Vec<crate::store::objects::Config>, ClientError> {
        let reply = self
            .rpc
            .list_configs(pb::ListConfigsRequest {})
            .await?
            .into_inner();
        Ok(reply.configs.into_iter().map(Into::into).collect())
    }

    pub async fn inspect_config(
        &mut self,
        config: &str,
    ) -> Result<crate::store::objects::Config, ClientError> {
        let reply = self
            .rpc
            .inspect_config(pb::InspectConfigRequest {
                config: config.to_owned(),
            })
            .await?
            .into_inner();
        Ok(reply.config.ok_or(WireError::Missing("config"))?.into())
    }

    pub async fn remove_config(&mut self, config: &str) -> Result<String, ClientError> {
        let reply = self
            .rpc
            .remove_config(pb::RemoveConfigRequest {
                config: config.to_owned(),
            })
            .await?
            .into_inner();
        Ok(reply.config_id)
    }
}

/// Label changes of secrets and configs (a change of data is refused by the manager).
impl Control {
    pub async fn update_secret(
        &mut self,
        secret: &str,
        version: u64,
        spec: &crate::store::objects::SecretSpec,
    ) -> Result<(), ClientError> {
        self.rpc
            .update_secret(pb::UpdateSecretRequest {
                secret: secret.to_owned(),
                version,
                spec: Some(pb::SecretSpec {
                    annotations: Some(crate::api::convert::annotations(&spec.annotations)),
                    data: spec.data.clone(),
                    driver: String::new(),
                }),
            })
            .await?;
        Ok(())
    }

    pub async fn update_config(
        &mut self,
        config: &str,
        version: u64,
        spec: &crate::store::objects::ConfigSpec,
    ) -> Result<(), ClientError> {
        self.rpc
            .update_config(pb::UpdateConfigRequest {
                config: config.to_owned(),
                version,
                spec: Some(pb::ConfigSpec {
                    annotations: Some(crate::api::convert::annotations(&spec.annotations)),
                    data: spec.data.clone(),
                    templating: String::new(),
                }),
            })
            .await?;
        Ok(())
    }
}

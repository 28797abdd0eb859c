//! Every call `hive stack` makes to the manager, in one place: the rest of the stack code
//! works on store types only, so moving to another wire format touches this file alone.

use crate::api::pb;
use crate::cli::output::CliFailure;
use crate::cli::service::render::ServiceRow;
use crate::cli::service::{self, TaskTableArgs, decode};
use crate::client::DaemonClient;
use crate::store::objects::{Network, NetworkSpec, Service, ServiceSpec};

pub struct StackApi {
    client: DaemonClient,
}

impl std::fmt::Debug for StackApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StackApi")
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CliFailure> {
    serde_json::to_vec(value).map_err(|e| CliFailure::Usage(format!("cannot encode the spec: {e}")))
}

impl StackApi {
    pub async fn connect(host: Option<&str>) -> Result<Self, CliFailure> {
        Ok(Self {
            client: DaemonClient::connect(host).await?,
        })
    }

    /// Every service with its running and desired task counts.
    pub async fn services(&mut self) -> Result<Vec<ServiceRow>, CliFailure> {
        let list = self
            .client
            .control
            .list_services(pb::ListServicesRequest {})
            .await?
            .into_inner();
        list.services
            .iter()
            .map(|s| {
                Ok(ServiceRow {
                    service: decode(&s.service_json)?,
                    running: s.running,
                    desired: s.desired,
                })
            })
            .collect()
    }

    pub async fn networks(&mut self) -> Result<Vec<Network>, CliFailure> {
        let list = self
            .client
            .control
            .list_networks(pb::ListNetworksRequest {})
            .await?
            .into_inner();
        decode(&list.networks_json)
    }

    pub async fn create_network(&mut self, spec: &NetworkSpec) -> Result<Network, CliFailure> {
        let reply = self
            .client
            .control
            .create_network(pb::CreateNetworkRequest {
                spec_json: encode(spec)?,
            })
            .await?
            .into_inner();
        decode(&reply.network_json)
    }

    pub async fn create_service(&mut self, spec: &ServiceSpec) -> Result<Service, CliFailure> {
        let reply = self
            .client
            .control
            .create_service(pb::CreateServiceRequest {
                spec_json: encode(spec)?,
            })
            .await?
            .into_inner();
        decode(&reply.service_json)
    }

    /// Replaces `current`'s spec; the manager refuses it if the service changed meanwhile.
    pub async fn update_service(
        &mut self,
        current: &Service,
        spec: &ServiceSpec,
    ) -> Result<Service, CliFailure> {
        let reply = self
            .client
            .control
            .update_service(pb::UpdateServiceRequest {
                service: current.id.clone(),
                spec_json: encode(spec)?,
                version: current.meta.version,
            })
            .await?
            .into_inner();
        decode(&reply.service_json)
    }

    pub async fn remove_service(&mut self, id: &str) -> Result<(), CliFailure> {
        self.client
            .control
            .remove_service(pb::RemoveServiceRequest {
                service: id.to_owned(),
            })
            .await?;
        Ok(())
    }

    pub async fn remove_network(&mut self, id: &str) -> Result<(), CliFailure> {
        self.client
            .control
            .remove_network(pb::RemoveNetworkRequest {
                network: id.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// Waits for `service` to converge, printing docker's progress.
    pub async fn wait_converged(&mut self, service: &str) -> Result<(), CliFailure> {
        service::progress::wait_converged(&mut self.client, service, false).await
    }

    /// The task table of `services` (names or IDs), as `service ps` prints it.
    pub async fn print_tasks(
        &mut self,
        services: &[String],
        table: &TaskTableArgs,
    ) -> Result<(), CliFailure> {
        let queries: Vec<(String, String)> = services
            .iter()
            .map(|s| (s.clone(), String::new()))
            .collect();
        service::print_tasks(&mut self.client, &queries, table).await
    }
}

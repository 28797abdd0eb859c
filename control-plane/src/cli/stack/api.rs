//! Every call `hive stack` makes to the manager, in one place: the rest of the stack code
//! works on store types only, so moving to another wire format touches this file alone.

use crate::cli::output::CliFailure;
use crate::cli::service::{self, TaskTableArgs};
use crate::client::{DaemonClient, ServiceWithStatus};
use crate::store::objects::{Network, NetworkSpec, Service, ServiceSpec};

pub struct StackApi {
    client: DaemonClient,
}

impl std::fmt::Debug for StackApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StackApi")
    }
}

impl StackApi {
    pub async fn connect(host: Option<&str>) -> Result<Self, CliFailure> {
        Ok(Self {
            client: DaemonClient::connect(host).await?,
        })
    }

    /// Every service with its running and desired task counts.
    pub async fn services(&mut self) -> Result<Vec<ServiceWithStatus>, CliFailure> {
        Ok(self.client.control.list_services().await?)
    }

    pub async fn networks(&mut self) -> Result<Vec<Network>, CliFailure> {
        Ok(self.client.control.list_networks().await?)
    }

    pub async fn create_network(&mut self, spec: &NetworkSpec) -> Result<Network, CliFailure> {
        Ok(self.client.control.create_network(spec).await?)
    }

    pub async fn create_service(&mut self, spec: &ServiceSpec) -> Result<Service, CliFailure> {
        Ok(self.client.control.create_service(spec).await?)
    }

    /// Replaces `current`'s spec; the manager refuses it if the service changed meanwhile.
    pub async fn update_service(
        &mut self,
        current: &Service,
        spec: &ServiceSpec,
    ) -> Result<Service, CliFailure> {
        Ok(self
            .client
            .control
            .update_service(&current.id, current.meta.version, spec)
            .await?)
    }

    pub async fn remove_service(&mut self, id: &str) -> Result<(), CliFailure> {
        self.client.control.remove_service(id).await?;
        Ok(())
    }

    pub async fn remove_network(&mut self, id: &str) -> Result<(), CliFailure> {
        self.client.control.remove_network(id).await?;
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

//! Every call `hive stack` makes to the manager, in one place: the rest of the stack code
//! works on store types only, so moving to another wire format touches this file alone.

use crate::api::pb;
use crate::cli::output::CliFailure;
use crate::cli::service::{self, args::TaskTableArgs};
use crate::client::{DaemonClient, ImageResolution, ServiceWithStatus};
use crate::stack::files::{FileKind, FileObject};
use crate::store::objects::{
    Annotations, ConfigSpec, Network, NetworkSpec, SecretSpec, Service, ServiceSpec,
};

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

    pub async fn create_service(
        &mut self,
        spec: &ServiceSpec,
        resolution: ImageResolution,
    ) -> Result<Service, CliFailure> {
        Ok(self
            .client
            .control
            .create_service_with(spec, resolution)
            .await?)
    }

    /// Replaces `current`'s spec; the manager refuses it if the service changed meanwhile.
    pub async fn update_service(
        &mut self,
        current: &Service,
        spec: &ServiceSpec,
        resolution: ImageResolution,
    ) -> Result<Service, CliFailure> {
        Ok(self
            .client
            .control
            .update_service_with(
                &current.id,
                current.meta.version,
                spec,
                pb::RegistryAuthFrom::Spec,
                resolution,
            )
            .await?)
    }

    pub async fn remove_service(&mut self, id: &str) -> Result<(), CliFailure> {
        self.client.control.remove_service(id).await?;
        Ok(())
    }

    /// Every secret or config of `kind`: (ID, version, annotations).
    pub async fn files(
        &mut self,
        kind: FileKind,
    ) -> Result<Vec<(String, u64, Annotations)>, CliFailure> {
        let control = &mut self.client.control;
        Ok(match kind {
            FileKind::Secret => control
                .list_secrets()
                .await?
                .into_iter()
                .map(|s| (s.id, s.meta.version, s.spec.annotations))
                .collect(),
            FileKind::Config => control
                .list_configs()
                .await?
                .into_iter()
                .map(|c| (c.id, c.meta.version, c.spec.annotations))
                .collect(),
        })
    }

    /// Creates `object` with `data`, or, when `existing` (its ID and version) says one of its
    /// name exists, updates it as docker does (the manager refuses a change of data: only
    /// labels may change). True if created.
    pub async fn upsert_file(
        &mut self,
        object: &FileObject,
        data: Vec<u8>,
        existing: Option<&(String, u64)>,
    ) -> Result<bool, CliFailure> {
        let name = &object.annotations.name;
        let annotations = object.annotations.clone();
        let control = &mut self.client.control;
        let written = match (object.kind, existing) {
            (FileKind::Secret, None) => control
                .create_secret(&SecretSpec { annotations, data }, "")
                .await
                .map(drop),
            (FileKind::Config, None) => control
                .create_config(&ConfigSpec { annotations, data }, "")
                .await
                .map(drop),
            (FileKind::Secret, Some((id, version))) => {
                control
                    .update_secret(id, *version, &SecretSpec { annotations, data })
                    .await
            }
            (FileKind::Config, Some((id, version))) => {
                control
                    .update_config(id, *version, &ConfigSpec { annotations, data })
                    .await
            }
        };
        written.map_err(|err| {
            let verb = if existing.is_some() {
                "update"
            } else {
                "create"
            };
            CliFailure::Usage(format!(
                "failed to {verb} {} {name}: {err}",
                object.kind.as_str()
            ))
        })?;
        Ok(existing.is_none())
    }

    pub async fn remove_file(&mut self, kind: FileKind, id: &str) -> Result<(), CliFailure> {
        match kind {
            FileKind::Secret => self.client.control.remove_secret(id).await?,
            FileKind::Config => self.client.control.remove_config(id).await?,
        };
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

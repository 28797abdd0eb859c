//! The local socket's `Volumes` service: this node's named local volumes (`hive volume ...`).

use crate::api::{PLAIN_KEY, pb};
use crate::volume_store::{Volume, VolumeError, VolumeStore};

type Reply<T> = Result<tonic::Response<T>, tonic::Status>;

#[derive(Debug, Clone)]
pub struct LocalVolumes {
    store: VolumeStore,
}

impl LocalVolumes {
    pub fn new(store: VolumeStore) -> Self {
        Self { store }
    }

    /// Runs `work` on the store off the async threads.
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&VolumeStore) -> Result<T, VolumeError> + Send + 'static,
    ) -> Result<T, tonic::Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| tonic::Status::internal(format!("the volume store's worker: {e}")))?
            .map_err(|e| status(&e))
    }
}

/// The store's errors as the CLI shows them: verbatim, after `Error response from daemon: `.
fn status(error: &VolumeError) -> tonic::Status {
    use tonic::Code;
    let code = match error {
        VolumeError::Name { .. } | VolumeError::Driver { .. } | VolumeError::Option { .. } => {
            Code::InvalidArgument
        }
        VolumeError::NotFound { .. } => Code::NotFound,
        VolumeError::InUse { .. } => Code::FailedPrecondition,
        VolumeError::Io { .. } | VolumeError::Mount { .. } | VolumeError::Unmount { .. } => {
            Code::Internal
        }
    };
    let mut status = tonic::Status::new(code, error.to_string());
    status
        .metadata_mut()
        .insert(PLAIN_KEY, tonic::metadata::MetadataValue::from_static("1"));
    status
}

fn info(v: Volume) -> pb::VolumeInfo {
    pb::VolumeInfo {
        name: v.name,
        driver: v.driver,
        mountpoint: v.mountpoint.to_string_lossy().into_owned(),
        created_at: v.created_at,
        labels: v.labels.into_iter().collect(),
        options: v.options.into_iter().collect(),
        used_by: v.used_by,
    }
}

#[tonic::async_trait]
impl pb::volumes_server::Volumes for LocalVolumes {
    async fn create_volume(
        &self,
        r: tonic::Request<pb::CreateVolumeRequest>,
    ) -> Reply<pb::VolumeInfo> {
        let r = r.into_inner();
        let volume = self
            .with(move |store| {
                let name = (!r.name.is_empty()).then_some(r.name.as_str());
                let driver = if r.driver.is_empty() {
                    "local"
                } else {
                    &r.driver
                };
                store.create(
                    name,
                    driver,
                    r.labels.into_iter().collect(),
                    r.options.into_iter().collect(),
                )
            })
            .await?;
        Ok(tonic::Response::new(info(volume)))
    }

    async fn list_volumes(
        &self,
        _: tonic::Request<pb::ListVolumesRequest>,
    ) -> Reply<pb::ListVolumesResponse> {
        let volumes = self.with(|store| Ok(store.list())).await?;
        Ok(tonic::Response::new(pb::ListVolumesResponse {
            volumes: volumes.into_iter().map(info).collect(),
        }))
    }

    async fn inspect_volume(
        &self,
        r: tonic::Request<pb::InspectVolumeRequest>,
    ) -> Reply<pb::VolumeInfo> {
        let name = r.into_inner().name;
        let volume = self.with(move |store| store.inspect(&name)).await?;
        Ok(tonic::Response::new(info(volume)))
    }

    async fn remove_volume(
        &self,
        r: tonic::Request<pb::RemoveVolumeRequest>,
    ) -> Reply<pb::RemoveVolumeResponse> {
        let name = r.into_inner().name;
        self.with(move |store| store.remove(&name)).await?;
        Ok(tonic::Response::new(pb::RemoveVolumeResponse {}))
    }

    async fn prune_volumes(
        &self,
        r: tonic::Request<pb::PruneVolumesRequest>,
    ) -> Reply<pb::PruneVolumesResponse> {
        let all = r.into_inner().all;
        let (deleted, space_reclaimed) = self.with(move |store| store.prune(all)).await?;
        Ok(tonic::Response::new(pb::PruneVolumesResponse {
            deleted,
            space_reclaimed,
        }))
    }
}

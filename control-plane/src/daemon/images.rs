//! The local socket's `Images` service: this node's image store (`hive image ...`).

use std::io::Read;

use tokio::sync::mpsc;

use tokio_stream::StreamExt as _;

use crate::api::{PLAIN_KEY, pb};
use crate::image_store::{
    ImageError, ImageReference, ImageStore, ImageSummary, RegistryAuth, Removed,
};

type Reply<T> = Result<tonic::Response<T>, tonic::Status>;

#[derive(Debug, Clone)]
pub struct LocalImages {
    store: ImageStore,
}

impl LocalImages {
    pub fn new(store: ImageStore) -> Self {
        Self { store }
    }
}

/// The store's errors as the CLI shows them: verbatim, after `Error response from daemon: `.
pub fn status(error: &ImageError) -> tonic::Status {
    use tonic::Code;
    let code = match error {
        ImageError::Reference(_) | ImageError::Builtin { .. } => Code::InvalidArgument,
        ImageError::NotFound { .. } => Code::NotFound,
        ImageError::InUse { .. } | ImageError::MultipleReferences { .. } => {
            Code::FailedPrecondition
        }
        ImageError::Registry(text) if text.starts_with("unauthorized") => Code::Unauthenticated,
        ImageError::Io { .. } | ImageError::Index { .. } => Code::Internal,
        _ => Code::Unknown,
    };
    let mut status = tonic::Status::new(code, error.to_string());
    status
        .metadata_mut()
        .insert(PLAIN_KEY, tonic::metadata::MetadataValue::from_static("1"));
    status
}

fn summary(s: ImageSummary) -> pb::ImageSummary {
    pb::ImageSummary {
        id: s.id.to_string(),
        manifest_digest: s.manifest.to_string(),
        repo_tags: s.repo_tags,
        repo_digests: s.repo_digests,
        created: s.created,
        size: s.size,
        in_use: s.in_use,
    }
}

fn removed(r: Removed) -> pb::RemovedImage {
    use pb::removed_image::Action;
    pb::RemovedImage {
        action: Some(match r {
            Removed::Untagged(name) => Action::Untagged(name),
            Removed::Deleted(id) => Action::Deleted(id.to_string()),
        }),
    }
}

fn parse(text: &str) -> Result<ImageReference, tonic::Status> {
    if crate::image_store::reference::is_builtin(text) {
        return Err(status(&ImageError::Builtin {
            image: text.to_owned(),
        }));
    }
    text.parse().map_err(|e| status(&ImageError::Reference(e)))
}

/// The streamed archive as a blocking reader for the loader.
struct ChunkReader {
    chunks: mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
    current: Vec<u8>,
    offset: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.offset == self.current.len() {
            // Called on the loader's blocking thread, never on the runtime's.
            match self.chunks.blocking_recv() {
                Some(chunk) => {
                    self.current = chunk?;
                    self.offset = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.offset);
        buf[..n].copy_from_slice(&self.current[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

#[tonic::async_trait]
impl pb::images_server::Images for LocalImages {
    async fn pull_image(
        &self,
        r: tonic::Request<pb::PullImageRequest>,
    ) -> Reply<pb::PullImageResponse> {
        let request = r.into_inner();
        let reference = parse(&request.reference)?;
        let auth = request.auth.map(|a| RegistryAuth {
            username: a.username,
            password: a.password,
        });
        let image = self
            .store
            .pull(&reference, auth.as_ref())
            .await
            .map_err(|e| status(&e))?;
        let row = self
            .store
            .list()
            .into_iter()
            .find(|s| s.manifest == image.manifest_digest)
            .map(summary);
        Ok(tonic::Response::new(pb::PullImageResponse {
            reference: reference.to_string(),
            image: row,
        }))
    }

    async fn load_images(
        &self,
        r: tonic::Request<tonic::Streaming<pb::LoadImagesChunk>>,
    ) -> Reply<pb::LoadImagesResponse> {
        let mut stream = r.into_inner();
        // A few chunks in flight: the reader (a blocking thread) paces the upload.
        let (sender, chunks) = mpsc::channel(4);
        let forward = tokio::spawn(async move {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map(|c| c.data).map_err(|s| {
                    std::io::Error::other(format!("the upload stopped: {}", s.message()))
                });
                let failed = chunk.is_err();
                if sender.send(chunk).await.is_err() || failed {
                    break;
                }
            }
        });
        let reader = ChunkReader {
            chunks,
            current: Vec::new(),
            offset: 0,
        };
        let result = self.store.load(reader).await;
        forward.abort();
        let loaded = result.map_err(|e| status(&e))?;
        Ok(tonic::Response::new(pb::LoadImagesResponse {
            images: loaded
                .into_iter()
                .map(|l| pb::LoadedImage {
                    id: l.record.config.to_string(),
                    repo_tags: l.tags,
                })
                .collect(),
        }))
    }

    async fn list_images(
        &self,
        _: tonic::Request<pb::ListImagesRequest>,
    ) -> Reply<pb::ListImagesResponse> {
        Ok(tonic::Response::new(pb::ListImagesResponse {
            images: self.store.list().into_iter().map(summary).collect(),
        }))
    }

    async fn inspect_image(
        &self,
        r: tonic::Request<pb::InspectImageRequest>,
    ) -> Reply<pb::ImageDetails> {
        let query = r.into_inner().image;
        let (row, config) = self.store.inspect(&query).map_err(|e| status(&e))?;
        let run = config.config().clone().unwrap_or_default();
        let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
        Ok(tonic::Response::new(pb::ImageDetails {
            summary: Some(summary(row)),
            architecture: config.architecture().to_string(),
            os: config.os().to_string(),
            author: config.author().clone().unwrap_or_default(),
            config: Some(pb::ImageConfig {
                user: run.user().clone().unwrap_or_default(),
                exposed_ports: list(run.exposed_ports()),
                env: list(run.env()),
                entrypoint: list(run.entrypoint()),
                cmd: list(run.cmd()),
                volumes: list(run.volumes()),
                working_dir: run.working_dir().clone().unwrap_or_default(),
                labels: run
                    .labels()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                stop_signal: run.stop_signal().clone().unwrap_or_default(),
            }),
            layers: config.rootfs().diff_ids().clone(),
        }))
    }

    async fn remove_image(
        &self,
        r: tonic::Request<pb::RemoveImageRequest>,
    ) -> Reply<pb::RemoveImageResponse> {
        let query = r.into_inner().image;
        let result = self.store.remove(&query).await.map_err(|e| status(&e))?;
        Ok(tonic::Response::new(pb::RemoveImageResponse {
            removed: result.into_iter().map(removed).collect(),
        }))
    }

    async fn prune_images(
        &self,
        r: tonic::Request<pb::PruneImagesRequest>,
    ) -> Reply<pb::PruneImagesResponse> {
        let all = r.into_inner().all;
        let (result, reclaimed) = self.store.prune(all).await.map_err(|e| status(&e))?;
        Ok(tonic::Response::new(pb::PruneImagesResponse {
            removed: result.into_iter().map(removed).collect(),
            space_reclaimed: reclaimed,
        }))
    }
}

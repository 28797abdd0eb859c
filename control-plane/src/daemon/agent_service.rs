//! The `Agent` gRPC service every node serves on its node port: the output of its tasks, for
//! managers (a manager certificate of this swarm) merging `service logs`.
//!
//! A task's log is the executor's file (`<data-dir>/tasks/<task-id>/output.log`); a task
//! this agent still has is read through the executor, so `follow` wakes on new output and
//! ends when the task does. The executor removes the file with the task.

use std::path::PathBuf;
use std::sync::{Arc, Weak};

use tokio::sync::mpsc;

use super::SwarmNode;
use crate::api::{ApiError, convert, pb};
use crate::executor::{LOG_FILE, LogEntry, LogOptions, LogReader, Stream};
use crate::store::objects::Timestamp;
use crate::transport::PeerInfo;

/// Lines buffered towards a slow caller.
const BUFFER: usize = 256;

#[derive(Debug, Clone)]
pub struct AgentService {
    node: Weak<SwarmNode>,
}

impl AgentService {
    pub fn new(node: &Arc<SwarmNode>) -> Self {
        Self {
            node: Arc::downgrade(node),
        }
    }
}

fn line_of(task_id: &str, entry: LogEntry) -> pb::LogLine {
    let mut line = entry.line.into_bytes();
    if !entry.partial {
        line.push(b'\n');
    }
    pb::LogLine {
        task_id: task_id.to_owned(),
        stderr: entry.stream == Stream::Stderr,
        timestamp: Some(convert::timestamp(Timestamp::from_system_time(entry.time))),
        line,
        ..pb::LogLine::default()
    }
}

#[tonic::async_trait]
impl pb::agent_server::Agent for AgentService {
    type TaskLogsStream = crate::api::ReplyStream<pb::LogLine>;

    async fn task_logs(
        &self,
        request: tonic::Request<pb::TaskLogsRequest>,
    ) -> Result<tonic::Response<Self::TaskLogsStream>, tonic::Status> {
        let node = self.node.upgrade().ok_or(ApiError::NotInSwarm)?;
        let active = node.active().ok_or(ApiError::NotInSwarm)?;
        let certs = PeerInfo::of(&request).and_then(PeerInfo::certs);
        let caller =
            crate::pki::authorize(certs, &active.file.cluster_id, crate::pki::Role::Manager)
                .map_err(ApiError::from)?;
        let agent = node.agent().await.ok_or(ApiError::NotInSwarm)?;
        // A worker has no store: the removed nodes come with its session's answers.
        crate::pki::refuse_removed(&caller, |id| agent.gossip_auth.is_removed(id))
            .map_err(ApiError::from)?;
        let request = request.into_inner();
        let options = LogOptions {
            follow: request.follow,
            tail: (request.tail > 0).then(|| usize::try_from(request.tail).unwrap_or(usize::MAX)),
        };
        let prepared = agent.prepared.list();
        let mut readers = Vec::new();
        for task_id in &request.task_ids {
            crate::executor::spec::validate_task_id(task_id)
                .map_err(|e| ApiError::Invalid(e.to_string()))?;
            let reader = match prepared.iter().find(|p| p.task.task_id == *task_id) {
                Some(record) => agent.executor.logs(&record.task, options).await.ok(),
                None => {
                    let path: PathBuf = node
                        .config
                        .data_dir
                        .join("tasks")
                        .join(task_id)
                        .join(LOG_FILE);
                    LogReader::open(&path, options, None).await.ok()
                }
            };
            if let Some(reader) = reader {
                readers.push((task_id.clone(), reader));
            }
        }
        let (sender, receiver) = mpsc::channel(BUFFER);
        for (task_id, mut reader) in readers {
            let sender = sender.clone();
            tokio::spawn(async move {
                loop {
                    match reader.next_entry().await {
                        Ok(Some(entry)) => {
                            if sender.send(Ok(line_of(&task_id, entry))).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => return,
                        Err(err) => {
                            let _ = sender
                                .send(Err(tonic::Status::internal(err.to_string())))
                                .await;
                            return;
                        }
                    }
                }
            });
        }
        Ok(tonic::Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}

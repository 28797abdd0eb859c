//! `ServiceLogs`: the output of a service's tasks (or of one task), fetched from every node
//! that ran them (`Agent.TaskLogs` over mTLS) and merged into one stream.
//!
//! Answered by whichever manager the caller reached, not forwarded to the leader: it only
//! reads which tasks ran where (a replicated store is at most a moment behind), and a
//! `--follow` stream can last for hours, which should not pin the leader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use rustls::ClientConfig;

use crate::api::{ApiError, ReplyStream, pb};
use crate::manager::Manager;
use crate::pki;
use crate::store::objects::{Node, Service, Task};
use crate::store::{LookupError, ReadView, StoreError};
use crate::transport::mtls_channel;

/// The node port, for nodes that registered no agent address.
pub const NODE_PORT: u16 = 2377;
/// Bounds a log fetch without `--follow`.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// One node to ask, and for which tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSource {
    pub node_id: String,
    pub node_name: String,
    /// Where the node serves `Agent`; empty if it is not known.
    pub addr: String,
    pub tasks: Vec<Task>,
}

/// Where a node serves `Agent.TaskLogs`: what it registered, else its session address on the
/// node port.
pub fn agent_addr(node: &Node) -> String {
    node.status
        .agent_addr
        .or_else(|| {
            node.status
                .addr
                .map(|addr| std::net::SocketAddr::new(addr, NODE_PORT))
        })
        .map(|addr| addr.to_string())
        .unwrap_or_default()
}

/// The service's tasks (or the one task) `target` names, grouped by the node they ran on.
/// Tasks never assigned to a node have no output and are left out.
pub fn sources_in(
    view: &impl ReadView,
    target: &str,
) -> Result<(String, Vec<LogSource>), ApiError> {
    let (service, tasks) = match view.lookup::<Service>(target) {
        Ok(service) => {
            let tasks = view.find::<Task>(|t| t.service_id == service.id)?;
            (service, tasks)
        }
        Err(StoreError::Lookup(LookupError::NotFound { .. })) => {
            let task = view.lookup::<Task>(target).map_err(|err| match err {
                StoreError::Lookup(LookupError::NotFound { .. }) => ApiError::NotFound {
                    kind: "task or service",
                    query: target.to_owned(),
                },
                other => other.into(),
            })?;
            let service = view.get::<Service>(&task.service_id)?.unwrap_or_default();
            (service, vec![task])
        }
        Err(other) => return Err(other.into()),
    };
    let mut by_node: BTreeMap<String, Vec<Task>> = BTreeMap::new();
    for task in tasks {
        if let Some(node) = task.node_id.clone() {
            by_node.entry(node).or_default().push(task);
        }
    }
    let mut sources = Vec::new();
    for (node_id, tasks) in by_node {
        let node = view.get::<Node>(&node_id)?;
        sources.push(LogSource {
            node_name: node
                .as_ref()
                .map_or(node_id.clone(), |n| n.display_name().to_owned()),
            addr: node.as_ref().map(agent_addr).unwrap_or_default(),
            node_id,
            tasks,
        });
    }
    Ok((service.spec.annotations.name, sources))
}

/// The line a node that could not be asked contributes instead of its tasks' output.
pub fn unreachable_line(source: &LogSource, reason: &str) -> pb::LogLine {
    pb::LogLine {
        node_name: source.node_name.clone(),
        stderr: true,
        line: format!(
            "error from node {} ({}): cannot fetch the logs of {} task(s): {reason}\n",
            source.node_name,
            if source.addr.is_empty() {
                "no address known"
            } else {
                &source.addr
            },
            source.tasks.len()
        )
        .into_bytes(),
        ..Default::default()
    }
}

/// Fills in what the node does not know: the service name, slot and node name.
fn annotate(mut line: pb::LogLine, service_name: &str, source: &LogSource) -> pb::LogLine {
    line.service_name = service_name.to_owned();
    line.node_name = source.node_name.clone();
    if let Some(task) = source.tasks.iter().find(|t| t.id == line.task_id) {
        line.slot = task.slot;
    }
    line
}

/// One node's output as a stream; never fails: a node that cannot be reached (or breaks off)
/// yields one error line.
fn node_stream(
    tls: Arc<ClientConfig>,
    service_name: String,
    source: LogSource,
    request: &pb::ServiceLogsRequest,
) -> ReplyStream<pb::LogLine> {
    let logs_request = pb::TaskLogsRequest {
        task_ids: source.tasks.iter().map(|t| t.id.clone()).collect(),
        follow: request.follow,
        tail: request.tail,
        timestamps: request.timestamps,
    };
    let follow = request.follow;
    let connect = async move {
        if source.addr.is_empty() {
            let line = unreachable_line(&source, "the node registered no address");
            return stream::iter([Ok(line)]).boxed();
        }
        let channel = pki::node_server_name(&source.node_id)
            .map_err(|e| e.to_string())
            .and_then(|name| mtls_channel(&source.addr, tls, name).map_err(|e| e.to_string()));
        let channel = match channel {
            Ok(channel) => channel,
            Err(reason) => return stream::iter([Ok(unreachable_line(&source, &reason))]).boxed(),
        };
        let mut call = tonic::Request::new(logs_request);
        if !follow {
            call.set_timeout(FETCH_TIMEOUT);
        }
        match pb::agent_client::AgentClient::new(channel)
            .task_logs(call)
            .await
        {
            Ok(response) => {
                let source = Arc::new(source);
                response
                    .into_inner()
                    .scan(false, move |failed, item| {
                        let out = match item {
                            _ if *failed => None,
                            Ok(line) => Some(Ok(annotate(line, &service_name, &source))),
                            Err(status) => {
                                *failed = true;
                                Some(Ok(unreachable_line(&source, status.message())))
                            }
                        };
                        futures::future::ready(out)
                    })
                    .boxed()
            }
            Err(status) => stream::iter([Ok(unreachable_line(&source, status.message()))]).boxed(),
        }
    };
    stream::once(connect).flatten().boxed()
}

/// The merged output of `sources`, fetched with the client certificate in `tls`.
pub fn merge(
    tls: Arc<ClientConfig>,
    service_name: &str,
    sources: Vec<LogSource>,
    request: &pb::ServiceLogsRequest,
) -> ReplyStream<pb::LogLine> {
    let streams: Vec<_> = sources
        .into_iter()
        .map(|source| node_stream(tls.clone(), service_name.to_owned(), source, request))
        .collect();
    stream::select_all(streams).boxed()
}

pub async fn stream(
    manager: &Manager,
    request: pb::ServiceLogsRequest,
) -> Result<ReplyStream<pb::LogLine>, ApiError> {
    let (service_name, sources) = manager.store.view(|tx| sources_in(tx, &request.target))?;
    Ok(merge(manager.peers.tls(), &service_name, sources, &request))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::controlapi::service_spec::tests::spec;
    use crate::manager::controlapi::services::create_in;
    use crate::store::new_id;
    use crate::store::objects::NodeDescription;
    use crate::store::test_support::single_manager;

    /// An `Agent` that answers one line per task asked for.
    struct FakeAgent;

    #[tonic::async_trait]
    impl pb::agent_server::Agent for FakeAgent {
        type TaskLogsStream = ReplyStream<pb::LogLine>;

        async fn task_logs(
            &self,
            request: tonic::Request<pb::TaskLogsRequest>,
        ) -> Result<tonic::Response<Self::TaskLogsStream>, tonic::Status> {
            let lines: Vec<_> = request
                .into_inner()
                .task_ids
                .into_iter()
                .map(|id| {
                    Ok(pb::LogLine {
                        line: format!("hello from {id}\n").into_bytes(),
                        task_id: id,
                        ..Default::default()
                    })
                })
                .collect();
            Ok(tonic::Response::new(stream::iter(lines).boxed()))
        }
    }

    #[tokio::test]
    async fn logs_are_fetched_over_mtls_and_merged_and_a_dead_node_is_one_line() {
        use crate::pki::test_support::TestCluster;
        use crate::pki::{ClientAuth, Role, client_config, server_config};
        use crate::transport::{TlsSlot, tls_incoming};

        let now = std::time::SystemTime::now();
        let cluster = TestCluster::new("clusterA", now);
        let manager = cluster.node("manager1", Role::Manager, now);
        let worker = cluster.node("worker1", Role::Worker, now);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let slot = TlsSlot::new();
        slot.set(Some(Arc::new(
            server_config(&worker, ClientAuth::Required).unwrap(),
        )));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let incoming = tls_incoming(listener, slot, stopped);
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(pb::agent_server::AgentServer::new(FakeAgent))
                .serve_with_incoming(incoming),
        );

        let task = |id: &str, slot| Task {
            id: id.into(),
            slot,
            ..Task::default()
        };
        let sources = vec![
            LogSource {
                node_id: "worker1".into(),
                node_name: "node-1".into(),
                addr,
                tasks: vec![task("t1", 1), task("t2", 2)],
            },
            LogSource {
                node_id: "worker2".into(),
                node_name: "node-2".into(),
                // Nothing listens on port 1.
                addr: "127.0.0.1:1".into(),
                tasks: vec![task("t3", 3)],
            },
        ];
        let tls = Arc::new(client_config(&manager).unwrap());
        let request = pb::ServiceLogsRequest::default();
        let lines: Vec<pb::LogLine> = tokio::time::timeout(
            Duration::from_secs(30),
            merge(tls, "web", sources, &request)
                .map(Result::unwrap)
                .collect(),
        )
        .await
        .unwrap();
        let _ = stop.send(true);
        server.abort();

        let mut texts: Vec<String> = lines
            .iter()
            .map(|l| {
                format!(
                    "{}.{}.{}@{}: {}",
                    l.service_name,
                    l.slot,
                    l.task_id,
                    l.node_name,
                    String::from_utf8_lossy(&l.line).trim_end()
                )
            })
            .collect();
        texts.sort();
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert!(
            texts[0].starts_with(".0.@node-2: error from node node-2 (127.0.0.1:1): cannot fetch"),
            "{texts:?}"
        );
        assert_eq!(texts[1], "web.1.t1@node-1: hello from t1");
        assert_eq!(texts[2], "web.2.t2@node-1: hello from t2");
    }

    #[test]
    fn agent_address_falls_back_to_the_node_port() {
        let mut node = Node::default();
        node.status.addr = Some("10.0.0.2".parse().unwrap());
        assert_eq!(agent_addr(&node), "10.0.0.2:2377");
        node.status.addr = Some("fd00::2".parse().unwrap());
        assert_eq!(agent_addr(&node), "[fd00::2]:2377");
        node.status.agent_addr = Some("10.0.0.9:2377".parse().unwrap());
        assert_eq!(agent_addr(&node), "10.0.0.9:2377");
    }

    #[tokio::test]
    async fn targets_resolve_to_tasks_grouped_by_node() {
        let dir = tempfile::tempdir().unwrap();
        let store = single_manager(dir.path()).await;
        let web = store
            .update(|tx| create_in(tx, &spec("web", "x")))
            .await
            .unwrap();
        let mut node = Node {
            id: new_id(),
            description: Some(NodeDescription {
                hostname: "node-1".into(),
                ..Default::default()
            }),
            ..Node::default()
        };
        node.status.addr = Some("10.0.0.1".parse().unwrap());
        let task = |slot, node: Option<&str>| Task {
            id: new_id(),
            service_id: web.clone(),
            slot,
            node_id: node.map(str::to_owned),
            ..Task::default()
        };
        let tasks = [
            task(1, Some(&node.id)),
            task(2, Some(&node.id)),
            task(3, None),
        ];
        store
            .update(|tx| {
                tx.create(node.clone())?;
                for t in &tasks {
                    tx.create(t.clone())?;
                }
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();

        let (name, sources) = store.view(|tx| sources_in(tx, "web")).unwrap();
        assert_eq!(name, "web");
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].node_name, "node-1");
        assert_eq!(sources[0].addr, "10.0.0.1:2377");
        assert_eq!(sources[0].tasks.len(), 2);

        let (name, sources) = store.view(|tx| sources_in(tx, &tasks[1].id)).unwrap();
        assert_eq!(name, "web");
        assert_eq!(sources[0].tasks.len(), 1);
        assert_eq!(sources[0].tasks[0].id, tasks[1].id);

        let err = store.view(|tx| sources_in(tx, "nope")).unwrap_err();
        assert_eq!(err.to_string(), "task or service nope not found");

        let line = annotate(
            pb::LogLine {
                task_id: tasks[1].id.clone(),
                ..Default::default()
            },
            "web",
            &sources[0],
        );
        assert_eq!((line.slot, line.node_name.as_str()), (2, "node-1"));
        let err = unreachable_line(&sources[0], "connection refused");
        assert!(err.stderr && err.task_id.is_empty());
        assert!(
            String::from_utf8_lossy(&err.line)
                .starts_with("error from node node-1 (10.0.0.1:2377): cannot fetch")
        );
    }
}

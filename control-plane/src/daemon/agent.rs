//! The node's agent as the daemon runs it: the executor, the worker following the
//! assignment stream, the node's mesh (data plane) and gossip. Started when the node joins
//! (or resumes) a swarm; it outlives role changes; stopped when the node leaves or the daemon
//! stops (docs/agent.md).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::DaemonConfig;
use super::node_file::NodeFile;
use crate::agent::assignment::Assignment;
use crate::agent::mesh::{MeshAttacher, MeshError, NodeMesh, find_underlay};
use crate::agent::status::StatusQueue;
use crate::agent::task_runner::PreparedStore;
use crate::agent::worker::{MeshSink, NoExecutor, Worker};
use crate::executor::resolv_conf::ResolvConf;
use crate::executor::{
    Executor, ExecutorConfig, NamespaceExecutor, NetworkAttacher, NoDataplane, NoNetworks,
    OciRuntime,
};
use crate::gossip::{
    DEFAULT_GOSSIP_PORT, DownReason, Gossip, GossipAuth, GossipConfig, Member, MemberStatus,
    MembershipEvent,
};
use crate::image_store::ImageStore;
use crate::manager::dispatcher::{Suspects, SuspicionKind};

/// `<data-dir>/agent/prepared/<task-id>.json`: what `prepare` made of each task.
pub const PREPARED_DIR: &str = "agent/prepared";

/// The default BPF pin directory of a node.
pub fn default_pin_dir(node_id: &str) -> PathBuf {
    hive_dataplane::node_pins::node_pin_dir(node_id)
}

/// What became of the node's data plane when its agent started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataplaneState {
    Loaded,
    /// `--no-dataplane`: tasks get only their loopback, by the operator's choice.
    Disabled,
    /// It should have loaded and did not. The node says so (`hive info`, `hive node
    /// inspect`) and refuses tasks that need networks instead of running them cut off.
    Failed {
        cause: String,
    },
}

impl DataplaneState {
    /// The cause, if the data plane failed to load.
    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Failed { cause } => Some(cause),
            Self::Loaded | Self::Disabled => None,
        }
    }

    /// The executor's attacher for a node in this state (`mesh` is the loaded data plane).
    fn attacher(&self, mesh: Option<&Arc<NodeMesh>>) -> Arc<dyn NetworkAttacher> {
        match (self, mesh) {
            (Self::Failed { cause }, _) => Arc::new(NoDataplane {
                cause: cause.clone(),
            }),
            (_, Some(mesh)) => Arc::new(MeshAttacher(mesh.clone())),
            (_, None) => Arc::new(NoNetworks),
        }
    }
}

#[derive(Debug)]
pub struct NodeAgent {
    pub node_id: String,
    /// MAC of the underlay NIC (empty without a data plane).
    pub underlay_mac: String,
    pub assignments: watch::Sender<Option<Arc<Assignment>>>,
    pub statuses: StatusQueue,
    /// Mesh versions applied here, reported by the session (docs/lifecycle.md).
    pub mesh_link: Arc<crate::agent::mesh_link::MeshLink>,
    pub executor: Arc<dyn Executor>,
    pub prepared: PreparedStore,
    pub mesh: Option<Arc<NodeMesh>>,
    pub dataplane: DataplaneState,
    namespace_executor: Option<Arc<NamespaceExecutor>>,
    keep_tasks: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    gossip: tokio::sync::Mutex<Option<Gossip>>,
    /// The gossip keyring and the swarm's removed nodes, as the agent session last heard.
    pub gossip_auth: GossipAuth,
}

impl NodeAgent {
    /// Starts the agent of the node `file` describes; its gossip's verdicts go to `suspects`.
    /// Nothing here fails the daemon: a data plane that cannot open leaves the node without a
    /// mesh (logged, reported, and tasks that need networks refused), an executor that cannot start rejects every task with the reason.
    pub async fn start(
        config: &DaemonConfig,
        file: &NodeFile,
        suspects: Arc<Suspects>,
        images: ImageStore,
    ) -> Arc<Self> {
        let (stop, stopping) = watch::channel(false);
        let advertise: Option<SocketAddr> = file.advertise_addr.parse().ok();
        let mut underlay_mac = String::new();
        let (mesh, dataplane) = if config.no_dataplane {
            (None, DataplaneState::Disabled)
        } else {
            let opened = match advertise {
                Some(addr) => open_mesh(config, file, addr.ip(), stopping.clone()).await,
                None => Err(DataplaneLoadError::AdvertiseAddr {
                    addr: file.advertise_addr.clone(),
                }),
            };
            match opened {
                Ok((mesh, mac)) => {
                    underlay_mac = mac;
                    (Some(mesh), DataplaneState::Loaded)
                }
                Err(err) => {
                    tracing::error!(%err,
                        "agent: the data plane failed to load; tasks that need networks will be refused");
                    (
                        None,
                        DataplaneState::Failed {
                            cause: err.to_string(),
                        },
                    )
                }
            }
        };
        let attacher = dataplane.attacher(mesh.as_ref());
        let namespace_executor = ExecutorConfig::for_daemon(&file.node_id, &config.data_dir)
            .map(|mut c| {
                if let Some(dir) = &config.task_run_dir {
                    c.run_dir.clone_from(dir);
                }
                if let Some(parent) = &config.cgroup_parent {
                    c.cgroup_parent.clone_from(parent);
                }
                c
            })
            .and_then(|c| {
                let run_dir = c.run_dir.clone();
                let mut oci =
                    OciRuntime::for_daemon(&file.node_id, &config.data_dir, Arc::new(images));
                // Lab nodes share a host: each keeps its runc state under its own run dir.
                if config.task_run_dir.is_some() {
                    oci.runc.root = run_dir.join("runc");
                }
                NamespaceExecutor::new(c, attacher)?.with_oci(oci)
            })
            .map(Arc::new);
        if let (Some(mesh), Ok(executor)) = (&mesh, &namespace_executor) {
            redirect_resolvers(mesh, executor).await;
        }
        let (executor, namespace_executor): (Arc<dyn Executor>, _) = match namespace_executor {
            Ok(e) => (e.clone(), Some(e)),
            Err(err) => {
                tracing::warn!(%err, "agent: this node cannot run tasks; they will be rejected");
                (
                    Arc::new(NoExecutor {
                        reason: format!("this node cannot run tasks: {err}"),
                    }),
                    None,
                )
            }
        };
        let statuses = StatusQueue::default();
        let (assignments, follow) = watch::channel(None);
        let prepared = PreparedStore {
            dir: config.data_dir.join(PREPARED_DIR),
        };
        let keep_tasks = Arc::new(AtomicBool::new(false));
        let mesh_link = Arc::new(crate::agent::mesh_link::MeshLink::default());
        let worker = Worker {
            mesh_link: mesh_link.clone(),
            executor: executor.clone(),
            statuses: statuses.clone(),
            prepared: prepared.clone(),
            mesh: mesh.clone().map(|m| m as Arc<dyn MeshSink>),
            keep_tasks: keep_tasks.clone(),
        };
        let mut tasks = vec![tokio::spawn(worker.run(follow, stopping.clone()))];
        let gossip_auth = GossipAuth::new(file.node_id.clone());
        let gossip = match advertise {
            Some(addr) => start_gossip(file, addr.ip(), &gossip_auth).await,
            None => None,
        };
        if let Some(gossip) = &gossip {
            // Subscribe first, then read the view: an event already in the view is harmless.
            let watch = gossip.watch();
            for member in gossip.members() {
                judge(&member, None, mesh.as_deref(), &suspects);
            }
            tasks.push(tokio::spawn(follow_gossip(
                watch,
                mesh.clone(),
                suspects,
                stopping,
            )));
        }
        Arc::new(Self {
            node_id: file.node_id.clone(),
            underlay_mac,
            assignments,
            statuses,
            mesh_link,
            executor,
            prepared,
            mesh,
            dataplane,
            namespace_executor,
            keep_tasks,
            stop,
            tasks: std::sync::Mutex::new(tasks),
            gossip: tokio::sync::Mutex::new(gossip),
            gossip_auth,
        })
    }

    /// The gossip members as this node sees them; `None` without gossip, or while the
    /// handle is busy (start, stop).
    pub fn gossip_members(&self) -> Option<Vec<crate::gossip::Member>> {
        self.gossip
            .try_lock()
            .ok()
            .and_then(|g| g.as_ref().map(Gossip::members))
    }

    /// Why the node's data plane failed to load, if it did.
    pub fn dataplane_error(&self) -> Option<String> {
        self.dataplane.error().map(str::to_owned)
    }

    /// Stops the agent. `leaving` the swarm: every task is shut down and removed, the data
    /// plane detached and its pins removed. Otherwise (a daemon restart): tasks keep running
    /// and the data plane stays pinned, for the next daemon to adopt.
    pub async fn stop(&self, leaving: bool) {
        self.keep_tasks.store(!leaving, Ordering::Release);
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        if let Some(gossip) = self.gossip.lock().await.take() {
            let result = if leaving {
                gossip.leave().await
            } else {
                gossip.shutdown().await
            };
            if let Err(err) = result {
                tracing::warn!(%err, "agent: stopping gossip");
            }
        }
        if let Some(executor) = &self.namespace_executor {
            executor.release().await;
        }
        if let Some(mesh) = &self.mesh {
            mesh.close(leaving).await;
        }
    }
}

/// Port 53 of 127.0.0.11 stays the tasks' own: their queries there reach the agent's
/// resolver on a port of its own. Without cgroup v2 the resolver takes port 53 itself.
async fn redirect_resolvers(mesh: &NodeMesh, executor: &NamespaceExecutor) {
    let Some(cgroup) = executor.cgroup_v2_parent() else {
        tracing::warn!(
            "agent: no cgroup v2 on this node: task resolvers listen on 127.0.0.11:53 itself"
        );
        return;
    };
    if let Err(err) = mesh.redirect_resolvers(&cgroup).await {
        tracing::warn!(%err, "agent: task resolvers listen on 127.0.0.11:53 itself");
    }
}

/// Why the node's data plane did not load.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneLoadError {
    #[error("the advertise address {addr:?} is not an IP address and port")]
    AdvertiseAddr { addr: String },
    #[error(transparent)]
    Mesh(#[from] MeshError),
}

async fn open_mesh(
    config: &DaemonConfig,
    file: &NodeFile,
    addr: IpAddr,
    stop: watch::Receiver<bool>,
) -> Result<(Arc<NodeMesh>, String), DataplaneLoadError> {
    let underlay = find_underlay(addr).await?;
    let pin_dir = config
        .bpf_pin_dir
        .clone()
        .unwrap_or_else(|| default_pin_dir(&file.node_id));
    let upstreams = config
        .dns_upstreams
        .clone()
        .unwrap_or_else(|| ResolvConf::of_host().nameservers);
    // The node's own ports, which its data plane leaves to the kernel (issue 14).
    let control_ports = crate::manager::controlapi::reserved_ports::node_control_ports(
        config.listen_addr.port(),
        &file.advertise_addr,
        config.metrics_addr.map(|a| a.port()),
    )
    .into_iter()
    .map(|p| hive_dataplane::mesh::state::ControlPlanePort {
        protocol: p.protocol,
        port: p.port,
    })
    .collect();
    let mesh = NodeMesh::open(
        &file.node_id,
        &underlay,
        control_ports,
        &pin_dir,
        upstreams,
        stop,
    )
    .await?;
    tracing::info!(iface = %underlay.iface, mac = %underlay.mac, mtu = underlay.mtu,
        pins = %pin_dir.display(), "agent: data plane open");
    Ok((mesh, underlay.mac.to_string()))
}

/// Gossip on UDP 7946 of the advertise address, seeded with the managers (same IPs).
/// Every datagram is authenticated with the keyring the session fills (docs/security.md).
async fn start_gossip(file: &NodeFile, addr: IpAddr, auth: &GossipAuth) -> Option<Gossip> {
    let mut config = GossipConfig::new(
        file.node_id.clone(),
        file.cluster_id.clone(),
        SocketAddr::new(addr, DEFAULT_GOSSIP_PORT),
    );
    config.auth = Some(auth.clone());
    config.seeds = file
        .managers
        .iter()
        .chain(std::iter::once(&file.advertise_addr))
        .filter_map(|m| m.parse::<SocketAddr>().ok())
        .map(|m| SocketAddr::new(m.ip(), DEFAULT_GOSSIP_PORT))
        .collect();
    config.seeds.sort();
    config.seeds.dedup();
    // The conventional keys of docs/gossip.md.
    config
        .initial_state
        .insert("node.addr".to_owned(), addr.to_string());
    config.initial_state.insert(
        "node.role".to_owned(),
        match file.role {
            crate::pki::Role::Manager => "manager",
            crate::pki::Role::Worker => "worker",
        }
        .to_owned(),
    );
    match Gossip::start(config).await {
        Ok(gossip) => Some(gossip),
        Err(err) => {
            tracing::error!(%err, "agent: gossip did not start; dead nodes are noticed by heartbeats only");
            None
        }
    }
}

/// Gossip's verdicts: into this node's mesh at once (new flows avoid a lost node's tasks),
/// and to the node's [`Suspects`], which the leader's dispatcher weighs against the node's
/// session before marking it down (docs/control-plane.md, "Node liveness").
async fn follow_gossip(
    mut watch: crate::gossip::MembershipWatch,
    mesh: Option<Arc<NodeMesh>>,
    suspects: Arc<Suspects>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            event = watch.recv() => event,
            _ = stop.wait_for(|s| *s) => return,
        };
        let event = match event {
            Ok(event) => event,
            Err(crate::gossip::WatchError::Lagged { .. }) => continue,
            Err(_) => return,
        };
        let reason = match &event {
            MembershipEvent::NodeDown { reason, .. } => Some(*reason),
            MembershipEvent::NodeUp { .. } | MembershipEvent::NodeUpdated { .. } => None,
        };
        judge(event.member(), reason, mesh.as_deref(), &suspects);
    }
}

/// Applies what gossip says of one member: its status, and for a change, why it went down.
fn judge(
    member: &Member,
    reason: Option<DownReason>,
    mesh: Option<&NodeMesh>,
    suspects: &Suspects,
) {
    if member.local {
        return;
    }
    let node = &member.node_id;
    match (member.status, reason) {
        // A newer incarnation replaced it: the `NodeUp` that follows finds it again.
        (_, Some(DownReason::Restarted)) => {
            tracing::info!(%node, "gossip: node restarted");
            if let Some(mesh) = mesh {
                mesh.set_dead(node, true);
            }
        }
        (MemberStatus::Up, _) => {
            tracing::info!(%node, "gossip: node up");
            if let Some(mesh) = mesh {
                mesh.set_dead(node, false);
            }
            suspects.found(node);
        }
        (MemberStatus::Down | MemberStatus::Left, _) => {
            tracing::info!(%node, status = ?member.status, "gossip: node down");
            if let Some(mesh) = mesh {
                mesh.set_dead(node, true);
            }
            let kind = if member.status == MemberStatus::Left {
                SuspicionKind::Left
            } else {
                SuspicionKind::Failed
            };
            suspects.lost(node, kind);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_failed_data_plane_is_an_error_and_refuses_networks() {
        let failed = DataplaneState::Failed {
            cause: "netlink: permission denied".into(),
        };
        assert_eq!(failed.error(), Some("netlink: permission denied"));
        assert!(format!("{:?}", failed.attacher(None)).starts_with("NoDataplane"));

        // Turned off by the operator: documented, not an error; tasks get their loopback.
        assert_eq!(DataplaneState::Disabled.error(), None);
        assert!(format!("{:?}", DataplaneState::Disabled.attacher(None)).starts_with("NoNetworks"));
        assert_eq!(DataplaneState::Loaded.error(), None);
    }
}

//! `hive daemon`: one node of a swarm. `main` loads and checks the configuration
//! ([`DaemonConfig::validate`]), binds ([`Listeners::bind`]), then calls [`run`] until a
//! shutdown signal; tests call `run` with listeners on port 0 and their own shutdown future.
//!
//! ```text
//! unix socket (0660)       ── Swarm (init/join/leave/info), Control ──▶ SwarmNode ──▶ leader
//! node port (mTLS)         ── Raft, Ca, Dispatcher, Control ─────────▶ Manager (if any)
//! ```

pub mod agent;
mod agent_service;
pub mod config;
pub mod data_dir;
pub mod identity;
pub mod images;
pub mod local_api;
pub mod lock;
mod membership;
pub mod metrics;
pub mod node;
pub mod node_file;
pub mod pin;
/// Private, atomic file writes (kept with the encryption crate, its lowest user).
pub use hive_encryption::private_file;
mod probe_service;
pub mod recover;
pub mod renew;
pub mod roles;
pub mod swarm;
pub mod volumes;

use std::future::Future;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Server;

use crate::api::pb;
use crate::manager::ca::CaService;
use crate::manager::dispatcher::DispatcherService;
use crate::manager::raft_net::RaftService;
use crate::manager::raft_net::service::MAX_MESSAGE;
use crate::manager::{ControlService, ManagerError};
use crate::transport::{LocalSocket, TransportError, tls_incoming, unix_incoming};
use agent_service::AgentService;

pub use config::DaemonConfig;
pub use node::SwarmNode;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(
        "cannot listen on {addr} for other nodes: {source}; is another hive daemon running, or choose another --listen-addr"
    )]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    NodeFile(#[from] node_file::NodeFileError),
    #[error(transparent)]
    DataDir(#[from] data_dir::DataDirError),
    #[error("this node's certificates: {0}")]
    Certificates(#[from] crate::pki::DiskError),
    #[error(transparent)]
    Tls(#[from] crate::pki::TlsError),
    #[error(transparent)]
    Manager(#[from] ManagerError),
    #[error(
        "this node is a manager but its swarm state has no Raft member ID; leave the swarm with `hive swarm leave --force` and join again"
    )]
    NoRaftId,
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
    #[error("this manager's store keys: {0}")]
    Keys(#[from] crate::encryption::KeyFileError),
    #[error("{}", crate::encryption::LOCKED)]
    Locked,
    #[error("sealing this manager's store with its new data key: {0}")]
    Seal(#[source] crate::store::DbError),
    #[error(transparent)]
    Images(#[from] crate::image_store::ImageError),
    #[error("the {which} server failed: {source}")]
    Serve {
        which: &'static str,
        #[source]
        source: tonic::transport::Error,
    },
}

/// The daemon's sockets, bound before anything else starts.
#[derive(Debug)]
pub struct Listeners {
    /// The local API socket.
    pub api: LocalSocket,
    /// The node port (2377).
    pub node: TcpListener,
    /// The Prometheus endpoint, if `--metrics-addr` asked for one.
    pub metrics: Option<TcpListener>,
    /// The Docker Engine API sockets (`--docker-api`).
    pub docker_api: Vec<LocalSocket>,
}

impl Listeners {
    /// Makes the data directory private first (what an earlier version left readable):
    /// once a client can connect, it never finds the store open, even for the moment
    /// between the bind and [`run`].
    pub async fn bind(config: &DaemonConfig) -> Result<Self, DaemonError> {
        data_dir::secure(&config.data_dir)?;
        let api = LocalSocket::bind(&config.socket)?;
        let node = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| DaemonError::Listen {
                addr: config.listen_addr,
                source,
            })?;
        let metrics = match config.metrics_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| DaemonError::Listen { addr, source })?,
            ),
            None => None,
        };
        let docker_api = crate::engine_api::bind(&config.docker_api)?;
        Ok(Self {
            api,
            node,
            metrics,
            docker_api,
        })
    }
}

/// Serves until `shutdown` completes, then lets in-flight requests finish for up to
/// `config.shutdown_grace` and stops the node (Raft, session) cleanly.
pub async fn run(
    config: DaemonConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let (stop, stopping) = watch::channel(false);
    let stopping_metrics = stopping.clone();
    let stopping_engine_api = stopping.clone();
    let node_addr = listeners
        .node
        .local_addr()
        .map_err(|source| DaemonError::Listen {
            addr: config.listen_addr,
            source,
        })?;
    let grace = config.shutdown_grace;
    let images = crate::image_store::ImageStore::open(
        &config.data_dir,
        crate::image_store::RegistryOptions {
            insecure: config.insecure_registries.clone(),
        },
    )?;
    let volumes = crate::volume_store::VolumeStore::for_daemon(&config.data_dir);
    let node = SwarmNode::start(config, node_addr, images.clone()).await;
    let engine_api_images = images.clone();

    let managers = node.managers.clone();
    let node_server = Server::builder()
        .add_service(
            pb::raft_server::RaftServer::new(RaftService::new(managers.clone()))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(pb::ca_server::CaServer::new(CaService::new(
            managers.clone(),
        )))
        .add_service(pb::dispatcher_server::DispatcherServer::new(
            DispatcherService::new(managers.clone()),
        ))
        .add_service(pb::control_server::ControlServer::new(ControlService::new(
            managers,
        )))
        .add_service(pb::agent_server::AgentServer::new(AgentService::new(&node)))
        .add_service(pb::underlay_probe_server::UnderlayProbeServer::new(
            probe_service::UnderlayProbeService::new(&node),
        ))
        .serve_with_incoming_shutdown(
            tls_incoming(listeners.node, node.tls.clone(), stopping.clone()),
            stopped(stopping.clone()),
        );
    let local_server = Server::builder()
        .add_service(pb::swarm_server::SwarmServer::new(
            local_api::LocalSwarm::new(node.clone()),
        ))
        .add_service(pb::control_server::ControlServer::new(
            local_api::LocalControl::new(node.clone()),
        ))
        .add_service(pb::events_server::EventsServer::new(
            local_api::LocalEvents::new(node.clone()),
        ))
        .add_service(pb::images_server::ImagesServer::new(
            images::LocalImages::new(images),
        ))
        .add_service(pb::volumes_server::VolumesServer::new(
            volumes::LocalVolumes::new(volumes),
        ))
        .serve_with_incoming_shutdown(
            unix_incoming(listeners.api, stopping.clone()),
            stopped(stopping),
        );
    if let Some(listener) = listeners.metrics {
        let registry = std::sync::Arc::new(metrics::registry(&node));
        tokio::spawn(crate::metrics::serve(
            listener,
            registry,
            stopped(stopping_metrics),
        ));
    }
    if !listeners.docker_api.is_empty() {
        tokio::spawn(crate::engine_api::serve(
            listeners.docker_api,
            node.config.socket.clone(),
            engine_api_images,
            stopping_engine_api,
        ));
    }
    let mut node_task = tokio::spawn(node_server);
    let mut local_task = tokio::spawn(local_server);
    tracing::info!(%node_addr, socket = %node.config.socket.display(), "hive daemon ready");

    let failed = tokio::select! {
        () = shutdown => None,
        result = &mut node_task => Some(("node port", result)),
        result = &mut local_task => Some(("local API", result)),
    };
    let _ = stop.send(true);
    if let Some((which, result)) = failed {
        node.shutdown().await;
        return match result {
            Ok(Err(source)) => Err(DaemonError::Serve { which, source }),
            _ => Ok(()),
        };
    }
    tracing::info!(?grace, "shutting down: draining requests");
    let drained = tokio::time::timeout(grace, async {
        let _ = (&mut node_task).await;
        let _ = (&mut local_task).await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("requests still running after the grace period; stopping anyway");
        node_task.abort();
        local_task.abort();
    }
    if tokio::time::timeout(grace, node.shutdown()).await.is_err() {
        tracing::warn!("stopping the node took longer than the grace period");
    }
    tracing::info!("hive daemon stopped");
    Ok(())
}

async fn stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

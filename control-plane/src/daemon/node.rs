//! [`SwarmNode`]: the daemon's membership state — inactive, or active with credentials, an
//! agent session and, on managers, a [`Manager`] — and the transitions between them. One
//! transition at a time (`transition` lock); readers take a snapshot ([`SwarmNode::active`]).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock, Weak};

use rustls::ClientConfig;
use tokio::sync::{Mutex, MutexGuard, Notify, mpsc, watch};

use super::agent::NodeAgent;
use super::config::DaemonConfig;
use super::identity::IdentityFiles;
use super::node_file::NodeFile;
use crate::agent::SessionEvent;
use crate::image_store::ImageStore;
use crate::manager::dispatcher::Suspects;
use crate::manager::{Manager, ManagerSlot};
use crate::pki::{self, CertSlot, NodeCredentials, TrustSlot};
use crate::transport::TlsSlot;

/// Events from the agent session waiting for the daemon.
pub(super) const EVENT_BACKLOG: usize = 16;

/// A node in a swarm.
#[derive(Debug)]
pub struct Active {
    pub file: NodeFile,
    pub creds: Arc<NodeCredentials>,
    pub client_tls: Arc<ClientConfig>,
    pub manager: Option<Arc<Manager>>,
    /// The certificate the node port and every client connection present; renewals replace
    /// it in place (`daemon::renew`).
    pub cert_slot: Arc<CertSlot>,
    /// The roots the node trusts; the session answers replace them during a root rotation.
    pub trust: Arc<TrustSlot>,
    /// Wakes the renewal loop at once: the swarm issues certificates from another root now.
    pub renew_now: Arc<Notify>,
    pub agent: Arc<NodeAgent>,
    pub(super) agent_stop: watch::Sender<bool>,
}

impl Active {
    pub fn role(&self) -> pki::Role {
        self.creds.identity().role
    }
}

#[derive(Debug)]
pub struct SwarmNode {
    /// This node, for the loops it starts.
    pub(super) this: Weak<SwarmNode>,
    pub config: DaemonConfig,
    /// Where the node port is actually bound.
    pub listen_addr: SocketAddr,
    pub tls: Arc<TlsSlot>,
    pub managers: Arc<ManagerSlot>,
    /// The certificates directory, and whether its TLS key is sealed (autolock).
    pub identity: Arc<IdentityFiles>,
    /// What the node's gossip says about the others, for whichever manager leads here.
    pub(super) suspects: Arc<Suspects>,
    pub(super) active: RwLock<Option<Arc<Active>>>,
    /// Why the node could not resume its swarm membership at start, if it could not.
    pub(super) error: RwLock<Option<String>>,
    /// The membership of a manager of an autolocked swarm that waits for `swarm unlock`.
    pub(super) locked: RwLock<Option<NodeFile>>,
    pub(super) transition: Mutex<()>,
    pub(super) events: mpsc::Sender<SessionEvent>,
    /// The node's agent (tasks and mesh). It outlives role changes, which re-activate the
    /// node; only leaving the swarm and daemon shutdown stop it.
    pub(super) agent: Mutex<Option<Arc<NodeAgent>>>,
    /// This node's images, which its containers run from.
    pub(super) images: ImageStore,
}

impl SwarmNode {
    /// This node's image store (digests are resolved from it at the door).
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// Serialises membership transitions (init, join, leave, promotion, demotion).
    pub async fn lock(&self) -> MutexGuard<'_, ()> {
        self.transition.lock().await
    }

    /// The node's membership as it is now.
    pub fn active(&self) -> Option<Arc<Active>> {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The membership waiting for `swarm unlock`, if the node is locked.
    pub fn locked_file(&self) -> Option<NodeFile> {
        self.locked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets a locked membership (`swarm leave --force` on a locked node).
    pub fn clear_locked(&self) {
        *self.locked.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn startup_error(&self) -> Option<String> {
        self.error.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The running agent of this node, started if there is none (or it was another node's).
    pub(super) async fn agent_for(&self, file: &NodeFile) -> Arc<NodeAgent> {
        let mut slot = self.agent.lock().await;
        if let Some(agent) = slot.as_ref()
            && agent.node_id == file.node_id
        {
            return agent.clone();
        }
        if let Some(old) = slot.take() {
            old.stop(true).await;
        }
        let agent = NodeAgent::start(
            &self.config,
            file,
            self.suspects.clone(),
            self.images.clone(),
        )
        .await;
        *slot = Some(agent.clone());
        agent
    }

    /// The agent, if one runs (for the Agent service).
    pub async fn agent(&self) -> Option<Arc<NodeAgent>> {
        self.agent.lock().await.clone()
    }

    /// Stops the agent: its tasks are shut down and removed, its data plane closed (and
    /// removed, when `leaving` the swarm).
    pub async fn stop_agent(&self, leaving: bool) {
        let agent = self.agent.lock().await.take();
        if let Some(agent) = agent {
            agent.stop(leaving).await;
        }
    }

    pub(super) fn save_managers(&self, managers: Vec<String>) {
        let Some(active) = self.active() else { return };
        let mut file = active.file.clone();
        if file.managers == managers {
            return;
        }
        file.managers = managers;
        if let Err(err) = file.save(&self.config.data_dir) {
            tracing::warn!(%err, "could not record the managers' addresses");
        }
    }
}

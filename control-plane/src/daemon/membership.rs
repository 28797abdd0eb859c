//! The node's swarm membership over time: resumed at start, activated (TLS on the node port,
//! the manager if the node is one, the agent's session, the renewal and autolock loops),
//! deactivated, and changed as the session reports (a new role, the managers' addresses).
//! `node` holds the state; this file moves it from one membership to the next, so that the
//! loops it starts (`lock`, `renew`, `roles`) depend on `node` and not the other way round.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock, Weak};
use std::time::SystemTime;

use tokio::sync::{Mutex, Notify, mpsc, watch};

use super::DaemonError;
use super::config::DaemonConfig;
use super::identity::IdentityFiles;
use super::node::{Active, EVENT_BACKLOG, SwarmNode};
use super::node_file::{NodeFile, RAFT_DIR};
use crate::agent::{Session, SessionEvent};
use crate::encryption::{KeyFile, StoreKeys, UnlockKey};
use crate::image_store::ImageStore;
use crate::manager::{Manager, ManagerParams, ManagerSlot};
use crate::pki::{self, CertDir, CertSlot, ClientAuth, NodeCredentials, TrustSlot};
use crate::transport::TlsSlot;

impl SwarmNode {
    /// The node as it was when the daemon last stopped: resumes the swarm membership on disk,
    /// if any. A membership that cannot be resumed leaves the node inactive, with the reason
    /// in `hive info`.
    pub async fn start(
        config: DaemonConfig,
        listen_addr: SocketAddr,
        images: ImageStore,
    ) -> Arc<Self> {
        let (events, receiver) = mpsc::channel(EVENT_BACKLOG);
        let identity = Arc::new(IdentityFiles::new(&config.data_dir));
        let node = Arc::new_cyclic(|this| Self {
            this: this.clone(),
            config,
            listen_addr,
            tls: TlsSlot::new(),
            managers: ManagerSlot::new(),
            identity,
            suspects: Arc::default(),
            active: RwLock::new(None),
            error: RwLock::new(None),
            locked: RwLock::new(None),
            transition: Mutex::new(()),
            events,
            agent: Mutex::new(None),
            images,
        });
        tokio::spawn(handle_events(Arc::downgrade(&node), receiver));
        if let Err(err) = node.resume().await {
            tracing::error!(%err, "could not resume this node's swarm membership");
            *node.error.write().unwrap_or_else(|e| e.into_inner()) = Some(err.to_string());
        }
        node
    }

    async fn resume(&self) -> Result<(), DaemonError> {
        let _guard = self.lock().await;
        let Some(file) = NodeFile::load(&self.config.data_dir)? else {
            return Ok(());
        };
        // A manager's KEK: it opens the TLS key if a change of autolock left it sealed.
        let mut kek = None;
        if file.role == pki::Role::Manager
            && let Some(keys) = KeyFile::load(&self.config.data_dir)?
        {
            if keys.is_locked() {
                tracing::warn!("{}", crate::encryption::LOCKED);
                *self.locked.write().unwrap_or_else(|e| e.into_inner()) = Some(file);
                return Ok(());
            }
            kek = Some(keys.unwrap_keys(None)?.kek);
        }
        let creds = CertDir::in_data_dir(&self.config.data_dir)
            .load_with(SystemTime::now(), kek.as_ref())?;
        self.activate(file, creds).await?;
        tracing::info!("resumed swarm membership");
        Ok(())
    }

    /// Starts serving as a member: TLS on the node port with the node's certificate, the
    /// manager if the node is one, and the agent's session. The caller holds the lock.
    pub async fn activate(
        &self,
        file: NodeFile,
        creds: NodeCredentials,
    ) -> Result<Arc<Active>, DaemonError> {
        self.activate_with_keys(file, creds, None).await
    }

    /// [`Self::activate`], with the store keys `swarm unlock` opened (and the key that opened
    /// them) rather than those on disk.
    pub async fn activate_with_keys(
        &self,
        file: NodeFile,
        creds: NodeCredentials,
        unlocked: Option<(StoreKeys, UnlockKey)>,
    ) -> Result<Arc<Active>, DaemonError> {
        let data_dir = &self.config.data_dir;
        let store_keys = if creds.identity().role == pki::Role::Manager {
            let (keys, wrapped_with) = match unlocked {
                Some((keys, key)) => (keys, Some(key)),
                None => (super::lock::store_keys(data_dir)?, None),
            };
            let keys = super::lock::install(data_dir, keys, wrapped_with.as_ref())?;
            // With autolock, the TLS key is sealed with the KEK, as SwarmKit seals it.
            let sealed_with = wrapped_with.as_ref().map(|_| keys.kek.clone());
            let epoch = self.identity.adopt(&creds, sealed_with)?;
            Some((keys, wrapped_with, epoch))
        } else {
            // Workers keep no cluster state, and their TLS key in the clear (as Docker).
            self.identity.adopt(&creds, None)?;
            KeyFile::remove(data_dir)?;
            None
        };
        let cert_slot = CertSlot::new(&creds)?;
        let trust = TrustSlot::new(vec![creds.root().clone()])?;
        let renew_now = Arc::new(Notify::new());
        let server = pki::server_config_with(
            cert_slot.clone(),
            trust.clone(),
            ClientAuth::OptionalForJoin,
        )?;
        let client_tls = Arc::new(pki::client_config_with(cert_slot.clone(), trust.clone())?);
        let manager = if creds.identity().role == pki::Role::Manager {
            let raft_id = file.raft_id.ok_or(DaemonError::NoRaftId)?;
            Some(
                Manager::open(ManagerParams {
                    dir: self.config.data_dir.join(RAFT_DIR),
                    raft_id,
                    node_id: file.node_id.clone(),
                    cluster_id: file.cluster_id.clone(),
                    addr: file.advertise_addr.clone(),
                    tls: client_tls.clone(),
                    suspects: self.suspects.clone(),
                })
                .await?,
            )
        } else {
            None
        };
        self.tls.set(Some(Arc::new(server)));
        self.managers.set(manager.clone());
        let mut managers = file.managers.clone();
        if manager.is_some() {
            // A manager's own dispatcher is the first to try: often it leads.
            managers.retain(|a| *a != file.advertise_addr);
            managers.insert(0, file.advertise_addr.clone());
        }
        let (agent_stop, stop) = watch::channel(false);
        let agent = self.agent_for(&file).await;
        let session = Session {
            tls: client_tls.clone(),
            managers,
            role: creds.identity().role,
            events: self.events.clone(),
            agent_addr: file.advertise_addr.clone(),
            underlay_mac: agent.underlay_mac.clone(),
            dataplane_error: agent.dataplane_error().unwrap_or_default(),
            control_ports: crate::manager::controlapi::reserved_ports::node_control_ports(
                self.listen_addr.port(),
                &file.advertise_addr,
                self.config.metrics_addr.map(|a| a.port()),
            ),
            assignments: agent.assignments.clone(),
            statuses: agent.statuses.clone(),
            mesh_link: agent.mesh_link.clone(),
            gossip_auth: agent.gossip_auth.clone(),
            cert_slot: cert_slot.clone(),
            trust: trust.clone(),
            renew_now: renew_now.clone(),
        };
        // Started once `active` is set below: the loop reads the node's certificate from it,
        // and ends when it finds none.
        let renew_stop = stop.clone();
        if let (Some(manager), Some((keys, wrapped_with, epoch))) = (&manager, store_keys) {
            tokio::spawn(super::lock::follow(
                manager.clone(),
                data_dir.clone(),
                super::lock::Sealed {
                    keys,
                    wrapped_with,
                    identity: self.identity.clone(),
                    epoch,
                },
                stop.clone(),
            ));
        }
        tokio::spawn(session.run(stop));
        let active = Arc::new(Active {
            file,
            creds: Arc::new(creds),
            client_tls,
            manager,
            cert_slot,
            trust,
            renew_now,
            agent,
            agent_stop,
        });
        *self.active.write().unwrap_or_else(|e| e.into_inner()) = Some(active.clone());
        tokio::spawn(super::renew::run(self.this.clone(), renew_stop));
        *self.error.write().unwrap_or_else(|e| e.into_inner()) = None;
        self.clear_locked();
        Ok(active)
    }

    /// Stops being a member (the files stay). The caller holds the lock.
    pub async fn deactivate(&self) {
        let active = self
            .active
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.managers.set(None);
        if let Some(active) = active {
            let _ = active.agent_stop.send(true);
            if let Some(manager) = &active.manager {
                manager.shutdown().await;
            }
        }
        self.tls.set(None);
    }

    /// On daemon shutdown.
    pub async fn shutdown(&self) {
        let _guard = self.lock().await;
        self.deactivate().await;
        self.stop_agent(false).await;
    }
}

/// Applies what the agent session learns, until the node is gone.
async fn handle_events(node: Weak<SwarmNode>, mut events: mpsc::Receiver<SessionEvent>) {
    while let Some(event) = events.recv().await {
        let Some(node) = node.upgrade() else { return };
        match event {
            SessionEvent::Managers(managers) => node.save_managers(managers),
            SessionEvent::RoleChange(role) => {
                if let Err(err) = super::roles::reconcile(&node, role).await {
                    tracing::warn!(%err, %role, "changing this node's role failed; will retry at the next heartbeat");
                }
            }
        }
    }
}

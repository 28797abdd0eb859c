//! The node's mesh: its [`Dataplane`], the veths of its tasks, and the loop that applies what
//! changed in the node's [`MeshState`] whenever one of its inputs changes — the leader's view
//! (every assignment), a local task's veth coming or going, or gossip declaring a node dead
//! or alive. The last one needs no leader: a dead node's backends leave this node's mesh as
//! soon as gossip says so. The state is kept up to date by a [`MeshBuilder`], which looks only
//! at what the stream's journal says changed and hands the data plane a
//! [`hive_dataplane::mesh::MeshDelta`]; the whole state is built and applied only when the
//! change is not known (docs/agent.md, "A change costs what it changes").
//!
//! [`MeshAttacher`] is the executor's [`NetworkAttacher`]: it makes each task's veth with
//! [`hive_dataplane::attach::task`] (address, gateway and MTU from the mesh), which also puts
//! `tc_from_task` on its host side, records the local endpoint, and opens the task's
//! embedded resolver ([`super::dns`]), whose names follow the same inputs as the mesh.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::TryStreamExt as _;
use futures::future::BoxFuture;
use hive_dataplane::DataplaneError;
use hive_dataplane::attach::task::{self as task_link, TaskNetwork};
use hive_dataplane::mesh::MacAddr;
use ipnetwork::Ipv4Network;
use rtnetlink::packet_route::link::LinkAttribute;
use tokio::sync::watch;

use super::assignment::{Assignment, SharedView};
use super::dataplane::Dataplane;
use super::dns::NodeDns;
use super::mesh_build::MeshBuilder;
use super::mesh_state::{LocalAttachment, LocalNode};
use super::worker::{MeshRefusals, MeshSink};
use crate::api::mesh_view::{MeshTouched, MeshView};
use crate::executor::{AssignedAddr, AttachError, NetworkAttacher, PreparedTask, TaskNetworks};

/// Errors of the node's mesh.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error(
        "no interface of this node holds the advertise address {addr}; advertise an address of this host"
    )]
    NoUnderlay { addr: IpAddr },
    #[error(
        "the advertise address {addr} is a loopback address; the data plane needs the NIC other nodes reach this one on (advertise that address)"
    )]
    Loopback { addr: IpAddr },
    #[error("the underlay address {addr} is not IPv4; hive's data plane is IPv4 only for now")]
    NotIpv4 { addr: IpAddr },
    #[error("netlink: {0}")]
    Netlink(#[source] std::io::Error),
    #[error(
        "the underlay interface {iface} has no MAC address; the data plane needs an Ethernet NIC"
    )]
    NoUnderlayMac { iface: String },
    #[error("reading the MTU of the underlay interface {iface}: {source}")]
    UnderlayMtu {
        iface: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("the underlay interface {iface} reports no MTU (or one above 65535)")]
    NoUnderlayMtu { iface: String },
    #[error("opening the data plane on {iface} with pins in {}: {source}", dir.display())]
    Open {
        iface: String,
        dir: PathBuf,
        #[source]
        source: DataplaneError,
    },
    #[error(
        "task {task}: network {network} is not in this node's mesh (not allocated yet?); it will be retried"
    )]
    UnknownNetwork { task: String, network: String },
    #[error("task {task}: address {addr:?} on network {network} is not IPv4 CIDR")]
    BadAddress {
        task: String,
        network: String,
        addr: String,
    },
}

/// The NIC holding an address: its name, MAC and MTU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    pub iface: String,
    pub addr: Ipv4Addr,
    pub mac: MacAddr,
    pub mtu: u16,
}

/// Finds the interface holding `addr` (the advertise address).
pub async fn find_underlay(addr: IpAddr) -> Result<Underlay, MeshError> {
    let IpAddr::V4(v4) = addr else {
        return Err(MeshError::NotIpv4 { addr });
    };
    // XDP on `lo` would see every local packet of the host; never attach there.
    if v4.is_loopback() {
        return Err(MeshError::Loopback { addr });
    }
    let ifaddrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| MeshError::Netlink(std::io::Error::from(e)))?
        .collect::<Vec<_>>();
    let iface = ifaddrs
        .iter()
        .find(|a| {
            a.address
                .as_ref()
                .and_then(|s| s.as_sockaddr_in())
                .is_some_and(|s| s.ip() == v4)
        })
        .map(|a| a.interface_name.clone())
        .ok_or(MeshError::NoUnderlay { addr })?;
    // A zero MAC would be the outer destination of every VXLAN packet sent here: refuse.
    let mac = ifaddrs
        .iter()
        .filter(|a| a.interface_name == iface)
        .find_map(|a| a.address.as_ref()?.as_link_addr()?.addr())
        .map(MacAddr)
        .ok_or_else(|| MeshError::NoUnderlayMac {
            iface: iface.clone(),
        })?;
    let (connection, handle, _) = rtnetlink::new_connection().map_err(MeshError::Netlink)?;
    let connection = tokio::spawn(connection);
    // Not guessed: the overlay's MTU is derived from it, and a wrong one loses large packets.
    let link = handle
        .link()
        .get()
        .match_name(iface.clone())
        .execute()
        .try_next()
        .await;
    connection.abort();
    let link = link.map_err(|source| MeshError::UnderlayMtu {
        iface: iface.clone(),
        source,
    })?;
    let mtu = link
        .and_then(|link| {
            link.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(mtu) => u16::try_from(*mtu).ok(),
                _ => None,
            })
        })
        .ok_or_else(|| MeshError::NoUnderlayMtu {
            iface: iface.clone(),
        })?;
    Ok(Underlay {
        iface,
        addr: v4,
        mac,
        mtu,
    })
}

#[derive(Debug)]
struct Inputs {
    /// The view the session keeps up to date (shared, not a copy).
    view: Option<SharedView>,
    /// (task, VNI) → its veth.
    local: BTreeMap<(String, u32), LocalAttachment>,
    /// Tasks of this node whose veths belong in the mesh (assigned, not stopped).
    live_tasks: BTreeSet<String>,
    /// Nodes gossip reports dead.
    dead: BTreeSet<String>,
    /// Store version of `view`.
    version: u64,
    /// Where `view` is in its stream ([`super::assignment::MeshJournal::position`]).
    at: (u64, u64),
    /// What changed in `view` since the last apply took it; `None`: not known, build the
    /// state from the whole view.
    touched: Option<MeshTouched>,
    /// The live veths changed since the last apply took them.
    locals_changed: bool,
}

impl Default for Inputs {
    fn default() -> Self {
        Self {
            view: None,
            local: BTreeMap::new(),
            live_tasks: BTreeSet::new(),
            dead: BTreeSet::new(),
            version: 0,
            at: (0, 0),
            touched: None,
            locals_changed: true,
        }
    }
}

/// The node's mesh (see the module docs).
pub struct NodeMesh {
    me: LocalNode,
    pin_dir: PathBuf,
    dataplane: tokio::sync::Mutex<Option<Box<dyn Dataplane>>>,
    inputs: Mutex<Inputs>,
    dirty: watch::Sender<u64>,
    netlink: rtnetlink::Handle,
    dns: NodeDns,
    /// The services the data plane refused at the last apply (see [`Self::set_aside`]).
    refusals: watch::Sender<MeshRefusals>,
    /// Store version of the last view the data plane programmed (docs/lifecycle.md).
    applied: watch::Sender<u64>,
    /// Test hook: services made unprogrammable on purpose (see [`UNPROGRAMMABLE_ENV`]).
    unprogrammable: BTreeSet<String>,
    /// What the last update of the state looked at ([`MeshBuilder::work`]).
    build_work: std::sync::atomic::AtomicUsize,
}

/// Test hook: a comma-separated list of service names whose mesh this node's agent makes
/// unprogrammable on purpose (it gives each a port 0, which the data plane refuses), so
/// that the end-to-end tests can show what happens when a node cannot program a service
/// the manager accepted. Read once, when the daemon opens its mesh; never set it outside
/// tests.
pub const UNPROGRAMMABLE_ENV: &str = "HIVE_TEST_UNPROGRAMMABLE_SERVICES";

/// The services named by [`UNPROGRAMMABLE_ENV`].
fn unprogrammable_from_env() -> BTreeSet<String> {
    let names: BTreeSet<String> = std::env::var(UNPROGRAMMABLE_ENV)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    if !names.is_empty() {
        tracing::warn!(services = ?names, "{UNPROGRAMMABLE_ENV} is set: these services will not be programmed (a test hook)");
    }
    names
}

impl std::fmt::Debug for NodeMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMesh")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl NodeMesh {
    /// Opens (or finds pinned) the data plane of `node_id` on `underlay` with its pins in
    /// `pin_dir`, and starts the loop that applies the mesh, until `stop`. The tasks'
    /// resolver forwards names that are not the swarm's to `dns_upstreams`; the data plane
    /// leaves `control_ports` (the node's own) to the kernel.
    pub async fn open(
        node_id: &str,
        underlay: &Underlay,
        control_ports: Vec<hive_dataplane::mesh::state::ControlPlanePort>,
        pin_dir: &Path,
        dns_upstreams: Vec<std::net::SocketAddr>,
        stop: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, MeshError> {
        let (root, name) = match (pin_dir.parent(), pin_dir.file_name()) {
            (Some(root), Some(name)) => (root.to_owned(), name.to_string_lossy().into_owned()),
            _ => (pin_dir.to_owned(), node_id.to_owned()),
        };
        let iface = underlay.iface.clone();
        let dataplane = tokio::task::spawn_blocking(move || {
            hive_dataplane::Dataplane::open(&root, &name, &iface)
        })
        .await
        .map_err(|e| MeshError::Netlink(std::io::Error::other(e.to_string())))?
        .map_err(|source| MeshError::Open {
            iface: underlay.iface.clone(),
            dir: pin_dir.to_owned(),
            source,
        })?;
        let me = LocalNode {
            node_id: node_id.to_owned(),
            underlay_addr: underlay.addr,
            underlay_iface: underlay.iface.clone(),
            underlay_mtu: underlay.mtu,
            control_ports,
        };
        Self::start(me, Box::new(dataplane), pin_dir, dns_upstreams, stop)
    }

    /// Starts the node's mesh on `dataplane` (the kernel's, or an in-memory one in tests).
    pub fn start(
        me: LocalNode,
        dataplane: Box<dyn Dataplane>,
        pin_dir: &Path,
        dns_upstreams: Vec<std::net::SocketAddr>,
        stop: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, MeshError> {
        let (connection, netlink, _) = rtnetlink::new_connection().map_err(MeshError::Netlink)?;
        tokio::spawn(connection);
        let (dirty, changes) = watch::channel(0);
        let mesh = Arc::new(Self {
            pin_dir: pin_dir.to_owned(),
            me,
            dataplane: tokio::sync::Mutex::new(Some(dataplane)),
            inputs: Mutex::new(Inputs::default()),
            dirty,
            netlink,
            dns: NodeDns::new(dns_upstreams),
            refusals: watch::Sender::new(MeshRefusals::default()),
            applied: watch::Sender::new(0),
            unprogrammable: unprogrammable_from_env(),
            build_work: std::sync::atomic::AtomicUsize::new(0),
        });
        tokio::spawn(mesh.clone().apply_loop(changes, stop));
        Ok(mesh)
    }

    /// Where the node's programs and maps are pinned (for counters and tracing).
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    fn inputs(&self) -> std::sync::MutexGuard<'_, Inputs> {
        self.inputs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.dirty.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Gossip's verdict on a node.
    pub fn set_dead(&self, node_id: &str, dead: bool) {
        let changed = {
            let mut inputs = self.inputs();
            if dead {
                inputs.dead.insert(node_id.to_owned())
            } else {
                inputs.dead.remove(node_id)
            }
        };
        if changed {
            self.refresh_names();
            self.changed();
        }
    }

    /// Hands the resolver the inputs its names come from, before anything else acts on
    /// them: a task the same view starts already finds every name of that view.
    fn refresh_names(&self) {
        let (view, dead) = {
            let inputs = self.inputs();
            let Some(view) = inputs.view.clone() else {
                return;
            };
            (view, inputs.dead.clone())
        };
        self.dns.set_view(view, dead);
    }

    /// How many tasks, services, addresses and veths the last update of the node's state
    /// looked at (for tests: an update's is that of its change, not of the cluster).
    pub fn last_build_work(&self) -> usize {
        self.build_work.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The test hook of [`UNPROGRAMMABLE_ENV`]: a port 0 for the services it names.
    fn break_on_purpose(&self, service: &mut hive_dataplane::mesh::Service) {
        if self.unprogrammable.contains(&service.name) {
            service.ports.push(hive_dataplane::mesh::ServicePort {
                protocol: hive_dataplane::mesh::Protocol::Tcp,
                target_port: 0,
                published_port: None,
            });
        }
    }

    /// The whole state the data plane should hold, from the whole view, with the services
    /// it would refuse set aside.
    fn rebuild(
        &self,
        builder: &mut MeshBuilder,
        view: &MeshView,
        local: &[LocalAttachment],
        dead: &BTreeSet<String>,
    ) -> hive_dataplane::MeshState {
        let mut state = builder.rebuild(view, local, dead);
        self.build_work
            .store(builder.work(), std::sync::atomic::Ordering::Relaxed);
        for service in &mut state.services {
            self.break_on_purpose(service);
        }
        self.set_aside(&mut state);
        state
    }

    /// Takes out of `state` the services the data plane would refuse, so that the others
    /// are programmed all the same (a refused service is not programmed on this node at
    /// all: what was applied of it before is removed, as for a removed service). Each
    /// refusal is logged once, when it starts, and handed to the tasks of the service on
    /// this node, whose status says it.
    fn set_aside(&self, state: &mut hive_dataplane::MeshState) {
        let mut refused: std::collections::BTreeMap<String, String> = Default::default();
        for r in state.set_aside_invalid_services() {
            let why = format!(
                "this node's data plane cannot program the service: {}",
                r.error
            );
            let id = super::mesh_state::swarm_service_id(&r.id).to_owned();
            refused
                .entry(id)
                .and_modify(|all: &mut String| {
                    all.push_str("; ");
                    all.push_str(&r.error.to_string());
                })
                .or_insert(why);
        }
        self.refusals.send_if_modified(|current| {
            if **current == refused {
                return false;
            }
            for (id, why) in &refused {
                if current.get(id) != Some(why) {
                    tracing::error!(service = %id, %why, "mesh: service not programmed; the other services are");
                }
            }
            for id in current.keys().filter(|id| !refused.contains_key(*id)) {
                tracing::info!(service = %id, "mesh: service programmed again (or gone)");
            }
            *current = Arc::new(refused);
            true
        });
    }

    /// Applies the node's mesh whenever an input changes: the change alone (a
    /// [`hive_dataplane::mesh::MeshDelta`] from the [`MeshBuilder`]) when the builder knows
    /// what changed, the whole state otherwise (the first view, a new stream, a change of
    /// the networks or the node's settings, a service refused, a failed apply).
    async fn apply_loop(
        self: Arc<Self>,
        mut changes: watch::Receiver<u64>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut builder = MeshBuilder::new(self.me.clone());
        // The data plane holds exactly what the builder built (no refusal, no failure).
        let mut in_step = false;
        loop {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
            let (version, view, touched, local, dead) = {
                let mut inputs = self.inputs();
                let Some(view) = inputs.view.clone() else {
                    continue;
                };
                let touched = inputs.touched.replace(MeshTouched::default());
                let local: Option<Vec<LocalAttachment>> =
                    (std::mem::take(&mut inputs.locals_changed) || touched.is_none()).then(|| {
                        inputs
                            .local
                            .values()
                            .filter(|l| inputs.live_tasks.contains(&l.task_id))
                            .cloned()
                            .collect()
                    });
                (inputs.version, view, touched, local, inputs.dead.clone())
            };
            let refused = !self.refusals.borrow().is_empty();
            let delta = match &touched {
                Some(touched) if in_step && !refused && self.unprogrammable.is_empty() => {
                    let delta = builder.update(&view.read(), touched, local.as_deref(), &dead);
                    self.build_work
                        .store(builder.work(), std::sync::atomic::Ordering::Relaxed);
                    delta
                }
                _ => None,
            };
            let mut dataplane = self.dataplane.lock().await;
            let Some(dataplane) = dataplane.as_mut() else {
                return;
            };
            let applied = match delta {
                Some(delta) => match dataplane.apply_delta(&delta) {
                    Ok(stats) => Ok(stats),
                    Err(err) => {
                        // Refused (a service the data plane cannot program) or failed: the
                        // whole state says which, and sets aside what it must.
                        tracing::debug!(%err, "applying a mesh change failed; applying the whole mesh");
                        let local = self.live_local();
                        let state = self.rebuild(&mut builder, &view.read(), &local, &dead);
                        dataplane.apply(&state)
                    }
                },
                None => {
                    let local = match local {
                        Some(local) => local,
                        None => self.live_local(),
                    };
                    let state = self.rebuild(&mut builder, &view.read(), &local, &dead);
                    dataplane.apply(&state)
                }
            };
            match applied {
                Ok(stats) => {
                    in_step = true;
                    tracing::debug!(?stats, version, "mesh applied");
                    self.applied.send_if_modified(|v| {
                        let newer = version > *v;
                        *v = (*v).max(version);
                        newer
                    });
                }
                Err(err) => {
                    in_step = false;
                    tracing::error!(%err, "applying the mesh failed; retrying at the next change")
                }
            }
        }
    }

    /// This node's veths of live tasks.
    fn live_local(&self) -> Vec<LocalAttachment> {
        let inputs = self.inputs();
        inputs
            .local
            .values()
            .filter(|l| inputs.live_tasks.contains(&l.task_id))
            .cloned()
            .collect()
    }

    /// Closes the data plane; with `destroy`, also detaches it and removes its pins (the
    /// node leaves the swarm). Without, it stays pinned and keeps forwarding.
    pub async fn close(&self, destroy: bool) {
        let Some(dataplane) = self.dataplane.lock().await.take() else {
            return;
        };
        if destroy && let Err(err) = dataplane.destroy() {
            tracing::warn!(%err, "removing the data plane");
        }
    }

    async fn attach_task(
        &self,
        task: &TaskNetworks,
        netns: &Path,
    ) -> Result<Vec<AssignedAddr>, AttachError> {
        let attached = match self.attach_networks(task, netns).await {
            Ok(assigned) => self.serve_dns(task, netns).await.map(|()| assigned),
            Err(err) => Err(err),
        };
        match attached {
            Ok(assigned) => Ok(assigned),
            Err(err) => {
                // The executor does not detach after a failed prepare: undo the networks
                // attached before the one that failed, or the mesh would keep their endpoints.
                if let Err(undo) = self.detach_task(task).await {
                    tracing::warn!(task = %task.task_id, %undo, "undoing a partial attach");
                }
                Err(err)
            }
        }
    }

    /// The task's resolver, if it is on a network (tasks without one keep the host's
    /// resolv.conf and have nobody to ask for service names).
    async fn serve_dns(&self, task: &TaskNetworks, netns: &Path) -> Result<(), AttachError> {
        if task.networks.is_empty() {
            return Ok(());
        }
        let networks = task.networks.iter().map(|n| n.network_id.clone()).collect();
        let Some(at) = self.dns.serve(&task.task_id, netns, networks)? else {
            return Ok(());
        };
        let dataplane = self.dataplane.lock().await;
        let written = match dataplane.as_ref() {
            Some(dataplane) => dataplane.set_resolver_port(at.netns_cookie, at.port),
            None => return Ok(()),
        };
        written.map_err(|err| {
            self.dns.forget(&task.task_id);
            err.into()
        })
    }

    /// Redirects the tasks' 127.0.0.11:53 to their resolvers' own ports, for every task
    /// whose cgroup is below `cgroup` (cgroup v2), so port 53 stays the task's. Without it
    /// (an error here, cgroup v1 only), resolvers listen on port 53 itself.
    pub async fn redirect_resolvers(&self, cgroup: &Path) -> Result<(), DataplaneError> {
        let dataplane = self.dataplane.lock().await;
        let Some(dataplane) = dataplane.as_ref() else {
            return Ok(());
        };
        dataplane.redirect_resolvers(cgroup)?;
        self.dns.redirect();
        Ok(())
    }

    async fn attach_networks(
        &self,
        task: &TaskNetworks,
        netns: &Path,
    ) -> Result<Vec<AssignedAddr>, AttachError> {
        let mut assigned = Vec::new();
        for (i, attachment) in task.networks.iter().enumerate() {
            let network = self
                .inputs()
                .view
                .as_ref()
                .and_then(|v| {
                    v.read()
                        .networks
                        .iter()
                        .find(|n| n.id == attachment.network_id)
                        .cloned()
                })
                .ok_or_else(|| MeshError::UnknownNetwork {
                    task: task.task_id.clone(),
                    network: attachment.network_id.clone(),
                })?;
            let bad = || MeshError::BadAddress {
                task: task.task_id.clone(),
                network: attachment.network_id.clone(),
                addr: attachment.addresses.first().cloned().unwrap_or_default(),
            };
            let addr: Ipv4Network = attachment
                .addresses
                .first()
                .and_then(|a| a.parse().ok())
                .ok_or_else(bad)?;
            let subnet = network.subnet;
            let addr = Ipv4Network::new(addr.ip(), subnet.prefix()).map_err(|_| bad())?;
            // No gateway given: the subnet's first host, as the allocator and the mesh take it.
            let gateway = network
                .gateway
                .unwrap_or_else(|| Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1)));
            let spec = TaskNetwork {
                netns: netns.to_owned(),
                host_ifname: task_link::host_ifname(&task.task_id, network.vni),
                task_ifname: format!("eth{i}"),
                addr,
                gateway,
                mtu: self.me.underlay_mtu.saturating_sub(50),
            };
            let link = {
                let mut dataplane = self.dataplane.lock().await;
                let dataplane = dataplane.as_mut().ok_or_else(|| {
                    MeshError::Netlink(std::io::Error::other("the data plane is closed"))
                })?;
                task_link::attach(&mut **dataplane, &self.netlink, &spec).await?
            };
            let mut inputs = self.inputs();
            inputs.locals_changed = true;
            inputs.local.insert(
                (task.task_id.clone(), network.vni),
                LocalAttachment {
                    task_id: task.task_id.clone(),
                    vni: network.vni,
                    addr: addr.ip(),
                    host_ifname: link.host_ifname.clone(),
                    host_ifindex: link.host_ifindex,
                },
            );
            drop(inputs);
            assigned.push(AssignedAddr {
                network_id: attachment.network_id.clone(),
                interface: spec.task_ifname,
                address: IpAddr::V4(addr.ip()),
                prefix_len: addr.prefix(),
            });
        }
        self.changed();
        Ok(assigned)
    }

    async fn detach_task(&self, task: &TaskNetworks) -> Result<(), AttachError> {
        let links: Vec<LocalAttachment> = {
            let mut inputs = self.inputs();
            let keys: Vec<_> = inputs
                .local
                .keys()
                .filter(|(t, _)| *t == task.task_id)
                .cloned()
                .collect();
            inputs.locals_changed = true;
            keys.iter().filter_map(|k| inputs.local.remove(k)).collect()
        };
        // Out of the mesh first, then the veth goes.
        self.changed();
        let resolver = self.dns.forget(&task.task_id);
        let mut dataplane = self.dataplane.lock().await;
        let Some(dataplane) = dataplane.as_mut() else {
            return Ok(());
        };
        // A stale entry is harmless (a namespace cookie is never reused, and the map is an
        // LRU): it must not keep the veths.
        if let Some(at) = resolver
            && let Err(err) = dataplane.forget_resolver_port(at.netns_cookie)
        {
            tracing::warn!(task = %task.task_id, %err, "agent: forgetting the task's resolver port");
        }
        for link in links {
            task_link::detach(&mut **dataplane, &self.netlink, &link.host_ifname).await?;
        }
        Ok(())
    }
}

impl NodeMesh {
    /// Records the veths an earlier daemon made for `task` (found by name) as local
    /// endpoints again, with `tc_from_task` attached (idempotent).
    async fn adopt_task(&self, task: &PreparedTask, view: &MeshView) {
        for assigned in &task.addresses {
            let (IpAddr::V4(addr), Some(network)) = (
                assigned.address,
                view.networks.iter().find(|n| n.id == assigned.network_id),
            ) else {
                continue;
            };
            let host_ifname = task_link::host_ifname(&task.task_id, network.vni);
            let Ok(ifindex) = nix::net::if_::if_nametoindex(host_ifname.as_str()) else {
                tracing::warn!(task = %task.task_id, iface = %host_ifname, "agent: the adopted task's veth is gone");
                continue;
            };
            {
                let mut dataplane = self.dataplane.lock().await;
                if let Some(dataplane) = dataplane.as_mut()
                    && let Err(err) = dataplane.attach_task_iface(ifindex)
                {
                    tracing::warn!(task = %task.task_id, %err, "agent: re-attaching tc_from_task");
                }
            }
            let mut inputs = self.inputs();
            inputs.locals_changed = true;
            inputs.local.insert(
                (task.task_id.clone(), network.vni),
                LocalAttachment {
                    task_id: task.task_id.clone(),
                    vni: network.vni,
                    addr,
                    host_ifname,
                    host_ifindex: ifindex,
                },
            );
            drop(inputs);
        }
        // The earlier daemon's resolver sockets closed with it.
        if let Err(err) = self.serve_dns(&task.networks, &task.netns).await {
            tracing::warn!(task = %task.task_id, %err, "agent: the adopted task's resolver");
        }
        self.changed();
    }
}

impl MeshSink for NodeMesh {
    fn adopt<'a>(&'a self, task: &'a PreparedTask, view: &'a MeshView) -> BoxFuture<'a, ()> {
        Box::pin(self.adopt_task(task, view))
    }

    fn refusals(&self) -> Option<watch::Receiver<MeshRefusals>> {
        Some(self.refusals.subscribe())
    }

    fn set_view(&self, assignment: &Assignment, live_tasks: BTreeSet<String>) {
        let journal = &assignment.mesh_journal;
        let version = assignment.version;
        let (changed, newer) = {
            let mut inputs = self.inputs();
            // What changed since the view held: `None` (not known) builds the state anew.
            let since = if inputs.view.is_some() {
                journal.since(inputs.at)
            } else {
                None
            };
            let changed = since.as_ref().is_none_or(|t| !t.is_empty());
            inputs.touched = match (inputs.touched.take(), since) {
                (Some(mut pending), Some(since)) => {
                    pending.merge(&since);
                    Some(pending)
                }
                _ => None,
            };
            inputs.at = journal.position();
            if changed {
                inputs.view = Some(assignment.mesh.clone());
            }
            let live_changed = inputs.live_tasks != live_tasks;
            if live_changed {
                inputs.live_tasks = live_tasks;
                inputs.locals_changed = true;
            }
            let newer = version > inputs.version;
            inputs.version = inputs.version.max(version);
            (changed || live_changed, newer)
        };
        if changed {
            self.refresh_names();
        }
        // A newer version applies too when the view did not change: the apply after it is
        // what says the data plane is at that version.
        if changed || newer {
            self.changed();
        }
    }

    fn applied(&self) -> Option<watch::Receiver<u64>> {
        Some(self.applied.subscribe())
    }
}

/// The executor's network attacher on the node's mesh.
#[derive(Debug, Clone)]
pub struct MeshAttacher(pub Arc<NodeMesh>);

impl NetworkAttacher for MeshAttacher {
    fn attach<'a>(
        &'a self,
        task: &'a TaskNetworks,
        netns: &'a Path,
    ) -> BoxFuture<'a, Result<Vec<AssignedAddr>, AttachError>> {
        Box::pin(self.0.attach_task(task, netns))
    }

    fn detach<'a>(&'a self, task: &'a TaskNetworks) -> BoxFuture<'a, Result<(), AttachError>> {
        Box::pin(self.0.detach_task(task))
    }
}

#[cfg(test)]
mod tests;

//! A mesh on a lab, driven by hand-written [`MeshState`]s — no control plane.
//!
//! Tasks are real processes in their own network and UTS namespaces, wired
//! to their node by [`hive_dataplane::attach::task::attach`]; every node runs its own
//! [`Dataplane`], loaded and pinned inside the node's namespace, and gets the
//! [`MeshState`] that a control plane would compute for it. The demo, the
//! mesh benchmark and the data-plane lab tests use this; the daemon replaces
//! it once the control plane computes the states.
//!
//! Task namespaces are bind-mounted under the lab's state directory, so
//! `hive lab down` removes them (and kills their processes) even when the
//! process that built the mesh was killed.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use ipnetwork::Ipv4Network;

use hive_dataplane::{
    Dataplane, DataplaneError,
    attach::task::{self, AttachError, TaskLink, TaskNetwork},
    mesh::{
        LocalEndpoint, MacAddr, MeshState, Network, NodeIdentity, OverlayPeer, Service,
        ServiceBackend, ServicePort, ServiceVip, TaskEndpoint,
        state::{DEFAULT_VXLAN_PORT, ParseMacError},
    },
    netns::{self, NetnsError, NsKind},
};

use crate::{Lab, LabError, naming, procs};

/// The routing-mesh network every task joins (Swarm's `ingress`).
pub const INGRESS_NETWORK: &str = "ingress";
/// Swarm's first overlay VNI.
pub const INGRESS_VNI: u32 = 4096;
const UNDERLAY_IFACE: &str = "eth0";
const UNDERLAY_MTU: u16 = 1500;

/// Errors while building or changing a static mesh.
#[derive(Debug, thiserror::Error)]
pub enum StaticMeshError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("node {node}: {source}")]
    Dataplane {
        node: String,
        #[source]
        source: DataplaneError,
    },
    #[error("task {task}: {source}")]
    Attach {
        task: String,
        #[source]
        source: AttachError,
    },
    #[error("task {task}: cannot start {program:?}: {source}")]
    Spawn {
        task: String,
        program: OsString,
        #[source]
        source: std::io::Error,
    },
    #[error("lab member {member} has a bad MAC address: {source}")]
    Mac {
        member: String,
        #[source]
        source: ParseMacError,
    },
    #[error("no task {task:?} in this mesh")]
    UnknownTask { task: String },
    #[error("no service {service:?} in this mesh")]
    UnknownService { service: String },
    #[error("the ingress network 10.0.0.0/24 has no address left for task {task}")]
    AddressesExhausted { task: String },
    #[error("cannot make {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a tokio runtime for netlink could not start: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("netlink in node {node}'s namespace: {source}")]
    Netlink {
        node: String,
        #[source]
        source: std::io::Error,
    },
    #[error("node {node}'s data plane is not open (an earlier restart failed)")]
    NotOpen { node: String },
}

/// A service of the static mesh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceDef {
    pub id: String,
    pub name: String,
    /// VIP on the ingress network, for east-west traffic.
    pub vip: Option<Ipv4Addr>,
    pub ports: Vec<ServicePort>,
    /// Task IDs currently balanced over.
    pub backends: Vec<String>,
}

/// A running task.
#[derive(Debug)]
pub struct MeshTask {
    pub id: String,
    pub node: String,
    pub addr: Ipv4Addr,
    /// The task's network namespace (for `netns::run_in`).
    pub netns: PathBuf,
    uts: PathBuf,
    pub link: TaskLink,
    process: Option<Child>,
}

struct NodeMesh {
    netns: PathBuf,
    addr: Ipv4Addr,
    mac: MacAddr,
    dataplane: Option<Dataplane>,
}

/// A lab whose nodes carry hive's data plane, driven by hand.
pub struct StaticMesh {
    lab: Lab,
    hash_seed: u32,
    subnet: Ipv4Network,
    gateway: Ipv4Addr,
    nodes: BTreeMap<String, NodeMesh>,
    tasks: BTreeMap<String, MeshTask>,
    services: BTreeMap<String, ServiceDef>,
    next_host: u32,
    task_dir: PathBuf,
    /// Leave tasks and data planes in place on drop (`hive demo --keep`).
    keep: bool,
    /// The mesh mode every node gets (docs/dsr.md).
    mesh_mode: hive_dataplane::mesh::mode::MeshMode,
}

impl std::fmt::Debug for StaticMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticMesh")
            .field("lab", &self.lab.name())
            .field("nodes", &self.nodes.keys().collect::<Vec<_>>())
            .field("tasks", &self.tasks.keys().collect::<Vec<_>>())
            .field("services", &self.services.len())
            .finish()
    }
}

impl StaticMesh {
    /// Load and attach the data plane on every node of `lab`, with pins
    /// under the lab's BPF directory, and apply an empty mesh.
    pub fn new(lab: &Lab, hash_seed: u32) -> Result<Self, StaticMeshError> {
        let mut nodes = BTreeMap::new();
        for member in lab.nodes() {
            let mac: MacAddr = member.mac.parse().map_err(|source| StaticMeshError::Mac {
                member: member.name.clone(),
                source,
            })?;
            nodes.insert(
                member.name.clone(),
                NodeMesh {
                    netns: member.netns_path.clone(),
                    addr: member.underlay_addr,
                    mac,
                    dataplane: None,
                },
            );
        }
        let task_dir = naming::lab_dir(lab.name()).join("tasks");
        std::fs::create_dir_all(&task_dir).map_err(|source| StaticMeshError::Dir {
            path: task_dir.clone(),
            source,
        })?;
        let mut mesh = StaticMesh {
            lab: lab.clone(),
            hash_seed,
            mesh_mode: Default::default(),
            subnet: Ipv4Network::new(Ipv4Addr::new(10, 0, 0, 0), 24).expect("valid prefix"),
            gateway: Ipv4Addr::new(10, 0, 0, 1),
            nodes,
            tasks: BTreeMap::new(),
            services: BTreeMap::new(),
            // .1 gateway, .2-.9 for VIPs.
            next_host: 10,
            task_dir,
            keep: false,
        };
        let names: Vec<String> = mesh.nodes.keys().cloned().collect();
        for node in names {
            mesh.open_dataplane(&node)?;
        }
        mesh.apply()?;
        Ok(mesh)
    }

    /// The lab underneath.
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// Open (or re-open from its pins) the data plane of `node`, inside the
    /// node's namespace.
    fn open_dataplane(&mut self, node: &str) -> Result<(), StaticMeshError> {
        let pin_root = naming::bpf_lab_dir(self.lab.name());
        let entry = self.node_mut(node)?;
        let netns = entry.netns.clone();
        let node_id = node.to_owned();
        let dataplane = netns::run_in(&netns, move || {
            Dataplane::open(&pin_root, &node_id, UNDERLAY_IFACE)
        })?
        .map_err(|source| StaticMeshError::Dataplane {
            node: node.to_owned(),
            source,
        })?;
        entry.dataplane = Some(dataplane);
        Ok(())
    }

    /// Simulate an agent restart on `node`: drop its [`Dataplane`] (the
    /// process's handles) and open it again from the pins, then re-apply
    /// the same state. Traffic must not notice.
    pub fn restart_agent(&mut self, node: &str) -> Result<(), StaticMeshError> {
        drop(self.node_mut(node)?.dataplane.take());
        self.open_dataplane(node)?;
        self.apply_node(node)?;
        Ok(())
    }

    /// Start a task on `node`: namespaces, veth wired into the mesh, then
    /// `program args` inside them (stdout/stderr to a log file beside the
    /// namespaces). Returns the task's address.
    /// The mesh mode of every node from the next [`Self::apply`] on.
    pub fn set_mesh_mode(&mut self, mode: hive_dataplane::mesh::mode::MeshMode) {
        self.mesh_mode = mode;
    }

    pub fn add_task(
        &mut self,
        id: &str,
        node: &str,
        program: impl Into<OsString>,
        args: &[&str],
    ) -> Result<Ipv4Addr, StaticMeshError> {
        let host = self.next_host;
        if host >= 255 {
            return Err(StaticMeshError::AddressesExhausted {
                task: id.to_owned(),
            });
        }
        let addr = Ipv4Addr::from(u32::from(self.subnet.network()) + host);
        let net = self.task_dir.join(format!("{id}.net"));
        let uts = self.task_dir.join(format!("{id}.uts"));
        netns::create_netns(&net)?;
        netns::create_uts(&uts, id)?;
        let spec = TaskNetwork {
            netns: net.clone(),
            host_ifname: task::host_ifname(id, INGRESS_VNI),
            task_ifname: "eth0".to_owned(),
            addr: Ipv4Network::new(addr, self.subnet.prefix()).expect("prefix of the subnet"),
            gateway: self.gateway,
            mtu: UNDERLAY_MTU - hive_dataplane::mesh::state::VXLAN_OVERHEAD,
        };
        let node_ns = self.node_mut(node)?.netns.clone();
        let dataplane =
            self.node_mut(node)?
                .dataplane
                .as_mut()
                .ok_or_else(|| StaticMeshError::NotOpen {
                    node: node.to_owned(),
                })?;
        let link = in_node_netlink(node, &node_ns, id, async |handle| {
            task::attach(dataplane, handle, &spec).await
        })?;
        self.next_host += 1;
        let mut task = MeshTask {
            id: id.to_owned(),
            node: node.to_owned(),
            addr,
            netns: net,
            uts,
            link,
            process: None,
        };
        task.process = Some(spawn_in(&task, &self.task_dir, program.into(), args)?);
        self.tasks.insert(id.to_owned(), task);
        Ok(addr)
    }

    /// Add (or replace) a service; call [`StaticMesh::apply`] to make it live.
    pub fn set_service(&mut self, def: ServiceDef) {
        self.services.insert(def.id.clone(), def);
    }

    /// Remove a service; call [`StaticMesh::apply`] to make it so.
    pub fn remove_service(&mut self, id: &str) -> Option<ServiceDef> {
        self.services.remove(id)
    }

    /// Change which tasks a service balances over.
    pub fn set_backends(
        &mut self,
        service: &str,
        backends: &[&str],
    ) -> Result<(), StaticMeshError> {
        let def = self
            .services
            .values_mut()
            .find(|s| s.id == service || s.name == service)
            .ok_or_else(|| StaticMeshError::UnknownService {
                service: service.to_owned(),
            })?;
        def.backends = backends.iter().map(|b| (*b).to_owned()).collect();
        Ok(())
    }

    /// The task `id`.
    pub fn task(&self, id: &str) -> Result<&MeshTask, StaticMeshError> {
        self.tasks
            .get(id)
            .ok_or_else(|| StaticMeshError::UnknownTask {
                task: id.to_owned(),
            })
    }

    /// All tasks, by ID.
    pub fn tasks(&self) -> impl Iterator<Item = &MeshTask> {
        self.tasks.values()
    }

    /// The data plane of `node`.
    pub fn dataplane(&self, node: &str) -> Result<&Dataplane, StaticMeshError> {
        self.nodes
            .get(node)
            .and_then(|n| n.dataplane.as_ref())
            .ok_or_else(|| {
                StaticMeshError::Lab(LabError::UnknownMember {
                    lab: self.lab.name().to_owned(),
                    member: node.to_owned(),
                    known: self.nodes.keys().cloned().collect::<Vec<_>>().join(", "),
                })
            })
    }

    /// The [`MeshState`] a control plane would hand `node`.
    pub fn state_for(&self, node: &str) -> Result<MeshState, StaticMeshError> {
        let me = self.node(node)?;
        let backend = |task: &MeshTask| ServiceBackend {
            task_id: task.id.clone(),
            addr: task.addr,
            node: self
                .nodes
                .get(&task.node)
                .map_or(Ipv4Addr::UNSPECIFIED, |n| n.addr),
            vni: INGRESS_VNI,
        };
        let services = self
            .services
            .values()
            .map(|def| Service {
                id: def.id.clone(),
                name: def.name.clone(),
                vips: def
                    .vip
                    .map(|addr| ServiceVip {
                        network: INGRESS_NETWORK.to_owned(),
                        addr,
                    })
                    .into_iter()
                    .collect(),
                ports: def.ports.clone(),
                backends: def
                    .backends
                    .iter()
                    .filter_map(|id| self.tasks.get(id))
                    .map(backend)
                    .collect(),
            })
            .collect();
        Ok(MeshState {
            node: NodeIdentity {
                underlay_addr: me.addr,
                underlay_iface: UNDERLAY_IFACE.to_owned(),
                vxlan_port: DEFAULT_VXLAN_PORT,
                hash_seed: self.hash_seed,
                underlay_mtu: UNDERLAY_MTU,
                control_ports: Vec::new(),
                mesh_mode: self.mesh_mode,
            },
            networks: vec![Network {
                name: INGRESS_NETWORK.to_owned(),
                vni: INGRESS_VNI,
                subnet: self.subnet,
                gateway: self.gateway,
                ingress: true,
            }],
            peers: self
                .nodes
                .iter()
                .filter(|(name, _)| name.as_str() != node)
                .map(|(name, n)| OverlayPeer {
                    node_id: name.clone(),
                    underlay_addr: n.addr,
                    mac: n.mac,
                })
                .collect(),
            services,
            endpoints: self
                .tasks
                .values()
                .map(|t| TaskEndpoint {
                    task_id: t.id.clone(),
                    addr: t.addr,
                    node: self
                        .nodes
                        .get(&t.node)
                        .map_or(Ipv4Addr::UNSPECIFIED, |n| n.addr),
                    vni: INGRESS_VNI,
                })
                .collect(),
            local_endpoints: self
                .tasks
                .values()
                .filter(|t| t.node == node)
                .map(|t| LocalEndpoint {
                    task_id: t.id.clone(),
                    vni: INGRESS_VNI,
                    host_ifname: t.link.host_ifname.clone(),
                    host_ifindex: t.link.host_ifindex,
                })
                .collect(),
        })
    }

    /// Apply every node's state.
    pub fn apply(&mut self) -> Result<(), StaticMeshError> {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for node in names {
            self.apply_node(&node)?;
        }
        Ok(())
    }

    /// Apply `node`'s state only (the other nodes keep theirs).
    pub fn apply_node(&mut self, node: &str) -> Result<(), StaticMeshError> {
        let state = self.state_for(node)?;
        self.apply_state(node, &state)
    }

    /// Apply a state built beforehand with [`StaticMesh::state_for`] (benchmarks time this
    /// alone: the data plane's work, not the harness building a whole `MeshState`).
    pub fn apply_state(&mut self, node: &str, state: &MeshState) -> Result<(), StaticMeshError> {
        let dataplane =
            self.node_mut(node)?
                .dataplane
                .as_mut()
                .ok_or_else(|| StaticMeshError::NotOpen {
                    node: node.to_owned(),
                })?;
        dataplane
            .apply(state)
            .map_err(|source| StaticMeshError::Dataplane {
                node: node.to_owned(),
                source,
            })?;
        Ok(())
    }

    /// Leave everything running when this value goes away: the tasks keep
    /// serving and the data planes stay pinned and attached until
    /// `hive lab down` removes the lab.
    pub fn keep(mut self) {
        self.keep = true;
    }

    /// Stop every task and remove the data plane from every node (pins,
    /// programs, task veths). The lab stays up.
    pub fn teardown(mut self) -> Result<(), StaticMeshError> {
        self.teardown_inner()
    }

    fn teardown_inner(&mut self) -> Result<(), StaticMeshError> {
        let mut first_error = None;
        for (_, mut task) in std::mem::take(&mut self.tasks) {
            // Every process in the task's namespaces, not only the one we
            // started: a server's workers outlive a killed master (nginx).
            let namespaces: std::collections::HashSet<_> = [&task.netns, &task.uts]
                .into_iter()
                .filter_map(|path| procs::ns_id(path))
                .collect();
            if let Err(err) = procs::terminate(&namespaces, procs::TERM_GRACE) {
                tracing::warn!(task = %task.id, %err, "stopping the task's processes failed");
            }
            if let Some(mut child) = task.process.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            if let Err(err) = self.detach_task(&task) {
                first_error.get_or_insert(err);
            }
            for path in [&task.netns, &task.uts] {
                if let Err(err) = netns::remove(path) {
                    first_error.get_or_insert(StaticMeshError::from(err));
                }
            }
        }
        for (name, node) in &mut self.nodes {
            if let Some(dataplane) = node.dataplane.take() {
                let netns = node.netns.clone();
                let result = netns::run_in(&netns, move || dataplane.destroy());
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(source)) => {
                        first_error.get_or_insert(StaticMeshError::Dataplane {
                            node: name.clone(),
                            source,
                        });
                    }
                    Err(err) => {
                        first_error.get_or_insert(err.into());
                    }
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Delete the task's veth and its hook on its node, if the node's data
    /// plane is still open. Left to the kernel, the pair would be freed only
    /// some time after the task's namespace, and the next task of the same
    /// ID would find its host-side name still taken.
    fn detach_task(&mut self, task: &MeshTask) -> Result<(), StaticMeshError> {
        let node = self.node_mut(&task.node)?;
        let node_ns = node.netns.clone();
        let Some(dataplane) = node.dataplane.as_mut() else {
            return Ok(());
        };
        in_node_netlink(&task.node, &node_ns, &task.id, async |handle| {
            task::detach(dataplane, handle, &task.link.host_ifname).await
        })
    }

    fn node(&self, node: &str) -> Result<&NodeMesh, StaticMeshError> {
        self.nodes.get(node).ok_or_else(|| self.unknown_node(node))
    }

    fn node_mut(&mut self, node: &str) -> Result<&mut NodeMesh, StaticMeshError> {
        if !self.nodes.contains_key(node) {
            return Err(self.unknown_node(node));
        }
        Ok(self.nodes.get_mut(node).expect("checked above"))
    }

    fn unknown_node(&self, node: &str) -> StaticMeshError {
        StaticMeshError::Lab(LabError::UnknownMember {
            lab: self.lab.name().to_owned(),
            member: node.to_owned(),
            known: self.nodes.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }
}

impl Drop for StaticMesh {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(err) = self.teardown_inner() {
            tracing::warn!(%err, "tearing the static mesh down failed; `hive lab down` removes the rest");
        }
    }
}

/// Run `f`, a change to task `task_id`'s links, on a thread inside the node's
/// namespace, with a netlink connection opened there.
fn in_node_netlink<T: Send>(
    node: &str,
    node_ns: &Path,
    task_id: &str,
    f: impl AsyncFnOnce(&rtnetlink::Handle) -> Result<T, AttachError> + Send,
) -> Result<T, StaticMeshError> {
    netns::run_in(node_ns, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StaticMeshError::Runtime)?;
        runtime.block_on(async {
            let (connection, handle, _) =
                rtnetlink::new_connection().map_err(|source| StaticMeshError::Netlink {
                    node: node.to_owned(),
                    source,
                })?;
            let connection = tokio::spawn(connection);
            let result = f(&handle).await;
            connection.abort();
            result.map_err(|source| StaticMeshError::Attach {
                task: task_id.to_owned(),
                source,
            })
        })
    })?
}

/// Start the task's process inside its namespaces.
fn spawn_in(
    task: &MeshTask,
    log_dir: &Path,
    program: OsString,
    args: &[&str],
) -> Result<Child, StaticMeshError> {
    let log = log_dir.join(format!("{}.log", task.id));
    let spawn_error = |source| StaticMeshError::Spawn {
        task: task.id.clone(),
        program: program.clone(),
        source,
    };
    let stdout = std::fs::File::create(&log).map_err(spawn_error)?;
    let stderr = stdout.try_clone().map_err(spawn_error)?;
    let mut command = Command::new(&program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    netns::enter_on_spawn(
        &mut command,
        vec![
            (NsKind::Net, netns::open(&task.netns)?),
            (NsKind::Uts, netns::open(&task.uts)?),
        ],
    );
    command.spawn().map_err(spawn_error)
}

//! [`MeshBuilder`]: the node's [`MeshState`], kept up to date change by change.
//!
//! [`super::mesh_state::mesh_state`] says what the mesh of a node is, given the whole view;
//! the builder arrives at the same state (the tests compare them) but, after a first
//! [`MeshBuilder::rebuild`], takes in only what a message of the stream touched
//! ([`MeshTouched`]), a change of this node's veths, or gossip's verdict on a node, and
//! hands back the [`MeshDelta`] the data plane applies: the services, endpoints, peers and
//! local endpoints that came out different, nothing else. Its work is that of the change:
//! the tasks it names (and, for a node that changed, the tasks on that node), the addresses,
//! VIPs and ports they claim, and the services they belong to, each with its own tasks.
//!
//! What makes this more than a lookup is that a few things are decided in order across the
//! cluster: of two endpoints with one address, two services with one VIP or one published
//! port, the first (by ID, this node's veths before the view's tasks, ingress ports before
//! host-mode ports) keeps it. The builder keeps, per address, VIP and port, every claim in
//! that order: a change of claims re-examines the claimants whose winning changed, and only
//! them.
//!
//! The node's settings and the networks are the exception: everything depends on them, they
//! change rarely, and a change to either is a [`MeshBuilder::rebuild`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::net::Ipv4Addr;

use hive_dataplane::mesh::{
    LocalEndpoint, MeshDelta, MeshState, Network, NodeIdentity, Protocol, Service, ServiceBackend,
    ServicePort, ServiceVip, TaskEndpoint,
};

use super::mesh_state::{
    LocalAttachment, LocalNode, Nodes, host_mesh_id, is_host, networks, nodes, ports,
};
use crate::api::mesh_view::{MeshService, MeshTask, MeshTouched, MeshView};
use crate::store::objects::PublishMode;

/// Who claims an address for an endpoint, in the order claims are decided: this node's veths
/// first (by task and VNI), then the view's tasks on other nodes (by task and attachment).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Claimant {
    Local(String, u32),
    Remote(String, usize),
}

impl Claimant {
    fn task(&self) -> &str {
        match self {
            Self::Local(task, _) | Self::Remote(task, _) => task,
        }
    }
}

/// Who claims a published port: (host mode, service ID); ingress ports come first.
type PortClaimant = (bool, String);

/// Claims on keys; the first claimant of a key in order holds it.
#[derive(Debug)]
struct Claims<K, C> {
    by_key: HashMap<K, BTreeSet<C>>,
}

impl<K, C> Default for Claims<K, C> {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone, C: Ord + Clone> Claims<K, C> {
    fn holder(&self, key: &K) -> Option<&C> {
        self.by_key.get(key)?.first()
    }

    fn holds(&self, key: &K, claimant: &C) -> bool {
        self.holder(key) == Some(claimant)
    }

    /// Adds (`on`) or drops a claim; the key's holder before the first change of a round is
    /// kept in `touched`.
    fn set(&mut self, key: K, claimant: C, on: bool, touched: &mut HashMap<K, Option<C>>) {
        if !touched.contains_key(&key) {
            let before = self.holder(&key).cloned();
            touched.insert(key.clone(), before);
        }
        if on {
            self.by_key.entry(key).or_default().insert(claimant);
        } else if let Some(set) = self.by_key.get_mut(&key) {
            set.remove(&claimant);
            if set.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }
}

/// What the builder took in of a task.
#[derive(Debug, Clone)]
struct TaskSeen {
    service: String,
    node: String,
    claims: Vec<(Ipv4Addr, Claimant)>,
}

/// What a service claims: its VIPs and its published ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ServiceClaims {
    vips: Vec<Ipv4Addr>,
    ports: Vec<((Protocol, u16), PortClaimant)>,
}

/// The node's mesh state, built and kept up to date (see the module docs).
#[derive(Debug)]
pub struct MeshBuilder {
    me: LocalNode,
    /// `None` until the first rebuild.
    node: Option<NodeIdentity>,
    networks: Vec<Network>,
    /// The view's network ID → the network as the mesh has it.
    by_id: HashMap<String, Network>,
    ingress: Option<u32>,
    nodes: Nodes,
    dead: BTreeSet<String>,
    /// This node's live veths, by (task, VNI).
    local: BTreeMap<(String, u32), LocalAttachment>,
    /// Service ID → its tasks in the view.
    tasks_of: HashMap<String, BTreeSet<String>>,
    /// Node ID → the view's tasks on it.
    on_node: HashMap<String, BTreeSet<String>>,
    tasks: HashMap<String, TaskSeen>,
    service_claims: HashMap<String, ServiceClaims>,
    addrs: Claims<Ipv4Addr, Claimant>,
    vips: Claims<Ipv4Addr, String>,
    published: Claims<(Protocol, u16), PortClaimant>,
    /// What the state holds: services by mesh ID, endpoints by address.
    services: HashMap<String, Service>,
    endpoints: HashMap<Ipv4Addr, TaskEndpoint>,
    local_endpoints: Vec<LocalEndpoint>,
    work: usize,
}

/// One round of changes.
#[derive(Debug, Default)]
struct Round {
    tasks: BTreeSet<String>,
    services: BTreeSet<String>,
    addrs: HashMap<Ipv4Addr, Option<Claimant>>,
    vips: HashMap<Ipv4Addr, Option<String>>,
    published: HashMap<(Protocol, u16), Option<PortClaimant>>,
    locals_changed: bool,
    peers_changed: bool,
}

fn find<'v, T>(list: &'v [T], id: &str, key: impl Fn(&T) -> &str) -> Option<&'v T> {
    list.binary_search_by(|o| key(o).cmp(id))
        .ok()
        .map(|at| &list[at])
}

fn find_task<'v>(view: &'v MeshView, id: &str) -> Option<&'v MeshTask> {
    find(&view.tasks, id, |t| &t.id)
}

fn find_service<'v>(view: &'v MeshView, id: &str) -> Option<&'v MeshService> {
    find(&view.services, id, |s| &s.id)
}

impl MeshBuilder {
    pub fn new(me: LocalNode) -> Self {
        Self {
            me,
            node: None,
            networks: Vec::new(),
            by_id: HashMap::new(),
            ingress: None,
            nodes: Nodes::default(),
            dead: BTreeSet::new(),
            local: BTreeMap::new(),
            tasks_of: HashMap::new(),
            on_node: HashMap::new(),
            tasks: HashMap::new(),
            service_claims: HashMap::new(),
            addrs: Claims::default(),
            vips: Claims::default(),
            published: Claims::default(),
            services: HashMap::new(),
            endpoints: HashMap::new(),
            local_endpoints: Vec::new(),
            work: 0,
        }
    }

    /// Has a state been built, so that [`Self::update`] has something to change?
    pub fn is_built(&self) -> bool {
        self.node.is_some()
    }

    /// How many tasks, services, addresses and veths the last build or update looked at
    /// (for tests and measurements: an update's is that of its change).
    pub fn work(&self) -> usize {
        self.work
    }

    fn identity(&self, view: &MeshView) -> NodeIdentity {
        NodeIdentity {
            underlay_addr: self.me.underlay_addr,
            underlay_iface: self.me.underlay_iface.clone(),
            vxlan_port: if view.vxlan_port == 0 {
                hive_dataplane::mesh::state::DEFAULT_VXLAN_PORT
            } else {
                view.vxlan_port
            },
            hash_seed: view.hash_seed,
            underlay_mtu: self.me.underlay_mtu,
            control_ports: self.me.control_ports.clone(),
            mesh_mode: view.mesh_mode,
        }
    }

    /// Builds the whole state from `view`, this node's live veths `local` and the nodes
    /// gossip reports `dead`: the state [`super::mesh_state::mesh_state`] gives (for a view
    /// whose lists are sorted by ID, as the stream keeps them).
    pub fn rebuild(
        &mut self,
        view: &MeshView,
        local: &[LocalAttachment],
        dead: &BTreeSet<String>,
    ) -> MeshState {
        let sorted;
        let view = if view.tasks.is_sorted_by(|a, b| a.id <= b.id)
            && view.services.is_sorted_by(|a, b| a.id <= b.id)
        {
            view
        } else {
            let mut copy = view.clone();
            copy.sort();
            sorted = copy;
            &sorted
        };
        let me = self.me.clone();
        *self = Self::new(me);
        let parsed = networks(view);
        self.by_id = view
            .networks
            .iter()
            .zip(&parsed)
            .filter_map(|(v, n)| n.as_ref().map(|n| (v.id.clone(), n.clone())))
            .collect();
        self.networks = parsed.into_iter().flatten().collect();
        self.ingress = self.networks.iter().find(|n| n.ingress).map(|n| n.vni);
        self.node = Some(self.identity(view));
        self.dead = dead.clone();
        self.nodes = nodes(view, &self.me, dead);

        let mut round = Round {
            tasks: view.tasks.iter().map(|t| t.id.clone()).collect(),
            services: view.services.iter().map(|s| s.id.clone()).collect(),
            peers_changed: true,
            ..Round::default()
        };
        self.set_local(local, &mut round);
        self.run(view, round);

        let node = self.node.clone().unwrap_or_else(|| self.identity(view));
        let mut services: Vec<Service> = view
            .services
            .iter()
            .filter_map(|s| self.services.get(&s.id).cloned())
            .collect();
        services.extend(
            view.services
                .iter()
                .filter_map(|s| self.services.get(&host_mesh_id(&s.id)).cloned()),
        );
        let mut endpoints: Vec<TaskEndpoint> = self.endpoints.values().cloned().collect();
        endpoints.sort_by_key(|e| e.addr);
        MeshState {
            node,
            networks: self.networks.clone(),
            peers: self.nodes.peers.clone(),
            services,
            endpoints,
            local_endpoints: self.local_endpoints.clone(),
        }
    }

    /// Takes in what changed since the last build or update: what the stream `touched` in
    /// `view` (already applied to it), this node's live veths if they changed (`local`), and
    /// gossip's dead nodes. The change to the state, or `None` when it needs a
    /// [`Self::rebuild`] (nothing built yet, or the node's settings or the networks changed).
    pub fn update(
        &mut self,
        view: &MeshView,
        touched: &MeshTouched,
        local: Option<&[LocalAttachment]>,
        dead: &BTreeSet<String>,
    ) -> Option<MeshDelta> {
        let node = self.node.as_ref()?;
        self.work = 0;
        if touched.networks || (touched.settings && *node != self.identity(view)) {
            return None;
        }
        let mut round = Round {
            tasks: touched.tasks.clone(),
            services: touched.services.clone(),
            ..Round::default()
        };
        if !touched.nodes.is_empty() || *dead != self.dead {
            let now = nodes(view, &self.me, dead);
            let changed: BTreeSet<&String> = now
                .addr
                .keys()
                .chain(self.nodes.addr.keys())
                .filter(|id| {
                    now.addr.get(*id) != self.nodes.addr.get(*id)
                        || now.alive.contains(*id) != self.nodes.alive.contains(*id)
                })
                .collect();
            for id in changed {
                if let Some(tasks) = self.on_node.get(id) {
                    round.tasks.extend(tasks.iter().cloned());
                }
            }
            round.peers_changed = now.peers != self.nodes.peers;
            self.nodes = now;
            self.dead = dead.clone();
        }
        if let Some(local) = local {
            self.set_local(local, &mut round);
        }
        Some(self.run(view, round))
    }

    /// Takes in this node's live veths: the claims of those that changed.
    fn set_local(&mut self, local: &[LocalAttachment], round: &mut Round) {
        let now: BTreeMap<(String, u32), LocalAttachment> = local
            .iter()
            .map(|l| ((l.task_id.clone(), l.vni), l.clone()))
            .collect();
        self.work += now.len();
        let changed: Vec<(String, u32)> = now
            .iter()
            .filter(|(k, l)| self.local.get(*k) != Some(*l))
            .map(|(k, _)| k.clone())
            .chain(self.local.keys().filter(|k| !now.contains_key(*k)).cloned())
            .collect();
        if changed.is_empty() {
            return;
        }
        round.locals_changed = true;
        for key in changed {
            let claimant = Claimant::Local(key.0.clone(), key.1);
            if let Some(old) = self.local.get(&key)
                && self.fits(old)
            {
                self.addrs
                    .set(old.addr, claimant.clone(), false, &mut round.addrs);
            }
            if let Some(new) = now.get(&key)
                && self.fits(new)
            {
                self.addrs.set(new.addr, claimant, true, &mut round.addrs);
            }
            round.tasks.insert(key.0);
        }
        self.local = now;
    }

    /// A veth whose address is a host of its network: it may be an endpoint.
    fn fits(&self, l: &LocalAttachment) -> bool {
        self.networks
            .iter()
            .any(|n| n.vni == l.vni && is_host(n, l.addr))
    }

    /// The addresses a task of the view claims: on a known node other than this one, its
    /// first IPv4 address on each network of the mesh that holds it.
    fn task_claims(&self, t: &MeshTask) -> Vec<(Ipv4Addr, Claimant)> {
        if t.node_id == self.me.node_id || !self.nodes.addr.contains_key(&t.node_id) {
            return Vec::new();
        }
        t.networks
            .iter()
            .enumerate()
            .filter_map(|(i, attachment)| {
                let network = self.by_id.get(&attachment.network_id)?;
                let addr = attachment.addresses.first()?.ip();
                is_host(network, addr).then(|| (addr, Claimant::Remote(t.id.clone(), i)))
            })
            .collect()
    }

    /// Where task `t` is on network `vni`: (address, node address, serving).
    fn placement(&self, t: &MeshTask, vni: u32) -> Option<(Ipv4Addr, Ipv4Addr, bool)> {
        let &node = self.nodes.addr.get(&t.node_id)?;
        let serving = self.nodes.alive.contains(&t.node_id) && !t.draining;
        let mut found = None;
        for (i, attachment) in t.networks.iter().enumerate() {
            let Some(network) = self.by_id.get(&attachment.network_id) else {
                continue;
            };
            if network.vni != vni {
                continue;
            }
            let Some(addr) = attachment.addresses.first().map(|a| a.ip()) else {
                continue;
            };
            if t.node_id == self.me.node_id {
                // Ours: only once its veth is there, at the address it was given.
                let key = (t.id.clone(), vni);
                if let Some(l) = self.local.get(&key)
                    && self.addrs.holds(&l.addr, &Claimant::Local(key.0, vni))
                {
                    found = Some((l.addr, node, !t.draining));
                }
            } else if is_host(network, addr)
                && self.addrs.holds(&addr, &Claimant::Remote(t.id.clone(), i))
            {
                found = Some((addr, node, serving));
            }
        }
        found
    }

    /// The serving tasks of `service` on this node, on the ingress network.
    fn host_backends(&self, view: &MeshView, service: &str) -> Vec<ServiceBackend> {
        let Some(ingress) = self.ingress else {
            return Vec::new();
        };
        let Some(tasks) = self.tasks_of.get(service) else {
            return Vec::new();
        };
        tasks
            .iter()
            .filter_map(|id| {
                let t = find_task(view, id)?;
                let (addr, node, serving) = self.placement(t, ingress)?;
                (serving && node == self.me.underlay_addr).then(|| ServiceBackend {
                    task_id: t.id.clone(),
                    addr,
                    node,
                    vni: ingress,
                })
            })
            .collect()
    }

    fn claims_of(&self, view: &MeshView, s: &MeshService) -> ServiceClaims {
        let mut claims = ServiceClaims::default();
        for vip in &s.endpoint.virtual_ips {
            let Some(network) = self.by_id.get(&vip.network_id) else {
                continue;
            };
            let addr = vip.addr.ip();
            if is_host(network, addr) && addr != network.gateway && !claims.vips.contains(&addr) {
                claims.vips.push(addr);
            }
        }
        for port in ports(&s.endpoint, self.ingress.is_some()) {
            if let Some(published) = port.published_port {
                let claim = ((port.protocol, published), (false, s.id.clone()));
                if !claims.ports.contains(&claim) {
                    claims.ports.push(claim);
                }
            }
        }
        if self.ingress.is_some() && !self.host_backends(view, &s.id).is_empty() {
            for p in source_ports(s) {
                if p.publish_mode == PublishMode::Host
                    && p.published_port != 0
                    && p.target_port != 0
                {
                    let claim = ((p.protocol, p.published_port), (true, s.id.clone()));
                    if !claims.ports.contains(&claim) {
                        claims.ports.push(claim);
                    }
                }
            }
        }
        claims
    }

    /// The mesh's services of view service `s`: itself, and its host-mode ports' service.
    fn build_service(
        &self,
        view: &MeshView,
        s: &MeshService,
    ) -> (Option<Service>, Option<Service>) {
        let mut vips = Vec::new();
        let mut seen = Vec::new();
        for vip in &s.endpoint.virtual_ips {
            let Some(network) = self.by_id.get(&vip.network_id) else {
                continue;
            };
            let addr = vip.addr.ip();
            if is_host(network, addr)
                && addr != network.gateway
                && !seen.contains(&addr)
                && self.vips.holds(&addr, &s.id)
            {
                seen.push(addr);
                vips.push(ServiceVip {
                    network: network.name.clone(),
                    addr,
                });
            }
        }
        let mut used = Vec::new();
        let mut ports = ports(&s.endpoint, self.ingress.is_some());
        for port in &mut ports {
            if let Some(published) = port.published_port {
                let key = (port.protocol, published);
                if used.contains(&key) || !self.published.holds(&key, &(false, s.id.clone())) {
                    port.published_port = None;
                } else {
                    used.push(key);
                }
            }
        }
        let mut served: BTreeSet<u32> = vips
            .iter()
            .filter_map(|v| self.networks.iter().find(|n| n.name == v.network))
            .map(|n| n.vni)
            .collect();
        if let Some(ingress) = self.ingress
            && ports.iter().any(|p| p.published_port.is_some())
        {
            served.insert(ingress);
        }
        let mut backends = Vec::new();
        for id in self.tasks_of.get(&s.id).into_iter().flatten() {
            let Some(t) = find_task(view, id) else {
                continue;
            };
            for &vni in &served {
                if let Some((addr, node, true)) = self.placement(t, vni) {
                    backends.push(ServiceBackend {
                        task_id: t.id.clone(),
                        addr,
                        node,
                        vni,
                    });
                }
            }
        }
        let service = Service {
            id: s.id.clone(),
            name: s.name.clone(),
            vips,
            ports,
            backends,
        };

        let host = if self.ingress.is_some() {
            let backends = self.host_backends(view, &s.id);
            let mut used = Vec::new();
            let ports: Vec<ServicePort> = if backends.is_empty() {
                Vec::new()
            } else {
                source_ports(s)
                    .iter()
                    .filter(|p| p.publish_mode == PublishMode::Host && p.published_port != 0)
                    .filter_map(|p| {
                        let key = (p.protocol, p.published_port);
                        (p.target_port != 0
                            && !used.contains(&key)
                            && self.published.holds(&key, &(true, s.id.clone())))
                        .then(|| {
                            used.push(key);
                            ServicePort {
                                protocol: p.protocol,
                                target_port: p.target_port,
                                published_port: Some(p.published_port),
                            }
                        })
                    })
                    .collect()
            };
            (!ports.is_empty()).then(|| Service {
                id: host_mesh_id(&s.id),
                name: host_mesh_id(&s.name),
                vips: Vec::new(),
                ports,
                backends,
            })
        } else {
            None
        };
        (Some(service), host)
    }

    /// The endpoint at `addr`: its claims' holder's.
    fn endpoint_at(&self, view: &MeshView, addr: Ipv4Addr) -> Option<TaskEndpoint> {
        match self.addrs.holder(&addr)? {
            Claimant::Local(task, vni) => Some(TaskEndpoint {
                task_id: task.clone(),
                addr,
                node: self.me.underlay_addr,
                vni: *vni,
            }),
            Claimant::Remote(task, i) => {
                let t = find_task(view, task)?;
                let network = self.by_id.get(&t.networks.get(*i)?.network_id)?;
                Some(TaskEndpoint {
                    task_id: task.clone(),
                    addr,
                    node: *self.nodes.addr.get(&t.node_id)?,
                    vni: network.vni,
                })
            }
        }
    }

    /// Takes in a round: the tasks, then the addresses they claim, then the services, and
    /// what came out different.
    fn run(&mut self, view: &MeshView, mut round: Round) -> MeshDelta {
        let mut delta = MeshDelta::default();

        // Tasks: their index entries and address claims.
        let tasks = std::mem::take(&mut round.tasks);
        for id in &tasks {
            self.work += 1;
            if let Some(old) = self.tasks.remove(id) {
                for (addr, claimant) in old.claims {
                    self.addrs.set(addr, claimant, false, &mut round.addrs);
                }
                if let Some(set) = self.tasks_of.get_mut(&old.service) {
                    set.remove(id);
                    if set.is_empty() {
                        self.tasks_of.remove(&old.service);
                    }
                }
                if let Some(set) = self.on_node.get_mut(&old.node) {
                    set.remove(id);
                    if set.is_empty() {
                        self.on_node.remove(&old.node);
                    }
                }
                round.services.insert(old.service);
            }
            if let Some(t) = find_task(view, id) {
                let claims = self.task_claims(t);
                for (addr, claimant) in &claims {
                    self.addrs
                        .set(*addr, claimant.clone(), true, &mut round.addrs);
                }
                self.tasks_of
                    .entry(t.service_id.clone())
                    .or_default()
                    .insert(id.clone());
                self.on_node
                    .entry(t.node_id.clone())
                    .or_default()
                    .insert(id.clone());
                self.tasks.insert(
                    id.clone(),
                    TaskSeen {
                        service: t.service_id.clone(),
                        node: t.node_id.clone(),
                        claims,
                    },
                );
                round.services.insert(t.service_id.clone());
            }
        }

        // Addresses whose holder changed: the services of both holders, and the endpoint.
        let addrs = std::mem::take(&mut round.addrs);
        for (addr, before) in &addrs {
            self.work += 1;
            let after = self.addrs.holder(addr).cloned();
            for claimant in [before, &after].into_iter().flatten() {
                if matches!(claimant, Claimant::Local(..)) {
                    round.locals_changed = true;
                }
                if let Some(seen) = self.tasks.get(claimant.task()) {
                    round.services.insert(seen.service.clone());
                }
            }
            let endpoint = self.endpoint_at(view, *addr);
            if self.endpoints.get(addr) != endpoint.as_ref() {
                match &endpoint {
                    Some(e) => self.endpoints.insert(*addr, e.clone()),
                    None => self.endpoints.remove(addr),
                };
                delta.endpoints.push((*addr, endpoint));
            }
        }

        // Services: their VIP and port claims, then (with those whose claims' holder
        // changed) what they are.
        let services = std::mem::take(&mut round.services);
        for id in &services {
            self.work += 1;
            let now = find_service(view, id)
                .map(|s| self.claims_of(view, s))
                .unwrap_or_default();
            let before = self.service_claims.remove(id).unwrap_or_default();
            if now == before {
                if now != ServiceClaims::default() {
                    self.service_claims.insert(id.clone(), now);
                }
                continue;
            }
            for vip in &before.vips {
                self.vips.set(*vip, id.clone(), false, &mut round.vips);
            }
            for (key, claimant) in &before.ports {
                self.published
                    .set(*key, claimant.clone(), false, &mut round.published);
            }
            for vip in &now.vips {
                self.vips.set(*vip, id.clone(), true, &mut round.vips);
            }
            for (key, claimant) in &now.ports {
                self.published
                    .set(*key, claimant.clone(), true, &mut round.published);
            }
            if now != ServiceClaims::default() {
                self.service_claims.insert(id.clone(), now);
            }
        }
        let mut rebuild = services;
        for (vip, before) in std::mem::take(&mut round.vips) {
            self.work += 1;
            let after = self.vips.holder(&vip).cloned();
            rebuild.extend([before, after].into_iter().flatten());
        }
        for (port, before) in std::mem::take(&mut round.published) {
            self.work += 1;
            let after = self.published.holder(&port).cloned();
            rebuild.extend([before, after].into_iter().flatten().map(|(_, id)| id));
        }
        for id in &rebuild {
            self.work += 1 + self.tasks_of.get(id).map_or(0, BTreeSet::len);
            let (service, host) = match find_service(view, id) {
                Some(s) => self.build_service(view, s),
                None => (None, None),
            };
            for (mesh_id, service) in [(id.clone(), service), (host_mesh_id(id), host)] {
                if self.services.get(&mesh_id) != service.as_ref() {
                    match &service {
                        Some(s) => self.services.insert(mesh_id.clone(), s.clone()),
                        None => self.services.remove(&mesh_id),
                    };
                    delta.services.push((mesh_id, service));
                }
            }
        }

        // This node's veths that are endpoints (few: this node's tasks).
        if round.locals_changed {
            self.work += self.local.len();
            let locals: Vec<LocalEndpoint> = self
                .local
                .values()
                .filter(|l| {
                    self.addrs
                        .holds(&l.addr, &Claimant::Local(l.task_id.clone(), l.vni))
                })
                .map(|l| LocalEndpoint {
                    task_id: l.task_id.clone(),
                    vni: l.vni,
                    host_ifname: l.host_ifname.clone(),
                    host_ifindex: l.host_ifindex,
                })
                .collect();
            if locals != self.local_endpoints {
                self.local_endpoints = locals.clone();
                delta.local_endpoints = Some(locals);
            }
        }
        if round.peers_changed {
            delta.peers = Some(self.nodes.peers.clone());
        }
        delta
    }
}

/// The ports a service publishes: the allocated ones, or its spec's before allocation.
fn source_ports(s: &MeshService) -> &[crate::store::objects::PortConfig] {
    if s.endpoint.ports.is_empty() {
        &s.endpoint.spec.ports
    } else {
        &s.endpoint.ports
    }
}

#[cfg(test)]
mod tests;
